//! The AWS SDK's configuration for a Lambda function, built from the environment Lambda sets,
//! over one HTTP stack shared with the functions' own HTTP calls.
//!
//! A function needs the region, the execution role's credentials and, locally, an endpoint
//! URL: all in its environment. `aws-config`'s full credential chain (profiles, SSO, STS web
//! identity, IMDS) and the SDK's default HTTPS client (hyper with HTTP/2 and aws-lc) would
//! double the size of every bootstrap and slow every cold start, for nothing a Lambda function
//! uses. So the SDK here runs over [`reqwest`] (HTTP/1.1, rustls with the *ring* provider and
//! compiled-in Mozilla roots), the same client the notifier delivers webhooks with. The CLI,
//! which runs on operators' machines, keeps `aws-config`'s full chain.
//!
//! Variables read: `AWS_REGION` (else `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (re-read on every signing, so rotated values are
//! picked up), `AWS_ENDPOINT_URL` (the emulator, locally) and, as `aws-config` does, a service's
//! own `AWS_ENDPOINT_URL_<SERVICE>` (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_LAMBDA`).

use std::sync::{Arc, Once};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future,
};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
pub use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// Installs rustls's *ring* crypto provider as the process default, once. Every TLS client in
/// the process (the SDK's, the notifier's) uses it.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first; that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client builder with Mailroom's TLS setup: *ring*, Mozilla's roots compiled in (no
/// scan of the system's certificate files at cold start), HTTP/1.1.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto();
    reqwest::Client::builder()
        .tls_certs_only(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der).ok()),
        )
        .pool_idle_timeout(Duration::from_secs(60))
}

/// The SDK's HTTP client over reqwest.
#[derive(Debug, Clone)]
pub struct ReqwestHttpClient {
    client: reqwest::Client,
}

impl ReqwestHttpClient {
    /// Wraps a reqwest client.
    pub fn new(client: reqwest::Client) -> Self {
        Self { client }
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // Timeouts are enforced by the SDK's orchestrator from its TimeoutConfig.
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for ReqwestHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            // The SDK operations Mailroom calls all have in-memory bodies.
            let body = body
                .bytes()
                .map(bytes::Bytes::copy_from_slice)
                .ok_or_else(|| {
                    ConnectorError::user("streaming request bodies are not supported".into())
                })?;
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        ConnectorError::timeout(e.into())
                    } else if e.is_connect() || e.is_request() {
                        ConnectorError::io(e.into())
                    } else {
                        ConnectorError::other(e.into(), None)
                    }
                })?;
            let mut builder = http::Response::builder().status(response.status());
            if let Some(headers) = builder.headers_mut() {
                headers.clone_from(response.headers());
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            let response = builder
                .body(SdkBody::from(bytes))
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            response
                .try_into()
                .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                    ConnectorError::other(e.into(), None)
                })
        })
    }
}

/// Credentials from the environment, read on every call.
#[derive(Debug, Clone)]
struct EnvironmentCredentials(Arc<crate::config::Env<'static>>);

impl ProvideCredentials for EnvironmentCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        // Read on every call: Lambda may rotate the role's credentials in the environment.
        let var = |k: &str| self.0.string(k);
        future::ProvideCredentials::ready(
            match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                (Some(key), Some(secret)) => Ok(Credentials::new(
                    key,
                    secret,
                    var("AWS_SESSION_TOKEN"),
                    None,
                    "environment",
                )),
                _ => Err(CredentialsError::not_loaded(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (Lambda sets them from the execution role)",
                )),
            },
        )
    }
}

/// A service's own endpoint, from `AWS_ENDPOINT_URL_<SERVICE>` (the service's id in capitals,
/// spaces as `_`: `AWS_ENDPOINT_URL_DYNAMODB`), as `aws-config` reads it; a service without
/// one uses `AWS_ENDPOINT_URL`, else AWS's own endpoint.
#[derive(Debug)]
struct ServiceEndpoints(Arc<crate::config::Env<'static>>);

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        self.0.string(&format!("AWS_ENDPOINT_URL_{service}"))
    }
}

/// The SDK configuration from Lambda's environment, over `client`.
pub fn from_env_with(client: reqwest::Client) -> SdkConfig {
    from_vars(crate::config::Env::process(), client)
}

/// The SDK configuration from the variables in `env` (see the module's list), over `client`.
pub fn from_vars(env: crate::config::Env<'static>, client: reqwest::Client) -> SdkConfig {
    let env = Arc::new(env);
    let var = |k: &str| env.string(k);
    let mut builder = base(client).credentials_provider(SharedCredentialsProvider::new(
        EnvironmentCredentials(env.clone()),
    ));
    builder.set_region(
        var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .map(Region::new),
    );
    builder.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    builder.set_service_config(Some(ServiceEndpoints(env)));
    builder.build()
}

/// The SDK configuration from Lambda's environment, over a fresh client.
///
/// # Panics
/// When the TLS stack cannot be set up (no usable root certificates), which no retry fixes.
pub fn from_env() -> SdkConfig {
    from_env_with(
        http_client_builder()
            .build()
            .expect("the HTTP client builds"),
    )
}

/// The SDK configuration for an emulator at `endpoint`: fixed region and dummy credentials.
///
/// # Panics
/// When the HTTP client cannot be built.
pub fn emulator(endpoint: &str, region: &str) -> SdkConfig {
    let client = http_client_builder()
        .build()
        .expect("the HTTP client builds");
    base(client)
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        // An emulator on this machine does not stall like a network; it pauses when it is
        // busy (a page of a large Scan under load took more than the 5 s grace period, and the
        // SDK aborted the read). Give it a minute before a read counts as stalled.
        .stalled_stream_protection(
            aws_types::sdk_config::StalledStreamProtectionConfig::enabled()
                .grace_period(Duration::from_secs(60))
                .build(),
        )
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local",
            "local",
            None,
            None,
            "mailroom-local",
        )))
        .build()
}

fn base(client: reqwest::Client) -> aws_types::sdk_config::Builder {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(ReqwestHttpClient::new(client)))
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::new(SystemTimeSource::new()))
        .retry_config(RetryConfig::standard())
        // As aws-config's default: a connect timeout, no read timeout (long polls wait 20 s).
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
}
