//! The status API, independent of how requests arrive (a Lambda Function URL in AWS, a
//! loopback HTTP server locally):
//!
//! * `GET /tasks/{id}`: one task's state, attempts and last error per consumer; what a
//!   producer polls.
//! * `GET /tasks?bucket=over-45m`: the open pairs in one bucket. `GET /tasks`: every bucket.
//! * `GET /dlqs`: each watched DLQ's depth, growth and sample reasons.

use serde::Serialize;
use serde_json::{Value, json};

use super::Monitor;
use mailroom_lambda::ledger::{Acceptance, Entry, Ledger, State, TaskStory};

/// One task across its consumers.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// The task id.
    pub task_id: String,
    /// Where the task stands as a whole ([`TaskStatus::of`]).
    pub status: &'static str,
    /// What the intake accepted, for tasks that came through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
    /// Per consumer.
    pub consumers: Vec<Entry>,
}

impl TaskStatus {
    /// Sums up a task: `UNKNOWN` when the ledger has never seen it; `SUCCEEDED` when every
    /// consumer succeeded; `DEAD_LETTERED` when one is in a DLQ; `PARKED` when one gave up
    /// and the rest succeeded; `FAILED` when one's last attempt failed (SQS delivers it
    /// again); `RUNNING` while one holds it or it was replayed; else `ACCEPTED` (accepted or
    /// registered, not yet picked up).
    pub fn of(task_id: &str, story: TaskStory) -> Self {
        let states: Vec<State> = story.consumers.iter().map(|e| e.state).collect();
        let any = |s: State| states.contains(&s);
        let status = if states.is_empty() && story.accepted.is_none() {
            "UNKNOWN"
        } else if !states.is_empty() && states.iter().all(|s| *s == State::Succeeded) {
            "SUCCEEDED"
        } else if any(State::DeadLettered) {
            "DEAD_LETTERED"
        } else if any(State::Parked) && !states.iter().any(|s| s.is_open()) {
            "PARKED"
        } else if any(State::Failed) {
            "FAILED"
        } else if any(State::InProgress) || any(State::Replayed) || any(State::Succeeded) {
            "RUNNING"
        } else {
            "ACCEPTED"
        };
        Self {
            task_id: task_id.to_owned(),
            status,
            accepted: story.accepted,
            consumers: story.consumers,
        }
    }
}

/// `GET /tasks/{id}`, the one implementation the monitor's and the intake's routes share:
/// 200 with the task's status, 404 with status `UNKNOWN` for an id the ledger has never
/// seen, 502 naming the cause when the ledger does not answer.
pub async fn task_reply(ledger: &Ledger, id: &str) -> Reply {
    if id.starts_with('#') || id.is_empty() {
        return reply(404, json!(TaskStatus::of(id, TaskStory::default())));
    }
    match ledger.story(id).await {
        Ok(story) => {
            let status = TaskStatus::of(id, story);
            let code = if status.status == "UNKNOWN" { 404 } else { 200 };
            reply(code, json!(status))
        }
        Err(e) => error(502, e.to_string()),
    }
}

/// An HTTP answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

/// An error answer: `{"error": message}`.
pub fn error(status: u16, message: impl Into<String>) -> Reply {
    reply(status, json!({ "error": message.into() }))
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoding `%2D`-style escapes.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// Percent-decodes a path segment or query value (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers one request. Failures of the ledger or SQS are a 502 naming the cause; nothing
/// here panics on input.
pub async fn route(monitor: &Monitor, method: &str, path: &str, query: &str) -> Reply {
    if !method.eq_ignore_ascii_case("GET") {
        return error(
            405,
            format!("{method} is not allowed; this API is read-only"),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["tasks", id] if !id.is_empty() => task_reply(monitor.ledger(), &percent_decode(id)).await,
        ["tasks"] => {
            let wanted = query_param(query, "bucket");
            let names = monitor.config().bucket_names();
            if let Some(w) = wanted.as_ref().filter(|w| !names.contains(w)) {
                return error(
                    400,
                    format!("unknown bucket `{w}`; buckets are {}", names.join(", ")),
                );
            }
            match monitor.buckets().await {
                Ok(buckets) => {
                    let chosen: Vec<_> = buckets
                        .into_iter()
                        .filter(|b| wanted.as_ref().is_none_or(|w| *w == b.name))
                        .collect();
                    reply(200, json!({ "buckets": chosen }))
                }
                Err(e) => error(502, e.to_string()),
            }
        }
        ["dlqs"] => match monitor.dlqs().await {
            Ok(dlqs) => reply(200, json!({ "dlqs": dlqs })),
            Err(e) => error(502, e.to_string()),
        },
        _ => error(
            404,
            format!("no route for {path}; try /tasks/{{id}}, /tasks?bucket=…, /dlqs"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&bucket=over%2D45m", "bucket").as_deref(),
            Some("over-45m")
        );
        assert_eq!(query_param("bucket", "bucket").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "bucket"), None);
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("t%C3%A9%"), "té%");
    }

    #[test]
    fn a_task_is_done_only_when_every_consumer_is() {
        let e = |state| Entry {
            task_id: "t".into(),
            consumer: "c".into(),
            state,
            attempts: 1,
            last_error: None,
            opened_at_ms: 0,
            updated_at_ms: 0,
            lease_until_ms: None,
        };
        let of = |states: &[State]| {
            TaskStatus::of(
                "t",
                TaskStory {
                    accepted: None,
                    consumers: states.iter().map(|s| e(*s)).collect(),
                },
            )
            .status
        };
        assert_eq!(of(&[]), "UNKNOWN");
        assert_eq!(of(&[State::Succeeded, State::Failed]), "FAILED");
        assert_eq!(of(&[State::Succeeded, State::Parked]), "PARKED");
        assert_eq!(
            of(&[State::Succeeded, State::DeadLettered]),
            "DEAD_LETTERED"
        );
        assert_eq!(of(&[State::Succeeded, State::InProgress]), "RUNNING");
        assert_eq!(of(&[State::Succeeded, State::Received]), "RUNNING");
        assert_eq!(of(&[State::Received, State::Received]), "ACCEPTED");
        assert_eq!(of(&[State::Succeeded]), "SUCCEEDED");
    }
}
