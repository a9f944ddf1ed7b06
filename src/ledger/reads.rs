//! Reads: one pair, one task, the open pairs from the sparse index, and every pair in bulk.

use super::item::{Item, entry, n, s};
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

    /// Every consumer's state for one task (the intake's own record left out: see
    /// [`Ledger::story`]).
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn task(&self, task_id: &str) -> Result<Vec<Entry>, LedgerError> {
        Ok(self.story(task_id).await?.consumers)
    }

    /// Every item under one task id, strongly consistent.
    pub(crate) async fn task_items(&self, task_id: &str) -> Result<Vec<Item>, LedgerError> {
        all_items(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(task_id))
                .consistent_read(true),
        )
        .await
    }

    /// Every (task, consumer) pair in the table, by a parallel Scan of `segments` segments
    /// (items that are not pairs, such as the monitor's documents under `#…` keys, are left
    /// out). A page that fails with a retryable error is asked for again, up to five times
    /// with backoff, from where its segment had got to. For audits and verification over a
    /// whole table; one task's story is [`Ledger::task`].
    ///
    /// # Errors
    /// A permanent error, or a page that failed five times.
    pub async fn scan_pairs(&self, segments: u32) -> Result<Vec<Entry>, LedgerError> {
        let segments = i32::try_from(segments.clamp(1, 64)).unwrap_or(1);
        let reads = (0..segments).map(|segment| self.scan_segment(segment, segments));
        let mut out = Vec::new();
        for part in futures_util::future::join_all(reads).await {
            out.extend(part?);
        }
        Ok(out)
    }

    async fn scan_segment(&self, segment: i32, total: i32) -> Result<Vec<Entry>, LedgerError> {
        let mut out = Vec::new();
        let mut start: Option<super::item::Item> = None;
        loop {
            let mut attempt = 0u32;
            let page = loop {
                let result = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .segment(segment)
                    .total_segments(total)
                    // Pages of a thousand pairs (about 300 KB), not DynamoDB's 1 MB: each
                    // answers sooner, and a page asked for again costs less.
                    .limit(1_000)
                    .set_exclusive_start_key(start.clone())
                    .send()
                    .await
                    .map_err(|e| LedgerError::from_sdk("Scan", &e));
                match result {
                    Ok(page) => break page,
                    Err(e) if e.is_retryable() && attempt < 4 => {
                        attempt += 1;
                        tracing::warn!(error = %e, segment, attempt, "ledger scan page failed; asking again");
                        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            for item in page.items() {
                // The monitor's documents (`#` keys) and the intake's task records (`#` sort
                // keys) are not pairs.
                if ["pk", "sk"]
                    .iter()
                    .any(|k| super::item::string(item, k).is_some_and(|v| v.starts_with('#')))
                {
                    continue;
                }
                out.push(entry("Scan", item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }

    /// A query of one partition (`open#<shard>`) of the sparse open index.
    pub(crate) fn open_shard_query(
        &self,
        shard: u32,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(OPEN_INDEX)
            .expression_attribute_values(":shard", s(format!("open#{shard}")))
    }

    /// Open pairs opened at or before `cutoff_ms`, oldest first, from the sparse index: the
    /// cost follows the number of open pairs, not the table's size.
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn open_before(&self, cutoff_ms: u64) -> Result<Vec<Entry>, LedgerError> {
        let items = self
            .open_items(|q| {
                q.key_condition_expression("open_shard = :shard AND opened_at <= :cutoff")
                    .expression_attribute_values(":cutoff", n(cutoff_ms))
            })
            .await?;
        let mut out = items
            .iter()
            // A task record waiting for its completion callback is not a pair.
            .filter(|i| !super::item::string(i, "sk").is_some_and(|sk| sk.starts_with('#')))
            .map(|i| entry("Query", i))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|e| e.opened_at_ms);
        Ok(out)
    }

    /// Every item of every partition of the sparse open index that `query` (given the
    /// partition's query with `:shard` bound) selects, all pages.
    pub(crate) async fn open_items(
        &self,
        query: impl Fn(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut out = Vec::new();
        for shard in 0..OPEN_SHARDS {
            let mut pages = query(self.open_shard_query(shard)).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| LedgerError::from_sdk("Query", &e))?;
                out.extend(page.items.unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// When the oldest task still waiting for a consumer was opened (ms since the epoch):
    /// the oldest `RECEIVED` pair in the sparse index, registered at publish and not picked up
    /// since. It is the consumers' backlog as the producer's side sees it: work retrying,
    /// dead-lettered or running is not waiting in a queue. Reads at most `limit` index items
    /// per shard, oldest first.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn oldest_waiting(&self, limit: i32) -> Result<Option<u64>, LedgerError> {
        let mut oldest: Option<u64> = None;
        for shard in 0..OPEN_SHARDS {
            let page = self
                .open_shard_query(shard)
                .key_condition_expression("open_shard = :shard")
                .filter_expression("#state = :received")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":received", s(super::State::Received.as_str()))
                .scan_index_forward(true)
                .limit(limit)
                .send()
                .await
                .map_err(|e| LedgerError::from_sdk("Query", &e))?;
            let first = page
                .items()
                .iter()
                .filter_map(|i| super::item::number(i, "opened_at"))
                .min();
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(oldest)
    }

    /// Which of `pairs` (task id, consumer) already have an item, in one `BatchGetItem` per
    /// hundred (keys only, eventually consistent: a quarter of a strongly consistent read).
    /// Keys DynamoDB leaves unprocessed after a few rounds are reported as absent, so a
    /// caller's conditional write still decides them.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn existing(
        &self,
        pairs: &[(String, String)],
    ) -> Result<std::collections::HashSet<(String, String)>, LedgerError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = std::collections::HashSet::new();
        let unique: std::collections::BTreeSet<&(String, String)> = pairs.iter().collect();
        let unique: Vec<&(String, String)> = unique.into_iter().collect();
        for chunk in unique.chunks(100) {
            let keys = chunk
                .iter()
                .map(|(task, consumer)| {
                    std::collections::HashMap::from([
                        ("pk".to_owned(), s(task)),
                        ("sk".to_owned(), s(consumer)),
                    ])
                })
                .collect::<Vec<_>>();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("pk, sk")
                    .build()
                    .map_err(|e| LedgerError::Permanent {
                        operation: "BatchGetItem",
                        message: e.to_string(),
                    })?,
            );
            for _ in 0..4 {
                let Some(keys) = request.take() else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| LedgerError::from_sdk("BatchGetItem", &e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let (Some(task), Some(consumer)) = (
                        super::item::string(item, "pk"),
                        super::item::string(item, "sk"),
                    ) {
                        found.insert((task, consumer));
                    }
                }
                request = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(found)
    }
}

/// Every item a query answers, page after page.
pub(crate) async fn all_items(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
) -> Result<Vec<Item>, LedgerError> {
    query
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|i| i.map_err(|e| LedgerError::from_sdk("Query", &e)))
        .collect()
}
