//! The publisher: events to the topic, each with a task id that survives retries.
//!
//! A producer's retry must never become a second side effect. SNS gives every accepted publish
//! a new MessageId, so a `PublishBatch` whose answer was lost and which the SDK (or the caller)
//! sends again arrives as two messages. The publisher therefore gives each event a **task id**
//! before the first attempt (the caller's idempotency key, or one drawn once) and sends it as
//! the `task_id` message attribute with every attempt; consumers' ledgers key on it
//! ([`TaskIdSource::default`](crate::message::TaskIdSource)), so both copies are one task.
//!
//! Events go out in `PublishBatch` calls of ten; only the entries SNS did not accept are sent
//! again, with the same ids. An event over the topic's size limit, or with characters SQS
//! refuses, is refused before anything is sent.

use std::time::Duration;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use crate::message::TASK_ID_ATTRIBUTE;

/// The attribute naming an event's kind (what subscriptions' filter policies match).
pub const KIND_ATTRIBUTE: &str = "kind";
/// The attribute naming the tenant an event belongs to.
pub const TENANT_ATTRIBUTE: &str = "tenant";
/// The W3C trace context of the publish, carried to every consumer.
pub const TRACEPARENT_ATTRIBUTE: &str = "traceparent";
/// SNS's limit on a message, its attributes included: 256 KiB.
pub const SNS_MAX_MESSAGE_BYTES: usize = 262_144;
/// A `PublishBatch` holds at most ten entries.
const BATCH: usize = 10;

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    task_id: String,
    kind: String,
    payload: String,
    tenant: Option<String>,
    traceparent: Option<String>,
    group_id: Option<String>,
    attributes: Vec<(String, String)>,
}

impl Event {
    /// An event of `kind` whose payload is `payload` serialised as JSON, with a task id drawn
    /// now, once: every attempt to publish this value carries it.
    ///
    /// # Errors
    /// When `payload` does not serialise.
    pub fn new(
        kind: impl Into<String>,
        payload: &impl serde::Serialize,
    ) -> Result<Self, PublishError> {
        let payload =
            serde_json::to_string(payload).map_err(|e| PublishError::Encode(e.to_string()))?;
        Ok(Self::from_json(kind, payload))
    }

