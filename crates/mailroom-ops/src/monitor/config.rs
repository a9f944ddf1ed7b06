//! The monitor's configuration, read once at cold start.

use std::time::Duration;

use mailroom_lambda::config::{ConfigError, Env};
use mailroom_lambda::message::{TASK_ID_FORMS, TaskIdSource};
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::MetricsSink;

use super::filter::FilterPolicy;

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The consumers every published task is expected to reach, with their subscriptions'
    /// filter policies (`MAILROOM_EXPECTED_CONSUMERS`: `a,b`, or a JSON object of name to
    /// filter policy). Unset, they are discovered ([`MonitorConfig::with_discovered`]).
    pub consumers: Vec<(String, FilterPolicy)>,
    /// Bucket thresholds, ascending (`MAILROOM_MONITOR_THRESHOLDS`, default `5m,10m,45m`).
    /// Pairs past the last one raise the stuck-task alert.
    pub thresholds: Vec<Duration>,
    /// The DLQs (and parking lots) to watch (`MAILROOM_MONITOR_DLQS`, comma-separated URLs),
    /// besides the discovered consumers' DLQs.
    pub dlqs: Vec<QueueUrl>,
    /// Where alerts go (`MAILROOM_ALERTS_TOPIC_ARN`); unset, they are only logged.
    pub alerts_topic: Option<String>,
    /// The least time between two messages about the same alert, unless it gets worse
    /// (`MAILROOM_ALERT_COOLDOWN_SECS`, default 3600).
    pub cooldown: Duration,
    /// A DLQ this deep is critical rather than a warning (`MAILROOM_DLQ_CRITICAL_DEPTH`,
    /// default 100).
    pub dlq_critical_depth: u64,
    /// Sample messages or tasks per alert.
    pub samples: usize,
    /// Where the task id comes from (`MAILROOM_TASK_ID`, as for consumers).
    pub task_id: TaskIdSource,
    /// The CloudWatch namespace (`MAILROOM_METRICS_NAMESPACE`, default `Mailroom`).
    pub namespace: String,
    /// Where EMF lines go.
    pub metrics: MetricsSink,
    /// A circuit breaker open at least this much longer pauses its function's event source
    /// mappings until its cool-down is over (`MAILROOM_BREAKER_PAUSE_AFTER_SECS`, default
    /// 60): they resume at a sweep, so a shorter pause would stretch the cool-down.
    pub pause_after: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            consumers: Vec::new(),
            thresholds: [5, 10, 45].map(|m| Duration::from_secs(m * 60)).to_vec(),
            dlqs: Vec::new(),
            alerts_topic: None,
            cooldown: Duration::from_secs(3600),
            dlq_critical_depth: 100,
            samples: 5,
            task_id: TaskIdSource::default(),
            namespace: "Mailroom".into(),
            metrics: MetricsSink::Stdout,
            pause_after: Duration::from_secs(60),
        }
    }
}

/// `5m`, `90s`, `2h`: the name part of a bucket.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

