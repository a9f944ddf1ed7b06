//! Running one record: the deadline guard, decoding, the consumer with panic isolation and
//! the deadline's cut-off, and FIFO halting.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use tracing::{Instrument, field};

use super::{Deadline, Engine, RecordReport, Work};
use crate::ledger::Ledger;
use crate::message::Message;
use crate::outcome::{Backoff, Cause, Failure, FailureKind, Outcome};
use crate::sqs::{QueueArn, QueuePort};

/// Borrowed context for running records.
pub(crate) struct RunCtx<'a, Q, F> {
    pub(crate) engine: &'a Engine<Q>,
    pub(crate) handler: &'a F,
    pub(crate) source: Option<&'a QueueArn>,
    pub(crate) fifo: bool,
    pub(crate) deadline: Deadline,
    /// Outcomes the ledger could not record.
    pub(crate) ledger_errors: std::sync::atomic::AtomicU32,
}

/// How many lease writes a guarded batch has in flight at once, apart from how many records
/// run at once: DynamoDB takes them in parallel, and a record should not wait on the leases
/// of the records before it.
pub(crate) const LEASE_FANOUT: usize = 64;

/// A record after the first wave of a guarded batch.
pub(crate) enum Prepared {
    /// Finished already: malformed, a control message, too close to the deadline, a
    /// duplicate, or its lease held elsewhere.
    Done(Done),
    /// Its task's lease is taken: the task and the lease's owner.
    Leased(Work, String, String),
    /// It has no task id to guard it by: it runs unguarded.
    Unguarded(Work),
}

/// The span of one record, with its ids.
fn record_span(w: &Work) -> tracing::Span {
    let meta = &w.received.meta;
    let span = tracing::info_span!(
        "record",
        message_id = meta.message_id.as_deref().unwrap_or("-"),
        sns_message_id = field::Empty,
        task_id = field::Empty,
        receive_count = meta.receive_count,
        traceparent = field::Empty,
    );
    if !span.is_disabled() {
        if let Some(sns) = &meta.sns {
            span.record("sns_message_id", sns.message_id.as_str());
        }
        if let Some(t) = meta.task_id() {
            span.record("task_id", t);
        }
        if let Some(t) = &meta.traceparent {
            span.record("traceparent", t.as_str());
        }
    }
    span
}

/// A finished record, with what the backoff step still needs.
pub(crate) struct Done {
    pub(crate) index: usize,
    pub(crate) report: RecordReport,
    pub(crate) backoff: Backoff,
    pub(crate) receipt_handle: Option<String>,
    /// The dependency a transient failure named, for the circuit breaker (boxed: rare, and
    /// every record carries the field).
    pub(crate) dependency: Option<Box<str>>,
}

