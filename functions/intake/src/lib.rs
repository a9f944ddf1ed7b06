//! The intake: the producer's door. `POST /events/{kind}` validates the event against its
//! kind's JSON Schema, records the task as ACCEPTED in the ledger (one conditional write on
//! the task id), publishes it with that task id, and answers `202 Accepted` with where to
//! follow it, at once. `GET /tasks/{id}` answers where the task stands, from the same code as
//! the task monitor's status API.
//!
//! * **Idempotency**: with an `Idempotency-Key` header the task id is the key (prefixed by the
//!   tenant, `acme:order-1`), so a retried request, whatever happened to the first, is the
//!   same task: the same body gets the same 202, another body is `409`. A retry publishes
//!   again only while no consumer has the task yet (its first attempt may have failed before
//!   SNS took it); a copy that does go out carries the same task id, which consumers key on.
//!   Without a key every request is a new task.
//! * **Bad input** gets a precise 4xx and nothing is published: `400` (invalid key, tenant,
//!   callback URL, or the schema's violations by path), `404` (unknown kind or route), `405`,
//!   `413` (over the topic's size limit), `415` (not JSON). A client error is never a 500;
//!   the intake's own trouble (the ledger or SNS unreachable) is `503` with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine as _;
use mailroom_lambda::ledger::{Acceptance, Accepted, Ledger};
use mailroom_lambda::publish::{Event, PublishError, Publisher};
use mailroom_lambda::schema::Schemas;
use mailroom_ops::monitor::status::{Reply, error, percent_decode, task_reply};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod openapi;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}

/// The header carrying the producer's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header naming the tenant the event belongs to.
pub const TENANT: &str = "mailroom-tenant";
/// The header carrying the URL to call when the task is done.
pub const CALLBACK_URL: &str = "mailroom-callback-url";
/// Longest idempotency key or tenant accepted.
const MAX_KEY: usize = 200;

/// The schemas built into this binary, from `schemas/`.
///
/// # Errors
/// When a schema is not valid (a build from a broken `schemas/`).
pub fn embedded_schemas() -> Result<Schemas, mailroom_lambda::schema::SchemaError> {
    Schemas::from_documents(embedded::SCHEMAS)
}

/// One HTTP request, however it arrived (a Function URL event in AWS, loopback locally).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The headers (names lowercase).
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// `scheme://host` the client called, for the status URL.
    pub base_url: String,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers (`Location`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Value,
}

impl From<Reply> for Response {
    fn from(r: Reply) -> Self {
        Self {
            status: r.status,
            headers: Vec::new(),
            body: r.body,
        }
    }
}

fn fail(status: u16, message: impl Into<String>) -> Response {
    error(status, message).into()
}

/// The intake, built once at cold start.
#[derive(Debug)]
pub struct Intake {
    ledger: Ledger,
    publisher: Publisher,
    schemas: Arc<Schemas>,
    /// Back-pressure: refuse new work with 429 while the consumers' backlog is older.
    slo: Option<Duration>,
    /// The backlog's age as last read, and when it was read.
    backlog: std::sync::Mutex<Option<(Instant, Option<Duration>)>>,
    /// Whether a request is reading the backlog now (the others use the last reading).
    reading_backlog: std::sync::atomic::AtomicBool,
}

/// How long a reading of the backlog is used before it is read again.
const BACKLOG_TTL: Duration = Duration::from_secs(5);

