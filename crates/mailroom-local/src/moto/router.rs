//! One endpoint in front of two moto processes: DynamoDB's requests to one, everything else
//! (SNS, SQS, moto's own API) to the other.
//!
//! moto serves every request under one Python interpreter lock, so one process is one core
//! at most, and in a 1,000-event demo it was at 93% of a core while the functions used a
//! fifth of the other: the emulator, not Mailroom, set the pace. DynamoDB shares no state
//! with SNS and SQS (SNS delivers to SQS inside moto; the ledger has no streams), so it runs
//! in a process of its own and the two use both cores. Clients still see one endpoint, as
//! they see one region in AWS. `POST /moto-api/reset` resets both.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::proxy;

/// The router, serving on its own thread until dropped.
#[derive(Debug)]
pub(super) struct Router {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Upstreams {
    services: String,
    dynamodb: String,
    client: reqwest::Client,
}

impl Router {
    /// Serves on `listener`, sending DynamoDB's requests to `dynamodb` and the rest to
    /// `services` (both `http://127.0.0.1:PORT`).
    pub(super) fn start(
        listener: std::net::TcpListener,
        services: String,
        dynamodb: String,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let upstreams = Arc::new(Upstreams {
            services,
            dynamodb,
            client: proxy::client()?,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("moto-router".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, upstreams) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Self { stop: Some(stop) })
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, upstreams: Arc<Upstreams>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let upstreams = upstreams.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let upstreams = upstreams.clone();
                async move { Ok::<_, std::convert::Infallible>(upstreams.route(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Upstreams {
    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Ok(body) = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
        else {
            return proxy::bad_gateway();
        };
        if parts.uri.path() == "/moto-api/reset" {
            // Both emulators forget everything, or the reset fails.
            if proxy::forward(&self.client, &self.dynamodb, &parts, body.clone())
                .await
                .is_none_or(|a| !a.status().is_success())
            {
                return proxy::bad_gateway();
            }
        }
        let upstream = if is_dynamodb(&parts.headers) {
            &self.dynamodb
        } else {
            &self.services
        };
        match proxy::forward(&self.client, upstream, &parts, body).await {
            Some(answer) => proxy::answer(answer)
                .await
                .unwrap_or_else(proxy::bad_gateway),
            None => proxy::bad_gateway(),
        }
    }
}

/// DynamoDB's JSON protocol names the action in `X-Amz-Target: DynamoDB_20120810.PutItem`
/// (and `DynamoDBStreams_20120810.…` for streams).
fn is_dynamodb(headers: &hyper::HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("DynamoDB"))
}
