//! The SQS port: the few queue operations the engine needs, and the SDK adapter behind it.
//!
//! The engine talks to [`QueuePort`], never to the SDK directly, so tests can inject faults
//! and the benchmark can measure the engine without the network.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, QueueAttributeName,
};

/// SQS's limit on entries in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's limit on message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// SQS's classic limit on a message's size, body and attributes together (256 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A parsed SQS queue ARN, `arn:<partition>:sqs:<region>:<account>:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueArn {
    arn: String,
    account: String,
    name: String,
}

impl QueueArn {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owning account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Whether this is a FIFO queue (its name ends `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }

    /// The ARN as text.
    pub fn as_str(&self) -> &str {
        &self.arn
    }
}

impl FromStr for QueueArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["arn", _partition, "sqs", _region, account, name]
                if !account.is_empty() && !name.is_empty() =>
            {
                Ok(Self {
                    arn: s.to_owned(),
                    account: (*account).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            _ => Err(format!("`{s}` is not an SQS queue ARN")),
        }
    }
}

impl fmt::Display for QueueArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// An SQS queue URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueUrl(String);

impl QueueUrl {
    /// The queue's name: the URL's last path segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for QueueUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (s.starts_with("https://") || s.starts_with("http://")) && s.len() > 8 {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("`{s}` is not a queue URL (expected https://…)"))
        }
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One message attribute to send, of any SQS type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAttribute {
    /// `String`, `Number`, `Binary`, optionally with a custom suffix.
    pub data_type: String,
    /// The value.
    pub value: OutgoingValue,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingValue {
    /// For `String` and `Number` types.
    Text(String),
    /// For `Binary` types.
    Binary(Vec<u8>),
}

impl OutgoingAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        Self {
            data_type: "String".to_owned(),
            value: OutgoingValue::Text(value.into()),
        }
    }

    /// The bytes SQS counts towards the message size: type and value.
    pub fn size(&self) -> usize {
        self.data_type.len()
            + match &self.value {
                OutgoingValue::Text(s) => s.len(),
                OutgoingValue::Binary(b) => b.len(),
            }
    }
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The body, sent unchanged.
    pub body: String,
    /// Message attributes, at most [`MAX_MESSAGE_ATTRIBUTES`].
    pub attributes: HashMap<String, OutgoingAttribute>,
    /// FIFO only: the message group.
    pub group_id: Option<String>,
    /// FIFO only: the deduplication id.
    pub deduplication_id: Option<String>,
    /// Standard queues only: per-message delay in seconds (at most 900).
    pub delay_seconds: Option<i32>,
}

impl OutgoingMessage {
    /// The size SQS checks against its limit: body plus attribute names, types and values.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, a)| name.len() + a.size())
                .sum::<usize>()
    }
}

/// One visibility change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChange {
    /// An id unique within the batch (the engine uses the record's index).
    pub id: String,
    /// The receipt handle of the delivery.
    pub receipt_handle: String,
    /// The new visibility timeout, in seconds from now.
    pub timeout_secs: u32,
}

/// An entry of a batch call that SQS refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// The entry's id.
    pub id: String,
    /// SQS's code and message.
    pub reason: String,
}

/// A failed SQS call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation} failed: {message}")]
pub struct SqsError {
    /// The API operation.
    pub operation: &'static str,
    /// The SDK's error with its whole context.
    pub message: String,
}

impl SqsError {
    /// An error for `operation` with `message`.
    pub fn new(operation: &'static str, message: impl fmt::Display) -> Self {
        Self {
            operation,
            message: message.to_string(),
        }
    }
}

/// The queue operations the engine needs. Implemented by [`SqsQueues`] over the SDK, and by a
/// fake in tests.
pub trait QueuePort: Send + Sync {
    /// The URL of the queue with this ARN.
    ///
    /// # Errors
    /// When the queue does not exist or the call fails.
    fn queue_url(&self, arn: &QueueArn) -> impl Future<Output = Result<QueueUrl, SqsError>> + Send;

    /// The dead-letter target from the queue's `RedrivePolicy`, if it has one.
    ///
    /// # Errors
    /// When the call fails or the policy does not parse.
    fn dead_letter_target(
        &self,
        queue: &QueueUrl,
    ) -> impl Future<Output = Result<Option<QueueArn>, SqsError>> + Send;

    /// Sends one message.
    ///
    /// # Errors
    /// When SQS does not confirm the send.
    fn send(
        &self,
        queue: &QueueUrl,
        message: OutgoingMessage,
    ) -> impl Future<Output = Result<(), SqsError>> + Send;

    /// Changes the visibility of up to [`MAX_BATCH_ENTRIES`] deliveries in one call, returning
    /// the entries SQS refused.
    ///
    /// # Errors
    /// When the call as a whole fails.
    fn change_visibility(
        &self,
        queue: &QueueUrl,
        entries: Vec<VisibilityChange>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, SqsError>> + Send;
}

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

fn sdk_error<E: std::error::Error>(operation: &'static str, err: E) -> SqsError {
    SqsError::new(operation, DisplayErrorContext(err))
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
    b.build().map_err(|e| sdk_error("SendMessage", e))
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
            .map_err(|e| sdk_error("GetQueueUrl", e))?;
        out.queue_url()
            .ok_or_else(|| SqsError::new("GetQueueUrl", "no QueueUrl in the response"))?
            .parse()
            .map_err(|e| SqsError::new("GetQueueUrl", e))
    }

    async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue.as_str())
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", e))?;
        let Some(policy) = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        else {
            return Ok(None);
        };
        parse_redrive_target(policy).map(Some)
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
        let out = req.send().await.map_err(|e| sdk_error("SendMessage", e))?;
        // A send is confirmed only by the message id SQS assigns.
        match out.message_id() {
            Some(_) => Ok(()),
            None => Err(SqsError::new("SendMessage", "no MessageId in the response")),
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
                .map_err(|err| sdk_error("ChangeMessageVisibilityBatch", err))?;
            req = req.entries(entry);
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", e))?;
        Ok(entry_failures(out.failed()))
    }
}

/// The entries of a batch call that SQS refused, with its code and message as the reason.
pub(crate) fn entry_failures(
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<EntryFailure> {
    failed
        .iter()
        .map(|f| EntryFailure {
            id: f.id().to_owned(),
            reason: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
        })
        .collect()
}

/// Reads `deadLetterTargetArn` from a queue's `RedrivePolicy` JSON.
///
/// # Errors
/// When the policy is not JSON or names no valid ARN.
pub fn parse_redrive_target(policy: &str) -> Result<QueueArn, SqsError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Redrive {
        dead_letter_target_arn: String,
    }
    let r: Redrive = serde_json::from_str(policy)
        .map_err(|e| SqsError::new("GetQueueAttributes", format!("RedrivePolicy: {e}")))?;
    r.dead_letter_target_arn
        .parse()
        .map_err(|e| SqsError::new("GetQueueAttributes", e))
}

/// A queue's approximate `(visible, in flight)` message counts.
///
/// # Errors
/// When the call fails.
pub async fn queue_depth(
    sqs: &aws_sdk_sqs::Client,
    queue: &QueueUrl,
) -> Result<(u64, u64), SqsError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue.as_str())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| SqsError::new("GetQueueAttributes", DisplayErrorContext(e)))?
        .attributes
        .unwrap_or_default();
    let count = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((
        count(&QueueAttributeName::ApproximateNumberOfMessages),
        count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

#[cfg(any(test, feature = "test-util"))]
pub use fake::{FakeQueues, SentMessage};

#[cfg(any(test, feature = "test-util"))]
mod fake {
    //! An in-memory [`QueuePort`] (and, for replay, a DLQ that hands out scripted batches)
    //! that records calls and injects faults.

    use super::{
        EntryFailure, OutgoingMessage, QueueArn, QueuePort, QueueUrl, SqsError, VisibilityChange,
    };
    use crate::replay::{DeadLetter, ReplayPort};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, PoisonError};

    /// A message the fake accepted.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SentMessage {
        /// The queue it was sent to.
        pub queue: QueueUrl,
        /// The message.
        pub message: OutgoingMessage,
    }

    #[derive(Debug, Default)]
    struct State {
        sent: Vec<SentMessage>,
        visibility: Vec<Vec<VisibilityChange>>,
        url_lookups: usize,
        redrive_lookups: usize,
        dead_letters: VecDeque<Vec<DeadLetter>>,
    }

    /// An in-memory queue service. Every queue has the URL `https://sqs.local/<name>` and,
    /// unless told otherwise, a DLQ named `<name>-dlq`.
    #[derive(Debug, Clone, Default)]
    pub struct FakeQueues {
        state: Arc<Mutex<State>>,
        fail_sends: bool,
        fail_visibility: bool,
        no_redrive: bool,
        discard: bool,
    }

    impl FakeQueues {
        /// A fake where every call succeeds.
        pub fn new() -> Self {
            Self::default()
        }

        /// A fake that accepts calls and keeps nothing (for benchmarks).
        pub fn discarding() -> Self {
            Self {
                discard: true,
                ..Self::default()
            }
        }

        /// Every send fails.
        #[must_use]
        pub fn failing_sends(mut self) -> Self {
            self.fail_sends = true;
            self
        }

        /// Every visibility change fails.
        #[must_use]
        pub fn failing_visibility(mut self) -> Self {
            self.fail_visibility = true;
            self
        }

        /// Replay's receives hand out these batches in turn, then nothing.
        #[must_use]
        pub fn with_dead_letter_batches(self, batches: Vec<Vec<DeadLetter>>) -> Self {
            self.state().dead_letters = batches.into();
            self
        }

        /// Queues have no RedrivePolicy.
        #[must_use]
        pub fn without_redrive(mut self) -> Self {
            self.no_redrive = true;
            self
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// Messages sent so far.
        pub fn sent(&self) -> Vec<SentMessage> {
            self.state().sent.clone()
        }

        /// Visibility batches requested so far, one inner list per call.
        pub fn visibility_calls(&self) -> Vec<Vec<VisibilityChange>> {
            self.state().visibility.clone()
        }

        /// How many times a queue URL and a redrive policy were looked up.
        pub fn lookups(&self) -> (usize, usize) {
            let s = self.state();
            (s.url_lookups, s.redrive_lookups)
        }
    }

    impl QueuePort for FakeQueues {
        async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
            self.state().url_lookups += 1;
            Ok(QueueUrl(format!("https://sqs.local/{}", arn.name())))
        }

        async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
            self.state().redrive_lookups += 1;
            if self.no_redrive {
                return Ok(None);
            }
            let name = queue.as_str().rsplit('/').next().unwrap_or_default();
            let dlq = match name.strip_suffix(".fifo") {
                Some(stem) => format!("{stem}-dlq.fifo"),
                None => format!("{name}-dlq"),
            };
            format!("arn:aws:sqs:us-east-1:123456789012:{dlq}")
                .parse()
                .map(Some)
                .map_err(|e| SqsError::new("GetQueueAttributes", e))
        }

        async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
            if self.fail_sends {
                return Err(SqsError::new("SendMessage", "injected fault"));
            }
            if !self.discard {
                self.state().sent.push(SentMessage {
                    queue: queue.clone(),
                    message,
                });
            }
            Ok(())
        }

