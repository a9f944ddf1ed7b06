//! Registration: every publish, once per consumer expected to handle it.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::StreamExt;
use mailroom_lambda::ledger::LedgerError;
use mailroom_lambda::message::Message;

use super::Monitor;
use super::ports::{AlertSink, DlqReader, TaskStore};

impl<S: TaskStore, D: DlqReader, A: AlertSink> Monitor<S, D, A> {
    /// Registers every published task in `event` for each consumer whose filter policy it
    /// passes. A record whose registration fails is reported for retry; one without a task id
    /// is logged and dropped (there is nothing to track it by).
    pub async fn register(&self, event: SqsEvent) -> SqsBatchResponse {
        let results = futures_util::stream::iter(event.records)
            .map(|record| async move {
                let message = Message::metadata(record, &self.config.task_id);
                let result = self.register_one(&message).await;
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

    async fn register_one(&self, message: &Message<()>) -> Result<(u32, u32), LedgerError> {
        let Some(task) = message.task_id() else {
            tracing::warn!(
                message_id = message.message_id(),
                "published message has no task id; not tracked"
            );
            return Ok((0, 0));
        };
        let published = message.first_seen_ms();
        let (mut created, mut known) = (0, 0);
        for (consumer, policy) in &self.config.consumers {
            if !policy.matches(message) {
                continue;
            }
            if self.store.register(task, consumer, published).await? {
                created += 1;
            } else {
                known += 1;
            }
        }
        Ok((created, known))
    }
}
