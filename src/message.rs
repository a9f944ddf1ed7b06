//! Decoding one SQS record into a typed [`Message`].
//!
//! A record's body is either the raw payload (SNS raw message delivery, or a direct
//! `SendMessage`) or an SNS notification envelope whose `Message` field holds the payload.
//! Decoding is per record: one bad body fails that record only, never the whole batch.
//!
//! Why one file of about 500 lines: the record's metadata, the envelope's detection, the task id's
//! selection and the decode are one pass over one record, tuned together (the envelope is
//! detected without allocating, the task id read from whichever layer holds it); split, each
//! piece would need the others' private fields.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The SQS message attribute that names the producer's task, when present.
pub const TASK_ID_ATTRIBUTE: &str = "task_id";
/// The message attribute that carries a W3C trace context.
pub const TRACEPARENT_ATTRIBUTE: &str = "traceparent";

/// A decoded SQS record: the consumer's typed payload plus everything known about its delivery.
#[derive(Debug, Clone)]
pub struct Message<T> {
    /// The payload, decoded from the raw body or from the SNS envelope's `Message`.
    pub payload: T,
    meta: Arc<RecordMeta>,
}

impl Message<()> {
    /// Everything known about a record's delivery, without decoding its payload: for code
    /// that routes on metadata alone, such as the task monitor's registration.
    pub fn metadata(record: SqsMessage, task_id: &TaskIdSource) -> Self {
        Self::new((), Received::new(record, task_id).meta)
    }
}

impl<T> Message<T> {
    pub(crate) fn new(payload: T, meta: Arc<RecordMeta>) -> Self {
        Self { payload, meta }
    }

    /// The SQS message id, which every record SQS delivers has (`None` only for a record
    /// built by hand). It changes when a message is redriven or replayed.
    pub fn message_id(&self) -> Option<&str> {
        self.meta.message_id.as_deref()
    }

    /// The SNS message id, when the body was an SNS envelope.
    pub fn sns_message_id(&self) -> Option<&str> {
        self.meta.sns.as_ref().map(|s| s.message_id.as_str())
    }

    /// The task id: from the configured attribute or body field, else the SNS message id.
    pub fn task_id(&self) -> Option<&str> {
        self.meta.task_id()
    }

    /// How many times SQS has delivered this message, this delivery included.
    pub fn receive_count(&self) -> u32 {
        self.meta.receive_count
    }

    /// The FIFO message group, on FIFO queues.
    pub fn group_id(&self) -> Option<&str> {
        self.meta.group_id.as_deref()
    }

    /// The SNS topic the message was published to, when enveloped.
    pub fn topic_arn(&self) -> Option<&str> {
        self.meta.sns.as_ref().map(|s| s.topic_arn.as_str())
    }

    /// The SNS subject, when enveloped and set.
    pub fn subject(&self) -> Option<&str> {
        self.meta.sns.as_ref().and_then(|s| s.subject.as_deref())
    }

    /// The SNS sequence number, for messages from FIFO topics.
    pub fn sns_sequence_number(&self) -> Option<&str> {
        self.meta
            .sns
            .as_ref()
            .and_then(|s| s.sequence_number.as_deref())
    }

    /// When SQS received the message (`SentTimestamp`), in milliseconds since the Unix epoch.
    pub fn sent_at_ms(&self) -> Option<i64> {
        self.meta.sent_at_ms
    }

    /// When SNS accepted the publish (the envelope's `Timestamp`), in milliseconds since the Unix epoch.
    pub fn published_at_ms(&self) -> Option<i64> {
        self.meta.published_at_ms()
    }

    /// When the task began: the publish time, else when SQS received the message (ms since
    /// the Unix epoch). The ledger opens a task at this time.
    pub fn first_seen_ms(&self) -> Option<u64> {
        self.meta.first_seen_ms()
    }

    /// The W3C `traceparent`, when a valid one was sent on either attribute layer.
    pub fn traceparent(&self) -> Option<&str> {
        self.meta.traceparent.as_deref()
    }