        async fn change_visibility(
            &self,
            _queue: &QueueUrl,
            entries: Vec<VisibilityChange>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            if self.fail_visibility {
                return Err(SqsError::new(
                    "ChangeMessageVisibilityBatch",
                    "injected fault",
                ));
            }
            if !self.discard {
                self.state().visibility.push(entries);
            }
            Ok(Vec::new())
        }
    }

    impl ReplayPort for FakeQueues {
        async fn receive(
            &self,
            _queue: &QueueUrl,
            _visibility_secs: u32,
        ) -> Result<Vec<DeadLetter>, SqsError> {
            Ok(self.state().dead_letters.pop_front().unwrap_or_default())
        }

        async fn send_batch(
            &self,
            queue: &QueueUrl,
            entries: Vec<(String, OutgoingMessage)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            for (_, message) in entries {
                self.send(queue, message).await?;
            }
            Ok(Vec::new())
        }

        async fn delete_batch(
            &self,
            _queue: &QueueUrl,
            _entries: Vec<(String, String)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            Ok(Vec::new())
        }

        async fn dead_letter_sources(&self, _dlq: &QueueUrl) -> Result<Vec<QueueUrl>, SqsError> {
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arn_parses_and_knows_fifo() {
        let arn: QueueArn = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo"
            .parse()
            .expect("valid ARN");
        assert_eq!(arn.name(), "orders.fifo");
        assert_eq!(arn.account(), "123456789012");
        assert!(arn.is_fifo());
        assert!(
            "arn:aws:sns:eu-west-1:123456789012:t"
                .parse::<QueueArn>()
                .is_err()
        );
        assert!("orders".parse::<QueueArn>().is_err());
    }

    #[test]
    fn redrive_policy_names_the_dlq() {
        let arn = parse_redrive_target(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:orders-dlq","maxReceiveCount":"3"}"#,
        )
        .expect("valid policy");
        assert_eq!(arn.name(), "orders-dlq");
        assert!(parse_redrive_target("{}").is_err());
    }

    #[test]
    fn message_size_counts_body_and_attributes() {
        let mut m = OutgoingMessage {
            body: "12345".into(),
            ..OutgoingMessage::default()
        };
        m.attributes
            .insert("ab".into(), OutgoingAttribute::string("xyz"));
        assert_eq!(m.size(), 5 + 2 + "String".len() + 3);
    }
}
