//! The poison path: the dead-letter copy of a record that will never succeed.
//!
//! The copy keeps the body byte for byte and every message attribute, and adds the reason
//! and the source queue as attributes, within SQS's limits of 10 attributes and the maximum
//! message size. User attributes are never dropped to make room: the reason is shortened
//! first, then the optional attributes go, and the reason always stays in the logs.

use std::collections::HashMap;

use aws_lambda_events::sqs::SqsMessageAttribute;

use crate::sqs::{MAX_MESSAGE_ATTRIBUTES, OutgoingAttribute, OutgoingMessage, OutgoingValue};

/// The attribute carrying why the engine dead-lettered a message.
pub const REASON_ATTRIBUTE: &str = "mailroom.reason";
/// The attribute carrying the ARN of the queue the message was dead-lettered from.
pub const SOURCE_ATTRIBUTE: &str = "mailroom.source";

/// What happened to the annotations when building the dead-letter copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotation {
    /// Reason and source attached.
    Full,
    /// The reason was shortened, or the source left out, to stay within the limits.
    Partial,
    /// No room: the message already had 10 attributes or was at the size limit.
    None,
}

/// Inputs for one dead-letter copy.
#[derive(Debug, Clone)]
pub(crate) struct PoisonCopy<'a> {
    /// Moved, not copied: the record is finished with it.
    pub(crate) body: String,
    pub(crate) attributes: &'a HashMap<String, SqsMessageAttribute>,
    pub(crate) reason: &'a str,
    pub(crate) source_arn: &'a str,
    pub(crate) message_id: Option<&'a str>,
    /// FIFO only: the record's group.
    pub(crate) group_id: Option<&'a str>,
    pub(crate) fifo: bool,
    pub(crate) max_bytes: usize,
}

impl PoisonCopy<'_> {
    /// Builds the message to send to the DLQ, and says how much annotation fit.
    pub(crate) fn build(self) -> (OutgoingMessage, Annotation) {
        let mut msg = OutgoingMessage {
            body: self.body,
            attributes: self
                .attributes
                .iter()
                .filter_map(|(name, a)| Some((name.clone(), from_lambda_attribute(a)?)))
                .collect(),
            ..OutgoingMessage::default()
        };
        if self.fifo {
            msg.group_id = Some(self.group_id.unwrap_or("mailroom-poison").to_owned());
            // Deterministic: a re-sent poison copy of the same delivery is deduplicated by SQS.
            // Without a message id there is nothing deterministic to use: no id is set, so a
            // FIFO DLQ without content-based deduplication refuses the send and the record is
            // left to redrive rather than risk two copies being taken for one.
            msg.deduplication_id = self.message_id.map(|id| format!("poison-{id}"));
        }

        let mut annotation = Annotation::Full;
        // Reason first: it is what the replay filter and the on-call engineer need.
        if msg.attributes.len() >= MAX_MESSAGE_ATTRIBUTES {
            return (msg, Annotation::None);
        }
        let fixed = REASON_ATTRIBUTE.len() + "String".len();
        let room = self.max_bytes.saturating_sub(msg.size() + fixed);
        if room == 0 {
            return (msg, Annotation::None);
        }
        let reason = truncate(self.reason, room);
        if reason.len() < self.reason.len() {
            annotation = Annotation::Partial;
        }
        msg.attributes.insert(
            REASON_ATTRIBUTE.to_owned(),
            OutgoingAttribute::string(reason),
        );

        let source = OutgoingAttribute::string(self.source_arn);
        if msg.attributes.len() < MAX_MESSAGE_ATTRIBUTES
            && msg.size() + SOURCE_ATTRIBUTE.len() + source.size() <= self.max_bytes
        {
            msg.attributes.insert(SOURCE_ATTRIBUTE.to_owned(), source);
        } else {
            annotation = Annotation::Partial;
        }
        (msg, annotation)
    }
}

/// Converts a Lambda-event attribute into one to send, keeping every type and custom subtype.
pub(crate) fn from_lambda_attribute(a: &SqsMessageAttribute) -> Option<OutgoingAttribute> {
    let data_type = a.data_type.clone().unwrap_or_else(|| "String".to_owned());
    let value = match (&a.string_value, &a.binary_value) {
        (Some(s), _) => OutgoingValue::Text(s.clone()),
        (None, Some(b)) => OutgoingValue::Binary(b.0.clone()),
        (None, None) => return None,
    };
    Some(OutgoingAttribute { data_type, value })
}

