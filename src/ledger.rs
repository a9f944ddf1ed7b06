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
//! Items whose `pk` starts with `#` are reserved for the monitor's own state.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::clock::{Clock, SystemClock, ms};

/// The sparse index over open pairs.
pub const OPEN_INDEX: &str = "open-by-time";
/// Open pairs are spread over this many index partitions; a sweep queries each.
pub const OPEN_SHARDS: u32 = 4;
/// How long items live after their last write, by default (the DLQ's retention).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

type Item = HashMap<String, AttributeValue>;

/// A write that must not undo a success nor cut in on a live lease, unless the writer owns it.
/// (`:owner` is empty for writers that hold no lease; owners are never empty.)
const NOT_DONE_NOR_HELD: &str = "attribute_not_exists(pk) OR (#state <> :succeeded AND \
     (#state <> :in_progress OR attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner))";

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
    fn sdk<E, R>(operation: &'static str, e: &SdkError<E, R>) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: crate::error::HttpStatus + fmt::Debug,
    {
        let message = crate::error::describe(e);
        match crate::error::classify(e) {
            crate::error::Retry::Retryable => Self::Retryable { operation, message },
            crate::error::Retry::Permanent => Self::Permanent { operation, message },
        }
    }

    fn corrupt(operation: &'static str, what: impl Into<String>) -> Self {
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
}

/// The ledger table.
#[derive(Debug, Clone)]
pub struct Ledger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    clock: Arc<dyn Clock>,
    retention: Duration,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The index partition of an open pair: spread by a hash of the task id, stable across writes.
fn shard(task_id: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let h = task_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("open#{}", h % OPEN_SHARDS)
}

fn is_conditional_failure(
    e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, HttpResponse>,
) -> bool {
    e.as_service_error()
        .is_some_and(aws_sdk_dynamodb::operation::update_item::UpdateItemError::is_conditional_check_failed_exception)
}

/// Whether a conditional update wrote: `false` when its condition did not hold.
fn written<O>(
    result: Result<
        O,
        SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, HttpResponse>,
    >,
) -> Result<bool, LedgerError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(LedgerError::sdk("UpdateItem", &e)),
    }
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

    fn expires_at(&self, now_ms: u64) -> AttributeValue {
        n((now_ms + ms(self.retention)) / 1000)
    }

    fn update(
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

    /// Takes the lease on `task_id` at `consumer` for `owner` until `lease_until_ms`.
    ///
    /// `opened_at_ms` (the publish time, when known) is kept only if the pair is new.
    ///
    /// # Errors
    /// When DynamoDB does not answer; the caller retries the record rather than run it
    /// without the guard.
    pub async fn acquire(
        &self,
        task_id: &str,
        consumer: &str,
        owner: &str,
        lease_until_ms: u64,
        opened_at_ms: Option<u64>,
    ) -> Result<Lease, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :in_progress, lease_owner = :owner, lease_until = :until, \
                 attempts = if_not_exists(attempts, :zero) + :one, \
                 opened_at = if_not_exists(opened_at, :opened), open_shard = :shard, \
                 updated_at = :now, expires_at = :ttl",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#state <> :succeeded AND \
                 (#state <> :in_progress OR lease_until < :now))",
            )
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":opened", n(opened_at_ms.unwrap_or(now)))
            .expression_attribute_values(":shard", s(shard(task_id)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempt = out
                    .attributes()
                    .and_then(|a| number(a, "attempts"))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(1);
                Ok(Lease::Acquired { attempt })
            }
            Err(e) if is_conditional_failure(&e) => {
                // Someone else's state won. Read it to say whose.
                let entry = self.get(task_id, consumer).await?;
                Ok(match entry {
                    Some(e) if e.state == State::Succeeded => Lease::AlreadySucceeded,
                    Some(Entry {
                        lease_until_ms: Some(until_ms),
                        ..
                    }) => Lease::Held { until_ms },
                    // It changed again between the two calls: come back shortly.
                    _ => Lease::Held {
                        until_ms: now + 1000,
                    },
                })
            }
            Err(e) => Err(LedgerError::sdk("UpdateItem", &e)),
        }
    }

    /// Marks the pair `SUCCEEDED` and closes it. Unconditional: the work is done whoever
    /// held the lease last.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn succeed(&self, task_id: &str, consumer: &str) -> Result<(), LedgerError> {
        let now = self.clock.now_ms();
        self.update(task_id, consumer)
            .update_expression(
                "SET #state = :succeeded, updated_at = :now, expires_at = :ttl, \
                 opened_at = if_not_exists(opened_at, :now), attempts = if_not_exists(attempts, :one) \
                 REMOVE lease_owner, lease_until, open_shard",
            )
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await
            .map(drop)
            .map_err(|e| LedgerError::sdk("UpdateItem", &e))
    }

    /// Marks the pair `FAILED` with `error` and releases the lease, if `owner` still holds
    /// it. Returns whether it did.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn fail(
        &self,
        task_id: &str,
        consumer: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :failed, last_error = :error, updated_at = :now, expires_at = :ttl \
                 REMOVE lease_owner, lease_until",
            )
            .condition_expression("#state = :in_progress AND lease_owner = :owner")
            .expression_attribute_values(":failed", s(State::Failed.as_str()))
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }

    /// Writes `state` with a reason (keeping the pair in the open index, or taking it out for
    /// `PARKED`), unless the pair already succeeded or another live invocation holds its lease
    /// (the lease's `owner` may write). Returns whether it wrote.
    async fn mark(
        &self,
        task_id: &str,
        consumer: &str,
        state: State,
        reason: Option<&str>,
        owner: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let mut set = String::from(
            "SET #state = :state, updated_at = :now, expires_at = :ttl, \
             opened_at = if_not_exists(opened_at, :now), attempts = if_not_exists(attempts, :zero)",
        );
        let mut remove = String::from(" REMOVE lease_owner, lease_until");
        let mut update = self.update(task_id, consumer);
        if state.is_open() {
            set.push_str(", open_shard = :shard");
            update = update.expression_attribute_values(":shard", s(shard(task_id)));
        } else {
            remove.push_str(", open_shard");
        }
        if let Some(reason) = reason {
            set.push_str(", last_error = :reason");
            update = update.expression_attribute_values(":reason", s(reason));
        }
        set.push_str(&remove);
        let result = update
            .update_expression(set)
            .condition_expression(NOT_DONE_NOR_HELD)
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(owner.unwrap_or_default()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }

    /// Marks the pair `DEAD_LETTERED` with the poison reason (unless it already succeeded).
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn dead_letter(
        &self,
        task_id: &str,
        consumer: &str,
        reason: &str,
        owner: Option<&str>,
    ) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::DeadLettered, Some(reason), owner)
            .await
    }

    /// Marks the pair `REPLAYED`: replay sent it back to the consumer's queue. A consumer that
    /// already picked the copy up (a live lease) or finished it is left alone.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn replayed(&self, task_id: &str, consumer: &str) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::Replayed, None, None)
            .await
    }

    /// Marks the pair `PARKED` with the reason and closes it: replay moved it to the parking
    /// lot, where the parking lot's own depth check watches it.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn park(
        &self,
        task_id: &str,
        consumer: &str,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::Parked, Some(reason), None)
            .await
    }

    /// Registers a published task at a consumer that is expected to handle it. Only creates:
    /// when the consumer got there first, its state stands. Returns whether it created.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn register(
        &self,
        task_id: &str,
        consumer: &str,
        published_at_ms: Option<u64>,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :received, attempts = :zero, opened_at = :opened, \
                 open_shard = :shard, updated_at = :now, expires_at = :ttl",
            )
            .condition_expression("attribute_not_exists(pk)")
            .expression_attribute_values(":received", s(State::Received.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":opened", n(published_at_ms.unwrap_or(now)))
            .expression_attribute_values(":shard", s(shard(task_id)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }

    /// One pair, read consistently.
    ///
    /// # Errors
    /// When DynamoDB does not answer or the item is malformed.
    pub async fn get(&self, task_id: &str, consumer: &str) -> Result<Option<Entry>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(task_id))
            .key("sk", s(consumer))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LedgerError::sdk("GetItem", &e))?;
        out.item().map(|i| entry("GetItem", i)).transpose()
    }

    /// Every consumer's state for one task.
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn task(&self, task_id: &str) -> Result<Vec<Entry>, LedgerError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(task_id))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        items
            .into_iter()
            .map(|i| {
                i.map_err(|e| LedgerError::sdk("Query", &e))
                    .and_then(|i| entry("Query", &i))
            })
            .collect()
    }

    /// Open pairs opened at or before `cutoff_ms`, oldest first, from the sparse index: the
    /// cost follows the number of open pairs, not the table's size.
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn open_before(&self, cutoff_ms: u64) -> Result<Vec<Entry>, LedgerError> {
        let mut out = Vec::new();
        for shard in 0..OPEN_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_INDEX)
                .key_condition_expression("open_shard = :shard AND opened_at <= :cutoff")
                .expression_attribute_values(":shard", s(format!("open#{shard}")))
                .expression_attribute_values(":cutoff", n(cutoff_ms))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| LedgerError::sdk("Query", &e))?;
                for item in page.items() {
                    out.push(entry("Query", item)?);
                }
            }
        }
        out.sort_by_key(|e| e.opened_at_ms);
        Ok(out)
    }

    /// Documents under a reserved partition (`#…`), by key: the monitor's own state.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn documents(&self, partition: &str) -> Result<HashMap<String, String>, LedgerError> {
        debug_assert!(partition.starts_with('#'));
        let mut out = HashMap::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(partition))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| LedgerError::sdk("Query", &e))?;
            for item in page.items() {
                if let (Some(AttributeValue::S(k)), Some(AttributeValue::S(doc))) =
                    (item.get("sk"), item.get("doc"))
                {
                    out.insert(k.clone(), doc.clone());
                }
            }
        }
        Ok(out)
    }

    /// Stores a document under a reserved partition.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn put_document(
        &self,
        partition: &str,
        key: &str,
        doc: String,
    ) -> Result<(), LedgerError> {
        debug_assert!(partition.starts_with('#'));
        let now = self.clock.now_ms();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(partition))
            .item("sk", s(key))
            .item("doc", s(doc))
            .item("updated_at", n(now))
            .send()
            .await
            .map(drop)
            .map_err(|e| LedgerError::sdk("PutItem", &e))
    }
}

fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn entry(operation: &'static str, item: &Item) -> Result<Entry, LedgerError> {
    let task_id =
        string(item, "pk").ok_or_else(|| LedgerError::corrupt(operation, "item without pk"))?;
    let consumer =
        string(item, "sk").ok_or_else(|| LedgerError::corrupt(operation, "item without sk"))?;
    let state = string(item, "state")
        .as_deref()
        .and_then(State::parse)
        .ok_or_else(|| {
            LedgerError::corrupt(
                operation,
                format!("{task_id}/{consumer}: missing or unknown state"),
            )
        })?;
    Ok(Entry {
        state,
        attempts: number(item, "attempts")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        last_error: string(item, "last_error"),
        opened_at_ms: number(item, "opened_at").unwrap_or(0),
        updated_at_ms: number(item, "updated_at").unwrap_or(0),
        lease_until_ms: number(item, "lease_until"),
        task_id,
        consumer,
    })
}

#[cfg(test)]
mod tests {
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
