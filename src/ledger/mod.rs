//! The task ledger: the state of each task per consumer, in one DynamoDB table.
//!
//! The key is `pk` = task id (by default the SNS MessageId, never the SQS messageId, which
//! changes on redrive) and `sk` = consumer name. States move
//! `RECEIVED → IN_PROGRESS (attempt, lease) → SUCCEEDED | FAILED → DEAD_LETTERED → REPLAYED …`,
//! and `PARKED` when replay gives up on a message. Every write is conditional where order
//! matters, so duplicates and out-of-order events (a consumer finishing before the monitor
//! registers the task) leave the right state behind:
//!
//! * a lease is taken only if the pair is not `SUCCEEDED` and no other live lease holds it;
//! * `FAILED` is written only by the lease's owner;
//! * registration only creates a pair, never overwrites one;
//! * nothing moves a pair out of `SUCCEEDED`.
//!
//! Open pairs carry `open_shard`, the partition key of the sparse `open-by-time` index (sort
//! key `opened_at`). Closing a pair removes the attribute, so the index holds only open work
//! and the monitor's sweep costs O(open pairs), never a scan. `expires_at` is the TTL
//! attribute; every write pushes it forward by the retention.
//!
//! Items whose `pk` starts with `#` are reserved for the monitor's own state and the circuit
//! breakers ([`Breaker`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::clock::{Clock, SystemClock, ms};

mod accept;
mod breaker;
mod item;
mod lease;
mod marks;
mod reads;

pub use accept::{Acceptance, Accepted, TASK_MARKER, TaskStory};
pub use breaker::{BREAKER_PARTITION, Breaker, BreakerState};
use item::{entry, n, s};

/// The sparse index over open pairs.
pub const OPEN_INDEX: &str = "open-by-time";
/// Open pairs are spread over this many index partitions; a sweep queries each.
pub const OPEN_SHARDS: u32 = 4;
/// How long items live after their last write, by default (the DLQ's retention).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// A task's state at one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Published and registered by the monitor; not yet picked up.
    Received,
    /// A consumer holds a lease and is working on it.
    InProgress,
    /// Done. Later deliveries are skipped as duplicates.
    Succeeded,
    /// The last attempt failed; SQS delivers it again.
    Failed,
    /// Moved to the DLQ by the engine's poison path.
    DeadLettered,
    /// Sent back from the DLQ by replay.
    Replayed,
    /// Replay gave up on it (too many replays): it is in the parking lot.
    Parked,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "RECEIVED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::DeadLettered => "DEAD_LETTERED",
            Self::Replayed => "REPLAYED",
            Self::Parked => "PARKED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RECEIVED" => Self::Received,
            "IN_PROGRESS" => Self::InProgress,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "DEAD_LETTERED" => Self::DeadLettered,
            "REPLAYED" => Self::Replayed,
            "PARKED" => Self::Parked,
            _ => return None,
        })
    }

    /// Whether work is still owed: everything but `SUCCEEDED` and `PARKED`.
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Succeeded | Self::Parked)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task at one consumer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The task id.
    pub task_id: String,
    /// The consumer.
    pub consumer: String,
    /// Where it stands.
    pub state: State,
    /// Leases taken so far.
    pub attempts: u32,
    /// Why the last attempt failed, or why it was dead-lettered or parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the task was published (or first seen), in ms since the epoch.
    pub opened_at_ms: u64,
    /// The last write, in ms since the epoch.
    pub updated_at_ms: u64,
    /// Until when the current lease holds, while `IN_PROGRESS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<u64>,
}

/// The answer to a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease; this is attempt number `attempt`.
    Acquired {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// The pair already succeeded: the delivery is a duplicate.
    AlreadySucceeded,
    /// Another live invocation holds the lease until this time (ms since the epoch).
    Held {
        /// When that lease runs out.
        until_ms: u64,
    },
}

