//! The monitor's own state in the ledger table: DLQ depths and alert states as JSON
//! documents under a reserved partition (`#monitor`), beside the tasks.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use mailroom_lambda::ledger::{Ledger, LedgerError};

/// Documents under a reserved partition (`#…`), by key: the monitor's own state.
///
/// # Errors
/// When DynamoDB does not answer.
pub(crate) async fn documents(
    ledger: &Ledger,
    partition: &str,
) -> Result<HashMap<String, String>, LedgerError> {
    debug_assert!(partition.starts_with('#'));
    let mut out = HashMap::new();
    let mut pages = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(partition.to_owned()))
        .consistent_read(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| LedgerError::from_sdk("Query", &e))?;
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
pub(crate) async fn put_document(
    ledger: &Ledger,
    partition: &str,
    key: &str,
    doc: String,
) -> Result<(), LedgerError> {
    debug_assert!(partition.starts_with('#'));
    let now = ledger.clock().now_ms();
    ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .item("pk", AttributeValue::S(partition.to_owned()))
        .item("sk", AttributeValue::S(key.to_owned()))
        .item("doc", AttributeValue::S(doc))
        .item("updated_at", AttributeValue::N(now.to_string()))
        .send()
        .await
        .map(drop)
        .map_err(|e| LedgerError::from_sdk("PutItem", &e))
}