    /// An event of `kind` whose payload is already JSON text, with a task id drawn now.
    pub fn from_json(kind: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            task_id: new_task_id(),
            kind: kind.into(),
            payload: payload.into(),
            tenant: None,
            traceparent: None,
            group_id: None,
            attributes: Vec::new(),
        }
    }

    /// Uses the caller's idempotency key as the task id: publishing the same key twice is
    /// one task to every consumer.
    #[must_use]
    pub fn with_task_id(mut self, task_id: impl Into<String>) -> Self {
        self.task_id = task_id.into();
        self
    }

    /// The tenant the event belongs to.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The W3C `traceparent` of the producer's span.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The message group, for FIFO topics (required there).
    #[must_use]
    pub fn with_group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Another String message attribute, for subscriptions' filter policies.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }

    /// The task id every attempt carries.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The event's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The payload, as JSON text.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// The message attributes as published: `task_id`, `kind`, then the optional ones.
    pub fn message_attributes(&self) -> Vec<(&str, &str)> {
        let mut all = vec![
            (TASK_ID_ATTRIBUTE, self.task_id.as_str()),
            (KIND_ATTRIBUTE, self.kind.as_str()),
        ];
        if let Some(t) = &self.tenant {
            all.push((TENANT_ATTRIBUTE, t));
        }
        if let Some(t) = &self.traceparent {
            all.push((TRACEPARENT_ATTRIBUTE, t));
        }
        all.extend(
            self.attributes
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        all
    }

    /// The size SNS counts against its limit: the message, and each attribute's name, type
    /// (`String`) and value.
    pub fn size(&self) -> usize {
        self.payload.len()
            + self
                .message_attributes()
                .iter()
                .map(|(n, v)| n.len() + "String".len() + v.len())
                .sum::<usize>()
    }

    /// Whether SNS (and the SQS queues behind it) would take this event.
    ///
    /// # Errors
    /// The first rule it breaks: an empty task id or kind, a size over `limit`, a character
    /// SQS refuses, or a FIFO topic without a group.
    pub fn check(&self, limit: usize, fifo: bool) -> Result<(), PublishError> {
        if self.task_id.is_empty() {
            return Err(PublishError::Invalid("the task id is empty".into()));
        }
        if self.kind.is_empty() {
            return Err(PublishError::Invalid("the kind is empty".into()));
        }
        let size = self.size();
        if size > limit {
            return Err(PublishError::TooLarge { size, limit });
        }
        let texts = std::iter::once(("the payload", self.payload.as_str())).chain(
            self.message_attributes()
                .into_iter()
                .map(|(_, v)| ("an attribute", v)),
        );
        for (what, text) in texts {
            if let Some((at, c)) = text
                .char_indices()
                .find(|(_, c)| !crate::sqs::sqs_accepts(*c))
            {
                return Err(PublishError::Invalid(format!(
                    "{what} holds U+{:04X} at byte {at}, which SQS refuses",
                    u32::from(c)
                )));
            }
        }
        if fifo && self.group_id.is_none() {
            return Err(PublishError::Invalid(
                "a FIFO topic needs a message group id".into(),
            ));
        }
        Ok(())
    }

    fn entry(&self, id: usize, fifo: bool) -> Result<PublishBatchRequestEntry, PublishError> {
        let mut entry = PublishBatchRequestEntry::builder()
            .id(id.to_string())
            .message(&self.payload);
        for (name, value) in self.message_attributes() {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PublishError::Invalid(e.to_string()))?;
            entry = entry.message_attributes(name, value);
        }
        if fifo {
            // SNS FIFO drops a second publish of the same task within its five-minute window.
            entry = entry
                .set_message_group_id(self.group_id.clone())
                .message_deduplication_id(&self.task_id);
        } else if let Some(tenant) = &self.tenant {
            // On a standard topic the tenant is the message group: SNS passes it to the
            // subscribed queues, and SQS fair queues keep one tenant's burst from delaying
            // the others' messages.
            entry = entry.message_group_id(tenant);
        }
        entry
            .build()
            .map_err(|e| PublishError::Invalid(e.to_string()))
    }
}

/// A fresh task id: a random UUID, drawn once per event.
pub fn new_task_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Why an event was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Over the topic's size limit; nothing was sent.
    #[error(
        "the event is {size} bytes with its attributes, over the topic's limit of {limit} bytes"
    )]
    TooLarge {
        /// The event's size as SNS counts it.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The event breaks a rule of SNS or SQS; nothing was sent.
    #[error("the event is not valid: {0}")]
    Invalid(String),
    /// The payload did not serialise.
    #[error("the payload does not serialise as JSON: {0}")]
    Encode(String),
    /// The payload breaks its kind's JSON Schema; nothing was sent.
    #[error("the payload does not match the schema of `{kind}`: {}", violations.join("; "))]
    Schema {
        /// The event kind.
        kind: String,
        /// Each violation, as `<JSON pointer>: <what is wrong>`.
        violations: Vec<String>,
    },
    /// No schema for the event's kind, where the publisher checks schemas.
    #[error("no schema for the event kind `{0}`")]
    UnknownKind(String),
    /// SNS refused it for good (validation, access, a missing topic).
    #[error("SNS refused it: {0}")]
    Refused(String),
    /// SNS did not take it after every attempt; publishing it again is safe (same task id).
    #[error("SNS did not take it after {attempts} attempts: {message}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
}

impl PublishError {
    /// Whether publishing the same event again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// An event SNS accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// Its position in the input.
    pub index: usize,
    /// The task id it carries.
    pub task_id: String,
    /// The MessageId SNS gave the accepted attempt.
    pub message_id: String,
}

/// An event SNS did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPublished {
    /// Its position in the input.
    pub index: usize,
    /// The task id it carries.
    pub task_id: String,
    /// Why.
    pub error: PublishError,
}

/// What a [`Publisher::publish`] call did, event by event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Accepted, in input order.
    pub published: Vec<Published>,
    /// Not accepted, in input order.
    pub failed: Vec<NotPublished>,
    /// `PublishBatch` calls made, retries included.
    pub calls: u32,
}