    /// An attribute by name, looked up on the SQS layer first, then on the SNS envelope.
    pub fn attribute(&self, name: &str) -> Option<AttributeRef<'_>> {
        self.meta.attribute(name)
    }

    /// A `String` or `Number` attribute's value, from either layer.
    pub fn string_attribute(&self, name: &str) -> Option<&str> {
        self.attribute(name).and_then(|a| a.as_str())
    }

    /// The SQS message attributes (with raw delivery, the SNS publish attributes land here).
    pub fn sqs_attributes(&self) -> &HashMap<String, SqsMessageAttribute> {
        &self.meta.sqs_attributes
    }

    /// The SNS envelope's message attributes; empty for raw bodies.
    pub fn sns_attributes(&self) -> &HashMap<String, SnsAttribute> {
        static EMPTY: std::sync::LazyLock<HashMap<String, SnsAttribute>> =
            std::sync::LazyLock::new(HashMap::new);
        self.meta.sns.as_ref().map_or(&EMPTY, |s| &s.attributes)
    }

    /// Whether the body arrived inside an SNS notification envelope.
    pub fn is_enveloped(&self) -> bool {
        self.meta.sns.is_some()
    }

    /// Splits the message into its payload and a message carrying `()`.
    pub fn into_parts(self) -> (T, Message<()>) {
        (self.payload, Message::new((), self.meta))
    }

    /// The same delivery with its payload mapped by `f`: for a handler that wraps another
    /// over a narrower type.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Message<U> {
        Message::new(f(self.payload), self.meta)
    }
}

/// A borrowed view of one message attribute from either layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeRef<'a> {
    /// `String`, `Number`, `Binary`, or one of those with a custom suffix (`Number.float`).
    pub data_type: &'a str,
    /// The value.
    pub value: AttributeValue<'a>,
}

impl<'a> AttributeRef<'a> {
    /// The value as text, for `String` and `Number` attributes.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.value {
            AttributeValue::Text(s) => Some(s),
            AttributeValue::Binary(_) => None,
        }
    }
}

/// An attribute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeValue<'a> {
    /// A `String` or `Number` value (SNS also sends `Binary` as base64 text).
    Text(&'a str),
    /// A `Binary` value from the SQS layer.
    Binary(&'a [u8]),
}

/// One message attribute inside an SNS envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnsAttribute {
    /// `String`, `String.Array`, `Number` or `Binary`.
    #[serde(rename = "Type")]
    pub data_type: String,
    /// The value; base64 for `Binary`.
    #[serde(rename = "Value")]
    pub value: String,
}

/// What the engine keeps of a record's delivery, shared with the consumer's [`Message`].
#[derive(Debug, Default)]
pub(crate) struct RecordMeta {
    pub(crate) message_id: Option<String>,
    pub(crate) receive_count: u32,
    pub(crate) group_id: Option<String>,
    pub(crate) sent_at_ms: Option<i64>,
    /// A task id from the configured attribute or body field; `None` means the SNS message id.
    pub(crate) task_id: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) sqs_attributes: HashMap<String, SqsMessageAttribute>,
    pub(crate) sns: Option<SnsMeta>,
}

impl RecordMeta {
    /// When SNS accepted the publish, in milliseconds since the Unix epoch.
    pub(crate) fn published_at_ms(&self) -> Option<i64> {
        self.sns
            .as_ref()
            .and_then(|s| s.timestamp.as_deref())
            .and_then(parse_iso8601_ms)
    }

    /// When the task began: the publish time, else when SQS received the message.
    pub(crate) fn first_seen_ms(&self) -> Option<u64> {
        self.published_at_ms()
            .or(self.sent_at_ms)
            .and_then(|t| u64::try_from(t).ok())
    }

