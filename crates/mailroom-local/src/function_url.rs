//! A function's Function URL on a loopback port: each HTTP request becomes the payload
//! format 2.0 event Lambda sends, goes to the real binary through the Runtime Interface
//! Emulator, and the function's answer becomes the HTTP response.
//!
//! Locally there is no SigV4 check (`AuthType: AWS_IAM` in AWS): the port is on 127.0.0.1.

use std::io;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::runner::{FunctionProcess, InvokeError};

/// A Function URL served on 127.0.0.1. It stops when dropped.
#[derive(Debug)]
pub struct FunctionUrl {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FunctionUrl {
    /// Serves `function` on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port is free.
    pub async fn serve(function: Arc<FunctionProcess>) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let host = listener.local_addr()?.to_string();
        let url = format!("http://{host}");
        let task = crate::http::serve(listener, move |req, peer| {
            let (function, host) = (function.clone(), host.clone());
            async move { answer(&function, &host, &peer.ip().to_string(), req).await }
        });
        Ok(Self { url, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for FunctionUrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    function: &FunctionProcess,
    host: &str,
    source_ip: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return plain(StatusCode::BAD_REQUEST, "could not read the request body");
    };
    let event = event(&parts, host, source_ip, &body);
    match function.invoke(&event).await {
        Ok(reply) => response(&reply),
        // Lambda answers a function error on a Function URL with 502.
        Err(InvokeError::Function {
            error_type,
            message,
        }) => plain(StatusCode::BAD_GATEWAY, &format!("{error_type}: {message}")),
        Err(e) => plain(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

/// The payload format 2.0 event of a Function URL request.
fn event(parts: &hyper::http::request::Parts, host: &str, source_ip: &str, body: &[u8]) -> Value {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // Lambda joins repeated headers with commas.
            Some(Value::String(v)) => {
                v.push(',');
                v.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    headers.insert("x-forwarded-proto".into(), Value::String("http".into()));
    let text = std::str::from_utf8(body).ok();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": uuid_like(now),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": u64::try_from(now).unwrap_or(0),
        },
        "body": text.map_or_else(|| base64::engine::general_purpose::STANDARD.encode(body), str::to_owned),
        "isBase64Encoded": text.is_none(),
    })
}

fn uuid_like(now: u128) -> String {
    format!("local-{now:x}-{:08x}", fastrand::u32(..))
}

/// The HTTP response a Function URL makes of the function's answer: a `statusCode` object
/// as given, anything else as a 200 JSON body (Lambda's rule).
fn response(reply: &Value) -> Response<Full<Bytes>> {
    let Some(code) = reply.get("statusCode").and_then(Value::as_u64) else {
        let mut r = Response::new(Full::new(Bytes::from(reply.to_string())));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return r;
    };
    let body = reply["body"].as_str().unwrap_or_default();
    let body = if reply["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in reply["headers"].as_object().into_iter().flatten() {
        if let (Ok(n), Some(Ok(v))) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(hyper::header::HeaderValue::from_str),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        json!({ "message": message }).to_string(),
    )));
    *r.status_mut() = status;
    r
}
