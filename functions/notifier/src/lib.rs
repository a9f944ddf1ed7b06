//! The notifier: a Mailroom consumer that delivers each event to a webhook over signed HTTP.
//!
//! * Destination: the event's callback URL (the field `NOTIFIER_CALLBACK_FIELD` names) when it
//!   has one, else the configured default endpoint.
//! * Body: generic JSON, or a Slack-compatible incoming-webhook body.
//! * Signature: Standard Webhooks' `webhook-id` (the task id), `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` ([`signing`]).
//! * Outcomes: 2xx succeeds; 408, 429, 5xx, timeouts and connection errors retry (honouring
//!   `Retry-After`), naming the destination host as the failed dependency for the circuit
//!   breaker; any other status is poison, with the status as the reason.
//! * The SSRF guard ([`ssrf`]) refuses http and private, loopback, link-local and metadata
//!   addresses unless `NOTIFIER_ALLOW_PRIVATE_DESTINATIONS=true`.

pub mod config;
pub mod secret;
pub mod signing;
pub mod ssrf;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailroom_lambda::{Failure, Message};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use serde_json::{Value, json};

pub use config::{Config, Format};
pub use signing::SigningKey;

/// Delivers events. Built once at cold start; its HTTP client reuses connections.
#[derive(Debug)]
pub struct Notifier {
    config: Config,
    key: SigningKey,
    client: reqwest::Client,
}

impl Notifier {
    /// A notifier signing with `key`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS setup).
    pub fn new(config: Config, key: SigningKey) -> Result<Self, reqwest::Error> {
        // rustls on ring with Mozilla's roots compiled in (no scan of the system's certificate
        // files at cold start): the same stack the SDK runs on.
        let mut builder = mailroom_lambda::aws::http_client_builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // A redirect could lead anywhere, past the guard's literal check: never follow one.
            .redirect(reqwest::redirect::Policy::none());
        if !config.allow_private {
            builder = builder.dns_resolver(ssrf::resolver());
        }
        Ok(Self {
            client: builder.build()?,
            config,
            key,
        })
    }

    /// The circuit breaker's router: an event's destination host, as [`Notifier::handle`]
    /// would deliver it (its callback URL, else the default webhook). While one host's
    /// breaker is open, only the events bound for it are held.
    pub fn router(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let field = self.config.callback_field.clone();
        let default = self
            .config
            .webhook_url
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned));
        move |payload: &str| {
            let callback = field.as_deref().and_then(|pointer| {
                let doc: Value = serde_json::from_str(payload).ok()?;
                let url = doc
                    .pointer(pointer)?
                    .as_str()?
                    .parse::<reqwest::Url>()
                    .ok()?;
                url.host_str().map(str::to_owned)
            });
            callback.or_else(|| default.clone())
        }
    }

    /// Delivers one event.
    ///
    /// # Errors
    /// A retry for transient failures, poison for refused destinations and permanent statuses.
    pub async fn handle(&self, msg: Message<Value>) -> Result<(), Failure> {
        let url = self.destination(&msg)?;
        let body = self.body(&msg);
        // The receiver's deduplication key: the same on every delivery of this task.
        let id = msg.task_id().or(msg.message_id()).unwrap_or_default();
        self.deliver(url, id, body).await
    }

    /// Posts `body` to `url`, signed as delivery `id` (Standard Webhooks headers), through the
    /// SSRF guard. The notifier's events and the task monitor's completion callbacks both go
    /// out this way.
    ///
    /// # Errors
    /// A retry for transient failures, poison for refused destinations and permanent statuses.
    pub async fn deliver(&self, url: reqwest::Url, id: &str, body: Vec<u8>) -> Result<(), Failure> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("mailroom-notifier/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                signing::ID_HEADER,
                HeaderValue::from_str(id)
                    .map_err(|_| Failure::poison("the task id is not a valid HTTP header value"))?,
            )
            .header(signing::TIMESTAMP_HEADER, timestamp)
            .header(
                signing::SIGNATURE_HEADER,
                self.key.sign(id, timestamp, &body),
            );
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Err(classify_error(&url, &e)),
        };
        let status = response.status();
        if status.is_success() {
            tracing::info!(
                host = url.host_str().unwrap_or_default(),
                status = status.as_u16(),
                "delivered"
            );
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let detail: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Err(classify_status(&url, status, retry_after, &detail))
    }

    fn destination(&self, msg: &Message<Value>) -> Result<reqwest::Url, Failure> {
        let callback = self
            .config
            .callback_field
            .as_deref()
            .and_then(|p| msg.payload.pointer(p))
            .and_then(Value::as_str);
        let url = match (callback, &self.config.webhook_url) {
            (Some(c), _) => c
                .parse::<reqwest::Url>()
                .map_err(|e| Failure::poison(format!("callback URL `{c}` does not parse: {e}")))?,
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(Failure::poison(
                    "no destination: the event has no callback URL and NOTIFIER_WEBHOOK_URL is unset",
                ));
            }
        };
        if !self.config.allow_private {
            ssrf::check_url(&url).map_err(Failure::poison)?;
        }
        Ok(url)
    }

    fn body(&self, msg: &Message<Value>) -> Vec<u8> {
        let id = msg.task_id().or(msg.message_id()).unwrap_or_default();
        let kind = msg.string_attribute("kind");
        let doc = match self.config.format {
            Format::Json => json!({
                "id": id,
                "kind": kind,
                "subject": msg.subject(),
                "published_at": msg.published_at_ms(),
                "event": msg.payload,
            }),
            Format::Slack => {
                let mut event = msg.payload.to_string();
                if event.len() > 2_900 {
                    let mut end = 2_900;
                    while !event.is_char_boundary(end) {
                        end -= 1;
                    }
                    event.truncate(end);
                    event.push('…');
                }
                json!({ "text": format!("*{}* `{id}`\n```{event}```", kind.unwrap_or("event")) })
            }
        };
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

/// What a status means for the record.
pub fn classify_status(
    url: &reqwest::Url,
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: &str,
) -> Failure {
    let host = url.host_str().unwrap_or_default();
    let reason = format!("HTTP {} from {host}: {detail}", status.as_u16());
    let transient = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    match (transient, retry_after) {
        // Transient failures name the host: the consumer's circuit breaker counts them
        // against it, and a `Retry-After` holds every delivery to it, not only this one.
        (true, Some(delay)) => Failure::retry_after(reason, delay).on(host),
        (true, None) => Failure::retry(reason).on(host),
        (false, _) if status.is_redirection() => {
            Failure::poison(format!("{reason} (redirects are not followed)"))
        }
        (false, _) => Failure::poison(reason),
    }
}

fn classify_error(url: &reqwest::Url, e: &reqwest::Error) -> Failure {
    let host = url.host_str().unwrap_or_default();
    // A refusal by the guard's resolver is permanent; everything else at this stage is not.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<ssrf::Refused>() {
            return Failure::poison(refused);
        }
        source = s.source();
    }
    let failure = if e.is_timeout() {
        Failure::retry(format!("timeout delivering to {host}"))
    } else if e.is_connect() {
        Failure::retry(format!("cannot connect to {host}: {}", error_chain(e)))
    } else {
        Failure::retry(format!("delivery to {host} failed: {}", error_chain(e)))
    };
    failure.on(host)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = aws_smithy_types_date(value)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

