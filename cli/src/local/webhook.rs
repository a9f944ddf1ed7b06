//! The local webhook the notifier delivers to in `mailroom local`: it plays an external
//! service, with the demo's failures, and counts what it accepted.

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
}

impl Receiver {
    pub(super) async fn start(self: &Arc<Self>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let me = me.clone();
                async move { me.answer(&body) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/hook"))
    }

    pub(super) fn answer(&self, body: &[u8]) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let id = doc["id"].as_str().unwrap_or_default().to_owned();
        let customer = doc["event"]["customer"].as_str().unwrap_or_default();
        let attempt = {
            let mut a = self
                .attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = a.entry(id.clone()).or_default();
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
            .entry(id)
            .or_default() += 1;
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