/// The longest prefix of `s` within `max` bytes, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::encodings::Base64Data;

    fn attr(value: &str) -> SqsMessageAttribute {
        let mut a = SqsMessageAttribute::default();
        a.string_value = Some(value.to_owned());
        a.data_type = Some("String".to_owned());
        a
    }

    fn letter<'a>(
        body: &str,
        attributes: &'a HashMap<String, SqsMessageAttribute>,
        reason: &'a str,
    ) -> PoisonCopy<'a> {
        PoisonCopy {
            body: body.to_owned(),
            attributes,
            reason,
            source_arn: "arn:aws:sqs:us-east-1:123456789012:orders",
            message_id: Some("m-1"),
            group_id: None,
            fifo: false,
            max_bytes: crate::sqs::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    #[test]
    fn keeps_body_and_every_attribute_type_and_adds_reason_and_source() {
        // GIVEN a message with string, custom number and binary attributes
        let mut attrs = HashMap::new();
        attrs.insert("kind".to_owned(), attr("order.placed"));
        let mut num = attr("12.5");
        num.data_type = Some("Number.float".to_owned());
        attrs.insert("amount".to_owned(), num);
        let mut bin = SqsMessageAttribute::default();
        let mut data = Base64Data::default();
        data.extend_from_slice(&[0, 159, 255]);
        bin.binary_value = Some(data);
        bin.data_type = Some("Binary.gzip".to_owned());
        attrs.insert("blob".to_owned(), bin);

        // WHEN the dead-letter copy is built
        let (msg, ann) = letter("{\"a\":1}", &attrs, "amount must be positive").build();

        // THEN nothing is lost and the reason travels with it
        assert_eq!(ann, Annotation::Full);
        assert_eq!(msg.body, "{\"a\":1}");
        assert_eq!(msg.attributes.len(), 5);
        assert_eq!(msg.attributes["amount"].data_type, "Number.float");
        assert_eq!(
            msg.attributes["blob"].value,
            OutgoingValue::Binary(vec![0, 159, 255])
        );
        assert_eq!(
            msg.attributes[REASON_ATTRIBUTE].value,
            OutgoingValue::Text("amount must be positive".into())
        );
        assert!(msg.group_id.is_none() && msg.deduplication_id.is_none());
    }

    #[test]
    fn nine_attributes_leave_room_for_the_reason_only() {
        let attrs: HashMap<_, _> = (0..9).map(|i| (format!("a{i}"), attr("v"))).collect();
        let (msg, ann) = letter("b", &attrs, "bad").build();
        assert_eq!(ann, Annotation::Partial);
        assert_eq!(msg.attributes.len(), MAX_MESSAGE_ATTRIBUTES);
        assert!(msg.attributes.contains_key(REASON_ATTRIBUTE));
        assert!(!msg.attributes.contains_key(SOURCE_ATTRIBUTE));
    }

    #[test]
    fn ten_attributes_are_all_kept_and_nothing_is_added() {
        let attrs: HashMap<_, _> = (0..10).map(|i| (format!("a{i}"), attr("v"))).collect();
        let (msg, ann) = letter("b", &attrs, "bad").build();
        assert_eq!(ann, Annotation::None);
        assert_eq!(msg.attributes.len(), 10);
        assert!(!msg.attributes.contains_key(REASON_ATTRIBUTE));
    }

    #[test]
    fn reason_is_shortened_to_fit_the_size_limit() {
        // GIVEN a body just under the limit and a long multi-byte reason
        let attrs = HashMap::new();
        let max = 1000;
        let body = "x".repeat(max - REASON_ATTRIBUTE.len() - "String".len() - 10);
        let reason = "é".repeat(100);
        let mut l = letter(&body, &attrs, &reason);
        l.max_bytes = max;

        // WHEN built
        let (msg, ann) = l.build();

        // THEN it fits, the reason is cut on a character boundary, and the source is left out
        assert_eq!(ann, Annotation::Partial);
        assert!(msg.size() <= max, "{} > {max}", msg.size());
        let OutgoingValue::Text(r) = &msg.attributes[REASON_ATTRIBUTE].value else {
            panic!("reason is text")
        };
        assert_eq!(r.len(), 10);
    }

    #[test]
    fn body_at_the_limit_gets_no_annotation() {
        let attrs = HashMap::new();
        let body = "x".repeat(100);
        let mut l = letter(&body, &attrs, "bad");
        l.max_bytes = 100;
        let (msg, ann) = l.build();
        assert_eq!(ann, Annotation::None);
        assert_eq!(msg.body.len(), 100);
    }

    #[test]
    fn fifo_copy_keeps_the_group_and_has_a_deterministic_dedup_id() {
        let attrs = HashMap::new();
        let mut l = letter("b", &attrs, "bad");
        l.fifo = true;
        l.group_id = Some("customer-7");
        let (a, _) = l.clone().build();
        let (b, _) = l.build();
        assert_eq!(a.group_id.as_deref(), Some("customer-7"));
        assert_eq!(a.deduplication_id.as_deref(), Some("poison-m-1"));
        assert_eq!(a.deduplication_id, b.deduplication_id);
    }
}
