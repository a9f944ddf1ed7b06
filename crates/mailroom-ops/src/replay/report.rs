//! What a replay run did, logged as JSON and emitted as EMF.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::DeadLetter;
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::{Emf, MetricsSink, Unit};

/// Samples kept per run.
const SAMPLES: usize = 5;

/// One message, as shown in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sample {
    /// The message id.
    pub message_id: String,
    /// The poison reason, or why the replay failed.
    pub reason: Option<String>,
    /// The start of the body.
    pub body: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReplayReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The DLQ.
    pub source: String,
    /// Where messages went back to.
    pub target: String,
    /// Messages received and looked at.
    pub examined: usize,
    /// Sent to the target and deleted from the DLQ.
    pub moved: usize,
    /// Sent to the parking lot and deleted from the DLQ.
    pub parked: usize,
    /// Dry run: would have been moved or parked.
    pub would_move: usize,
    /// Dry run: of those, would have been parked.
    pub would_park: usize,
    /// Not selected by the filter.
    pub skipped: usize,
    /// Could not be moved; still in the DLQ.
    pub failed: usize,
    /// Sent, but the delete from the DLQ failed: a duplicate, never a loss.
    pub duplicated: usize,
    /// Selected messages by poison reason.
    pub by_reason: BTreeMap<String, usize>,
    /// Failures with their reasons (at most a few).
    pub failures: Vec<Sample>,
    /// Selected messages (at most a few).
    pub samples: Vec<Sample>,
    /// The run stopped at its time budget.
    pub stopped_by_budget: bool,
    /// The run stopped early on this SQS error; what the report counts was done, and every
    /// message it did not move is still in the DLQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by_error: Option<String>,
    /// How long the run took, in milliseconds.
    pub duration_ms: u128,
    /// When the last message was moved or parked (its delete confirmed), in milliseconds from
    /// the start. The rest of `duration_ms` is the empty long poll (one second) that tells the
    /// run the DLQ is drained, and the releases after it.
    pub last_moved_ms: u128,
}

fn sample(m: &DeadLetter, reason: Option<String>) -> Sample {
    Sample {
        message_id: m.message_id.clone(),
        reason,
        body: m.body.chars().take(200).collect(),
    }
}

impl ReplayReport {
    pub(crate) fn new(dry_run: bool, source: &QueueUrl, target: &QueueUrl) -> Self {
        Self {
            dry_run,
            source: source.as_str().to_owned(),
            target: target.as_str().to_owned(),
            ..Self::default()
        }
    }

    fn selected(&mut self, m: &DeadLetter) {
        let reason = m.reason().unwrap_or("(none)").to_owned();
        *self.by_reason.entry(reason).or_default() += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(sample(m, m.reason().map(str::to_owned)));
        }
    }

    pub(crate) fn would(&mut self, m: &DeadLetter, parks: bool) {
        self.selected(m);
        self.would_move += 1;
        self.would_park += usize::from(parks);
    }

    pub(crate) fn done(&mut self, m: &DeadLetter, parked: bool) {
        self.selected(m);
        if parked {
            self.parked += 1;
        } else {
            self.moved += 1;
        }
    }

    pub(crate) fn fail(&mut self, m: &DeadLetter, reason: String) {
        tracing::warn!(message_id = %m.message_id, %reason, "replay failed for a message; it stays in the DLQ");
        self.failed += 1;
        if self.failures.len() < SAMPLES * 4 {
            self.failures.push(sample(m, Some(reason)));
        }
    }

    pub(crate) fn stop_on_error(&mut self, e: &mailroom_lambda::sqs::SqsError) {
        tracing::error!(error = %e, "replay stopped early; unmoved messages stay in the DLQ");
        self.stopped_by_error = Some(e.to_string());
    }

    /// The sum of `reports` (the pipelines of one run): counts added, samples kept up to
    /// their limits, the first error kept.
    pub(crate) fn merged<'a>(reports: impl Iterator<Item = &'a Self>) -> Self {
        let mut out = Self::default();
        for r in reports {
            out.dry_run |= r.dry_run;
            if out.source.is_empty() {
                out.source.clone_from(&r.source);
                out.target.clone_from(&r.target);
            }
            out.examined += r.examined;
            out.moved += r.moved;
            out.parked += r.parked;
            out.would_move += r.would_move;
            out.would_park += r.would_park;
            out.skipped += r.skipped;
            out.failed += r.failed;
            out.duplicated += r.duplicated;
            for (reason, n) in &r.by_reason {
                *out.by_reason.entry(reason.clone()).or_default() += n;
            }
            let room = (SAMPLES * 4).saturating_sub(out.failures.len());
            out.failures.extend(r.failures.iter().take(room).cloned());
            let room = SAMPLES.saturating_sub(out.samples.len());
            out.samples.extend(r.samples.iter().take(room).cloned());
            out.stopped_by_budget |= r.stopped_by_budget;
            out.last_moved_ms = out.last_moved_ms.max(r.last_moved_ms);
            if out.stopped_by_error.is_none() {
                out.stopped_by_error.clone_from(&r.stopped_by_error);
            }
        }
        out
    }

    pub(crate) fn finish(&mut self, took: Duration) {
        self.duration_ms = took.as_millis();
        tracing::info!(report = %serde_json::to_string(self).unwrap_or_default(), "replay done");
    }

    /// Emits the run's counts as one EMF document.
    pub fn emit(&self, namespace: &str, sink: &MetricsSink) {
        let queue = self.source.rsplit('/').next().unwrap_or_default();
        let dims = [("DeadLetterQueue", queue)];
        #[allow(
            clippy::cast_precision_loss,
            reason = "counts and milliseconds fit f64"
        )]
        let count = |n: u128| n as f64;
        Emf::new(namespace, &dims)
            .metric("ReplayExamined", Unit::Count, count(self.examined as u128))
            .metric("ReplayMoved", Unit::Count, count(self.moved as u128))
            .metric("ReplayParked", Unit::Count, count(self.parked as u128))
            .metric("ReplaySkipped", Unit::Count, count(self.skipped as u128))
            .metric("ReplayFailed", Unit::Count, count(self.failed as u128))
            .metric(
                "ReplayDuplicated",
                Unit::Count,
                count(self.duplicated as u128),
            )
            .metric(
                "ReplayStoppedByError",
                Unit::Count,
                count(u128::from(self.stopped_by_error.is_some())),
            )
            .metric(
                "ReplayDuration",
                Unit::Milliseconds,
                count(self.duration_ms),
            )
            .property("DryRun", self.dry_run)
            .emit(sink);
    }
}