    /// The tenant: the publisher's `tenant` attribute, else the message group (which SNS
    /// standard topics pass through to the queue, and SQS fair queues key on).
    pub(crate) fn tenant(&self) -> Option<&str> {
        small_get(&self.sqs_attributes, crate::publish::TENANT_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .or_else(|| {
                self.sns
                    .as_ref()
                    .and_then(|s| small_get(&s.attributes, crate::publish::TENANT_ATTRIBUTE))
                    .map(|a| a.value.as_str())
            })
            .or(self.group_id.as_deref())
    }

    pub(crate) fn task_id(&self) -> Option<&str> {
        self.task_id
            .as_deref()
            .or_else(|| self.sns.as_ref().map(|s| s.message_id.as_str()))
    }

    fn attribute(&self, name: &str) -> Option<AttributeRef<'_>> {
        if let Some(a) = small_get(&self.sqs_attributes, name) {
            let data_type = a.data_type.as_deref().unwrap_or("String");
            if let Some(s) = a.string_value.as_deref() {
                return Some(AttributeRef {
                    data_type,
                    value: AttributeValue::Text(s),
                });
            }
            if let Some(b) = a.binary_value.as_ref() {
                return Some(AttributeRef {
                    data_type,
                    value: AttributeValue::Binary(&b.0),
                });
            }
        }
        self.sns
            .as_ref()
            .and_then(|s| small_get(&s.attributes, name))
            .map(|a| AttributeRef {
                data_type: &a.data_type,
                value: AttributeValue::Text(&a.value),
            })
    }
}

/// The parts of an SNS envelope that outlive decoding.
#[derive(Debug, Default)]
pub(crate) struct SnsMeta {
    pub(crate) message_id: String,
    pub(crate) topic_arn: String,
    pub(crate) subject: Option<String>,
    /// The envelope's `Timestamp`, parsed only when asked for.
    pub(crate) timestamp: Option<String>,
    pub(crate) sequence_number: Option<String>,
    pub(crate) attributes: HashMap<String, SnsAttribute>,
}

/// The SNS envelope's `Message` when `body` is an SNS notification, else `None` (a raw
/// payload). For tools that read a body without decoding it, as replay's filters do.
pub fn envelope_message(body: &str) -> Option<String> {
    SnsEnvelope::detect(body).map(|env| env.message)
}

/// The envelope's `Type`, read without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum EnvelopeType {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
    #[serde(other)]
    Other,
}

impl EnvelopeType {
    /// The name of an SNS control message type: SNS talking to the subscriber, not an event.
    fn control(self) -> Option<&'static str> {
        match self {
            Self::SubscriptionConfirmation => Some("SubscriptionConfirmation"),
            Self::UnsubscribeConfirmation => Some("UnsubscribeConfirmation"),
            Self::Notification | Self::Other => None,
        }
    }
}

/// The SNS notification envelope as SNS writes it into an SQS body.
///
/// Our own type rather than `aws_lambda_events::sns::SnsMessage`, which requires the signature
/// fields: envelopes from FIFO topics carry no `Signature`, `SignatureVersion` or
/// `SigningCertURL`, and the certificate field is spelt `SigningCertURL` in SQS bodies but
/// `SigningCertUrl` in Lambda's SNS events.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SnsEnvelope {
    #[serde(rename = "Type")]
    pub(crate) kind: EnvelopeType,
    pub(crate) message_id: String,
    pub(crate) topic_arn: String,
    #[serde(default)]
    pub(crate) subject: Option<String>,
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) timestamp: Option<String>,
    // Signature, SignatureVersion, SigningCertURL (or SigningCertUrl) and UnsubscribeURL are
    // not read: the queue policy, not the signature, authorises SQS delivery, and FIFO topics
    // leave the signature fields out. Unread fields cannot fail a decode.
    #[serde(default)]
    pub(crate) sequence_number: Option<String>,
    #[serde(default)]
    pub(crate) message_attributes: HashMap<String, SnsAttribute>,
}

impl SnsEnvelope {
    /// Parses `body` as an SNS notification, or `None` when it is a raw payload.
    ///
    /// A raw JSON payload that merely mentions `TopicArn` is still raw unless it has the
    /// envelope's shape and `"Type": "Notification"`.
    pub(crate) fn detect(body: &str) -> Option<Self> {
        Self::read(body).filter(|e| e.kind == EnvelopeType::Notification)
    }

    /// Parses `body` as any SNS envelope (a notification or a control message), or `None`
    /// when it is a raw payload.
    fn read(body: &str) -> Option<Self> {
        let trimmed = body.trim_start();
        if !trimmed.starts_with('{') {
            return None;
        }
        // SNS writes `"Type" : "Notification"` first; only bodies that do not start that way
        // pay for a scan.
        if !starts_as_notification(trimmed) && !body.contains("\"TopicArn\"") {
            return None;
        }
        serde_json::from_str::<Self>(body).ok()
    }
}

