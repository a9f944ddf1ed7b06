//! The engine's configuration, read once at cold start through [`Env`].
//!
//! Every variable is optional. A value that does not parse stops the cold start with a message
//! naming the variable, rather than running with a silent default.

use std::time::Duration;

use crate::backoff::BackoffPolicy;
use crate::breaker::BreakerPolicy;
use crate::config::{ConfigError, Env};
use crate::message::{TASK_ID_FORMS, TaskIdSource};
use crate::sqs::QueueUrl;
use crate::telemetry::MetricsSink;

/// What a failure does to the rest of a FIFO batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FifoMode {
    /// Report the rest of the failed record's message group failed; other groups go on.
    #[default]
    SkipGroup,
    /// Report every later record of the batch failed.
    StopBatch,
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The consumer's name: the metrics dimension (`MAILROOM_CONSUMER`, else the function name).
    pub consumer: String,
    /// Records processed at once (`MAILROOM_CONCURRENCY`, default 10).
    pub concurrency: usize,
    /// FIFO failure handling (`MAILROOM_FIFO_MODE`: `skip-group` or `stop-batch`).
    pub fifo_mode: FifoMode,
    /// Records are not started with less than this left before the Lambda deadline
    /// (`MAILROOM_DEADLINE_MARGIN_MS`, default 2000).
    pub deadline_margin: Duration,
    /// Backoff for retries (`MAILROOM_BACKOFF_BASE_SECS`, `MAILROOM_BACKOFF_MAX_SECS`;
    /// `MAILROOM_BACKOFF=off` leaves visibility to the queue).
    pub backoff: Option<BackoffPolicy>,
    /// The DLQ for poison (`MAILROOM_DLQ_URL`); default: the source queue's RedrivePolicy.
    pub dlq_url: Option<QueueUrl>,
    /// Where the task id comes from (`MAILROOM_TASK_ID`).
    pub task_id: TaskIdSource,
    /// The DLQ's message size limit: by default (none) its own `MaximumMessageSize`, read once
    /// with the redrive policy; `MAILROOM_MAX_MESSAGE_BYTES` overrides it.
    pub max_message_bytes: Option<usize>,
    /// The CloudWatch namespace (`MAILROOM_METRICS_NAMESPACE`, default `Mailroom`).
    pub namespace: String,
    /// Where EMF lines go.
    pub metrics: MetricsSink,
    /// A fixed jitter seed, for reproducible tests. Unset in production.
    pub jitter_seed: Option<u64>,
    /// The ledger table (`MAILROOM_LEDGER_TABLE`): set, it turns idempotency on.
    pub ledger_table: Option<String>,
    /// The lease when the invocation has no deadline, as in local runs
    /// (`MAILROOM_LEASE_SECS`, default 900, Lambda's longest timeout).
    pub lease: Duration,
    /// Whether a record takes the in-progress lease before it runs (`MAILROOM_LEASE`, `on`
    /// by default). `off` halves the ledger's writes: a record runs unless its task already
    /// succeeded here (one consistent read), and only its outcome is written; two deliveries
    /// of one task at the same moment may both run. For consumers whose side effect is
    /// idempotent in itself (a receiver that deduplicates on the task id).
    pub leases: bool,
    /// The circuit breaker (`MAILROOM_BREAKER=on` and its variables, [`BreakerPolicy`]); it
    /// keeps its state in the ledger, so it needs `MAILROOM_LEDGER_TABLE`.
    pub breaker: Option<BreakerPolicy>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            consumer: "consumer".to_owned(),
            concurrency: 10,
            fifo_mode: FifoMode::SkipGroup,
            deadline_margin: Duration::from_secs(2),
            backoff: Some(BackoffPolicy::default()),
            dlq_url: None,
            task_id: TaskIdSource::default(),
            max_message_bytes: None,
            namespace: "Mailroom".to_owned(),
            metrics: MetricsSink::Stdout,
            jitter_seed: None,
            ledger_table: None,
            lease: Duration::from_secs(900),
            leases: true,
            breaker: None,
        }
    }
}

