//! The `dlq-replay` function: one on-demand replay run per invocation.
//!
//! The request is [`mailroom_ops::replay::RequestJson`]; the response is the run's
//! [`mailroom_ops::replay::ReplayReport`]. Which queues may be touched comes from configuration
//! and from the consumers discovered on the events topic ([`Config::with_discovered`]), never
//! from the request.

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
    /// Queues the function may touch (`MAILROOM_REPLAY_ALLOWLIST`: comma-separated names or
    /// URLs), besides the discovered consumers' queues and DLQs.
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
    /// The consumers could not be discovered (and never were).
    #[error(transparent)]
    Discovery(#[from] mailroom_ops::discovery::DiscoveryError),
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        let error_type = match e {
            Error::Config(_) => "Mailroom.Config",
            Error::Request(_) => "Mailroom.BadRequest",
            Error::Replay(_) => "Mailroom.ReplayRefused",
            Error::Discovery(_) => "Mailroom.DiscoveryFailed",
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
    /// When neither the allowlist nor the events topic (for discovery) is given, or a value
    /// does not parse.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let allowed = env.list("MAILROOM_REPLAY_ALLOWLIST");
        if allowed.is_empty() && env.string("MAILROOM_EVENTS_TOPIC_ARN").is_none() {
            return Err(ConfigError::missing(
                "MAILROOM_REPLAY_ALLOWLIST",
                "the queues replay may touch, comma-separated names or URLs, or \
                 MAILROOM_EVENTS_TOPIC_ARN to allow the consumers subscribed to it",
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

impl Config {
    /// This configuration with the consumers discovery found: each consumer's queue and DLQ
    /// allowed, and each DLQ's replays marked in the ledger for its consumer (an entry of
    /// `MAILROOM_REPLAY_CONSUMERS` for the same queue wins).
    #[must_use]
    pub fn with_discovered(&self, found: &[mailroom_ops::discovery::Consumer]) -> Self {
        let mut merged = self.clone();
        merged.allowlist = merged.allowlist.with(
            found
                .iter()
                .flat_map(|c| std::iter::once(&c.queue).chain(&c.dlq))
                .map(|q| q.name().to_owned()),
        );
        for c in found {
            if let Some(dlq) = &c.dlq {
                merged
                    .consumers
                    .entry(dlq.name().to_owned())
                    .or_insert_with(|| c.name.clone());
            }
        }
        merged
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
        // The events topic's consumers are allowed by discovery instead.
        from(&[(
            "MAILROOM_EVENTS_TOPIC_ARN",
            "arn:aws:sns:us-east-1:1:events",
        )])
        .expect("discovery allows");
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

    #[test]
    fn discovered_consumers_allow_their_queues_and_name_their_dlqs() {
        let base = Config::from_env(&Env::from_pairs(&[
            ("MAILROOM_REPLAY_ALLOWLIST", "parking-lot"),
            ("MAILROOM_REPLAY_CONSUMERS", "billing-dlq=billing-v2"),
        ]))
        .expect("valid");
        let url = |name: &str| -> QueueUrl {
            format!("https://sqs.us-east-1.amazonaws.com/1/{name}")
                .parse()
                .expect("url")
        };
        let consumer = |name: &str, dlq: Option<&str>| mailroom_ops::discovery::Consumer {
            name: name.to_owned(),
            queue: url(name),
            dlq: dlq.map(url),
            filter_policy: None,
            filters_body: false,
            raw: true,
        };
        let c = base.with_discovered(&[
            consumer("audit-log", Some("audit-log-dlq")),
            consumer("billing", Some("billing-dlq")),
            consumer("tap", None),
        ]);
        for allowed in [
            "audit-log",
            "audit-log-dlq",
            "billing-dlq",
            "tap",
            "parking-lot",
        ] {
            assert!(c.allowlist.allows(&url(allowed)), "{allowed}");
        }
        assert!(!c.allowlist.allows(&url("someone-elses-dlq")));
        assert_eq!(
            c.consumers.get("audit-log-dlq").map(String::as_str),
            Some("audit-log")
        );
        // An explicit entry wins over discovery.
        assert_eq!(
            c.consumers.get("billing-dlq").map(String::as_str),
            Some("billing-v2")
        );
        // The configuration it came from is unchanged.
        assert!(!base.allowlist.allows(&url("audit-log-dlq")));
    }
}