/// Whether `body` (trimmed, starting `{`) opens with `"Type" : "Notification"`, in any spacing.
fn starts_as_notification(body: &str) -> bool {
    let rest = body[1..].trim_start();
    let Some(rest) = rest.strip_prefix("\"Type\"") else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return false;
    };
    rest.trim_start().starts_with("\"Notification\"")
}

/// Where the task id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskIdSource {
    /// A message attribute (either layer), falling back to the SNS message id.
    Attribute(String),
    /// A JSON pointer into the payload (`/order/id`), falling back to the SNS message id.
    BodyField(String),
    /// Always the SNS message id.
    SnsMessageId,
}

impl Default for TaskIdSource {
    /// The `task_id` attribute the [publisher](crate::publish) gives every event before its
    /// first attempt, so a retried publish (a new SNS MessageId) is the same task; the SNS
    /// message id for events from other producers. Both are stable across redrive and
    /// replay, unlike the SQS message id.
    fn default() -> Self {
        Self::Attribute(TASK_ID_ATTRIBUTE.to_owned())
    }
}

/// The forms `MAILROOM_TASK_ID` takes, for configuration errors.
pub const TASK_ID_FORMS: &str = "`sns-message-id`, `attribute:<name>` or `body:<json-pointer>`";

impl std::str::FromStr for TaskIdSource {
    type Err = String;

    /// Parses `attribute:<name>`, `body:<json-pointer>` or `sns-message-id`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sns-message-id" {
            Ok(Self::SnsMessageId)
        } else if let Some(name) = s.strip_prefix("attribute:").filter(|n| !n.is_empty()) {
            Ok(Self::Attribute(name.to_owned()))
        } else if let Some(ptr) = s.strip_prefix("body:").filter(|p| p.starts_with('/')) {
            Ok(Self::BodyField(ptr.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a task id source: use `attribute:<name>`, `body:/<json-pointer>` or `sns-message-id`"
            ))
        }
    }
}

/// Why a record's body did not decode. The record fails alone, with this as its reason.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no body at all.
    #[error("record has no body")]
    MissingBody,
    /// The payload is not valid JSON for the consumer's type.
    #[error("payload does not decode as {type_name}: {source}")]
    Payload {
        /// The consumer's payload type.
        type_name: &'static str,
        /// The serde error, with line and column.
        source: serde_json::Error,
    },
}

/// A record taken apart: what the engine keeps, and what still has to be decoded.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) meta: Arc<RecordMeta>,
    /// The SQS body exactly as received, for the poison path.
    pub(crate) body: Option<String>,
    pub(crate) receipt_handle: Option<String>,
    /// The payload text: the envelope's `Message`, or `None` to use `body`.
    payload: Option<String>,
    /// The SNS control message type, when the body is one and not an event.
    pub(crate) control: Option<&'static str>,
}