fn aws_smithy_types_date(value: &str) -> Option<u64> {
    use aws_sdk_ssm::primitives::{DateTime, DateTimeFormat};
    DateTime::from_str(value.trim(), DateTimeFormat::HttpDate)
        .ok()
        .and_then(|d| u64::try_from(d.secs()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let url: reqwest::Url = "https://hooks.example.com/x".parse().expect("url");
        let kind = |s: u16, ra| {
            classify_status(&url, StatusCode::from_u16(s).expect("status"), ra, "").kind()
        };
        use mailroom_lambda::outcome::{Backoff, FailureKind};
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(kind(s, None), FailureKind::Retry(Backoff::Policy), "{s}");
        }
        assert_eq!(
            kind(429, Some(Duration::from_secs(7))),
            FailureKind::Retry(Backoff::After(Duration::from_secs(7)))
        );
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert_eq!(kind(s, None), FailureKind::Poison, "{s}");
        }
    }

    #[test]
    fn the_breakers_router_names_the_host_the_event_is_delivered_to() {
        let config = Config::from_env(&mailroom_lambda::Env::from_pairs(&[
            ("NOTIFIER_SIGNING_SECRET", "s"),
            ("NOTIFIER_WEBHOOK_URL", "https://default.example.com/hook"),
            ("NOTIFIER_CALLBACK_FIELD", "/callback_url"),
        ]))
        .expect("config");
        let notifier =
            Notifier::new(config, SigningKey::from_secret(b"s").expect("key")).expect("client");
        let route = notifier.router();
        assert_eq!(
            route(r#"{"callback_url":"https://partner.example.org/x"}"#).as_deref(),
            Some("partner.example.org")
        );
        assert_eq!(
            route(r#"{"order_id":"o-1"}"#).as_deref(),
            Some("default.example.com")
        );
        assert_eq!(route("not json").as_deref(), Some("default.example.com"));
    }

    #[tokio::test]
    async fn a_callback_url_in_the_event_wins_over_the_default_endpoint() {
        // GIVEN a default endpoint, and the fixture whose events carry callback URLs
        let mut config = Config::from_env(&mailroom_lambda::Env::from_pairs(&[
            ("NOTIFIER_SIGNING_SECRET", "s"),
            ("NOTIFIER_WEBHOOK_URL", "https://default.example.com/hook"),
        ]))
        .expect("config");
        config.allow_private = false;
        let key = SigningKey::from_secret(b"s").expect("key");
        let notifier = Notifier::new(config, key).expect("client");
        let engine = mailroom_lambda::Engine::new(
            mailroom_lambda::EngineConfig {
                metrics: mailroom_lambda::telemetry::MetricsSink::Discard,
                ..mailroom_lambda::EngineConfig::default()
            },
            mailroom_lambda::testing::FakeQueues::new(),
        );
        let chosen = std::sync::Mutex::new(Vec::new());

        // WHEN the destination is chosen for each record (nothing is sent)
        engine
            .process(
                mailroom_lambda::testing::fixture("sqs-notifier-callback.json"),
                mailroom_lambda::Deadline::none(),
                |m| {
                    chosen
                        .lock()
                        .expect("lock")
                        .push(notifier.destination(&m).map(|u| u.to_string()));
                    async { Ok(()) }
                },
            )
            .await
            .expect("response");

        // THEN each goes to its own callback
        let chosen = chosen.into_inner().expect("lock");
        assert_eq!(chosen.len(), 2);
        assert!(chosen.iter().all(|c| {
            c.as_ref()
                .is_ok_and(|u| u.starts_with("https://hooks.example.com/mailroom/orders/o-500"))
        }));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
