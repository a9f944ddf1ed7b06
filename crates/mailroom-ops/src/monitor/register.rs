//! Registration: every publish, once per consumer expected to handle it.

use std::collections::HashSet;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use mailroom_lambda::ledger::LedgerError;
use mailroom_lambda::message::Message;

use super::Monitor;
use super::ports::{AlertSink, DlqReader, TaskStore};

impl<S: TaskStore, D: DlqReader, A: AlertSink> Monitor<S, D, A> {
    /// Registers every published task in `event` for each consumer whose filter policy it
    /// passes. The pairs that exist already (a consumer got there first, or this is a
    /// redelivery) are found with one bulk read and not written: a conditional write known to
    /// fail is still billed. The rest are created with conditional writes, ten at a time. A
    /// record whose registration fails is reported for retry; one without a task id is logged
    /// and dropped (there is nothing to track it by).
    pub async fn register(&self, event: SqsEvent) -> SqsBatchResponse {
        let messages: Vec<Message<()>> = event
            .records
            .into_iter()
            .map(|record| Message::metadata(record, &self.config.task_id))
            .collect();
        let wanted: Vec<(String, String)> = messages.iter().flat_map(|m| self.pairs(m)).collect();
        let existing = self.store.existing(&wanted).await.unwrap_or_else(|e| {
            // Not knowing costs only writes: the conditional writes decide.
            tracing::warn!(error = %e, "bulk read of registrations failed; writing them all");
            HashSet::new()
        });
        let existing = &existing;
        let results = futures_util::stream::iter(&messages)
            .map(|message| async move {
                let result = self.register_one(message, existing).await;
                (message.message_id().map(str::to_owned), result)
            })
            .buffer_unordered(10)
            .collect::<Vec<_>>()
            .await;
        let mut response = SqsBatchResponse::default();
        let (mut created, mut known) = (0u32, 0u32);
        for (message_id, result) in results {
            match result {
                Ok((c, k)) => {
                    created += c;
                    known += k;
                }
                Err(e) => match message_id {
                    Some(id) => {
                        tracing::error!(message_id = %id, error = %e, "registration failed; retrying");
                        response.add_failure(id);
                    }
                    // Nothing to name in the response: the record is deleted with the batch,
                    // and the sweep still sees the task once a consumer records it.
                    None => {
                        tracing::error!(error = %e, "registration failed for a record without a messageId");
                    }
                },
            }
        }
        tracing::info!(
            created,
            already_known = known,
            failed = response.batch_item_failures.len(),
            "registered"
        );
        response
    }

    /// The (task, consumer) pairs `message` should have: one per consumer whose filter
    /// policy it passes.
    fn pairs(&self, message: &Message<()>) -> Vec<(String, String)> {
        let Some(task) = message.task_id() else {
            return Vec::new();
        };
        self.config
            .consumers
            .iter()
            .filter(|(_, policy)| policy.matches(message))
            .map(|(consumer, _)| (task.to_owned(), consumer.clone()))
            .collect()
    }

    async fn register_one(
        &self,
        message: &Message<()>,
        existing: &HashSet<(String, String)>,
    ) -> Result<(u32, u32), LedgerError> {
        if message.task_id().is_none() {
            tracing::warn!(
                message_id = message.message_id(),
                "published message has no task id; not tracked"
            );
            return Ok((0, 0));
        }
        let published = message.first_seen_ms();
        let (mut created, mut known) = (0, 0);
        for pair in self.pairs(message) {
            if existing.contains(&pair) {
                known += 1;
            } else if self.store.register(&pair.0, &pair.1, published).await? {
                created += 1;
            } else {
                known += 1;
            }
        }
        Ok((created, known))
    }
}
