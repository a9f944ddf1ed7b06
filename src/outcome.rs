//! What a consumer returns for one record (success, or a [`Failure`] that says how to retry),
//! and what the engine made of it ([`Outcome`], with its [`Cause`] when it failed).

use std::fmt;
use std::time::Duration;

/// Why a record did not succeed, and what the engine should do about it.
///
/// Any `std::error::Error` converts into a retry, so `?` works in consumers; return
/// [`Failure::poison`] for input that will never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) reason: String,
    /// What failed, for the circuit breaker; `None`: the consumer itself.
    pub(crate) dependency: Option<String>,
}

/// The two kinds of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Transient: report the record failed so SQS delivers it again, after `Backoff`.
    Retry(Backoff),
    /// Permanent: the engine moves the record to the DLQ with its reason.
    Poison,
}

/// When a retried record should become visible again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The engine's exponential, full-jitter policy, from the receive count.
    Policy,
    /// After this delay (for example an HTTP `Retry-After`), capped below SQS's limit.
    After(Duration),
    /// Leave the visibility timeout the queue gave the message.
    QueueDefault,
}

impl Failure {
    /// A transient failure, retried after the engine's backoff policy.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Retry(Backoff::Policy),
            reason: reason.to_string(),
            dependency: None,
        }
    }

    /// A transient failure, retried after `delay`.
    pub fn retry_after(reason: impl fmt::Display, delay: Duration) -> Self {
        Self {
            kind: FailureKind::Retry(Backoff::After(delay)),
            reason: reason.to_string(),
            dependency: None,
        }
    }

    /// A permanent failure: the message goes to the DLQ now, carrying `reason`.
    pub fn poison(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Poison,
            reason: reason.to_string(),
            dependency: None,
        }
    }

    /// The same failure, retried when the queue's visibility timeout ends, without backoff.
    #[must_use]
    pub fn without_backoff(mut self) -> Self {
        if let FailureKind::Retry(_) = self.kind {
            self.kind = FailureKind::Retry(Backoff::QueueDefault);
        }
        self
    }

    /// Names the dependency that failed (a host, a partner API), so the circuit breaker
    /// counts the failure against it; unnamed failures count against the consumer itself.
    #[must_use]
    pub fn on(mut self, dependency: impl Into<String>) -> Self {
        self.dependency = Some(dependency.into());
        self
    }

    /// The dependency the failure names, if any.
    pub fn dependency(&self) -> Option<&str> {
        self.dependency.as_deref()
    }

    /// The kind of failure.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The reason, as logged and as attached to the message.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Retry(_) => write!(f, "retry: {}", self.reason),
            FailureKind::Poison => write!(f, "poison: {}", self.reason),
        }
    }
}

/// Unknown errors are treated as transient: a retry is safe, and redrive catches the rest.
impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Self {
        let mut reason = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        Self::retry(reason)
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; Lambda deletes it.
    Succeeded,
    /// Skipped: the ledger says this task already succeeded at this consumer. Counts as a
    /// success; Lambda deletes it.
    Duplicate,
    /// Not given to the consumer: an SNS `SubscriptionConfirmation` or
    /// `UnsubscribeConfirmation`, which is SNS talking to the queue, not an event. Counts as a
    /// success; Lambda deletes it.
    Skipped {
        /// The SNS message type.
        kind: &'static str,
    },
    /// Not run: the circuit breaker held it, and sent it back to its queue as a fresh message
    /// delayed until the cool-down ends (so waiting never counts toward `maxReceiveCount`).
    /// Lambda deletes this delivery; the copy comes back.
    Deferred {
        /// The copy's delay.
        delay_secs: u32,
    },
    /// Moved to the DLQ by the engine; reported done so it is not retried pointlessly.
    Poisoned {
        /// Why.
        reason: String,
        /// Whether the reason and source fit on the DLQ copy.
        annotation: crate::poison::Annotation,
    },
    /// Reported failed; SQS delivers it again.
    Failed {
        /// Why.
        reason: String,
        /// What made it fail.
        cause: Cause,
        /// When it should be visible again, if the engine changed that.
        visibility_secs: Option<u32>,
    },
}

/// What made a record fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The consumer asked for a retry.
    Retry,
    /// The consumer panicked.
    Panic,
    /// Not started: too little time was left before the Lambda deadline.
    Deadline,
    /// Cancelled at the deadline while running.
    Timeout,
    /// FIFO: an earlier record of its group (or, when stopping the batch, of the batch) failed.
    Halted,
    /// Poison, but the DLQ send failed or no DLQ is known; left to the queue's redrive.
    DeadLetterFailed,
    /// Idempotency: another live invocation holds the task's lease; retried when it runs out.
    LeaseHeld,
    /// Idempotency: the ledger could not be reached, so the record was not run unguarded.
    Ledger,
    /// The record itself (not its body) is not a well-formed SQS record: it was not run, and
    /// comes back until the queue's redrive moves it to the DLQ.
    Malformed,
    /// Not run: the circuit breaker of a dependency is open (or another environment runs its
    /// probe); it comes back when the cool-down ends.
    Held,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_on_an_error_is_a_retry_with_the_whole_chain() {
        fn parse(s: &str) -> Result<u32, Failure> {
            Ok(s.parse::<u32>()?)
        }
        let f = parse("x").expect_err("not a number");
        assert_eq!(f.kind(), FailureKind::Retry(Backoff::Policy));
        assert!(f.reason().contains("invalid digit"), "{f}");
    }

    #[test]
    fn without_backoff_keeps_poison_as_poison() {
        assert_eq!(
            Failure::poison("bad").without_backoff().kind(),
            FailureKind::Poison
        );
        assert_eq!(
            Failure::retry("busy").without_backoff().kind(),
            FailureKind::Retry(Backoff::QueueDefault)
        );
    }
}
