//! Idempotency: the task's lease in the ledger around each record.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::Work;
use super::run::{Done, RunCtx, done, fail};
use crate::clock::ms;
use crate::ledger::{Lease, Ledger, LedgerError};
use crate::message::Message;
use crate::outcome::{Backoff, Cause, Failure, Outcome};
use crate::sqs::QueuePort;

impl<Q, F> RunCtx<'_, Q, F>
where
    Q: QueuePort,
{
    /// Takes the task's lease, runs the record, and records the outcome in the ledger.
    pub(crate) async fn run_leased<T, Fut>(&self, ledger: &Ledger, task: String, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        match self.take_lease(ledger, &task, w).await {
            Ok((w, owner)) => self.after_lease(ledger, task, owner, w).await,
            Err(d) => d,
        }
    }

    /// Takes the task's lease for the record, and says whose it is; the record comes back
    /// finished when it must not run (the task succeeded here already, another invocation
    /// holds it, the ledger refuses or cannot be reached).
    pub(crate) async fn take_lease(
        &self,
        ledger: &Ledger,
        task: &str,
        w: Work,
    ) -> Result<(Work, String), Done> {
        let consumer = self.engine.config.consumer.as_str();
        let owner = self.engine.lease_owner();
        let now = ledger.clock().now_ms();
        // The lease runs out with the invocation: a run that times out or dies never leaves
        // the task stuck IN_PROGRESS beyond its deadline.
        let until = now
            + ms(self
                .deadline
                .remaining()
                .unwrap_or(self.engine.config.lease));
        let published = w.received.meta.first_seen_ms();
        match ledger
            .acquire(task, consumer, &owner, until, published)
            .await
        {
            Ok(Lease::Acquired { attempt }) => {
                tracing::debug!(attempt, "lease taken");
            }
            Ok(Lease::AlreadySucceeded) => {
                tracing::info!("duplicate: the task already succeeded here; skipped");
                return Err(done(w, Outcome::Duplicate, Backoff::QueueDefault));
            }
            Ok(Lease::Held { until_ms }) => {
                let wait =
                    Duration::from_millis(until_ms.saturating_sub(now)).max(Duration::from_secs(1));
                tracing::warn!(
                    lease_until_ms = until_ms,
                    "another invocation holds the task's lease; retrying later"
                );
                return Err(fail(
                    w,
                    format!("ledger: lease held by another invocation until {until_ms}"),
                    Cause::LeaseHeld,
                    Backoff::After(wait),
                ));
            }
            Err(e) if e.is_invalid_input() => {
                // No delivery of this record can ever take a lease: poison, with the reason,
                // rather than retried until redrive moves it without one.
                tracing::error!(error = %e, "the ledger refuses this record's task; poison");
                return Err(Box::pin(self.poison(w, format!("ledger: {e}"))).await);
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "ledger unavailable; not running the record unguarded");
                return Err(fail(
                    w,
                    format!("ledger: {e}"),
                    Cause::Ledger,
                    Backoff::Policy,
                ));
            }
        }
        Ok((w, owner))
    }

    /// Runs a record whose lease `owner` holds, and records the outcome in the ledger.
    pub(crate) async fn after_lease<T, Fut>(
        &self,
        ledger: &Ledger,
        task: String,
        owner: String,
        w: Work,
    ) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let d = self.attempt(w).await;
        // Once the work is done, its record is what keeps a redelivery from doing it again.
        self.record_outcome(ledger, &task, Some(&owner), &d).await;
        d
    }

    /// Writes `d`'s outcome, trying a transient error again (four tries in all, 50 ms apart
    /// and doubling). If it still fails, the message's fate stands (deleting a success is
    /// right even so); the pair stays open (until its lease runs out, when there is one),
    /// where the monitor's sweep sees it, and the failure is counted.
    async fn record_outcome(&self, ledger: &Ledger, task: &str, owner: Option<&str>, d: &Done) {
        let consumer = self.engine.config.consumer.as_str();
        let outcome = &d.report.outcome;
        let mut written = record(ledger, task, consumer, owner, outcome).await;
        for pause in [50, 100, 200] {
            if !matches!(&written, Err(e) if e.is_retryable()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
            written = record(ledger, task, consumer, owner, outcome).await;
        }
        if let Err(e) = written {
            tracing::error!(error = %e, outcome = ?outcome, "ledger: could not record the outcome");
            self.ledger_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Without the lease (`MAILROOM_LEASE=off`): skips a task that already succeeded here
    /// (one consistent read), runs the record, and records the outcome. No write before the
    /// run, so two deliveries of one task at the same moment may both run it.
    pub(crate) async fn run_unleased<T, Fut>(&self, ledger: &Ledger, task: String, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let consumer = self.engine.config.consumer.as_str();
        match ledger.get(&task, consumer).await {
            Ok(Some(entry)) if entry.state == crate::ledger::State::Succeeded => {
                tracing::info!("duplicate: the task already succeeded here; skipped");
                return done(w, Outcome::Duplicate, Backoff::QueueDefault);
            }
            Ok(_) => {}
            Err(e) if e.is_invalid_input() => {
                tracing::error!(error = %e, "the ledger refuses this record's task; poison");
                return Box::pin(self.poison(w, format!("ledger: {e}"))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger unavailable; not running the record unchecked");
                return fail(w, format!("ledger: {e}"), Cause::Ledger, Backoff::Policy);
            }
        }
        let d = self.attempt(w).await;
        // No lease is held: the outcome's write yields to another delivery's live lease, as a
        // writer without one must, and never undoes a success.
        self.record_outcome(ledger, &task, None, &d).await;
        d
    }
}

/// Writes a run's outcome to the ledger, as the lease's `owner` or as a writer without one.
async fn record(
    ledger: &Ledger,
    task: &str,
    consumer: &str,
    owner: Option<&str>,
    outcome: &Outcome,
) -> Result<(), LedgerError> {
    match outcome {
        Outcome::Succeeded => ledger.succeed(task, consumer).await,
        Outcome::Poisoned { reason, .. } => ledger
            .dead_letter(task, consumer, reason, owner)
            .await
            .map(drop),
        Outcome::Failed { reason, .. } => match owner {
            Some(owner) => ledger.fail(task, consumer, owner, reason).await.map(drop),
            None => ledger
                .mark(
                    task,
                    consumer,
                    crate::ledger::State::Failed,
                    Some(reason),
                    None,
                )
                .await
                .map(drop),
        },
        Outcome::Duplicate | Outcome::Skipped { .. } | Outcome::Deferred { .. } => Ok(()),
    }
}
