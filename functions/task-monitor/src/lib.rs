//! The task monitor's three triggers, told apart by the event's shape:
//!
//! * an SQS batch from the monitor's queue on the events topic: registration, answered with
//!   a partial batch response;
//! * an EventBridge scheduled event: a sweep, answered with its report (a failed sweep is a
//!   function error, so the `Errors` alarm sees it);
//! * a Lambda Function URL request: the status API, answered with an HTTP response.
//!
//! After each sweep it sends the completion callbacks that are due ([`callbacks`]). Before
//! each invocation it learns the application's consumers from the events topic, at most once
//! per `MAILROOM_DISCOVERY_TTL_SECS` ([`Watched`]).

pub mod callbacks;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use aws_lambda_events::sqs::SqsEvent;
use mailroom_ops::discovery::{Discovery, DiscoveryError};
use mailroom_ops::monitor::status::route;
use mailroom_ops::monitor::{Monitor, MonitorConfig, MonitorError};
use serde_json::Value;

/// What an invocation carried.
#[derive(Debug)]
pub enum Trigger {
    /// Published tasks to register.
    Registration(SqsEvent),
    /// The schedule: sweep.
    Sweep(Box<EventBridgeEvent>),
    /// A status API request.
    Status(Box<LambdaFunctionUrlRequest>),
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event is none of the three triggers.
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    /// The event looked like a trigger but did not parse as one.
    #[error("malformed {kind} event: {source}")]
    Malformed {
        /// Which trigger it looked like.
        kind: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The sweep could not complete.
    #[error("sweep failed: {0}")]
    Sweep(#[from] MonitorError),
    /// The consumers could not be discovered, and were never found before: registering or
    /// sweeping without them would be silent about them.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        let error_type = match e {
            Error::Unrecognised(_) => "Mailroom.UnrecognisedEvent",
            Error::Malformed { .. } => "Mailroom.MalformedEvent",
            Error::Sweep(_) => "Mailroom.SweepFailed",
            Error::Discovery(_) => "Mailroom.DiscoveryFailed",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

impl Trigger {
    /// Tells the trigger from the event's shape.
    ///
    /// # Errors
    /// When the event is none of them, or does not parse as the one it looks like.
    pub fn of(event: Value) -> Result<Self, Error> {
        let malformed = |kind: &'static str| move |source| Error::Malformed { kind, source };
        if event.get("Records").is_some() {
            return serde_json::from_value(event)
                .map(Self::Registration)
                .map_err(malformed("SQS"));
        }
        if event.get("detail-type").is_some() {
            return serde_json::from_value(event)
                .map(|e| Self::Sweep(Box::new(e)))
                .map_err(malformed("EventBridge"));
        }
        if event.pointer("/requestContext/http").is_some() {
            return serde_json::from_value(event)
                .map(|r| Self::Status(Box::new(r)))
                .map_err(malformed("Function URL"));
        }
        let mut shown = event.to_string();
        shown.truncate(200);
        Err(Error::Unrecognised(shown))
    }
}

/// The monitor, with the consumers it watches kept current by discovery (when
/// `MAILROOM_EVENTS_TOPIC_ARN` is set) over the configuration read at cold start.
#[derive(Debug)]
pub struct Watched {
    monitor: Monitor,
    base: MonitorConfig,
    discovery: Option<Discovery>,
    /// The consumers the monitor's configuration was last built from.
    applied: Option<Vec<mailroom_ops::discovery::Consumer>>,
}

impl Watched {
    /// `monitor` as configured, refreshed by `discovery`.
    pub fn new(monitor: Monitor, discovery: Option<Discovery>) -> Self {
        Self {
            base: monitor.config().clone(),
            monitor,
            discovery,
            applied: None,
        }
    }

    /// The monitor with the consumers discovered now, or within the TTL. A failed discovery
    /// keeps what was found last (logged); with nothing found ever, it fails the invocation.
    ///
    /// # Errors
    /// When discovery fails and never succeeded.
    pub async fn current(&mut self) -> Result<&Monitor, Error> {
        if let Some(discovery) = self.discovery.as_mut() {
            let found = discovery.consumers().await?;
            // Rebuilt only when discovery found something new (its warnings once, not per
            // invocation).
            if self.applied.as_deref() != Some(found) {
                self.monitor.set_config(self.base.with_discovered(found));
                self.applied = Some(found.to_vec());
            }
        }
        Ok(&self.monitor)
    }
}

/// Handles one invocation.
///
/// # Errors
/// An unrecognised or malformed event, or a sweep that could not complete.
pub async fn handle(
    monitor: &Monitor,
    callbacks: Option<&notifier::Notifier>,
    event: Value,
) -> Result<Value, Error> {
    match Trigger::of(event)? {
        Trigger::Registration(batch) => {
            let response = monitor.register(batch).await;
            Ok(serde_json::to_value(response).unwrap_or(Value::Null))
        }
        Trigger::Sweep(_) => {
            let report = monitor.sweep().await?;
            let mut out = serde_json::to_value(report).unwrap_or(Value::Null);
            if let Some(sender) = callbacks {
                // A ledger error here fails the invocation like a failed sweep: the Errors
                // alarm sees it, and the next sweep tries again.
                let sent = callbacks::send_due(monitor, sender)
                    .await
                    .map_err(|e| Error::Sweep(e.into()))?;
                out["callbacks"] = serde_json::to_value(sent).unwrap_or(Value::Null);
            }
            Ok(out)
        }
        Trigger::Status(request) => {
            let method = request
                .request_context
                .http
                .method
                .as_deref()
                .unwrap_or("GET");
            let path = request.raw_path.as_deref().unwrap_or("/");
            let query = request.raw_query_string.as_deref().unwrap_or("");
            let reply = route(monitor, method, path, query).await;
            let mut response = LambdaFunctionUrlResponse::default();
            response.status_code = i64::from(reply.status);
            response.headers.insert(
                "content-type",
                "application/json".parse().expect("a valid header value"),
            );
            response.body = Some(reply.body.to_string());
            Ok(serde_json::to_value(response).unwrap_or(Value::Null))
        }
    }
}