impl Intake {
    /// An intake recording in `ledger` and publishing with `publisher` (whose size limit is
    /// the intake's), validating against `schemas`.
    pub fn new(ledger: Ledger, publisher: Publisher, schemas: Arc<Schemas>) -> Self {
        Self {
            ledger,
            publisher,
            schemas,
            slo: None,
            backlog: std::sync::Mutex::new(None),
            reading_backlog: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Answers `429 Too Many Requests` with `Retry-After` while the oldest task waiting for a
    /// consumer (the ledger's oldest `RECEIVED` pair) is older than `slo`: load levelling at
    /// the door, before the queues grow further.
    #[must_use]
    pub fn with_backpressure(mut self, slo: Duration) -> Self {
        self.slo = Some(slo);
        self
    }

    /// The age of the consumers' backlog (the ledger's oldest `RECEIVED` pair), read at most
    /// every five seconds; `None` when nothing waits or the ledger cannot say (the intake does
    /// not refuse work on a guess). One request reads it when the last reading is stale; the
    /// requests meanwhile answer with the last reading instead of waiting for that read.
    async fn backlog_age(&self) -> Option<Duration> {
        use std::sync::atomic::Ordering;
        let last = *self
            .backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, age)) = last
            && at.elapsed() < BACKLOG_TTL
        {
            return age;
        }
        if self.reading_backlog.swap(true, Ordering::AcqRel) {
            return last.and_then(|(_, age)| age);
        }
        // Cleared however this ends, a dropped request included.
        struct Reading<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Reading<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _reading = Reading(&self.reading_backlog);
        let age = match self.ledger.oldest_waiting(100).await {
            Ok(oldest) => oldest.map(|opened| {
                Duration::from_millis(self.ledger.clock().now_ms().saturating_sub(opened))
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the backlog; not applying back-pressure");
                None
            }
        };
        *self
            .backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), age));
        age
    }

    /// Answers one request. Never panics on input.
    pub async fn handle(&self, request: &Request) -> Response {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        match (
            request.method.to_ascii_uppercase().as_str(),
            segments.as_slice(),
        ) {
            ("POST", ["events", kind]) if !kind.is_empty() => {
                self.accept(&percent_decode(kind), request).await
            }
            ("GET", ["tasks", id]) if !id.is_empty() => {
                task_reply(&self.ledger, &percent_decode(id)).await.into()
            }
            ("GET", ["openapi.json"]) => Response {
                status: 200,
                headers: Vec::new(),
                body: openapi::document(
                    &self.schemas,
                    &request.base_url,
                    self.publisher.max_bytes(),
                    self.ledger.retention().as_secs() / 86_400,
                ),
            },
            (_, ["events", _]) | (_, ["tasks", _]) | (_, ["openapi.json"]) => fail(
                405,
                format!(
                    "{} is not allowed here: POST /events/{{kind}}, GET /tasks/{{id}}, GET /openapi.json",
                    request.method
                ),
            ),
            _ => fail(
                404,
                format!(
                    "no route for {}; try POST /events/{{kind}}, GET /tasks/{{id}} or GET /openapi.json",
                    request.path
                ),
            ),
        }
    }

    async fn accept(&self, kind: &str, request: &Request) -> Response {
        // The backlog's age says when a new task is likely to be picked up: the 202's
        // Retry-After (when to look at its status), and the 429's objective.
        let backlog = self.backlog_age().await;
        if let (Some(slo), Some(age)) = (self.slo, backlog)
            && age > slo
        {
            let wait = (age - slo).as_secs().clamp(1, 60);
            tracing::warn!(backlog_secs = age.as_secs(), "back-pressure: 429");
            return Response {
                status: 429,
                headers: vec![("retry-after", wait.to_string())],
                body: json!({
                    "error": format!(
                        "the consumers' backlog is {} s old, over the {} s objective: retry later",
                        age.as_secs(),
                        slo.as_secs()
                    ),
                }),
            };
        }
        if !self.schemas.knows(kind) {
            let known: Vec<&str> = self.schemas.kinds().collect();
            return fail(
                404,
                format!("no event kind `{kind}`; kinds are {}", known.join(", ")),
            );
        }
        let limit = self.publisher.max_bytes();
        if request.body.len() > limit {
            return fail(
                413,
                format!(
                    "the event is {} bytes, over the limit of {limit} bytes",
                    request.body.len()
                ),
            );
        }
        if let Some(t) = header(request, "content-type")
            && !is_json_media_type(t)
        {
            return fail(
                415,
                format!("Content-Type `{t}` is not JSON: send application/json"),
            );
        }
        if serde_json::from_slice::<serde::de::IgnoredAny>(&request.body).is_err() {
            return fail(415, "the body is not JSON");
        }
        let tenant = match optional_token(request, TENANT) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let key = match optional_token(request, IDEMPOTENCY_KEY) {
            Ok(k) => k,
            Err(r) => return r,
        };
        let callback_url = match header(request, CALLBACK_URL).map(str::trim) {
            None | Some("") => None,
            Some(u) => match url::Url::parse(u) {
                Ok(parsed) if matches!(parsed.scheme(), "https" | "http") && parsed.has_host() => {
                    Some(parsed.to_string())
                }
                _ => {
                    return fail(
                        400,
                        format!("{CALLBACK_URL} `{u}` is not an absolute http(s) URL"),
                    );
                }
            },
        };
        let task_id = match (&tenant, &key) {
            (Some(t), Some(k)) => format!("{t}:{k}"),
            (None, Some(k)) => k.clone(),
            (_, None) => mailroom_lambda::publish::new_task_id(),
        };
        // The body as sent, not re-serialised: consumers see the producer's bytes.
        let text = String::from_utf8_lossy(&request.body).into_owned();
        let mut event = Event::from_json(kind, text).with_task_id(&task_id);
        if let Some(t) = &tenant {
            event = event.with_tenant(t.clone());
        }
        if let Some(tp) = header(request, "traceparent") {
            event = event.with_traceparent(tp.to_owned());
        }
        match self.publisher.check(&event) {
            Ok(()) => {}
            Err(e @ PublishError::TooLarge { .. }) => return fail(413, e.to_string()),
            Err(PublishError::Schema { violations, .. }) => {
                return Response {
                    status: 400,
                    headers: Vec::new(),
                    body: json!({
                        "error": format!("the event does not match the schema of `{kind}`"),
                        "violations": violations,
                    }),
                };
            }
            Err(e) => return fail(400, e.to_string()),
        }
        let acceptance = Acceptance {
            task_id: task_id.clone(),
            kind: kind.to_owned(),
            tenant,
            callback_url,
            body_sha256: hex::encode(Sha256::digest(&request.body)),
            accepted_at_ms: 0,
            callback_done: false,
        };
        let consumers_have_it = match self.ledger.accept(&acceptance).await {
            Ok(Accepted::New) => false,
            // Marking each task published would be a second write on every request's path;
            // a retry (rare) reads instead whether any consumer already has it.
            Ok(Accepted::Again) => self
                .ledger
                .story(&task_id)
                .await
                .is_ok_and(|story| !story.consumers.is_empty()),
            Ok(Accepted::Conflict) => {
                return fail(
                    409,
                    format!(
                        "Idempotency-Key `{}` was already used with a different body",
                        key.unwrap_or_default()
                    ),
                );
            }
            Err(e) if e.is_invalid_input() => return fail(400, e.to_string()),
            Err(e) => return unavailable(&format!("ledger: {e}")),
        };
        if !consumers_have_it {
            let report = self.publisher.publish(std::slice::from_ref(&event)).await;
            if let Some(f) = report.failed.first() {
                tracing::error!(task_id, error = %f.error, "publish failed");
                return match &f.error {
                    e if e.is_retryable() => unavailable(&e.to_string()),
                    e => fail(502, e.to_string()),
                };
            }
        }
        let status_url = format!("{}/tasks/{}", request.base_url, encode_segment(&task_id));
        tracing::info!(task_id, kind, "accepted");
        // Work published now waits about as long as the oldest waiting task has: look then.
        let look_after = backlog.map_or(1, |age| age.as_secs().clamp(1, 60));
        Response {
            status: 202,
            headers: vec![
                ("location", status_url.clone()),
                ("retry-after", look_after.to_string()),
            ],
            body: json!({ "task_id": task_id, "status": "ACCEPTED", "status_url": status_url }),
        }
    }
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_json_media_type(value: &str) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// A key or tenant: 1 to 200 visible ASCII characters, no `/`, `:` or `#` (they separate
/// path segments and the tenant from the key, and `#` is the ledger's own).
fn optional_token(request: &Request, name: &str) -> Result<Option<String>, Response> {
    let Some(raw) = request.headers.get(name) else {
        return Ok(None);
    };
    let value = raw.to_str().unwrap_or_default();
    let valid = !value.is_empty()
        && value.len() <= MAX_KEY
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b'#' | b'%'));
    if valid {
        Ok(Some(value.to_owned()))
    } else {
        Err(fail(
            400,
            format!("{name} must be 1 to {MAX_KEY} visible ASCII characters without / : # %"),
        ))
    }
}

