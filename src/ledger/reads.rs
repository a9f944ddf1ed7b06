//! Reads: one pair, one task, and the open pairs from the sparse index.

use super::item::{entry, n, s};
use super::{Entry, Ledger, LedgerError, OPEN_INDEX, OPEN_SHARDS};

impl Ledger {
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
            .map_err(|e| LedgerError::from_sdk("GetItem", &e))?;
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
                i.map_err(|e| LedgerError::from_sdk("Query", &e))
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
                let page = page.map_err(|e| LedgerError::from_sdk("Query", &e))?;
                for item in page.items() {
                    out.push(entry("Query", item)?);
                }
            }
        }
        out.sort_by_key(|e| e.opened_at_ms);
        Ok(out)
    }
}
