//! The `dlq-replay` function: one on-demand replay run per invocation.
//!
//! The request is [`mailroom_ops::replay::RequestJson`]; the response is the run's
//! [`mailroom_ops::replay::ReplayReport`]. Which queues may be touched comes from configuration,
//! never from the request.

use std::collections::HashMap;
use std::time::Duration;

use mailroom_lambda::config::{ConfigError, Env};
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::message::{TASK_ID_FORMS, TaskIdSource};
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_ops::replay::{
    Allowlist, LedgerMark, ReplayError, ReplayPort, ReplayReport, RequestJson, replay,
};

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Queues the function may touch (`MAILROOM_REPLAY_ALLOWLIST`: comma-separated names or URLs).
    pub allowlist: Allowlist,
    /// The parking lot, unless the request names one (`MAILROOM_PARKING_LOT_URL`).
    pub parking_lot: Option<QueueUrl>,
    /// Time kept free before the Lambda deadline (`MAILROOM_REPLAY_MARGIN_MS`, default 5000).
    pub margin: Duration,
    /// The EMF namespace (`MAILROOM_METRICS_NAMESPACE`, default `Mailroom`).
    pub namespace: String,
    /// Whose DLQ each queue is, by queue name, for the ledger's `REPLAYED` and `PARKED`
    /// marks (`MAILROOM_REPLAY_CONSUMERS`: `orders-dlq=orders,…`).
    pub consumers: HashMap<String, String>,
    /// Where the task id comes from (`MAILROOM_TASK_ID`, as for the consumers).
    pub task_id: TaskIdSource,
}

/// Why an invocation failed before replaying anything.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration does not parse.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The request is not valid.
    #[error("bad request: {0}")]
    Request(String),
    /// The replay could not start.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        let error_type = match e {
            Error::Config(_) => "Mailroom.Config",
            Error::Request(_) => "Mailroom.BadRequest",
            Error::Replay(_) => "Mailroom.ReplayRefused",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

impl Config {
    /// Reads the configuration.
    ///
    /// # Errors
    /// When the allowlist is empty or a value does not parse.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let allowed = env.list("MAILROOM_REPLAY_ALLOWLIST");
        if allowed.is_empty() {
            return Err(ConfigError::missing(
                "MAILROOM_REPLAY_ALLOWLIST",
                "the queues replay may touch, comma-separated names or URLs (empty allows none)",
            ));
        }
        let consumers = env
            .list("MAILROOM_REPLAY_CONSUMERS")
            .into_iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(q, c)| (q.trim().to_owned(), c.trim().to_owned()))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "MAILROOM_REPLAY_CONSUMERS",
                            env.string("MAILROOM_REPLAY_CONSUMERS").unwrap_or_default(),
                            "comma-separated queue=consumer pairs",
                            Some(format!("`{pair}` has no `=`")),
                        )
                    })
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Self {
            consumers,
            task_id: env
                .parsed("MAILROOM_TASK_ID", TASK_ID_FORMS)?
                .unwrap_or_default(),
            allowlist: Allowlist::new(allowed),
            parking_lot: env.parsed("MAILROOM_PARKING_LOT_URL", "an SQS queue URL")?,
            margin: env
                .millis("MAILROOM_REPLAY_MARGIN_MS")?
                .unwrap_or(Duration::from_secs(5)),
            namespace: env
                .string("MAILROOM_METRICS_NAMESPACE")
                .unwrap_or_else(|| "Mailroom".into()),
        })
    }
}

/// Runs one replay, stopping cleanly `margin` before `remaining` runs out. With a ledger,
/// and the DLQ's consumer known from configuration, each move and park is marked in it.
///
/// # Errors
/// When the request is invalid or the replay cannot start; per-message failures are in the report.
pub async fn handle<P: ReplayPort>(
    port: &P,
    config: &Config,
    ledger: Option<&Ledger>,
    request: RequestJson,
    remaining: Option<Duration>,
    metrics: &MetricsSink,
) -> Result<ReplayReport, Error> {
    let mut request = request.into_request().map_err(Error::Request)?;
    if request.parking_lot.is_none() {
        request.parking_lot.clone_from(&config.parking_lot);
    }
    request.time_budget = remaining.map(|r| r.saturating_sub(config.margin));
    let consumer = config.consumers.get(request.source.name());
    if let (Some(ledger), Some(consumer)) = (ledger, consumer) {
        request.ledger = Some(LedgerMark {
            ledger: ledger.clone(),
            consumer: consumer.clone(),
            task_id: config.task_id.clone(),
        });
    }
    let report = replay(port, &config.allowlist, &request).await?;
    report.emit(&config.namespace, metrics);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_allowlist_is_refused_at_cold_start() {
        let from = |pairs: &[(&str, &str)]| Config::from_env(&Env::from_pairs(pairs));
        let e = from(&[]).expect_err("no allowlist");
        assert_eq!(e.variable, "MAILROOM_REPLAY_ALLOWLIST");
        let c = from(&[("MAILROOM_REPLAY_ALLOWLIST", "orders, orders-dlq")]).expect("valid");
        assert!(
            c.allowlist
                .allows(&"https://sqs.local/orders-dlq".parse().expect("url"))
        );
        assert_eq!(c.margin, Duration::from_secs(5));
        assert!(c.consumers.is_empty());
        let c = from(&[
            ("MAILROOM_REPLAY_ALLOWLIST", "orders-dlq"),
            ("MAILROOM_REPLAY_CONSUMERS", "orders-dlq=orders, x-dlq=x"),
        ])
        .expect("valid");
        assert_eq!(
            c.consumers.get("orders-dlq").map(String::as_str),
            Some("orders")
        );
        let e = from(&[
            ("MAILROOM_REPLAY_ALLOWLIST", "orders-dlq"),
            ("MAILROOM_REPLAY_CONSUMERS", "orders-dlq"),
        ])
        .expect_err("not a pair");
        assert!(e.to_string().contains("queue=consumer"), "{e}");
    }
}
