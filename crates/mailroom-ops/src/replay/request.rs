//! The JSON form of a replay request, as the `dlq-replay` function receives it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{Filter, ReplayRequest};
use mailroom_lambda::backoff::BackoffPolicy;
use mailroom_lambda::sqs::QueueUrl;

/// A replay request as JSON. Every field but `source` is optional.
///
/// ```json
/// {"source": "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq",
///  "filter": {"reason_contains": "decode", "attribute_equals": {"kind": "order.placed"}},
///  "max_messages": 100, "dry_run": true, "rate_per_sec": 50}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestJson {
    /// The DLQ's URL.
    pub source: String,
    /// The target queue's URL; default: the DLQ's only source queue.
    #[serde(default)]
    pub target: Option<String>,
    /// The parking lot's URL.
    #[serde(default)]
    pub parking_lot: Option<String>,
    /// Selection.
    #[serde(default)]
    pub filter: FilterJson,
    /// At most this many messages.
    #[serde(default)]
    pub max_messages: Option<usize>,
    /// Report only.
    #[serde(default)]
    pub dry_run: bool,
    /// Messages a second, at most.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    /// Replays before parking (default 3).
    #[serde(default)]
    pub max_replays: Option<u32>,
    /// Delay re-sent messages: `{"base_secs": 2, "max_secs": 900}`.
    #[serde(default)]
    pub backoff: Option<BackoffJson>,
    /// How long messages looked at and not moved stay hidden, in seconds (default: the time
    /// budget plus a minute).
    #[serde(default)]
    pub hold_secs: Option<u64>,
    /// Pipelines at once on a standard DLQ without `max_messages` (default 8, at most 16).
    #[serde(default)]
    pub pipelines: Option<usize>,
}

/// The filter as JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterJson {
    /// Attribute name → required value.
    #[serde(default)]
    pub attribute_equals: BTreeMap<String, String>,
    /// Attributes that must be present.
    #[serde(default)]
    pub attribute_present: Vec<String>,
    /// JSON pointer → required value, in the payload.
    #[serde(default)]
    pub body_equals: BTreeMap<String, Value>,
    /// Only messages older than this many seconds.
    #[serde(default)]
    pub older_than_secs: Option<u64>,
    /// Only messages newer than this many seconds.
    #[serde(default)]
    pub newer_than_secs: Option<u64>,
    /// Only messages whose poison reason contains this.
    #[serde(default)]
    pub reason_contains: Option<String>,
    /// Only these message ids.
    #[serde(default)]
    pub message_ids: Vec<String>,
}

/// Backoff for re-sent messages.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffJson {
    /// Base delay in seconds.
    pub base_secs: u64,
    /// Cap in seconds (SQS allows 900 at most).
    pub max_secs: u64,
}

impl RequestJson {
    /// The request, with URLs checked.
    ///
    /// # Errors
    /// When a URL does not parse or a pointer does not start with `/`.
    pub fn into_request(self) -> Result<ReplayRequest, String> {
        let url = |u: String| u.parse::<QueueUrl>();
        if let Some(bad) = self.filter.body_equals.keys().find(|p| !p.starts_with('/')) {
            return Err(format!(
                "body_equals key `{bad}` is not a JSON pointer (/field)"
            ));
        }
        let mut r = ReplayRequest::new(url(self.source)?);
        r.target = self.target.map(url).transpose()?;
        r.parking_lot = self.parking_lot.map(url).transpose()?;
        r.max_messages = self.max_messages;
        r.dry_run = self.dry_run;
        r.rate_per_sec = self.rate_per_sec;
        r.hold = self.hold_secs.map(Duration::from_secs);
        match self.pipelines {
            Some(n) if !(1..=16).contains(&n) => {
                return Err(format!("pipelines: {n} is not from 1 to 16"));
            }
            Some(n) => r.pipelines = n,
            None => {}
        }
        if let Some(m) = self.max_replays {
            r.max_replays = m;
        }
        r.backoff = self.backoff.map(|b| {
            BackoffPolicy::new(
                Duration::from_secs(b.base_secs),
                Duration::from_secs(b.max_secs.min(900)),
            )
        });
        let f = self.filter;
        r.filter = Filter {
            attribute_equals: f.attribute_equals.into_iter().collect(),
            attribute_present: f.attribute_present,
            body_equals: f.body_equals.into_iter().collect(),
            older_than: f.older_than_secs.map(Duration::from_secs),
            newer_than: f.newer_than_secs.map(Duration::from_secs),
            reason_contains: f.reason_contains,
            message_ids: (!f.message_ids.is_empty())
                .then(|| f.message_ids.into_iter().collect::<HashSet<_>>()),
        };
        Ok(r)
    }
}