impl EngineConfig {
    /// Reads the configuration.
    ///
    /// # Errors
    /// When a variable is set but does not parse.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        env.check_settings()?;
        let d = Self::default();
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let fifo_mode = match env.choice("MAILROOM_FIFO_MODE", &["skip-group", "stop-batch"])? {
            Some("stop-batch") => FifoMode::StopBatch,
            _ => FifoMode::SkipGroup,
        };
        let backoff = if env.choice("MAILROOM_BACKOFF", &["on", "off"])? == Some("off") {
            None
        } else {
            let base = env.seconds("MAILROOM_BACKOFF_BASE_SECS")?;
            let cap = env.seconds("MAILROOM_BACKOFF_MAX_SECS")?;
            Some(BackoffPolicy::new(
                base.unwrap_or(Duration::from_secs(2)),
                cap.unwrap_or(Duration::from_secs(900)),
            ))
        };
        let breaker = BreakerPolicy::from_env(env)?;
        if breaker.is_some() && env.string("MAILROOM_LEDGER_TABLE").is_none() {
            return Err(ConfigError::invalid(
                "MAILROOM_BREAKER",
                "on",
                "off without a ledger",
                Some(
                    "the circuit breaker keeps its state in the ledger: set MAILROOM_LEDGER_TABLE too"
                        .to_owned(),
                ),
            ));
        }
        Ok(Self {
            consumer: env
                .string("MAILROOM_CONSUMER")
                .or_else(|| env.string("AWS_LAMBDA_FUNCTION_NAME"))
                .unwrap_or(d.consumer),
            concurrency: env
                .positive("MAILROOM_CONCURRENCY")?
                .map_or(d.concurrency, size),
            fifo_mode,
            deadline_margin: env
                .millis("MAILROOM_DEADLINE_MARGIN_MS")?
                .unwrap_or(d.deadline_margin),
            backoff,
            dlq_url: env.parsed("MAILROOM_DLQ_URL", "an SQS queue URL")?,
            task_id: env
                .parsed("MAILROOM_TASK_ID", TASK_ID_FORMS)?
                .unwrap_or_default(),
            max_message_bytes: env.positive("MAILROOM_MAX_MESSAGE_BYTES")?.map(size),
            namespace: env
                .string("MAILROOM_METRICS_NAMESPACE")
                .unwrap_or(d.namespace),
            metrics: MetricsSink::Stdout,
            jitter_seed: None,
            ledger_table: env.string("MAILROOM_LEDGER_TABLE"),
            lease: env
                .positive("MAILROOM_LEASE_SECS")?
                .map_or(d.lease, Duration::from_secs),
            leases: env.choice("MAILROOM_LEASE", &["on", "off"])? != Some("off"),
            breaker,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<EngineConfig, ConfigError> {
        EngineConfig::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn empty_environment_gives_the_documented_defaults() {
        let c = from(&[]).expect("defaults parse");
        assert_eq!(c.concurrency, 10);
        assert_eq!(c.fifo_mode, FifoMode::SkipGroup);
        assert_eq!(c.deadline_margin, Duration::from_secs(2));
        assert_eq!(c.backoff, Some(BackoffPolicy::default()));
        assert_eq!(c.task_id, TaskIdSource::Attribute("task_id".into()));
        assert_eq!(c.ledger_table, None, "idempotency is opt-in");
        assert!(c.leases, "with the lease unless told otherwise");
    }

    #[test]
    fn every_setting_is_read() {
        let c = from(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "orders-fn"),
            ("MAILROOM_CONCURRENCY", "4"),
            ("MAILROOM_FIFO_MODE", "stop-batch"),
            ("MAILROOM_DEADLINE_MARGIN_MS", "500"),
            ("MAILROOM_BACKOFF", "off"),
            (
                "MAILROOM_DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/1/dlq",
            ),
            ("MAILROOM_TASK_ID", "attribute:task_id"),
            ("MAILROOM_LEDGER_TABLE", "mailroom-ledger"),
            ("MAILROOM_LEASE_SECS", "60"),
        ])
        .expect("valid");
        assert_eq!(c.ledger_table.as_deref(), Some("mailroom-ledger"));
        assert_eq!(c.lease, Duration::from_secs(60));
        assert_eq!(c.consumer, "orders-fn");
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.fifo_mode, FifoMode::StopBatch);
        assert_eq!(c.deadline_margin, Duration::from_millis(500));
        assert_eq!(c.backoff, None);
        assert!(c.dlq_url.is_some());
        assert_eq!(c.task_id, TaskIdSource::Attribute("task_id".into()));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = from(&[("MAILROOM_CONCURRENCY", "many")]).expect_err("not a number");
        assert!(
            e.to_string().starts_with("MAILROOM_CONCURRENCY=\"many\""),
            "{e}"
        );
        assert!(from(&[("MAILROOM_CONCURRENCY", "0")]).is_err());
        assert!(from(&[("MAILROOM_FIFO_MODE", "yolo")]).is_err());
        assert!(from(&[("MAILROOM_DLQ_URL", "dlq")]).is_err());
        assert!(from(&[("MAILROOM_TASK_ID", "header")]).is_err());
    }
}
