//! The local webhook the notifier delivers to in `mailroom local`: it plays an external
//! service, with the demo's failures, counts what it accepted, and writes each accepted
//! delivery as a JSON line (`webhook.jsonl` in the log directory) for an independent read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The notifier's destination in local runs: a webhook on loopback that plays an external
/// service. Customer `c-flaky` gets a 503 on its first delivery; `c-blocked` a 400 until the
/// "fix". It counts accepted deliveries per event, to show no side effect happens twice.
#[derive(Debug, Default)]
pub(super) struct Receiver {
    pub(super) fixed: AtomicBool,
    pub(super) attempts: Mutex<HashMap<String, u32>>,
    pub(super) accepted: Mutex<HashMap<String, u32>>,
    /// Accepted deliveries per business key (the event's `order_id`).
    pub(super) accepted_orders: Mutex<HashMap<String, u32>>,
    /// Where accepted deliveries are logged, one JSON line each.
    pub(super) log: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    /// Completion callbacks received: (webhook-id, status) each.
    pub(super) callbacks: Mutex<Vec<(String, String)>>,
    /// The service is down: every delivery gets a 503 (the outage scenario).
    pub(super) down: AtomicBool,
    /// Deliveries that reached it while it was down.
    pub(super) hits_while_down: std::sync::atomic::AtomicU64,
    /// When each of them arrived, in ms since the epoch.
    pub(super) down_calls_at: Mutex<Vec<u64>>,
    /// How long each delivery takes to answer, in ms: a service slower than its senders.
    pub(super) delay_ms: std::sync::atomic::AtomicU64,
    /// Accepted deliveries in order: (the event's `tenant`, ms from publish to acceptance).
    pub(super) dwell: Mutex<Vec<(String, f64)>>,
}

impl Receiver {
    /// Logs accepted deliveries to `dir/webhook.jsonl` (truncated).
    pub(super) fn log_to(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::File::create(dir.join("webhook.jsonl"))?;
        *self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(std::io::BufWriter::new(file));
        Ok(())
    }

    /// Writes out what is logged so far.
    pub(super) fn flush(&self) {
        use std::io::Write;
        if let Some(w) = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            let _ = w.flush();
        }
    }

    pub(super) async fn start(self: &Arc<Self>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let me = self.clone();
        let callbacks = self.clone();
        let app = axum::Router::new()
            .route(
                "/callback",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let me = callbacks.clone();
                        async move { me.callback(&headers, &body) }
                    },
                ),
            )
            .route(
                "/hook",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let me = me.clone();
                        async move {
                            let id = headers
                                .get("webhook-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let delay = me.delay_ms.load(Ordering::Relaxed);
                            if delay > 0 {
                                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                            }
                            me.answer(&id, &body)
                        }
                    },
                ),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/hook"))
    }

    /// Takes a completion callback: its `webhook-id` and final status, logged.
    fn callback(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> axum::http::StatusCode {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let status = doc["status"].as_str().unwrap_or_default().to_owned();
        self.callbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, status));
        axum::http::StatusCode::NO_CONTENT
    }

    /// Answers a delivery whose `webhook-id` (the task id) is `id`.
    pub(super) fn answer(&self, id: &str, body: &[u8]) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        if self.down.load(Ordering::Relaxed) {
            self.hits_while_down.fetch_add(1, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            self.down_calls_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(now);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let customer = doc["event"]["customer"].as_str().unwrap_or_default();
        let attempt = {
            let mut a = self
                .attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = a.entry(id.to_owned()).or_default();
            *n += 1;
            *n
        };
        if customer == "c-flaky" && attempt == 1 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if customer == "c-blocked" && !self.fixed.load(Ordering::Relaxed) {
            return StatusCode::BAD_REQUEST;
        }
        *self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default() += 1;
        if let Some(w) = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            use std::io::Write;
            let line = serde_json::json!({"webhook_id": id, "order_id": doc["event"]["order_id"]});
            let _ = writeln!(w, "{line}");
        }
        if let (Some(tenant), Some(published)) = (
            doc["event"]["tenant"].as_str(),
            doc["published_at"].as_i64(),
        ) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            #[allow(clippy::cast_precision_loss, reason = "ms ages fit f64 exactly")]
            self.dwell
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((tenant.to_owned(), now.saturating_sub(published) as f64));
        }
        if let Some(order) = doc["event"]["order_id"].as_str() {
            *self
                .accepted_orders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(order.to_owned())
                .or_default() += 1;
        }
        StatusCode::NO_CONTENT
    }
}
