//! Which dead letters a replay selects.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::DeadLetter;
use mailroom_lambda::message::envelope_message;
use mailroom_lambda::sqs::OutgoingValue;

/// A conjunction of conditions; the default selects everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Attributes that must equal these values (String and Number attributes).
    pub attribute_equals: Vec<(String, String)>,
    /// Attributes that must be present.
    pub attribute_present: Vec<String>,
    /// JSON pointers into the payload (inside the SNS envelope, when there is one) and the
    /// values they must equal.
    pub body_equals: Vec<(String, Value)>,
    /// Only messages first sent longer ago than this.
    pub older_than: Option<Duration>,
    /// Only messages first sent more recently than this.
    pub newer_than: Option<Duration>,
    /// Only messages whose poison reason contains this text.
    pub reason_contains: Option<String>,
    /// Only these message ids.
    pub message_ids: Option<HashSet<String>>,
}

impl Filter {
    /// Whether `m` is selected, at `now_ms` (epoch milliseconds).
    pub fn matches(&self, m: &DeadLetter, now_ms: i64) -> bool {
        if self
            .message_ids
            .as_ref()
            .is_some_and(|ids| !ids.contains(&m.message_id))
        {
            return false;
        }
        let text = |name: &str| match m.attributes.get(name).map(|a| &a.value) {
            Some(OutgoingValue::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        if !self
            .attribute_present
            .iter()
            .all(|a| m.attributes.contains_key(a))
        {
            return false;
        }
        if !self
            .attribute_equals
            .iter()
            .all(|(k, v)| text(k) == Some(v.as_str()))
        {
            return false;
        }
        if let Some(needle) = &self.reason_contains
            && !m.reason().is_some_and(|r| r.contains(needle.as_str()))
        {
            return false;
        }
        let age = m
            .sent_at_ms
            .map(|t| Duration::from_millis(u64::try_from(now_ms - t).unwrap_or(0)));
        if self
            .older_than
            .is_some_and(|min| age.is_none_or(|a| a < min))
        {
            return false;
        }
        if self
            .newer_than
            .is_some_and(|max| age.is_none_or(|a| a > max))
        {
            return false;
        }
        if !self.body_equals.is_empty() {
            let Some(payload) = payload(&m.body) else {
                return false;
            };
            return self
                .body_equals
                .iter()
                .all(|(ptr, want)| payload.pointer(ptr) == Some(want));
        }
        true
    }
}

/// The payload as JSON: the SNS envelope's `Message` when enveloped, else the body.
fn payload(body: &str) -> Option<Value> {
    match envelope_message(body) {
        Some(message) => serde_json::from_str(&message).ok(),
        None => serde_json::from_str(body).ok(),
    }
}
