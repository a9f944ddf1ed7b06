//! The replay's port: a dead letter as received, and the queue calls a replay makes.

use std::collections::HashMap;
use std::future::Future;

use super::REPLAY_COUNT_ATTRIBUTE;
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::sqs::{
    EntryFailure, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueuePort, QueueUrl, SqsError,
};

/// A message received from a DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The SQS message id.
    pub message_id: String,
    /// This receive's handle.
    pub receipt_handle: String,
    /// The body, unchanged.
    pub body: String,
    /// Every message attribute, of every type.
    pub attributes: HashMap<String, OutgoingAttribute>,
    /// FIFO only: the message group.
    pub group_id: Option<String>,
    /// When SQS first accepted the message, in epoch milliseconds.
    pub sent_at_ms: Option<i64>,
}

impl DeadLetter {
    /// The engine's poison reason, when the message carries one.
    pub fn reason(&self) -> Option<&str> {
        match self.attributes.get(REASON_ATTRIBUTE).map(|a| &a.value) {
            Some(OutgoingValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// How many times it has been replayed already.
    pub fn replay_count(&self) -> u32 {
        match self
            .attributes
            .get(REPLAY_COUNT_ATTRIBUTE)
            .map(|a| &a.value)
        {
            Some(OutgoingValue::Text(t)) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }
}

/// The queue operations a replay needs beyond the engine's.
pub trait ReplayPort: QueuePort {
    /// Receives up to ten messages, hidden for `visibility_secs`, with every attribute.
    ///
    /// # Errors
    /// When the receive fails.
    fn receive(
        &self,
        queue: &QueueUrl,
        visibility_secs: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, SqsError>> + Send;

    /// Sends up to ten messages in one call; returns the entries SQS refused.
    ///
    /// # Errors
    /// When the call as a whole fails (then no entry is known to be sent).
    fn send_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, OutgoingMessage)>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, SqsError>> + Send;

    /// Deletes up to ten deliveries by `(id, receipt handle)`; returns the entries refused.
    ///
    /// # Errors
    /// When the call as a whole fails.
    fn delete_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, SqsError>> + Send;

    /// The queues whose RedrivePolicy names this DLQ.
    ///
    /// # Errors
    /// When the call fails.
    fn dead_letter_sources(
        &self,
        dlq: &QueueUrl,
    ) -> impl Future<Output = Result<Vec<QueueUrl>, SqsError>> + Send;
}
