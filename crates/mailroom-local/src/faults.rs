//! A fault-injecting HTTP proxy in front of the emulator, request by request.
//!
//! It plays the three ways an AWS call fails in the wild: a transient server error (HTTP 500
//! or 503), a connection reset **before** the request reaches the service (nothing happened),
//! and a reset **after** it did (the call took effect and its answer was lost, so a retry
//! repeats it). The last is the one that makes duplicates: a `PublishBatch` retried after it
//! is two publishes. Every client of the local pipeline (the functions, the event sources,
//! the CLI) talks to the emulator through it when `mailroom local … --faults RATE` is given.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::proxy::{self, Upstreams};

/// How often each fault happens, as a fraction of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Answered HTTP 500 or 503 without reaching the emulator.
    pub server_error: f64,
    /// The connection is closed before the request is forwarded.
    pub reset_before: f64,
    /// The request is forwarded, then the connection is closed instead of answering.
    pub reset_after: f64,
    /// How many faults in all, after which every request passes (`u64::MAX`: no end).
    pub budget: u64,
    /// Added to every request before it is forwarded: a network and a service farther away
    /// than loopback (SQS answers in about 5 to 20 ms).
    pub latency: std::time::Duration,
}

impl FaultPlan {
    /// `rate` of all requests, split as measured in the field: 2/5 server errors, 2/5 resets
    /// before forwarding, 1/5 resets after (5% → 2%, 2%, 1%).
    pub fn mix(rate: f64) -> Self {
        let rate = rate.clamp(0.0, 1.0);
        Self {
            server_error: rate * 0.4,
            reset_before: rate * 0.4,
            reset_after: rate * 0.2,
            budget: u64::MAX,
            latency: std::time::Duration::ZERO,
        }
    }

    /// No faults: `latency` added to every request.
    pub fn latency(latency: std::time::Duration) -> Self {
        Self {
            latency,
            ..Self::mix(0.0)
        }
    }

    /// Only `kind`, on every request, for the first `budget` requests.
    pub fn only(kind: FaultKind, budget: u64) -> Self {
        let on = |k: FaultKind| if k == kind { 1.0 } else { 0.0 };
        Self {
            server_error: on(FaultKind::ServerError),
            reset_before: on(FaultKind::ResetBefore),
            reset_after: on(FaultKind::ResetAfter),
            budget,
            latency: std::time::Duration::ZERO,
        }
    }
}

/// The three faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 500 or 503, the emulator never sees the request.
    ServerError,
    /// The connection closes before the request is forwarded.
    ResetBefore,
    /// The request takes effect; the connection closes instead of the answer.
    ResetAfter,
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Requests forwarded and answered.
    pub passed: AtomicU64,
    /// Requests answered 500/503.
    pub server_errors: AtomicU64,
    /// Connections closed before forwarding.
    pub resets_before: AtomicU64,
    /// Connections closed after forwarding (the call took effect).
    pub resets_after: AtomicU64,
    /// Requests by AWS action (`X-Amz-Target`, e.g. `DynamoDB_20120810.UpdateItem`; `Action`
    /// for SNS's query protocol), faulted or not: an instrumented count of what a run costs.
    pub actions: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// DynamoDB's capacity as on-demand billing counts it (see [`Capacity`]).
    pub capacity: Capacity,
}

/// DynamoDB request units, as on-demand billing counts them, from the requests (and a
/// query's answer) the proxy forwarded: every item write is billed whether its condition
/// holds or not, one unit per KB of the item (counted here as one: [`Capacity::item_writes`];
/// the caller scales by the items' sizes); an item read is one unit per 4 KB strongly
/// consistent, half eventually consistent; a query reads its answer's bytes in 4 KB steps.
#[derive(Debug, Default)]
pub struct Capacity {
    /// Item writes (`PutItem`, `UpdateItem`, `DeleteItem`, each item of `BatchWriteItem`;
    /// twice each item of `TransactWriteItems`).
    pub item_writes: AtomicU64,
    /// Read request units, in thousandths.
    pub read_milli_units: AtomicU64,
}

