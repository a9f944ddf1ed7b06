//! The ledger's items: attribute values, the index shard, and reading an item back.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::{Entry, LedgerError, OPEN_SHARDS, State};

/// One DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The index partition of an open pair: spread by a hash of the task id, stable across writes.
pub(crate) fn shard(task_id: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let h = task_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("open#{}", h % OPEN_SHARDS)
}

pub(crate) fn is_conditional_failure(
    e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, HttpResponse>,
) -> bool {
    e.as_service_error()
        .is_some_and(aws_sdk_dynamodb::operation::update_item::UpdateItemError::is_conditional_check_failed_exception)
}

/// Whether a conditional update wrote: `false` when its condition did not hold.
pub(crate) fn written<O>(
    result: Result<
        O,
        SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, HttpResponse>,
    >,
) -> Result<bool, LedgerError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(LedgerError::from_sdk("UpdateItem", &e)),
    }
}

pub(crate) fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

pub(crate) fn string(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(crate) fn entry(operation: &'static str, item: &Item) -> Result<Entry, LedgerError> {
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
