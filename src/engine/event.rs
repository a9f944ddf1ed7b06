//! The invocation's event, taken apart record by record from its raw JSON.
//!
//! Lambda's runtime would otherwise deserialise the whole event into `SqsEvent` at once, and a
//! single record with a bad field (a `binaryValue` that is not base64, a number where a string
//! belongs) would fail the invocation before the engine runs, sending every good record of the
//! batch back with it. Here only the event's outer shape must parse; each record is decoded on
//! its own, and one that does not decode is reported failed by its `messageId`.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One record of the event, as it arrived.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "the large variant is the common one; boxing it would allocate once per record"
)]
pub enum Incoming {
    /// A well-formed SQS record.
    Record(SqsMessage),
    /// A record that does not decode as an SQS record.
    Malformed {
        /// Its `messageId`, when that much can be read: the engine reports it failed by it.
        message_id: Option<String>,
        /// Its `eventSourceARN`, when that much can be read.
        event_source_arn: Option<String>,
        /// Why it does not decode.
        reason: String,
    },
}

impl Incoming {
    /// The record's `eventSourceARN`, whichever shape it arrived in.
    pub(crate) fn event_source_arn(&self) -> Option<&str> {
        match self {
            Self::Record(r) => r.event_source_arn.as_deref(),
            Self::Malformed {
                event_source_arn, ..
            } => event_source_arn.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<&'a RawValue>,
}

/// Takes an SQS event apart from its JSON text, record by record.
///
/// # Errors
/// Only when the text is not an object with a `Records` array: then no record can be named.
pub(crate) fn parse(json: &str) -> Result<Vec<Incoming>, serde_json::Error> {
    let event: RawEvent<'_> = serde_json::from_str(json)?;
    Ok(event.records.into_iter().map(record).collect())
}

fn record(raw: &RawValue) -> Incoming {
    match serde_json::from_str::<SqsMessage>(raw.get()) {
        Ok(record) => Incoming::Record(record),
        Err(e) => {
            // Rare: read what identifies the record leniently, field by field.
            let value: Value = serde_json::from_str(raw.get()).unwrap_or_default();
            let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
            Incoming::Malformed {
                message_id: text("messageId"),
                event_source_arn: text("eventSourceARN"),
                reason: e.to_string(),
            }
        }
    }
}

/// Every record of an already decoded event.
pub(crate) fn from_event(event: SqsEvent) -> Vec<Incoming> {
    event.records.into_iter().map(Incoming::Record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_field_makes_one_malformed_record_and_the_others_decode() {
        // GIVEN Powertools' sample shape: a binary attribute whose value is not base64
        let json = r#"{"Records": [
            {"messageId": "good-1", "body": "{}", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"},
            {"messageId": "bad", "body": "{}", "messageAttributes": {"a": {"binaryValue": "base64Str", "dataType": "Binary"}}},
            {"messageId": 7, "body": "{}"},
            {"messageId": "good-2", "body": "{}"}
        ]}"#;

        // WHEN it is taken apart
        let records = parse(json).expect("the outer shape parses");

        // THEN the good records decode, the bad one keeps its id, the id-less one has none
        assert_eq!(records.len(), 4);
        assert!(
            matches!(&records[0], Incoming::Record(r) if r.message_id.as_deref() == Some("good-1"))
        );
        assert!(
            matches!(&records[1], Incoming::Malformed { message_id: Some(id), .. } if id == "bad")
        );
        assert!(matches!(
            &records[2],
            Incoming::Malformed {
                message_id: None,
                ..
            }
        ));
        assert!(matches!(&records[3], Incoming::Record(_)));
        assert!(parse(r#"{"Records": 3}"#).is_err());
        assert!(parse("not json").is_err());
    }
}