impl MonitorConfig {
    /// Reads the configuration.
    ///
    /// # Errors
    /// When a variable does not parse, naming it and the form expected.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let consumers = match env.string("MAILROOM_EXPECTED_CONSUMERS") {
            None => d.consumers,
            Some(v) if v.starts_with('{') => {
                let expected = "consumer names, or a JSON object of consumer name to filter policy";
                let parsed: serde_json::Map<String, serde_json::Value> = env
                    .json("MAILROOM_EXPECTED_CONSUMERS", expected)?
                    .unwrap_or_default();
                parsed
                    .into_iter()
                    .map(|(name, policy)| {
                        // A subscription without a filter policy is `{}` or an empty string.
                        let policy = match policy {
                            serde_json::Value::String(s) if s.trim().is_empty() => {
                                Ok(FilterPolicy::default())
                            }
                            serde_json::Value::String(s) => serde_json::from_str(&s)
                                .map_err(|e| e.to_string())
                                .and_then(|p| FilterPolicy::parse(&p)),
                            other => FilterPolicy::parse(&other),
                        }
                        .map_err(|e| {
                            ConfigError::invalid(
                                "MAILROOM_EXPECTED_CONSUMERS",
                                v.as_str(),
                                "filter policies in the SNS subset the monitor supports",
                                Some(format!("{name}: {e}")),
                            )
                        })?;
                        Ok((name, policy))
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?
            }
            Some(_) => env
                .list("MAILROOM_EXPECTED_CONSUMERS")
                .into_iter()
                .map(|s| (s, FilterPolicy::default()))
                .collect(),
        };
        let thresholds = match env.durations("MAILROOM_MONITOR_THRESHOLDS")? {
            None => d.thresholds,
            Some(t) => {
                if t.is_empty() || t[0].is_zero() || t.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(ConfigError::invalid(
                        "MAILROOM_MONITOR_THRESHOLDS",
                        env.string("MAILROOM_MONITOR_THRESHOLDS")
                            .unwrap_or_default(),
                        "ascending durations above zero, like 5m,10m,45m",
                        None,
                    ));
                }
                t
            }
        };
        let dlqs = env
            .list("MAILROOM_MONITOR_DLQS")
            .into_iter()
            .map(|u| {
                u.parse().map_err(|e: String| {
                    ConfigError::invalid(
                        "MAILROOM_MONITOR_DLQS",
                        env.string("MAILROOM_MONITOR_DLQS").unwrap_or_default(),
                        "comma-separated SQS queue URLs",
                        Some(e),
                    )
                })
            })
            .collect::<Result<Vec<QueueUrl>, _>>()?;
        let task_id = env
            .parsed("MAILROOM_TASK_ID", TASK_ID_FORMS)?
            .unwrap_or_default();
        Ok(Self {
            consumers,
            thresholds,
            dlqs,
            alerts_topic: env.string("MAILROOM_ALERTS_TOPIC_ARN"),
            cooldown: env
                .seconds("MAILROOM_ALERT_COOLDOWN_SECS")?
                .unwrap_or(d.cooldown),
            dlq_critical_depth: env
                .positive("MAILROOM_DLQ_CRITICAL_DEPTH")?
                .unwrap_or(d.dlq_critical_depth),
            task_id,
            namespace: env
                .string("MAILROOM_METRICS_NAMESPACE")
                .unwrap_or(d.namespace),
            pause_after: env
                .seconds("MAILROOM_BREAKER_PAUSE_AFTER_SECS")?
                .unwrap_or(d.pause_after),
            ..d
        })
    }

    /// This configuration with the consumers discovery found (see [`crate::discovery`]):
    /// their DLQs are watched beside `MAILROOM_MONITOR_DLQS` (the parking lot, the monitor's
    /// own DLQ), and tasks are registered for them by their filter policies, unless
    /// `MAILROOM_EXPECTED_CONSUMERS` names the consumers itself. A consumer whose policy the
    /// monitor cannot evaluate (on the message body, or outside the supported subset) is not
    /// registered for, with a warning: guessing would raise false alerts or miss real ones;
    /// its DLQ is still watched.
    #[must_use]
    pub fn with_discovered(&self, found: &[crate::discovery::Consumer]) -> Self {
        let mut merged = self.clone();
        if self.consumers.is_empty() {
            merged.consumers = found
                .iter()
                .filter_map(|c| {
                    let policy = match (&c.filter_policy, c.filters_body) {
                        (None, _) => Ok(FilterPolicy::default()),
                        (Some(_), true) => Err("it filters on the message body".to_owned()),
                        (Some(p), false) => serde_json::from_str(p)
                            .map_err(|e| e.to_string())
                            .and_then(|p| FilterPolicy::parse(&p)),
                    };
                    match policy {
                        Ok(p) => Some((c.name.clone(), p)),
                        Err(e) => {
                            tracing::warn!(
                                consumer = %c.name,
                                error = %e,
                                "tasks are not registered for this consumer: its filter policy cannot be evaluated here"
                            );
                            None
                        }
                    }
                })
                .collect();
        }
        let mut dlqs: Vec<QueueUrl> = found.iter().filter_map(|c| c.dlq.clone()).collect();
        for dlq in &self.dlqs {
            if !dlqs.contains(dlq) {
                dlqs.push(dlq.clone());
            }
        }
        merged.dlqs = dlqs;
        merged
    }

    /// The bucket names, in threshold order: `over-5m`, `over-10m`, `over-45m`.
    pub fn bucket_names(&self) -> Vec<String> {
        self.thresholds
            .iter()
            .map(|t| format!("over-{}", short(*t)))
            .collect()
    }

    /// The bucket an open pair of this age falls in: the highest threshold it passed.
    pub fn bucket_of(&self, age: Duration) -> Option<usize> {
        self.thresholds.iter().rposition(|t| age >= *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<MonitorConfig, ConfigError> {
        MonitorConfig::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_bucket_at_5_10_and_45_minutes() {
        let c = from(&[]).expect("defaults");
        assert_eq!(c.bucket_names(), vec!["over-5m", "over-10m", "over-45m"]);
        let m = |mins: u64| Duration::from_secs(mins * 60);
        assert_eq!(c.bucket_of(m(4)), None);
        assert_eq!(c.bucket_of(m(5)), Some(0));
        assert_eq!(c.bucket_of(m(44)), Some(1));
        assert_eq!(c.bucket_of(m(45)), Some(2));
    }

    #[test]
    fn expected_consumers_take_a_list_or_their_filter_policies() {
        let c = from(&[("MAILROOM_EXPECTED_CONSUMERS", "notifier, billing")]).expect("list");
        assert_eq!(c.consumers.len(), 2);
        let c = from(&[(
            "MAILROOM_EXPECTED_CONSUMERS",
            r#"{"notifier": "", "billing": "{\"kind\": [\"order.placed\"]}", "audit": {}}"#,
        )])
        .expect("policies, as template parameters pass them");
        assert_eq!(c.consumers.len(), 3);
        let e = from(&[(
            "MAILROOM_EXPECTED_CONSUMERS",
            r#"{"billing": {"n": [{"numeric": [">", 1]}]}}"#,
        )])
        .expect_err("outside the subset");
        assert!(e.to_string().contains("billing"), "{e}");
    }

    #[test]
    fn thresholds_must_ascend_and_parse() {
        let c = from(&[("MAILROOM_MONITOR_THRESHOLDS", "90s,1h")]).expect("valid");
        assert_eq!(c.bucket_names(), vec!["over-90s", "over-1h"]);
        assert!(from(&[("MAILROOM_MONITOR_THRESHOLDS", "10m,5m")]).is_err());
        assert!(from(&[("MAILROOM_MONITOR_THRESHOLDS", "soon")]).is_err());
    }
}