/// Publishes [`Event`]s to one topic.
#[derive(Debug, Clone)]
pub struct Publisher {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    fifo: bool,
    max_bytes: usize,
    attempts: u32,
    backoff: Duration,
    #[cfg(feature = "schemas")]
    schemas: Option<std::sync::Arc<crate::schema::Schemas>>,
}

impl Publisher {
    /// A publisher to `topic_arn` (a FIFO topic if it ends in `.fifo`).
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        let topic_arn = topic_arn.into();
        Self {
            sns,
            fifo: topic_arn.ends_with(".fifo"),
            topic_arn,
            max_bytes: SNS_MAX_MESSAGE_BYTES,
            attempts: 5,
            backoff: Duration::from_millis(100),
            #[cfg(feature = "schemas")]
            schemas: None,
        }
    }

    /// Checks every payload against its kind's schema before sending; a kind without one is
    /// refused.
    #[cfg(feature = "schemas")]
    #[must_use]
    pub fn with_schemas(mut self, schemas: std::sync::Arc<crate::schema::Schemas>) -> Self {
        self.schemas = Some(schemas);
        self
    }

    /// Another size limit (a topic may not take SNS's whole 256 KiB, for instance when its
    /// queues' `MaximumMessageSize` is smaller).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How many times an entry is sent before it is reported `Unavailable`, and the first
    /// pause between attempts (doubled each time, with jitter).
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The topic.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The size limit events are checked against.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Checks an event against this topic's rules without sending it.
    ///
    /// # Errors
    /// As [`Event::check`].
    pub fn check(&self, event: &Event) -> Result<(), PublishError> {
        event.check(self.max_bytes, self.fifo)?;
        #[cfg(feature = "schemas")]
        if let Some(schemas) = &self.schemas {
            let payload: serde_json::Value = serde_json::from_str(&event.payload)
                .map_err(|e| PublishError::Invalid(format!("the payload is not JSON: {e}")))?;
            match schemas.check(&event.kind, &payload) {
                None => return Err(PublishError::UnknownKind(event.kind.clone())),
                Some(v) if !v.is_empty() => {
                    return Err(PublishError::Schema {
                        kind: event.kind.clone(),
                        violations: v.iter().map(ToString::to_string).collect(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Publishes `events` in batches of ten. Entries SNS did not take for a transient reason
    /// are sent again, alone, with the same task ids; every event ends in the report either
    /// published or failed with its reason.
    pub async fn publish(&self, events: &[Event]) -> PublishReport {
        let mut report = PublishReport::default();
        let mut valid = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            match self.check(event) {
                Ok(()) => valid.push(index),
                Err(error) => report.failed.push(NotPublished {
                    index,
                    task_id: event.task_id.clone(),
                    error,
                }),
            }
        }
        for chunk in valid.chunks(BATCH) {
            self.publish_chunk(events, chunk, &mut report).await;
        }
        report.published.sort_by_key(|p| p.index);
        report.failed.sort_by_key(|f| f.index);
        report
    }

    async fn publish_chunk(&self, events: &[Event], chunk: &[usize], report: &mut PublishReport) {
        let mut pending: Vec<usize> = chunk.to_vec();
        let mut last_error = String::new();
        let mut rng = fastrand::Rng::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                let base = self.backoff.saturating_mul(1 << attempt.min(10));
                tokio::time::sleep(base / 2 + base.mul_f64(rng.f64() / 2.0)).await;
            }
            let mut request = self.sns.publish_batch().topic_arn(&self.topic_arn);
            for &index in &pending {
                match events[index].entry(index, self.fifo) {
                    Ok(entry) => request = request.publish_batch_request_entries(entry),
                    Err(error) => report.failed.push(NotPublished {
                        index,
                        task_id: events[index].task_id.clone(),
                        error,
                    }),
                }
            }
            pending.retain(|i| !report.failed.iter().any(|f| f.index == *i));
            if pending.is_empty() {
                return;
            }
            report.calls += 1;
            let out = match request.send().await {
                Ok(out) => out,
                Err(e) => {
                    last_error = crate::error::describe(&e);
                    if crate::error::classify(&e) == crate::error::Retry::Permanent {
                        for &index in &pending {
                            report.failed.push(NotPublished {
                                index,
                                task_id: events[index].task_id.clone(),
                                error: PublishError::Refused(last_error.clone()),
                            });
                        }
                        return;
                    }
                    tracing::warn!(attempt, error = %last_error, entries = pending.len(), "PublishBatch failed; sending again with the same task ids");
                    continue;
                }
            };
            for ok in out.successful() {
                let Some(index) = ok.id().and_then(|id| id.parse::<usize>().ok()) else {
                    continue;
                };
                report.published.push(Published {
                    index,
                    task_id: events[index].task_id.clone(),
                    message_id: ok.message_id().unwrap_or_default().to_owned(),
                });
            }
            let mut again = Vec::new();
            for f in out.failed() {
                let Ok(index) = f.id().parse::<usize>() else {
                    continue;
                };
                let message = format!("{}: {}", f.code(), f.message().unwrap_or_default());
                if f.sender_fault() {
                    report.failed.push(NotPublished {
                        index,
                        task_id: events[index].task_id.clone(),
                        error: PublishError::Refused(message),
                    });
                } else {
                    last_error = message;
                    again.push(index);
                }
            }
            if again.is_empty() {
                return;
            }
            pending = again;
        }
        for index in pending {
            report.failed.push(NotPublished {
                index,
                task_id: events[index].task_id.clone(),
                error: PublishError::Unavailable {
                    attempts: self.attempts,
                    message: last_error.clone(),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_draws_its_own_task_id_once() {
        let a = Event::from_json("order.placed", "{}");
        let b = Event::from_json("order.placed", "{}");
        assert_ne!(a.task_id(), b.task_id());
        let again = a.clone();
        assert_eq!(
            again.task_id(),
            a.task_id(),
            "a retry of the same value keeps its id"
        );
        assert_eq!(
            Event::from_json("k", "{}").with_task_id("key-1").task_id(),
            "key-1"
        );
    }

    #[test]
    fn the_task_id_and_kind_travel_as_attributes() {
        let e = Event::from_json("order.placed", r#"{"a":1}"#)
            .with_task_id("t-1")
            .with_tenant("acme")
            .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let attrs = e.message_attributes();
        assert_eq!(attrs[0], ("task_id", "t-1"));
        assert_eq!(attrs[1], ("kind", "order.placed"));
        assert!(attrs.contains(&("tenant", "acme")));
        assert_eq!(attrs.len(), 4);
    }

    #[test]
    fn an_event_over_the_limit_is_refused_with_the_limit_in_the_message() {
        let e = Event::from_json("k", "x".repeat(1000)).with_task_id("t");
        let err = e
            .check(1000, false)
            .expect_err("over the limit with its attributes");
        let PublishError::TooLarge { size, limit } = &err else {
            panic!("{err}");
        };
        assert_eq!(*limit, 1000);
        assert_eq!(*size, 1000 + "task_id".len() + 6 + 1 + "kind".len() + 6 + 1);
        assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
        assert!(e.check(SNS_MAX_MESSAGE_BYTES, false).is_ok());
    }

    #[test]
    fn characters_sqs_refuses_and_missing_groups_are_refused_before_sending() {
        let nul = Event::from_json("k", "{\"a\":\"\u{0}\"}");
        assert!(
            matches!(nul.check(SNS_MAX_MESSAGE_BYTES, false), Err(PublishError::Invalid(m)) if m.contains("U+0000"))
        );
        let fffe = Event::from_json("k", "{}").with_tenant("a\u{FFFE}");
        assert!(fffe.check(SNS_MAX_MESSAGE_BYTES, false).is_err());
        let plain = Event::from_json("k", "{}");
        assert!(plain.check(SNS_MAX_MESSAGE_BYTES, true).is_err());
        assert!(
            plain
                .clone()
                .with_group_id("g")
                .check(SNS_MAX_MESSAGE_BYTES, true)
                .is_ok()
        );
        assert!(
            Event::from_json("", "{}")
                .check(SNS_MAX_MESSAGE_BYTES, false)
                .is_err()
        );
    }
}
