//! Forwarding one HTTP request to the emulator, as the fault proxy and the emulator's router
//! both do: the client's headers (Host included: moto builds queue URLs from it, and they must
//! name the endpoint the client used) and body go upstream, the answer comes back whole.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// Where a request goes: DynamoDB's to one emulator process, everything else to another (see
/// [`crate::Moto`]), or all of it to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    services: String,
    dynamodb: String,
}

impl Upstreams {
    /// Everything to `url` (`http://127.0.0.1:PORT`).
    pub fn single(url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self {
            services: url.clone(),
            dynamodb: url,
        }
    }

    /// DynamoDB's requests to `dynamodb`, the rest to `services`.
    pub(crate) fn split(services: String, dynamodb: String) -> Self {
        Self { services, dynamodb }
    }

    /// The upstream for a request with these headers. DynamoDB's JSON protocol names the
    /// action in `X-Amz-Target: DynamoDB_20120810.PutItem` (`DynamoDBStreams_…` for streams).
    pub(crate) fn for_request(&self, headers: &hyper::HeaderMap) -> &str {
        let dynamodb = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("DynamoDB"));
        if dynamodb {
            &self.dynamodb
        } else {
            &self.services
        }
    }

    /// The upstream of everything but DynamoDB.
    pub fn services(&self) -> &str {
        &self.services
    }

    /// The upstream of DynamoDB.
    pub fn dynamodb(&self) -> &str {
        &self.dynamodb
    }

    /// The DynamoDB upstream, when it is not the same as the rest's.
    pub(crate) fn separate_dynamodb(&self) -> Option<&str> {
        (self.dynamodb != self.services).then_some(self.dynamodb.as_str())
    }
}

impl From<&str> for Upstreams {
    fn from(url: &str) -> Self {
        Self::single(url)
    }
}

impl From<&String> for Upstreams {
    fn from(url: &String) -> Self {
        Self::single(url)
    }
}

/// An HTTP client for loopback upstreams: no system proxy, connections kept.
pub(crate) fn client() -> std::io::Result<reqwest::Client> {
    mailroom_lambda::aws::install_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(std::io::Error::other)
}

/// Sends `parts` and `body` to `upstream` (`http://127.0.0.1:PORT`), keeping the path and
/// query. `None` when the upstream did not answer.
pub(crate) async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Option<reqwest::Response> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = client
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    forward.send().await.ok()
}

/// The upstream's answer as the proxy's own; `None` when its body cannot be read.
pub(crate) async fn answer(upstream: reqwest::Response) -> Option<Response<Full<Bytes>>> {
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let bytes = upstream.bytes().await.ok()?;
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !is_hop_by_hop(name.as_str()) && name != hyper::header::CONTENT_LENGTH {
            response.headers_mut().append(name, value.clone());
        }
    }
    Some(response)
}

/// A 502 for an upstream that did not answer.
pub(crate) fn bad_gateway() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"upstream did not answer")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
    )
}