impl Capacity {
    /// Read request units.
    pub fn read_units(&self) -> f64 {
        self.read_milli_units.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Counts one DynamoDB request (`action` without its version prefix) with its JSON body
    /// and the size of its answer.
    fn count(&self, action: &str, request: &[u8], answer_bytes: u64) {
        let json: serde_json::Value = serde_json::from_slice(request).unwrap_or_default();
        let per_item = |consistent: &serde_json::Value| {
            if consistent.as_bool() == Some(true) {
                1000
            } else {
                500
            }
        };
        let (writes, reads) = match action {
            "PutItem" | "UpdateItem" | "DeleteItem" => (1, 0),
            "BatchWriteItem" => (
                json["RequestItems"].as_object().map_or(0, |t| {
                    t.values().filter_map(|r| r.as_array()).map(Vec::len).sum()
                }),
                0,
            ),
            "TransactWriteItems" => (2 * json["TransactItems"].as_array().map_or(0, Vec::len), 0),
            "GetItem" => (0, per_item(&json["ConsistentRead"])),
            "BatchGetItem" => (
                0,
                json["RequestItems"].as_object().map_or(0, |tables| {
                    tables
                        .values()
                        .map(|t| {
                            t["Keys"].as_array().map_or(0, Vec::len) as u64
                                * per_item(&t["ConsistentRead"])
                        })
                        .sum()
                }),
            ),
            "Query" | "Scan" => (
                0,
                answer_bytes.div_ceil(4096).max(1) * per_item(&json["ConsistentRead"]),
            ),
            _ => (0, 0),
        };
        self.item_writes
            .fetch_add(u64::try_from(writes).unwrap_or(0), Ordering::Relaxed);
        self.read_milli_units.fetch_add(reads, Ordering::Relaxed);
    }
}

impl FaultCounts {
    /// Requests per action so far.
    pub fn actions(&self) -> std::collections::BTreeMap<String, u64> {
        self.actions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The counts as `(passed, server errors, resets before, resets after)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.passed.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
            self.resets_before.load(Ordering::Relaxed),
            self.resets_after.load(Ordering::Relaxed),
        )
    }
}

/// The proxy, on a loopback port. It stops when dropped.
#[derive(Debug)]
pub struct FaultyEndpoint {
    endpoint: String,
    counts: Arc<FaultCounts>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: Upstreams,
    plan: std::sync::Mutex<FaultPlan>,
    client: reqwest::Client,
    counts: Arc<FaultCounts>,
    rng: std::sync::Mutex<fastrand::Rng>,
    injected: AtomicU64,
}

/// Why the proxy dropped a connection (hyper closes it without an answer).
#[derive(Debug, thiserror::Error)]
#[error("injected connection reset")]
struct Reset;

impl FaultyEndpoint {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) injecting `plan`, with a seeded
    /// random choice so a run can be repeated.
    ///
    /// # Errors
    /// When no loopback port is free or the HTTP client cannot be built.
    pub async fn start(
        upstream: impl Into<Upstreams>,
        plan: FaultPlan,
        seed: u64,
    ) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(FaultCounts::default());
        let client = proxy::client()?;
        let shared = Arc::new(Shared {
            upstream: upstream.into(),
            plan: std::sync::Mutex::new(plan),
            client,
            counts: counts.clone(),
            rng: std::sync::Mutex::new(fastrand::Rng::with_seed(seed)),
            injected: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            let shared = accepting;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { shared.handle(req).await }
                    });
                    // An injected reset ends the connection with an error: nothing to report.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            endpoint,
            counts,
            shared,
            task,
        })
    }

    /// The endpoint URL to give the SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What it has done so far.
    pub fn counts(&self) -> &FaultCounts {
        &self.counts
    }

    /// Injects `plan` from the next request on, its budget counted afresh: a test arms the
    /// proxy at the moment it wants faults (after a lease is taken, say).
    pub fn arm(&self, plan: FaultPlan) {
        *self
            .shared
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
        self.shared.injected.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultyEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Fault {
    None,
    ServerError(StatusCode),
    ResetBefore,
    ResetAfter,
}

impl Shared {
    fn draw(&self) -> Fault {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let x = rng.f64();
        let p = *self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total = p.server_error + p.reset_before + p.reset_after;
        if x >= total
            || self
                .injected
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < p.budget).then_some(n + 1)
                })
                .is_err()
        {
            return Fault::None;
        }
        let x = x.min(total * 0.999_999);
        if x < p.server_error {
            if rng.bool() {
                Fault::ServerError(StatusCode::INTERNAL_SERVER_ERROR)
            } else {
                Fault::ServerError(StatusCode::SERVICE_UNAVAILABLE)
            }
        } else if x < p.server_error + p.reset_before {
            Fault::ResetBefore
        } else if x < p.server_error + p.reset_before + p.reset_after {
            Fault::ResetAfter
        } else {
            Fault::None
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Reset> {
        let latency = self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        // Moto's own API (reset, state) is the test bed's, not a client's: never faulted.
        let fault = if req.uri().path().starts_with("/moto-api") {
            Fault::None
        } else {
            self.draw()
        };
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
        let action = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_action(&body));
        if let Some(action) = action {
            *self
                .counts
                .actions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(action)
                .or_default() += 1;
        }
        match fault {
            Fault::ServerError(status) => {
                self.counts.server_errors.fetch_add(1, Ordering::Relaxed);
                return Ok(server_error(status));
            }
            Fault::ResetBefore => {
                self.counts.resets_before.fetch_add(1, Ordering::Relaxed);
                return Err(Reset);
            }
            Fault::None | Fault::ResetAfter => {}
        }
        let Some(answer) = proxy::forward(
            &self.client,
            self.upstream.for_request(&parts.headers),
            &parts,
            body.clone(),
        )
        .await
        else {
            return Ok(server_error(StatusCode::BAD_GATEWAY));
        };
        let dynamodb = dynamodb_action(&parts.headers);
        if matches!(fault, Fault::ResetAfter) {
            // The emulator acted on it (and billed it); let the answer go and drop the
            // connection.
            let size = answer.bytes().await.map_or(0, |b| b.len() as u64);
            if let Some(action) = dynamodb {
                self.counts.capacity.count(action, &body, size);
            }
            self.counts.resets_after.fetch_add(1, Ordering::Relaxed);
            return Err(Reset);
        }
        let Some(response) = proxy::answer(answer).await else {
            return Ok(server_error(StatusCode::BAD_GATEWAY));
        };
        if let Some(action) = dynamodb {
            let size = hyper::body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0);
            self.counts.capacity.count(action, &body, size);
        }
        self.counts.passed.fetch_add(1, Ordering::Relaxed);
        Ok(response)
    }
}

/// `UpdateItem` of `X-Amz-Target: DynamoDB_20120810.UpdateItem`.
fn dynamodb_action(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")?
        .to_str()
        .ok()?
        .strip_prefix("DynamoDB_20120810.")
}

/// `Action=…` of a query-protocol (SNS) request body.
fn query_action(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|p| p.strip_prefix("Action="))
        .map(|a| format!("SNS.{a}"))
}

/// An AWS-shaped transient server error. The SDKs retry 500 and 503 by status alone.
fn server_error(status: StatusCode) -> Response<Full<Bytes>> {
    let body = r#"{"__type":"InternalFailure","message":"injected fault"}"#;
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}
