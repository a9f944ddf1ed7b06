//! [`SqsQueues`]: the SDK adapter behind [`QueuePort`].

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, QueueAttributeName,
};

use super::{
    EntryFailure, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueueArn, QueuePort, QueueUrl,
    SqsError, VisibilityChange, parse_redrive_target,
};

/// The SDK adapter for [`QueuePort`].
#[derive(Debug, Clone)]
pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
}

impl SqsQueues {
    /// Wraps an SDK client, built once at cold start.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }
}

/// Converts an outgoing attribute into the SDK's type.
///
/// # Errors
/// When the SDK rejects the attribute's shape.
pub fn to_sdk_attribute(a: &OutgoingAttribute) -> Result<MessageAttributeValue, SqsError> {
    let b = MessageAttributeValue::builder().data_type(&a.data_type);
    let b = match &a.value {
        OutgoingValue::Text(s) => b.string_value(s),
        OutgoingValue::Binary(v) => b.binary_value(Blob::new(v.clone())),
    };
    b.build().map_err(|e| SqsError::permanent("SendMessage", e))
}

impl QueuePort for SqsQueues {
    async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
        let out = self
            .client
            .get_queue_url()
            .queue_name(arn.name())
            .queue_owner_aws_account_id(arn.account())
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("GetQueueUrl", &e))?;
        out.queue_url()
            .ok_or_else(|| SqsError::permanent("GetQueueUrl", "no QueueUrl in the response"))?
            .parse()
            .map_err(|e| SqsError::permanent("GetQueueUrl", e))
    }

    async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue.as_str())
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("GetQueueAttributes", &e))?;
        let Some(policy) = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        parse_redrive_target(policy).map(Some)
    }

    async fn maximum_message_size(&self, queue: &QueueUrl) -> Result<usize, SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue.as_str())
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("GetQueueAttributes", &e))?;
        let value = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
            .ok_or_else(|| {
                SqsError::permanent("GetQueueAttributes", "no MaximumMessageSize in the answer")
            })?;
        value.parse().map_err(|_| {
            SqsError::permanent(
                "GetQueueAttributes",
                format!("MaximumMessageSize `{value}` is not a number"),
            )
        })
    }

    async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(queue.as_str())
            .message_body(message.body)
            .set_message_group_id(message.group_id)
            .set_message_deduplication_id(message.deduplication_id)
            .set_delay_seconds(message.delay_seconds);
        for (name, a) in &message.attributes {
            req = req.message_attributes(name, to_sdk_attribute(a)?);
        }
        let out = req
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("SendMessage", &e))?;
        // A send is confirmed only by the message id SQS assigns.
        match out.message_id() {
            Some(_) => Ok(()),
            None => Err(SqsError::permanent(
                "SendMessage",
                "no MessageId in the response",
            )),
        }
    }

    async fn change_visibility(
        &self,
        queue: &QueueUrl,
        entries: Vec<VisibilityChange>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        let mut req = self
            .client
            .change_message_visibility_batch()
            .queue_url(queue.as_str());
        for e in entries {
            let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(e.id)
                .receipt_handle(e.receipt_handle)
                .visibility_timeout(i32::try_from(e.timeout_secs).unwrap_or(i32::MAX))
                .build()
                .map_err(|err| SqsError::permanent("ChangeMessageVisibilityBatch", err))?;
            req = req.entries(entry);
        }
        let out = req
            .send()
            .await
            .map_err(|e| SqsError::from_sdk("ChangeMessageVisibilityBatch", &e))?;
        Ok(entry_failures(out.failed()))
    }
}

/// The entries of a batch call that SQS refused, with its code and message as the reason.
pub fn entry_failures(failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            id: f.id().to_owned(),
            reason: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
        })
        .collect()
}
