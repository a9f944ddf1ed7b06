//! The event-source-mapping part of the Lambda API, served by `mailroom local`, which is the
//! Lambda service on this machine: `ListEventSourceMappings`, `GetEventSourceMapping` and
//! `UpdateEventSourceMapping` (its `Enabled` and `BatchSize`). The pollers read each
//! mapping's state before every receive, so a disabled mapping takes no batch, as in Lambda.
//! The functions reach it through `AWS_ENDPOINT_URL_LAMBDA`, the SDKs' per-service endpoint
//! variable; every other AWS call still goes to the emulator.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::REGION;

/// One event source mapping, shared with its pollers.
#[derive(Debug)]
pub struct Mapping {
    /// Its id.
    pub uuid: String,
    /// The function's name (its logical id locally).
    pub function: String,
    /// The queue's ARN.
    pub event_source_arn: String,
    /// Whether its pollers take batches.
    pub enabled: AtomicBool,
    /// `BatchSize`.
    pub batch_size: AtomicI32,
    /// When it last changed, in seconds since the epoch.
    last_modified: Mutex<f64>,
}

impl Mapping {
    /// Whether the pollers may take a batch now.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn describe(&self) -> Value {
        json!({
            "UUID": self.uuid,
            "FunctionArn": format!("arn:aws:lambda:{REGION}:123456789012:function:{}", self.function),
            "EventSourceArn": self.event_source_arn,
            "BatchSize": self.batch_size.load(Ordering::Relaxed),
            "State": if self.is_enabled() { "Enabled" } else { "Disabled" },
            "StateTransitionReason": "USER_INITIATED",
            "LastModified": *self.last_modified.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }

    fn touch(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        *self
            .last_modified
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = now;
    }
}

/// Every mapping of the pipeline, by UUID.
#[derive(Debug, Default)]
pub struct Mappings {
    by_uuid: Mutex<BTreeMap<String, Arc<Mapping>>>,
}

impl Mappings {
    /// Adds an enabled mapping from `event_source_arn` to `function`.
    pub fn add(&self, function: &str, event_source_arn: &str, batch_size: i32) -> Arc<Mapping> {
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            fastrand::u32(..),
            fastrand::u16(..),
            fastrand::u16(..0x1000),
            fastrand::u16(..0x1000),
            fastrand::u64(..1 << 48)
        );
        let mapping = Arc::new(Mapping {
            uuid: uuid.clone(),
            function: function.to_owned(),
            event_source_arn: event_source_arn.to_owned(),
            enabled: AtomicBool::new(true),
            batch_size: AtomicI32::new(batch_size),
            last_modified: Mutex::new(0.0),
        });
        mapping.touch();
        self.lock().insert(uuid, mapping.clone());
        mapping
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Mapping>>> {
        self.by_uuid.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every mapping of `function` (by name).
    pub fn of(&self, function: &str) -> Vec<Arc<Mapping>> {
        self.lock()
            .values()
            .filter(|m| m.function == function)
            .cloned()
            .collect()
    }

    /// The mappings that read the queue `event_source_arn`.
    pub fn reading(&self, event_source_arn: &str) -> Vec<Arc<Mapping>> {
        self.lock()
            .values()
            .filter(|m| m.event_source_arn == event_source_arn)
            .cloned()
            .collect()
    }
}

/// The API on a loopback port. It stops when dropped.
#[derive(Debug)]
pub struct LambdaApi {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl LambdaApi {
    /// Serves `mappings` on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port is free.
    pub async fn serve(mappings: Arc<Mappings>) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = crate::http::serve(listener, move |req, _| {
            let mappings = mappings.clone();
            async move { answer(&mappings, req).await }
        });
        Ok(Self { url, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for LambdaApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PREFIX: &str = "/2015-03-31/event-source-mappings";

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(Ok(v)) = body["Type"]
        .as_str()
        .map(hyper::header::HeaderValue::from_str)
    {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        &json!({ "Type": kind, "Message": message, "message": message }),
    )
}

/// The query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Whether `wanted` (a name or an ARN) names `function`.
fn names(wanted: &str, function: &str) -> bool {
    wanted == function
        || wanted
            .rsplit_once(":function:")
            .is_some_and(|(_, name)| name == function)
}

async fn answer(mappings: &Mappings, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/');
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "mailroom local serves only the event source mapping operations of the Lambda API",
        );
    };
    let uuid = rest.trim_start_matches('/');
    match (&parts.method, uuid.is_empty()) {
        (&Method::GET, true) => {
            let query = parts.uri.query().unwrap_or("");
            let function = query_param(query, "FunctionName");
            let source = query_param(query, "EventSourceArn");
            let list: Vec<Value> = mappings
                .lock()
                .values()
                .filter(|m| function.as_deref().is_none_or(|f| names(f, &m.function)))
                .filter(|m| source.as_deref().is_none_or(|s| s == m.event_source_arn))
                .map(|m| m.describe())
                .collect();
            reply(StatusCode::OK, &json!({ "EventSourceMappings": list }))
        }
        (method, false) if method == Method::GET || method == Method::PUT => {
            let Some(mapping) = mappings.lock().get(uuid).cloned() else {
                return error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!(
                        "The resource you requested does not exist. (Service: Lambda; UUID: {uuid})"
                    ),
                );
            };
            if method == Method::PUT {
                let Ok(bytes) = body
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterValueException",
                        "unreadable body",
                    );
                };
                let Ok(update) = serde_json::from_slice::<Value>(&bytes) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterValueException",
                        "the body is not JSON",
                    );
                };
                if let Some(enabled) = update["Enabled"].as_bool() {
                    mapping.enabled.store(enabled, Ordering::Relaxed);
                    tracing::info!(function = %mapping.function, enabled, "event source mapping updated");
                }
                if let Some(size) = update["BatchSize"].as_i64() {
                    match i32::try_from(size) {
                        Ok(size @ 1..=10_000) => mapping.batch_size.store(size, Ordering::Relaxed),
                        _ => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "InvalidParameterValueException",
                                "BatchSize must be between 1 and 10000",
                            );
                        }
                    }
                }
                mapping.touch();
                return reply(StatusCode::ACCEPTED, &mapping.describe());
            }
            reply(StatusCode::OK, &mapping.describe())
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnknownOperationException",
            "not an event source mapping operation",
        ),
    }
}