impl<Q, F> RunCtx<'_, Q, F>
where
    Q: QueuePort,
{
    /// Runs records one after another; after the first failure the rest are halted.
    pub(crate) async fn run_in_order<T, Fut>(&self, work: Vec<Work>) -> Vec<Done>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let mut out = Vec::with_capacity(work.len());
        let mut halted = false;
        for w in work {
            let done = if halted { halt(w) } else { self.run(w).await };
            halted |= matches!(done.report.outcome, Outcome::Failed { .. });
            out.push(done);
        }
        out
    }

    pub(crate) async fn run<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let span = record_span(&w);
        if span.is_disabled() {
            // No subscriber wants it: skip the per-poll enter and exit entirely.
            self.run_record(w).await
        } else {
            self.run_record(w).instrument(span).await
        }
    }

    /// The first wave of a guarded batch: a record's checks, then its lease. The leases of a
    /// batch are taken [`LEASE_FANOUT`] at a time, however few records run at once, so a
    /// record waits on one round of lease writes, not on its place in the batch.
    pub(crate) async fn prepare(&self, ledger: &Ledger, w: Work) -> Prepared {
        let span = record_span(&w);
        let prepared = async {
            let w = match self.check(w) {
                Ok(w) => w,
                Err(d) => return Prepared::Done(d),
            };
            match w.received.meta.task_id().map(str::to_owned) {
                Some(task) => match Box::pin(self.take_lease(ledger, &task, w)).await {
                    Ok((w, owner)) => Prepared::Leased(w, task, owner),
                    Err(d) => Prepared::Done(d),
                },
                None => Prepared::Unguarded(w),
            }
        };
        if span.is_disabled() {
            prepared.await
        } else {
            prepared.instrument(span).await
        }
    }

    /// The second wave: runs a prepared record and writes its outcome.
    pub(crate) async fn finish<T, Fut>(&self, ledger: &Ledger, p: Prepared) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let (w, lease) = match p {
            Prepared::Done(d) => return d,
            Prepared::Leased(w, task, owner) => (w, Some((task, owner))),
            Prepared::Unguarded(w) => (w, None),
        };
        let span = record_span(&w);
        let run = async move {
            // The deadline again: the record may have waited for a worker since its lease,
            // which ends at the deadline, so a later delivery is not held up by it.
            let w = match self.deadline_check(w) {
                Ok(w) => w,
                Err(d) => return d,
            };
            match lease {
                Some((task, owner)) => Box::pin(self.after_lease(ledger, task, owner, w)).await,
                None => self.attempt(w).await,
            }
        };
        if span.is_disabled() {
            run.await
        } else {
            run.instrument(span).await
        }
    }

    /// The checks before a record runs: well-formed, an event (not an SNS control message),
    /// and time enough before the deadline.
    fn check(&self, mut w: Work) -> Result<Work, Done> {
        if let Some(reason) = w.malformed.take() {
            tracing::error!(%reason, "not a well-formed SQS record; reported failed, the rest of the batch runs");
            return Err(fail(
                w,
                format!("malformed record: {reason}"),
                Cause::Malformed,
                Backoff::QueueDefault,
            ));
        }
        if let Some(kind) = w.received.control {
            tracing::info!(kind, "an SNS control message, not an event: skipped");
            return Err(done(w, Outcome::Skipped { kind }, Backoff::QueueDefault));
        }
        self.deadline_check(w)
    }

    fn deadline_check(&self, w: Work) -> Result<Work, Done> {
        let margin = self.engine.config.deadline_margin;
        if self.deadline.remaining().is_some_and(|left| left < margin) {
            tracing::warn!("not started: the Lambda deadline is too close");
            return Err(fail(
                w,
                "deadline: not started before the margin",
                Cause::Deadline,
                Backoff::QueueDefault,
            ));
        }
        Ok(w)
    }

    pub(crate) async fn run_record<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let w = match self.check(w) {
            Ok(w) => w,
            Err(d) => return d,
        };
        if let (Some(ledger), Some(task)) = (&self.engine.ledger, w.received.meta.task_id()) {
            let task = task.to_owned();
            // Boxed: only guarded consumers pay for the larger future.
            return if self.engine.config.leases {
                Box::pin(self.run_leased(ledger, task, w)).await
            } else {
                Box::pin(self.run_unleased(ledger, task, w)).await
            };
        }
        self.attempt(w).await
    }

    /// Decodes the record and runs the consumer on it.
    pub(crate) async fn attempt<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let margin = self.engine.config.deadline_margin;
        let payload = match w.received.decode::<T>() {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("decode: {e}");
                return Box::pin(self.poison(w, reason)).await;
            }
        };
        let message = Message::new(payload, w.received.meta.clone());
        let call = AssertUnwindSafe((self.handler)(message)).catch_unwind();
        // In-flight records get half the margin; the other half is for the batch calls.
        let result = match self.deadline.instant() {
            Some(at) => {
                let cutoff = at.checked_sub(margin / 2).unwrap_or(at);
                match tokio::time::timeout_at(cutoff, call).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("cancelled at the Lambda deadline");
                        return fail(
                            w,
                            "deadline: cancelled while running",
                            Cause::Timeout,
                            Backoff::QueueDefault,
                        );
                    }
                }
            }
            None => call.await,
        };
        match result {
            Ok(Ok(())) => {
                tracing::debug!("succeeded");
                done(w, Outcome::Succeeded, Backoff::QueueDefault)
            }
            Ok(Err(f)) => match f.kind {
                FailureKind::Retry(backoff) => {
                    tracing::warn!(reason = %f.reason, dependency = f.dependency.as_deref(), "retry");
                    let mut d = fail(w, f.reason, Cause::Retry, backoff);
                    d.dependency = f.dependency.map(String::into_boxed_str);
                    d
                }
                // Boxed: the rare poison path would otherwise enlarge every record's future.
                FailureKind::Poison => Box::pin(self.poison(w, f.reason)).await,
            },
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown payload".to_owned());
                tracing::error!(panic = %what, "consumer panicked");
                fail(w, format!("panic: {what}"), Cause::Panic, Backoff::Policy)
            }
        }
    }
}

pub(crate) fn done(w: Work, outcome: Outcome, backoff: Backoff) -> Done {
    Done {
        index: w.index,
        report: RecordReport {
            index: w.index,
            outcome,
            meta: w.received.meta,
        },
        backoff,
        receipt_handle: w.received.receipt_handle,
        dependency: None,
    }
}

pub(crate) fn fail(w: Work, reason: impl Into<String>, cause: Cause, backoff: Backoff) -> Done {
    let outcome = Outcome::Failed {
        reason: reason.into(),
        cause,
        visibility_secs: None,
    };
    done(w, outcome, backoff)
}

pub(crate) fn halt(w: Work) -> Done {
    let span = tracing::info_span!(
        "record",
        message_id = w.received.meta.message_id.as_deref().unwrap_or("-")
    );
    span.in_scope(|| tracing::warn!("not started: an earlier record of its FIFO group failed"));
    fail(
        w,
        "fifo: an earlier record in order failed",
        Cause::Halted,
        Backoff::QueueDefault,
    )
}
