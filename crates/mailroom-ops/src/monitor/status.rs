//! The status API, independent of how requests arrive (a Lambda Function URL in AWS, a
//! loopback HTTP server locally):
//!
//! * `GET /tasks/{id}`: one task's state, attempts and last error per consumer; what a
//!   producer polls.
//! * `GET /tasks?bucket=over-45m`: the open pairs in one bucket. `GET /tasks`: every bucket.
//! * `GET /dlqs`: each watched DLQ's depth, growth and sample reasons.

use serde::Serialize;
use serde_json::{Value, json};

use super::Monitor;
use mailroom_lambda::ledger::{Entry, State};

/// One task across its consumers.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// The task id.
    pub task_id: String,
    /// `SUCCEEDED` when every consumer succeeded, `PARKED` when any gave up and the rest
    /// succeeded, else `OPEN`.
    pub status: &'static str,
    /// Per consumer.
    pub consumers: Vec<Entry>,
}

impl TaskStatus {
    /// Sums up per-consumer entries.
    pub fn of(task_id: &str, consumers: Vec<Entry>) -> Self {
        let status = if consumers.iter().any(|e| e.state.is_open()) {
            "OPEN"
        } else if consumers.iter().any(|e| e.state == State::Parked) {
            "PARKED"
        } else {
            "SUCCEEDED"
        };
        Self {
            task_id: task_id.to_owned(),
            status,
            consumers,
        }
    }
}

/// An HTTP answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    reply(status, json!({ "error": message.into() }))
}

/// The value of `name` in a query string (`a=1&b=2`), percent-decoding `%2D`-style escapes.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers one request. Failures of the ledger or SQS are a 502 naming the cause; nothing
/// here panics on input.
pub async fn route(monitor: &Monitor, method: &str, path: &str, query: &str) -> Reply {
    if !method.eq_ignore_ascii_case("GET") {
        return error(
            405,
            format!("{method} is not allowed; this API is read-only"),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["tasks", id] if !id.is_empty() => {
            let id = percent_decode(id);
            if id.starts_with('#') {
                return error(404, "no such task");
            }
            match monitor.ledger().task(&id).await {
                Ok(entries) if entries.is_empty() => {
                    error(404, format!("no task {id} in the ledger"))
                }
                Ok(entries) => reply(200, json!(TaskStatus::of(&id, entries))),
                Err(e) => error(502, e.to_string()),
            }
        }
        ["tasks"] => {
            let wanted = query_param(query, "bucket");
            let names = monitor.config().bucket_names();
            if let Some(w) = wanted.as_ref().filter(|w| !names.contains(w)) {
                return error(
                    400,
                    format!("unknown bucket `{w}`; buckets are {}", names.join(", ")),
                );
            }
            match monitor.buckets().await {
                Ok(buckets) => {
                    let chosen: Vec<_> = buckets
                        .into_iter()
                        .filter(|b| wanted.as_ref().is_none_or(|w| *w == b.name))
                        .collect();
                    reply(200, json!({ "buckets": chosen }))
                }
                Err(e) => error(502, e.to_string()),
            }
        }
        ["dlqs"] => match monitor.dlqs().await {
            Ok(dlqs) => reply(200, json!({ "dlqs": dlqs })),
            Err(e) => error(502, e.to_string()),
        },
        _ => error(
            404,
            format!("no route for {path}; try /tasks/{{id}}, /tasks?bucket=…, /dlqs"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&bucket=over%2D45m", "bucket").as_deref(),
            Some("over-45m")
        );
        assert_eq!(query_param("bucket", "bucket").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "bucket"), None);
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("t%C3%A9%"), "té%");
    }

    #[test]
    fn a_task_is_done_only_when_every_consumer_is() {
        let e = |state| Entry {
            task_id: "t".into(),
            consumer: "c".into(),
            state,
            attempts: 1,
            last_error: None,
            opened_at_ms: 0,
            updated_at_ms: 0,
            lease_until_ms: None,
        };
        assert_eq!(
            TaskStatus::of("t", vec![e(State::Succeeded), e(State::Failed)]).status,
            "OPEN"
        );
        assert_eq!(
            TaskStatus::of("t", vec![e(State::Succeeded), e(State::Parked)]).status,
            "PARKED"
        );
        assert_eq!(
            TaskStatus::of("t", vec![e(State::Succeeded)]).status,
            "SUCCEEDED"
        );
    }
}
