//! [`ReplayPort`] over the SQS SDK.

use std::collections::HashMap;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::{DeadLetter, ReplayPort};
use mailroom_lambda::sqs::{
    EntryFailure, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueueUrl, SqsError, SqsQueues,
    entry_failures, to_sdk_attribute,
};

impl ReplayPort for SqsQueues {
    async fn receive(
        &self,
        queue: &QueueUrl,
        visibility_secs: u32,
    ) -> Result<Vec<DeadLetter>, SqsError> {
        let out = self
            .client()
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(10)
            // Long polling: a short poll samples some of SQS's servers and can come back empty
            // from a queue that is not, which would end a replay early. One second is the
            // shortest long poll, and the last, empty receive of a run waits that long.
            .wait_time_seconds(1)
            .visibility_timeout(i32::try_from(visibility_secs).unwrap_or(i32::MAX))
            .message_attribute_names("All")
            // What a replay reads: the age filter's send time and the FIFO group.
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("ReceiveMessage", &e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let system = m.attributes();
                let get = |k: MessageSystemAttributeName| system.and_then(|a| a.get(&k)).cloned();
                Some(DeadLetter {
                    message_id: m.message_id()?.to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    attributes: m
                        .message_attributes()
                        .map(|attrs| {
                            attrs
                                .iter()
                                .filter_map(|(k, v)| {
                                    let value = match (v.string_value(), v.binary_value()) {
                                        (Some(s), _) => OutgoingValue::Text(s.to_owned()),
                                        (None, Some(b)) => {
                                            OutgoingValue::Binary(b.as_ref().to_vec())
                                        }
                                        (None, None) => return None,
                                    };
                                    Some((
                                        k.clone(),
                                        OutgoingAttribute {
                                            data_type: v.data_type().to_owned(),
                                            value,
                                        },
                                    ))
                                })
                                .collect::<HashMap<_, _>>()
                        })
                        .unwrap_or_default(),
                    group_id: get(MessageSystemAttributeName::MessageGroupId),
                    sent_at_ms: get(MessageSystemAttributeName::SentTimestamp)
                        .and_then(|t| t.parse().ok()),
                })
            })
            .collect())
    }

    async fn send_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, OutgoingMessage)>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        let mut req = self.client().send_message_batch().queue_url(queue.as_str());
        for (id, m) in entries {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(id)
                .message_body(m.body)
                .set_message_group_id(m.group_id)
                .set_message_deduplication_id(m.deduplication_id)
                .set_delay_seconds(m.delay_seconds);
            for (name, a) in &m.attributes {
                e = e.message_attributes(name, to_sdk_attribute(a)?);
            }
            req = req.entries(
                e.build()
                    .map_err(|e| SqsError::permanent("SendMessageBatch", e))?,
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("SendMessageBatch", &e))?;
        Ok(entry_failures(out.failed()))
    }

    async fn delete_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, String)>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        let mut req = self
            .client()
            .delete_message_batch()
            .queue_url(queue.as_str());
        for (id, handle) in entries {
            req = req.entries(
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| SqsError::permanent("DeleteMessageBatch", e))?,
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("DeleteMessageBatch", &e))?;
        Ok(entry_failures(out.failed()))
    }

    async fn dead_letter_sources(&self, dlq: &QueueUrl) -> Result<Vec<QueueUrl>, SqsError> {
        let out = self
            .client()
            .list_dead_letter_source_queues()
            .queue_url(dlq.as_str())
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("ListDeadLetterSourceQueues", &e))?;
        out.queue_urls()
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e| SqsError::permanent("ListDeadLetterSourceQueues", e))
            })
            .collect()
    }
}
