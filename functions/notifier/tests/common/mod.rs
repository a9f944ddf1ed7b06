//! A webhook receiver on 127.0.0.1 for the notifier's tests: real sockets, real HTTP.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses its own part"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// Records the delivery, then answers as the path says.
async fn hook(
    State(got): State<Log>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mentions = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    let flaky_failure = path == "flaky" && mentions("o-1002");
    got.lock().expect("lock").push(Delivery {
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    match path.as_str() {
        "ok" => StatusCode::OK.into_response(),
        "flaky" if flaky_failure => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "flaky" => StatusCode::NO_CONTENT.into_response(),
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        "limited" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]).into_response(),
        "gone" => (StatusCode::NOT_FOUND, "no such hook").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    }
}

/// A webhook receiver on a free loopback port; each path answers one way (see `hook`).
pub struct Receiver {
    pub addr: SocketAddr,
    got: Log,
}

impl Receiver {
    pub async fn start() -> Self {
        let got = Log::default();
        let app = Router::new()
            .route("/{path}", post(hook))
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { addr, got }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().expect("lock").clone()
    }
}
