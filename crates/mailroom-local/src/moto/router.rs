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

use crate::proxy::{self, Upstreams};

/// The router, serving on its own thread until dropped.
#[derive(Debug)]
pub(super) struct Router {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Route {
    upstreams: Upstreams,
    client: reqwest::Client,
}

impl Router {
    /// Serves on `listener`, sending each request to its upstream.
    pub(super) fn start(
        listener: std::net::TcpListener,
        upstreams: Upstreams,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let route = Arc::new(Route {
            upstreams,
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
                        () = serve(listener, route) => {}
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

async fn serve(listener: tokio::net::TcpListener, route: Arc<Route>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        // Answers go out as soon as they are written, not after the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let route = route.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let route = route.clone();
                async move { Ok::<_, std::convert::Infallible>(route.route(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Route {
    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Ok(body) = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
        else {
            return proxy::bad_gateway();
        };
        if parts.uri.path() == "/moto-api/reset"
            && let Some(dynamodb) = self.upstreams.separate_dynamodb()
        {
            // Both emulators forget everything, or the reset fails.
            if proxy::forward(&self.client, dynamodb, &parts, body.clone())
                .await
                .is_none_or(|a| !a.status().is_success())
            {
                return proxy::bad_gateway();
            }
        }
        let upstream = self.upstreams.for_request(&parts.headers);
        match proxy::forward(&self.client, upstream, &parts, body).await {
            Some(answer) => proxy::answer(answer)
                .await
                .unwrap_or_else(proxy::bad_gateway),
            None => proxy::bad_gateway(),
        }
    }
}
