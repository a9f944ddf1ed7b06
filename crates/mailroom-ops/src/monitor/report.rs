//! What the monitor reports: open tasks by bucket, DLQ states, the alerts a sweep sent.

use mailroom_lambda::ledger::{Breaker, Entry};
use serde::{Deserialize, Serialize};

use super::alert::{Level, Notice};

/// An open pair as the status API and alerts show it.
#[derive(Debug, Clone, Serialize)]
pub struct OpenTask {
    /// The ledger entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// How long it has been open.
    pub open_for_secs: u64,
    /// Its bucket.
    pub bucket: String,
}

/// One bucket's content.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// `over-5m` and so on.
    pub name: String,
    /// The open pairs in it, oldest first.
    pub tasks: Vec<OpenTask>,
}

/// A sample dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterSample {
    /// The SQS message id in the DLQ.
    pub message_id: String,
    /// The poison path's reason, when the engine put it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A DLQ's state as kept between sweeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DlqRecord {
    /// Messages in it (visible and in flight) at the last sweep.
    pub depth: u64,
    /// When that was.
    pub swept_at_ms: u64,
    /// Sample messages with their reasons, refreshed when the depth changes.
    pub samples: Vec<DeadLetterSample>,
}

/// A DLQ's state now.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStatus {
    /// The queue's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Messages in it now.
    pub depth: u64,
    /// Change since the previous sweep.
    pub growth: i64,
    /// Samples with reasons.
    pub samples: Vec<DeadLetterSample>,
}

/// One alert message sent (or, without a topic, logged).
#[derive(Debug, Clone, Serialize)]
pub struct SentAlert {
    /// `dlq:<name>` or `stuck-tasks`.
    pub key: String,
    /// Alarm, reminder or resolution.
    pub notice: Notice,
    /// The level now.
    pub level: Level,
    /// The subject line.
    pub subject: String,
}

/// What one sweep saw and did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// When it ran, in ms since the epoch.
    pub at_ms: u64,
    /// Open pairs per bucket.
    pub buckets: Vec<(String, usize)>,
    /// Open pairs past the last threshold that are not dead-lettered: the stuck-task alert.
    pub stuck: usize,
    /// Every watched DLQ.
    pub dlqs: Vec<DlqStatus>,
    /// Alert messages sent.
    pub alerts: Vec<SentAlert>,
    /// Alert messages that could not be published; their state was kept, so the next sweep
    /// tries again.
    pub failed_alerts: Vec<String>,
    /// Every circuit breaker, as the engine left it.
    pub breakers: Vec<Breaker>,
    /// Functions whose event source mappings are paused by an open breaker.
    pub paused: Vec<String>,
}
