//! Completion callbacks, sent by the sweep.
//!
//! A task accepted by the intake with a callback URL stays in the ledger's open index until
//! its callback goes out. Each sweep reads those tasks; a task is final when every consumer
//! expected to handle it (the monitor's consumers whose filter policies admit its kind and
//! tenant) has SUCCEEDED, or when one has been DEAD_LETTERED or PARKED. Then one callback with
//! the final state goes to the URL through the notifier's signed delivery (Standard Webhooks
//! headers, `webhook-id` = the task id, the receiver's deduplication key) and its SSRF guard,
//! and the task leaves the index. A transient failure is tried again at the next sweep (at
//! least once); a permanent one (a refused destination, a 4xx) is given up with its reason,
//! logged, and noted on the task.

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
use mailroom_lambda::ledger::{Acceptance, LedgerError, State, TaskStory};
use mailroom_lambda::message::{Message, TaskIdSource};
use mailroom_lambda::outcome::FailureKind;
use mailroom_ops::monitor::Monitor;
use notifier::Notifier;
use serde_json::json;

/// What one round of callbacks did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallbackReport {
    /// Callbacks delivered.
    pub sent: u32,
    /// Tasks not final yet.
    pub waiting: u32,
    /// Deliveries that failed for now; the next sweep tries again.
    pub retrying: u32,
    /// Deliveries given up for good (a refused destination, a 4xx).
    pub given_up: u32,
}

/// The consumers `a` is expected to reach: those whose filter policy admits its attributes.
fn expected(monitor: &Monitor, a: &Acceptance) -> Vec<String> {
    let mut attributes = HashMap::new();
    let string = |v: &str| {
        let mut a = SqsMessageAttribute::default();
        a.string_value = Some(v.to_owned());
        a.data_type = Some("String".to_owned());
        a
    };
    attributes.insert("kind".to_owned(), string(&a.kind));
    attributes.insert("task_id".to_owned(), string(&a.task_id));
    if let Some(t) = &a.tenant {
        attributes.insert("tenant".to_owned(), string(t));
    }
    let mut record = SqsMessage::default();
    record.message_attributes = attributes;
    let message = Message::metadata(record, &TaskIdSource::default());
    monitor
        .config()
        .consumers
        .iter()
        .filter(|(_, policy)| policy.matches(&message))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The task's final state, or `None` while work is owed.
pub fn final_state(story: &TaskStory, expected: &[String]) -> Option<&'static str> {
    let has = |s: State| story.consumers.iter().any(|e| e.state == s);
    if has(State::DeadLettered) {
        return Some("DEAD_LETTERED");
    }
    if has(State::Parked) {
        return Some("PARKED");
    }
    let succeeded = |name: &str| {
        story
            .consumers
            .iter()
            .any(|e| e.consumer == name && e.state == State::Succeeded)
    };
    let done = if expected.is_empty() {
        // No list to go by: every consumer that has the task.
        !story.consumers.is_empty() && story.consumers.iter().all(|e| e.state == State::Succeeded)
    } else {
        expected.iter().all(|c| succeeded(c))
    };
    done.then_some("SUCCEEDED")
}

/// Sends every completion callback that is due.
///
/// # Errors
/// When the tasks that are due cannot be listed; a task that cannot be read or a delivery
/// that fails is counted and left to the next sweep, not an error.
pub async fn send_due(monitor: &Monitor, sender: &Notifier) -> Result<CallbackReport, LedgerError> {
    let mut report = CallbackReport::default();
    let ledger = monitor.ledger();
    for accepted in ledger.callbacks_due().await? {
        let Some(url) = accepted.callback_url.as_deref() else {
            continue;
        };
        if accepted.callback_done {
            // Back in the index only because the producer repeated its request after the
            // callback: it went out once already; take it out again.
            if let Err(e) = ledger.callback_sent(&accepted.task_id, "sent").await {
                tracing::warn!(task_id = %accepted.task_id, error = %e, "could not settle a repeated task; next sweep");
            }
            continue;
        }
        // One task's trouble is that task's: it waits for the next sweep, the rest go on.
        let story = match ledger.story(&accepted.task_id).await {
            Ok(story) => story,
            Err(e) => {
                tracing::warn!(task_id = %accepted.task_id, error = %e, "could not read the task; next sweep");
                report.retrying += 1;
                continue;
            }
        };
        let Some(state) = final_state(&story, &expected(monitor, &accepted)) else {
            report.waiting += 1;
            continue;
        };
        let body = json!({
            "type": "task.completed",
            "task_id": accepted.task_id,
            "kind": accepted.kind,
            "tenant": accepted.tenant,
            "status": state,
            "consumers": story.consumers,
        });
        let delivered = match url.parse::<reqwest::Url>() {
            Ok(url) => {
                sender
                    .deliver(url, &accepted.task_id, body.to_string().into_bytes())
                    .await
            }
            Err(e) => Err(mailroom_lambda::Failure::poison(format!(
                "callback URL `{url}` does not parse: {e}"
            ))),
        };
        match delivered {
            Ok(()) => {
                report.sent += 1;
                settle(ledger, &accepted.task_id, state).await;
            }
            Err(f) if f.kind() == FailureKind::Poison => {
                tracing::error!(task_id = %accepted.task_id, reason = f.reason(), "completion callback refused; giving up");
                report.given_up += 1;
                settle(
                    ledger,
                    &accepted.task_id,
                    &format!("given up: {}", f.reason()),
                )
                .await;
            }
            Err(f) => {
                tracing::warn!(task_id = %accepted.task_id, reason = f.reason(), "completion callback failed; the next sweep tries again");
                report.retrying += 1;
            }
        }
    }
    Ok(report)
}

/// Notes a callback's outcome; if the ledger does not take it, the next sweep sends the
/// callback again (at least once: the receiver deduplicates on `webhook-id`).
async fn settle(ledger: &mailroom_lambda::ledger::Ledger, task_id: &str, outcome: &str) {
    if let Err(e) = ledger.callback_sent(task_id, outcome).await {
        tracing::warn!(task_id, error = %e, "could not note the callback; the next sweep sends it again");
    }
}