fn encode_segment(s: &str) -> String {
    s.replace(':', "%3A")
}

fn unavailable(reason: &str) -> Response {
    Response {
        status: 503,
        headers: vec![("retry-after", "1".into())],
        body: json!({ "error": format!("the intake cannot take events now ({reason}); retry with the same Idempotency-Key") }),
    }
}

impl Request {
    /// The request a Function URL event carries.
    pub fn from_function_url(event: &LambdaFunctionUrlRequest) -> Self {
        let body = match (&event.body, event.is_base64_encoded) {
            (Some(b), true) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            (Some(b), false) => b.clone().into_bytes(),
            (None, _) => Vec::new(),
        };
        let scheme = event
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("https");
        let host = event
            .request_context
            .domain_name
            .clone()
            .unwrap_or_default();
        Self {
            method: event
                .request_context
                .http
                .method
                .clone()
                .unwrap_or_else(|| "GET".into()),
            path: event.raw_path.clone().unwrap_or_else(|| "/".into()),
            headers: event.headers.clone(),
            body,
            base_url: format!("{scheme}://{host}"),
        }
    }
}

impl Response {
    /// The Function URL response.
    pub fn into_function_url(self) -> LambdaFunctionUrlResponse {
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = i64::from(self.status);
        response.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                response.headers.insert(name, v);
            }
        }
        response.body = Some(self.body.to_string());
        response
    }
}
