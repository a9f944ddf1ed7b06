//! The SQS port: the few queue operations the engine needs, and the SDK adapter behind it.
//!
//! The engine talks to [`QueuePort`], never to the SDK directly, so tests can inject faults
//! and the benchmark can measure the engine without the network.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{HttpStatus, Retry, classify, describe};

mod adapter;
#[cfg(any(test, feature = "test-util"))]
mod fake;

pub use adapter::{SqsQueues, entry_failures, to_sdk_attribute};
#[cfg(any(test, feature = "test-util"))]
pub use fake::{FakeQueues, SentMessage};

/// SQS's limit on entries in one batch call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's limit on message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// SQS's classic limit on a message's size, body and attributes together (256 KiB): the size
/// assumed when a queue's own `MaximumMessageSize` cannot be read, since every queue accepts it.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The most SQS accepts in one message, and a new queue's default `MaximumMessageSize` (1 MiB).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

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

/// Whether SQS accepts `c` in a body or an attribute value: #x9 | #xA | #xD | #x20–#xD7FF |
/// #xE000–#xFFFD | #x10000–#x10FFFF (a Rust `char` is never a surrogate).
pub fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character SQS refuses replaced by U+FFFD, so a reason taken from a
/// webhook's answer or a URL (`refused \0 \u{FFFE}`) cannot make the send it rides on fail.
pub fn sanitise(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(sqs_accepts) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(
            text.chars()
                .map(|c| if sqs_accepts(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

impl OutgoingAttribute {
    /// A `String` attribute, with the characters SQS refuses replaced ([`sanitise`]): every
    /// attribute the engine, the replay and the monitor write is made here.
    pub fn string(value: impl Into<String>) -> Self {
        let value = value.into();
        let value = match sanitise(&value) {
            std::borrow::Cow::Borrowed(_) => value,
            std::borrow::Cow::Owned(clean) => clean,
        };
        Self {
            data_type: "String".to_owned(),
            value: OutgoingValue::Text(value),
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

/// A failed SQS call, retryable or permanent (see [`crate::error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqsError {
    /// Throttled, timed out, unreachable, or a server error: the same call may succeed later.
    #[error("SQS {operation} failed (retryable): {message}")]
    Retryable {
        /// The API operation.
        operation: &'static str,
        /// What went wrong, with the SDK's whole context.
        message: String,
    },
    /// Refused (validation, access, a missing queue), or an answer that cannot be used.
    #[error("SQS {operation} failed: {message}")]
    Permanent {
        /// The API operation.
        operation: &'static str,
        /// What went wrong, with the SDK's whole context.
        message: String,
    },
}

impl SqsError {
    /// A failure of `operation` that trying again may fix.
    pub fn retryable(operation: &'static str, message: impl fmt::Display) -> Self {
        Self::Retryable {
            operation,
            message: message.to_string(),
        }
    }

    /// A failure of `operation` that trying again will not fix.
    pub fn permanent(operation: &'static str, message: impl fmt::Display) -> Self {
        Self::Permanent {
            operation,
            message: message.to_string(),
        }
    }

    /// An SDK error of `operation`, classified by [`crate::error::classify`].
    pub fn from_sdk<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: HttpStatus + fmt::Debug,
    {
        let message = describe(err);
        match classify(err) {
            Retry::Retryable => Self::Retryable { operation, message },
            Retry::Permanent => Self::Permanent { operation, message },
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The API operation that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Retryable { operation, .. } | Self::Permanent { operation, .. } => operation,
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

    /// The queue's `MaximumMessageSize` in bytes: the most a message sent to it may hold,
    /// body and attributes together (1 MiB by default on new queues).
    ///
    /// # Errors
    /// When the call fails.
    fn maximum_message_size(
        &self,
        queue: &QueueUrl,
    ) -> impl Future<Output = Result<usize, SqsError>> + Send;

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
        .map_err(|e| SqsError::permanent("GetQueueAttributes", format!("RedrivePolicy: {e}")))?;
    r.dead_letter_target_arn
        .parse()
        .map_err(|e| SqsError::permanent("GetQueueAttributes", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_text_keeps_what_sqs_accepts_and_replaces_the_rest() {
        // Issue 12, point 7: NUL and U+FFFE are outside SQS's set; tab, newline, the last
        // character before the surrogates, the private use area and the astral planes are in.
        let kept = "tab\tnl\ncr\r \u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF}";
        assert_eq!(sanitise(kept), kept);
        assert!(matches!(sanitise(kept), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            sanitise("a\0b\u{1}c\u{FFFE}d\u{FFFF}e\u{7F}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e\u{7F}"
        );
        let OutgoingValue::Text(t) = OutgoingAttribute::string("x\0y").value else {
            panic!("a string attribute");
        };
        assert_eq!(t, "x\u{FFFD}y");
    }

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