impl Received {
    /// Takes a record apart without failing: every problem is deferred to [`Received::decode`].
    pub(crate) fn new(record: SqsMessage, task_id: &TaskIdSource) -> Self {
        let SqsMessage {
            message_id,
            receipt_handle,
            body,
            attributes,
            message_attributes,
            ..
        } = record;
        let receive_count = small_get(&attributes, "ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let sent_at_ms = small_get(&attributes, "SentTimestamp").and_then(|v| v.parse().ok());
        let group_id = small_get(&attributes, "MessageGroupId").cloned();

        // One read of the envelope tells a notification from a control message.
        let envelope = body.as_deref().and_then(SnsEnvelope::read);
        let control = envelope.as_ref().and_then(|e| e.kind.control());
        let envelope = envelope.filter(|e| e.kind == EnvelopeType::Notification);
        let (sns, payload) = match envelope {
            Some(env) => (
                Some(SnsMeta {
                    message_id: env.message_id,
                    topic_arn: env.topic_arn,
                    subject: env.subject,
                    timestamp: env.timestamp,
                    sequence_number: env.sequence_number,
                    attributes: env.message_attributes,
                }),
                Some(env.message),
            ),
            None => (None, None),
        };
        let mut meta = RecordMeta {
            // An absent id stays empty here; the engine refuses to report such a record by id.
            message_id,
            receive_count,
            group_id,
            sent_at_ms,
            task_id: None,
            traceparent: None,
            sqs_attributes: message_attributes,
            sns,
        };
        meta.traceparent = meta
            .attribute(TRACEPARENT_ATTRIBUTE)
            .and_then(|a| a.as_str())
            .filter(|t| is_traceparent(t))
            .map(str::to_owned);
        let payload_text = payload.as_deref().or(body.as_deref());
        meta.task_id = resolve_task_id(&meta, task_id, payload_text);
        Self {
            meta: Arc::new(meta),
            body,
            receipt_handle,
            payload,
            control,
        }
    }

    /// Decodes the payload into the consumer's type.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let text = self
            .payload
            .as_deref()
            .or(self.body.as_deref())
            .ok_or(DecodeError::MissingBody)?;
        serde_json::from_str(text).map_err(|source| DecodeError::Payload {
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}

/// A value of a small map by its key, found by comparing keys: an SQS record's handful of
/// attributes are found faster so than by hashing the key (`SipHash`) for each lookup.
fn small_get<'a, V, S>(map: &'a std::collections::HashMap<String, V, S>, key: &str) -> Option<&'a V>
where
    S: std::hash::BuildHasher,
{
    if map.len() > 8 {
        return map.get(key);
    }
    map.iter().find_map(|(k, v)| (k == key).then_some(v))
}

fn resolve_task_id(
    meta: &RecordMeta,
    source: &TaskIdSource,
    payload: Option<&str>,
) -> Option<String> {
    let chosen = match source {
        TaskIdSource::Attribute(name) => meta
            .attribute(name)
            .and_then(|a| a.as_str())
            .map(str::to_owned),
        TaskIdSource::BodyField(pointer) => payload
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|v| match v.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
        TaskIdSource::SnsMessageId => None,
    };
    // Falling back to the SNS message id happens on read, without a copy.
    chosen.filter(|id| !id.is_empty())
}

/// Whether `s` is a W3C trace context `traceparent` (version 00 layout).
pub(crate) fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// Parses an SNS `Timestamp` (RFC 3339, UTC) into epoch milliseconds.
pub(crate) fn parse_iso8601_ms(s: &str) -> Option<i64> {
    DateTime::from_str(s, DateTimeFormat::DateTimeWithOffset)
        .ok()
        .and_then(|d| d.to_millis().ok())
}

impl fmt::Display for AttributeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            AttributeValue::Text(s) => f.write_str(s),
            AttributeValue::Binary(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Order {
        order_id: String,
        amount_cents: u64,
    }

    fn received(record: SqsMessage) -> Received {
        Received::new(record, &TaskIdSource::Attribute(TASK_ID_ATTRIBUTE.into()))
    }

    #[test]
    fn enveloped_record_decodes_payload_and_both_attribute_layers() {
        // GIVEN an SNS-enveloped record from the fixture
        let event = fixture("sqs-sns-envelope.json");
        let r = received(event.records[0].clone());

        // WHEN it is decoded
        let order: Order = r.decode().expect("payload decodes");

        // THEN the payload, the SNS metadata and the attributes are all exposed
        assert_eq!(order.order_id, "o-1001");
        let sns = r.meta.sns.as_ref().expect("detected as SNS envelope");
        assert_eq!(sns.message_id, "6f1c3b7e-0d5a-5b8e-9a41-2f8c1e4d1001");
        assert_eq!(
            r.meta.attribute("kind").and_then(|a| a.as_str()),
            Some("order.placed")
        );
        assert_eq!(r.meta.task_id(), Some("task-1001"));
        let by_default = Received::new(event.records[0].clone(), &TaskIdSource::default());
        assert_eq!(
            by_default.meta.task_id(),
            Some("task-1001"),
            "the default task id is the publisher's task_id attribute"
        );
        let by_sns = Received::new(event.records[0].clone(), &TaskIdSource::SnsMessageId);
        assert_eq!(
            by_sns.meta.task_id(),
            Some("6f1c3b7e-0d5a-5b8e-9a41-2f8c1e4d1001"),
            "sns-message-id keys on the SNS message id"
        );
        assert_eq!(sns.timestamp.as_deref(), Some("2025-12-31T23:59:51.000Z"));
        assert_eq!(r.meta.receive_count, 1);
    }

    #[test]
    fn raw_record_is_not_mistaken_for_an_envelope() {
        // GIVEN a raw-delivery record whose payload happens to mention TopicArn
        let mut record = fixture("sqs-raw.json").records[0].clone();
        record.body =
            Some(r#"{"TopicArn":"x","Type":"order","order_id":"o-9","amount_cents":5}"#.into());

        // WHEN it is taken apart
        let r = received(record);

        // THEN it stays raw, and its task id comes from the attribute SNS copied onto the SQS layer
        assert!(r.meta.sns.is_none());
        assert_eq!(r.meta.task_id(), Some("task-2001"));
    }

    #[test]
    fn fifo_envelope_without_signature_and_with_cert_url_spelling_decodes() {
        // GIVEN envelopes lacking signature fields, and using either certificate spelling
        let fifo = r#"{"Type":"Notification","MessageId":"m-1","SequenceNumber":"1","TopicArn":"arn:aws:sns:us-east-1:123456789012:events.fifo","Message":"{\"order_id\":\"o-1\",\"amount_cents\":1}","Timestamp":"2026-11-21T10:00:00.000Z","UnsubscribeURL":"https://x"}"#;
        let lower = r#"{"Type":"Notification","MessageId":"m-2","TopicArn":"arn:aws:sns:us-east-1:123456789012:events","Message":"{}","Timestamp":"2026-11-21T10:00:00Z","SignatureVersion":"1","Signature":"abc","SigningCertUrl":"https://cert"}"#;

        // WHEN each is detected
        let a = SnsEnvelope::detect(fifo).expect("FIFO envelope detected");
        let b = SnsEnvelope::detect(lower).expect("SigningCertUrl envelope detected");

        // THEN both parse, with their optional fields as sent
        assert_eq!(a.sequence_number.as_deref(), Some("1"));
        assert_eq!(b.message_id, "m-2");
        assert!(
            SnsEnvelope::detect(&lower.replace("Notification", "SubscriptionConfirmation"))
                .is_none()
        );
        assert_eq!(
            parse_iso8601_ms("2026-11-21T10:00:00Z"),
            Some(1_795_255_200_000)
        );
    }

    #[test]
    fn undecodable_body_is_a_clear_error_for_that_record() {
        // GIVEN a record whose payload is not an Order
        let mut record = fixture("sqs-raw.json").records[0].clone();
        record.body = Some(r#"{"order_id": 17}"#.into());

        // WHEN decoded
        let err = received(record)
            .decode::<Order>()
            .expect_err("must not decode");

        // THEN the reason names the type and the serde error
        let text = err.to_string();
        assert!(text.contains("Order"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn missing_body_is_an_error_not_a_panic() {
        let mut record = fixture("sqs-raw.json").records[0].clone();
        record.body = None;
        assert!(matches!(
            received(record).decode::<Order>(),
            Err(DecodeError::MissingBody)
        ));
    }

    #[test]
    fn task_id_sources_parse_and_resolve() {
        // GIVEN a body-field source
        let source: TaskIdSource = "body:/order_id".parse().expect("valid source");
        let record = fixture("sqs-raw.json").records[0].clone();

        // WHEN the record is taken apart
        let r = Received::new(record, &source);

        // THEN the task id comes from the payload
        assert_eq!(r.meta.task_id(), Some("o-2001"));
        assert!("body:order_id".parse::<TaskIdSource>().is_err());
        assert!("attribute:".parse::<TaskIdSource>().is_err());
    }

    #[test]
    fn notification_prefix_is_recognised_in_any_spacing() {
        assert!(starts_as_notification(
            r#"{"Type":"Notification","MessageId":"x"}"#
        ));
        assert!(starts_as_notification(
            "{\n  \"Type\" : \"Notification\",\n"
        ));
        assert!(!starts_as_notification(
            r#"{"Type":"order","TopicArn":"x"}"#
        ));
        assert!(!starts_as_notification(
            r#"{"MessageId":"x","Type":"Notification"}"#
        ));
        // A reordered envelope is still found, by the slower scan.
        let reordered = r#"{"MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"{}","Type":"Notification"}"#;
        assert!(SnsEnvelope::detect(reordered).is_some());
    }

    #[test]
    fn traceparent_is_validated() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_traceparent("garbage"));
    }
}
