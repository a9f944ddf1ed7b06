//! Lambda's SQS event source mapping, emulated for local runs and tests.
//!
//! It receives from a queue, builds the `SqsEvent` exactly as Lambda does, and applies a
//! partial batch response with Lambda's rules: delete only the records the response does not
//! list; a function error, or an empty or unknown `itemIdentifier`, fails the whole batch.
//! Visibility and redrive are left to the queue, as in AWS.

use std::collections::{HashMap, HashSet};

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

use mailroom_lambda::sqs::{MAX_BATCH_ENTRIES, QueueArn, QueueUrl, SqsError};

/// Converts a received SQS message into the record Lambda would deliver.
pub fn lambda_record(
    m: &aws_sdk_sqs::types::Message,
    queue: &QueueArn,
    region: &str,
) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = m.message_id().map(str::to_owned);
    record.receipt_handle = m.receipt_handle().map(str::to_owned);
    record.body = m.body().map(str::to_owned);
    record.md5_of_body = m.md5_of_body().map(str::to_owned);
    record.md5_of_message_attributes = m.md5_of_message_attributes().map(str::to_owned);
    record.attributes = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    record.message_attributes = m
        .message_attributes()
        .map(|attrs| {
            attrs
                .iter()
                .map(|(k, v)| {
                    let mut a = SqsMessageAttribute::default();
                    a.data_type = Some(v.data_type().to_owned());
                    a.string_value = v.string_value().map(str::to_owned);
                    a.binary_value = v.binary_value().map(|b| base64_data(b.as_ref()));
                    (k.clone(), a)
                })
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue.as_str().to_owned());
    record.aws_region = Some(region.to_owned());
    record
}

fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

/// What applying a response did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// These records were deleted; the rest stay for the queue to redeliver.
    Deleted {
        /// How many were deleted.
        deleted: usize,
        /// How many were reported failed and left in the queue.
        failed: usize,
    },
    /// The whole batch was treated as failed, as Lambda does; nothing was deleted.
    BatchFailed(String),
}

/// One SQS event source mapping: a queue, a batch size and Lambda's rules.
#[derive(Debug, Clone)]
pub struct EventSource {
    client: aws_sdk_sqs::Client,
    queue_url: QueueUrl,
    queue_arn: QueueArn,
    region: String,
    batch_size: i32,
    wait_secs: i32,
}

impl EventSource {
    /// A mapping over one queue.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: QueueUrl,
        queue_arn: QueueArn,
        region: &str,
    ) -> Self {
        Self {
            client,
            queue_url,
            queue_arn,
            region: region.to_owned(),
            batch_size: 10,
            wait_secs: 0,
        }
    }

    /// Sets the batch size (1–10 per receive, as one ReceiveMessage call allows).
    #[must_use]
    pub fn batch_size(mut self, n: i32) -> Self {
        self.batch_size = n.clamp(1, 10);
        self
    }

    /// Sets the long-poll wait of each receive.
    #[must_use]
    pub fn wait_secs(mut self, secs: i32) -> Self {
        self.wait_secs = secs.clamp(0, 20);
        self
    }

    /// The queue.
    pub fn queue_url(&self) -> &QueueUrl {
        &self.queue_url
    }

    /// Receives up to one batch and builds the event Lambda would send (possibly empty).
    ///
    /// # Errors
    /// When the receive fails.
    pub async fn receive(&self) -> Result<SqsEvent, SqsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(self.queue_url.as_str())
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("ReceiveMessage", &e))?;
        let mut event = SqsEvent::default();
        event.records = out
            .messages()
            .iter()
            .map(|m| lambda_record(m, &self.queue_arn, &self.region))
            .collect();
        Ok(event)
    }

    /// Applies the function's result with Lambda's rules.
    ///
    /// # Errors
    /// When a delete call fails; the undeleted records simply come back later.
    pub async fn complete<E: std::fmt::Display>(
        &self,
        event: &SqsEvent,
        result: Result<&SqsBatchResponse, E>,
    ) -> Result<Completion, SqsError> {
        let response = match result {
            Ok(r) => r,
            Err(e) => return Ok(Completion::BatchFailed(format!("function error: {e}"))),
        };
        let ids: HashSet<&str> = event
            .records
            .iter()
            .filter_map(|r| r.message_id.as_deref())
            .collect();
        let mut failed = HashSet::new();
        for f in &response.batch_item_failures {
            let id = f.item_identifier.as_str();
            if id.is_empty() || !ids.contains(id) {
                return Ok(Completion::BatchFailed(format!(
                    "invalid itemIdentifier {id:?}: Lambda fails the whole batch"
                )));
            }
            failed.insert(id);
        }
        let to_delete: Vec<(&str, &str)> = event
            .records
            .iter()
            .filter_map(|r| Some((r.message_id.as_deref()?, r.receipt_handle.as_deref()?)))
            .filter(|(id, _)| !failed.contains(id))
            .collect();
        for chunk in to_delete.chunks(MAX_BATCH_ENTRIES) {
            let mut req = self
                .client
                .delete_message_batch()
                .queue_url(self.queue_url.as_str());
            for (i, (_, handle)) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .build()
                    .map_err(|e| SqsError::permanent("DeleteMessageBatch", e))?;
                req = req.entries(entry);
            }
            let out = req.send().await.map_err(|e| {
                SqsError::permanent("DeleteMessageBatch", mailroom_lambda::error::describe(&e))
            })?;
            if let Some(f) = out.failed().first() {
                return Err(SqsError::permanent(
                    "DeleteMessageBatch",
                    format!("entry {} refused: {}", f.id(), f.code()),
                ));
            }
        }
        Ok(Completion::Deleted {
            deleted: to_delete.len(),
            failed: failed.len(),
        })
    }
}