/// A ledger call failed: retryable, permanent, or an item the ledger cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Throttled, timed out, unreachable, or a server error: the same call may succeed later.
    #[error("DynamoDB {operation} failed (retryable): {message}")]
    Retryable {
        /// The API operation.
        operation: &'static str,
        /// What went wrong, with the SDK's whole context.
        message: String,
    },
    /// Refused: validation, access, a missing table. Only a change of configuration fixes it.
    #[error("DynamoDB {operation} failed: {message}")]
    Permanent {
        /// The API operation.
        operation: &'static str,
        /// What went wrong, with the SDK's whole context.
        message: String,
    },
    /// Refused for this input (DynamoDB's `ValidationException`: a task id over the 2,048-byte
    /// key limit, for instance): no retry and no redeploy fixes it, so the engine treats the
    /// record as poison, with this as its reason.
    #[error("DynamoDB {operation} refused the input: {message}")]
    Invalid {
        /// The API operation.
        operation: &'static str,
        /// What DynamoDB said.
        message: String,
    },
    /// An item that is not what the ledger writes.
    #[error("DynamoDB {operation}: unreadable ledger item: {message}")]
    Corrupt {
        /// The API operation.
        operation: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl LedgerError {
    /// An SDK error of `operation`, classified by [`crate::error::classify`].
    pub fn from_sdk<E, R>(operation: &'static str, e: &SdkError<E, R>) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: crate::error::HttpStatus + fmt::Debug,
    {
        let message = crate::error::describe(e);
        let code = e.as_service_error().and_then(|s| s.code());
        if code == Some("ValidationException") {
            return Self::Invalid { operation, message };
        }
        match crate::error::classify(e) {
            crate::error::Retry::Retryable => Self::Retryable { operation, message },
            crate::error::Retry::Permanent => Self::Permanent { operation, message },
        }
    }

    pub(crate) fn corrupt(operation: &'static str, what: impl Into<String>) -> Self {
        Self::Corrupt {
            operation,
            message: what.into(),
        }
    }

    /// A failure that trying again may fix (for fakes and adapters outside this crate).
    pub fn retryable(operation: &'static str, message: impl Into<String>) -> Self {
        Self::Retryable {
            operation,
            message: message.into(),
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// Whether the input itself was refused, so the record can never be guarded.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Invalid { .. })
    }
}

/// The ledger table.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
    retention: Duration,
}

impl Ledger {
    /// The ledger in `table`, on the system clock.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
            retention: DEFAULT_RETENTION,
        }
    }

    /// The same ledger on another clock (tests move a [`crate::clock::ManualClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long items live after their last write.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long items live after their last write (so how long the intake remembers a key).
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The ledger's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub(crate) fn expires_at(&self, now_ms: u64) -> AttributeValue {
        n((now_ms + ms(self.retention)) / 1000)
    }

    pub(crate) fn update(
        &self,
        task_id: &str,
        consumer: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(task_id))
            .key("sk", s(consumer))
            .expression_attribute_names("#state", "state")
    }
}

#[cfg(test)]
mod tests {
    use super::item::{Item, entry, shard};
    use super::*;

    #[test]
    fn states_round_trip_and_only_succeeded_and_parked_are_closed() {
        for st in [
            State::Received,
            State::InProgress,
            State::Succeeded,
            State::Failed,
            State::DeadLettered,
            State::Replayed,
            State::Parked,
        ] {
            assert_eq!(State::parse(st.as_str()), Some(st));
            assert_eq!(
                serde_json::to_value(st).expect("serialises"),
                serde_json::Value::String(st.as_str().into())
            );
            assert_eq!(
                st.is_open(),
                !matches!(st, State::Succeeded | State::Parked)
            );
        }
        assert_eq!(State::parse("DONE"), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard("task-1"), shard("task-1"));
        let used: std::collections::HashSet<String> =
            (0..200).map(|i| shard(&format!("task-{i}"))).collect();
        assert_eq!(used.len(), OPEN_SHARDS as usize);
    }

    #[test]
    fn a_malformed_item_is_an_error_not_a_panic() {
        let mut item = Item::new();
        item.insert("pk".into(), s("t"));
        item.insert("sk".into(), s("c"));
        item.insert("state".into(), s("WHATEVER"));
        let e = entry("Query", &item).expect_err("unknown state");
        assert!(
            matches!(&e, LedgerError::Corrupt { message, .. } if message.contains("unknown state")),
            "{e}"
        );
    }
}
