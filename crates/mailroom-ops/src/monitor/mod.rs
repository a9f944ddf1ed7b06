//! The task monitor: no stuck or dead-lettered work goes unnoticed.
//!
//! * **Registration**: the monitor's own queue on the events topic hands it every publish; it
//!   registers the task once per consumer expected to handle it (by the consumers' filter
//!   policies). Registration only creates, so a consumer that finished first keeps its state.
//! * **Sweep** (on a schedule): open task/consumer pairs older than the first threshold come
//!   from the ledger's sparse index and are bucketed (by default over 5, 10 and 45 minutes);
//!   each DLQ's depth is read and compared with the last sweep's, kept in the ledger table.
//!   Alerts go to the alerts topic through the [`alert`] state machine: on transitions,
//!   never once per sweep.
//! * **Status**: one task's state per consumer, the buckets, the DLQs ([`status`]).
//!
//! A sweep's cost follows the number of open pairs and DLQs, never the table's size.

pub mod alert;
pub mod filter;
pub mod status;

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::error::DisplayErrorContext;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use alert::{AlertState, Level, Notice};
use filter::FilterPolicy;
use mailroom_lambda::clock::ms;
use mailroom_lambda::config::ConfigError;
use mailroom_lambda::ledger::{Entry, Ledger, LedgerError, State};
use mailroom_lambda::message::{Message, TaskIdSource};
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::{Emf, MetricsSink, Unit};

/// The partition of the ledger table that holds the monitor's own state.
pub const STATE_PARTITION: &str = "#monitor";

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// The consumers every published task is expected to reach, with their subscriptions'
    /// filter policies (`MAILROOM_EXPECTED_CONSUMERS`: `a,b`, or a JSON object of name to
    /// filter policy).
    pub consumers: Vec<(String, FilterPolicy)>,
    /// Bucket thresholds, ascending (`MAILROOM_MONITOR_THRESHOLDS`, default `5m,10m,45m`).
    /// Pairs past the last one raise the stuck-task alert.
    pub thresholds: Vec<Duration>,
    /// The DLQs (and parking lots) to watch (`MAILROOM_MONITOR_DLQS`, comma-separated URLs).
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
        }
    }
}

fn config_error(variable: &'static str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// Parses `90s`, `5m`, `2h` or plain seconds.
fn duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (digits, scale) = match t.as_bytes().last()? {
        b's' => (&t[..t.len() - 1], 1),
        b'm' => (&t[..t.len() - 1], 60),
        b'h' => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| Duration::from_secs(n * scale))
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
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// When a variable does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`.
    ///
    /// # Errors
    /// When a variable does not parse.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        let consumers = match get("MAILROOM_EXPECTED_CONSUMERS") {
            None => d.consumers,
            Some(v) if v.trim_start().starts_with('{') => {
                let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&v)
                    .map_err(|e| {
                    config_error("MAILROOM_EXPECTED_CONSUMERS", &v, e.to_string())
                })?;
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
                            config_error("MAILROOM_EXPECTED_CONSUMERS", &v, format!("{name}: {e}"))
                        })?;
                        Ok((name, policy))
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?
            }
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_owned(), FilterPolicy::default()))
                .collect(),
        };
        let thresholds = match get("MAILROOM_MONITOR_THRESHOLDS") {
            None => d.thresholds,
            Some(v) => {
                let t: Vec<Duration> = v
                    .split(',')
                    .map(|p| duration(p).ok_or(p))
                    .collect::<Result<_, _>>()
                    .map_err(|p| {
                        config_error(
                            "MAILROOM_MONITOR_THRESHOLDS",
                            &v,
                            format!("`{p}` is not a duration like 5m"),
                        )
                    })?;
                if t.is_empty() || t.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(config_error(
                        "MAILROOM_MONITOR_THRESHOLDS",
                        &v,
                        "expected ascending durations, like 5m,10m,45m",
                    ));
                }
                t
            }
        };
        let dlqs = get("MAILROOM_MONITOR_DLQS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|u| {
                        u.parse()
                            .map_err(|e: String| config_error("MAILROOM_MONITOR_DLQS", &v, e))
                    })
                    .collect::<Result<Vec<QueueUrl>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let number = |variable: &'static str| -> Result<Option<u64>, ConfigError> {
            get(variable)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|e| config_error(variable, &v, e.to_string()))
                })
                .transpose()
        };
        let task_id = get("MAILROOM_TASK_ID")
            .map(|v| {
                v.parse()
                    .map_err(|e: String| config_error("MAILROOM_TASK_ID", &v, e))
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            consumers,
            thresholds,
            dlqs,
            alerts_topic: get("MAILROOM_ALERTS_TOPIC_ARN").filter(|v| !v.is_empty()),
            cooldown: number("MAILROOM_ALERT_COOLDOWN_SECS")?
                .map_or(d.cooldown, Duration::from_secs),
            dlq_critical_depth: number("MAILROOM_DLQ_CRITICAL_DEPTH")?
                .unwrap_or(d.dlq_critical_depth),
            task_id,
            namespace: get("MAILROOM_METRICS_NAMESPACE").unwrap_or(d.namespace),
            ..d
        })
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

/// A monitor call failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The ledger did not answer.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// SQS did not answer.
    #[error("SQS {operation} on {queue}: {message}")]
    Sqs {
        /// The API operation.
        operation: &'static str,
        /// The queue.
        queue: String,
        /// What went wrong.
        message: String,
    },
}

/// An open pair as the status API and alerts show it.
#[derive(Debug, Clone, Serialize)]
pub struct OpenTask {
    /// The ledger entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// How long it has been open.
    pub open_for_secs: u64,
    /// Its bucket.
    pub bucket: String,
}

/// One bucket's content.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// `over-5m` and so on.
    pub name: String,
    /// The open pairs in it, oldest first.
    pub tasks: Vec<OpenTask>,
}

/// A sample dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterSample {
    /// The SQS message id in the DLQ.
    pub message_id: String,
    /// The poison path's reason, when the engine put it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A DLQ's state as kept between sweeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DlqRecord {
    /// Messages in it (visible and in flight) at the last sweep.
    pub depth: u64,
    /// When that was.
    pub swept_at_ms: u64,
    /// Sample messages with their reasons, refreshed when the depth changes.
    pub samples: Vec<DeadLetterSample>,
}

/// A DLQ's state now.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStatus {
    /// The queue's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Messages in it now.
    pub depth: u64,
    /// Change since the previous sweep.
    pub growth: i64,
    /// Samples with reasons.
    pub samples: Vec<DeadLetterSample>,
}

/// One alert message sent (or, without a topic, logged).
#[derive(Debug, Clone, Serialize)]
pub struct SentAlert {
    /// `dlq:<name>` or `stuck-tasks`.
    pub key: String,
    /// Alarm, reminder or resolution.
    pub notice: Notice,
    /// The level now.
    pub level: Level,
    /// The subject line.
    pub subject: String,
}

/// What one sweep saw and did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// When it ran, in ms since the epoch.
    pub at_ms: u64,
    /// Open pairs per bucket.
    pub buckets: Vec<(String, usize)>,
    /// Open pairs past the last threshold that are not dead-lettered: the stuck-task alert.
    pub stuck: usize,
    /// Every watched DLQ.
    pub dlqs: Vec<DlqStatus>,
    /// Alert messages sent.
    pub alerts: Vec<SentAlert>,
    /// Alert messages that could not be published; their state was kept, so the next sweep
    /// tries again.
    pub failed_alerts: Vec<String>,
}

/// The task monitor.
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    ledger: Ledger,
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
}

impl Monitor {
    /// A monitor over `ledger`, reading DLQs with `sqs` and alerting through `sns`.
    pub fn new(
        config: MonitorConfig,
        ledger: Ledger,
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
    ) -> Self {
        Self {
            config,
            ledger,
            sqs,
            sns,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Registers every published task in `event` for each consumer whose filter policy it
    /// passes. A record whose registration fails is reported for retry; one without a task id
    /// is logged and dropped (there is nothing to track it by).
    pub async fn register(&self, event: SqsEvent) -> SqsBatchResponse {
        let results = futures_util::stream::iter(event.records)
            .map(|record| async move {
                let message = Message::metadata(record, &self.config.task_id);
                let result = self.register_one(&message).await;
                (message.message_id().to_owned(), result)
            })
            .buffer_unordered(10)
            .collect::<Vec<_>>()
            .await;
        let mut response = SqsBatchResponse::default();
        let (mut created, mut known) = (0u32, 0u32);
        for (message_id, result) in results {
            match result {
                Ok((c, k)) => {
                    created += c;
                    known += k;
                }
                Err(e) => {
                    tracing::error!(%message_id, error = %e, "registration failed; retrying");
                    if !message_id.is_empty() {
                        response.add_failure(message_id);
                    }
                }
            }
        }
        tracing::info!(
            created,
            already_known = known,
            failed = response.batch_item_failures.len(),
            "registered"
        );
        response
    }

    async fn register_one(&self, message: &Message<()>) -> Result<(u32, u32), LedgerError> {
        let Some(task) = message.task_id() else {
            tracing::warn!(
                message_id = message.message_id(),
                "published message has no task id; not tracked"
            );
            return Ok((0, 0));
        };
        let published = message.first_seen_ms();
        let (mut created, mut known) = (0, 0);
        for (consumer, policy) in &self.config.consumers {
            if !policy.matches(message) {
                continue;
            }
            if self.ledger.register(task, consumer, published).await? {
                created += 1;
            } else {
                known += 1;
            }
        }
        Ok((created, known))
    }

    /// Open pairs per bucket at the ledger clock's now.
    ///
    /// # Errors
    /// When the ledger does not answer.
    pub async fn buckets(&self) -> Result<Vec<Bucket>, LedgerError> {
        let now = self.ledger.clock().now_ms();
        let first = self.config.thresholds.first().copied().unwrap_or_default();
        let open = self
            .ledger
            .open_before(now.saturating_sub(ms(first)))
            .await?;
        let names = self.config.bucket_names();
        let mut buckets: Vec<Bucket> = names
            .iter()
            .map(|name| Bucket {
                name: name.clone(),
                tasks: Vec::new(),
            })
            .collect();
        for entry in open {
            let age = Duration::from_millis(now.saturating_sub(entry.opened_at_ms));
            if let Some(i) = self.config.bucket_of(age) {
                buckets[i].tasks.push(OpenTask {
                    open_for_secs: age.as_secs(),
                    bucket: names[i].clone(),
                    entry,
                });
            }
        }
        Ok(buckets)
    }

    async fn depth(&self, url: &QueueUrl) -> Result<u64, MonitorError> {
        let (visible, in_flight) =
            crate::sqs::queue_depth(&self.sqs, url)
                .await
                .map_err(|e| MonitorError::Sqs {
                    operation: "GetQueueAttributes",
                    queue: url.to_string(),
                    message: e.to_string(),
                })?;
        Ok(visible + in_flight)
    }

    /// Up to `samples` messages from a DLQ with their reasons. They are received with a zero
    /// visibility timeout, so they stay available to everyone else.
    async fn peek(&self, url: &QueueUrl) -> Result<Vec<DeadLetterSample>, MonitorError> {
        let want = i32::try_from(self.config.samples.clamp(1, 10)).unwrap_or(10);
        let out = self
            .sqs
            .receive_message()
            .queue_url(url.as_str())
            .max_number_of_messages(want)
            .visibility_timeout(0)
            .message_attribute_names(REASON_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| MonitorError::Sqs {
                operation: "ReceiveMessage",
                queue: url.to_string(),
                message: DisplayErrorContext(e).to_string(),
            })?;
        Ok(out
            .messages()
            .iter()
            .map(|m| DeadLetterSample {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                reason: m
                    .message_attributes()
                    .and_then(|a| a.get(REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .map(str::to_owned),
            })
            .collect())
    }

    /// Every watched DLQ now, with growth against the last sweep's record.
    ///
    /// # Errors
    /// When SQS or the ledger does not answer.
    pub async fn dlqs(&self) -> Result<Vec<DlqStatus>, MonitorError> {
        let docs = self.ledger.documents(STATE_PARTITION).await?;
        let mut out = Vec::with_capacity(self.config.dlqs.len());
        for url in &self.config.dlqs {
            let last = dlq_record(&docs, url);
            let depth = self.depth(url).await?;
            out.push(DlqStatus {
                name: url.name().to_owned(),
                url: url.to_string(),
                depth,
                growth: signed(depth) - signed(last.depth),
                samples: last.samples,
            });
        }
        Ok(out)
    }

    /// One sweep: buckets, DLQ depths, alerts on transitions, metrics.
    ///
    /// # Errors
    /// When the ledger or SQS does not answer; nothing is half-written that a retry would
    /// get wrong (alert state is saved only after its message went out).
    pub async fn sweep(&self) -> Result<SweepReport, MonitorError> {
        let now = self.ledger.clock().now_ms();
        let cooldown = ms(self.config.cooldown);
        let docs = self.ledger.documents(STATE_PARTITION).await?;
        let buckets = self.buckets().await?;
        let mut report = SweepReport {
            at_ms: now,
            buckets: buckets
                .iter()
                .map(|b| (b.name.clone(), b.tasks.len()))
                .collect(),
            stuck: 0,
            dlqs: Vec::new(),
            alerts: Vec::new(),
            failed_alerts: Vec::new(),
        };

        // Stuck tasks: past the last threshold and not in a DLQ (the DLQ alert covers those).
        let last = buckets.last();
        let stuck: Vec<&OpenTask> = last
            .map(|b| {
                b.tasks
                    .iter()
                    .filter(|t| t.entry.state != State::DeadLettered)
                    .collect()
            })
            .unwrap_or_default();
        report.stuck = stuck.len();
        let level = if stuck.is_empty() {
            Level::Ok
        } else {
            Level::Critical
        };
        let threshold = last.map_or_else(String::new, |b| b.name.clone());
        let summary = if stuck.is_empty() {
            format!("no tasks open {threshold}")
        } else {
            format!("{} task/consumer pairs open {threshold}", stuck.len())
        };
        let details = serde_json::json!({
            "count": stuck.len(),
            "bucket": threshold,
            "samples": stuck.iter().take(self.config.samples).collect::<Vec<_>>(),
        });
        self.evaluate(
            &docs,
            "stuck-tasks",
            level,
            now,
            cooldown,
            summary,
            details,
            &mut report,
        )
        .await?;

        // DLQs: depth and growth against the last sweep.
        for url in &self.config.dlqs {
            let mut record = dlq_record(&docs, url);
            let depth = self.depth(url).await?;
            let growth = signed(depth) - signed(record.depth);
            if depth == 0 {
                record.samples.clear();
            } else if depth != record.depth || record.samples.is_empty() {
                record.samples = self.peek(url).await?;
            }
            let name = url.name().to_owned();
            let level = match depth {
                0 => Level::Ok,
                d if d >= self.config.dlq_critical_depth => Level::Critical,
                _ => Level::Warning,
            };
            let summary = if depth == 0 {
                format!("DLQ {name} is empty")
            } else {
                format!("{depth} messages in DLQ {name} ({growth:+} since the last sweep)")
            };
            let details = serde_json::json!({
                "queue": name,
                "queue_url": url.as_str(),
                "depth": depth,
                "growth": growth,
                "samples": record.samples,
            });
            self.evaluate(
                &docs,
                &format!("dlq:{name}"),
                level,
                now,
                cooldown,
                summary,
                details,
                &mut report,
            )
            .await?;
            if depth != record.depth || record.swept_at_ms == 0 {
                record.depth = depth;
                record.swept_at_ms = now;
                self.ledger
                    .put_document(STATE_PARTITION, &dlq_key(url), to_json(&record))
                    .await?;
            }
            report.dlqs.push(DlqStatus {
                name,
                url: url.to_string(),
                depth,
                growth,
                samples: record.samples,
            });
        }

        self.emit(&report);
        tracing::info!(
            buckets = ?report.buckets,
            stuck = report.stuck,
            alerts = report.alerts.len(),
            failed_alerts = report.failed_alerts.len(),
            "sweep done"
        );
        Ok(report)
    }

    /// Steps one alert's state machine and sends what it says.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site per alert kind, all named"
    )]
    async fn evaluate(
        &self,
        docs: &HashMap<String, String>,
        key: &str,
        level: Level,
        now: u64,
        cooldown: u64,
        summary: String,
        details: serde_json::Value,
        report: &mut SweepReport,
    ) -> Result<(), MonitorError> {
        let doc_key = format!("alert#{key}");
        let before: AlertState = docs
            .get(&doc_key)
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let (after, notice) = before.step(level, now, cooldown);
        if let Some(notice) = notice {
            let subject = subject(notice, &summary);
            let body = serde_json::json!({
                "source": "mailroom.task-monitor",
                "notice": notice,
                "alert": key,
                "level": level,
                "previous_level": before.level,
                "summary": summary,
                "at_ms": now,
                "details": details,
            });
            match self.publish(key, notice, &subject, &body).await {
                Ok(()) => report.alerts.push(SentAlert {
                    key: key.to_owned(),
                    notice,
                    level,
                    subject,
                }),
                Err(e) => {
                    // Keep the old state: the next sweep sends it again.
                    tracing::error!(alert = key, error = %e, "alert not published");
                    report.failed_alerts.push(key.to_owned());
                    return Ok(());
                }
            }
        }
        if after != before {
            self.ledger
                .put_document(STATE_PARTITION, &doc_key, to_json(&after))
                .await?;
        }
        Ok(())
    }

    async fn publish(
        &self,
        key: &str,
        notice: Notice,
        subject: &str,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        let Some(topic) = &self.config.alerts_topic else {
            tracing::error!(alert = key, %subject, body = %body, "ALERT (no alerts topic configured)");
            return Ok(());
        };
        let attr = |v: &str| {
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| e.to_string())
        };
        self.sns
            .publish()
            .topic_arn(topic)
            .subject(subject)
            .message(body.to_string())
            .message_attributes("mailroom.notice", attr(notice.as_str())?)
            .message_attributes("mailroom.alert", attr(key)?)
            .send()
            .await
            .map(|_| tracing::warn!(alert = key, %subject, "alert sent"))
            .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(e).to_string())
    }

    fn emit(&self, report: &SweepReport) {
        let ns = self.config.namespace.as_str();
        for (name, count) in &report.buckets {
            let dims = [("Bucket", name.as_str())];
            #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            Emf::new(ns, &dims)
                .metric("OpenTasks", Unit::Count, *count as f64)
                .emit(&self.config.metrics);
        }
        for dlq in &report.dlqs {
            let dims = [("Queue", dlq.name.as_str())];
            #[allow(clippy::cast_precision_loss, reason = "depths far below 2^52")]
            Emf::new(ns, &dims)
                .metric("DlqDepth", Unit::Count, dlq.depth as f64)
                .emit(&self.config.metrics);
        }
        let dims = [("Service", "task-monitor")];
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        Emf::new(ns, &dims)
            .metric("AlertsSent", Unit::Count, report.alerts.len() as f64)
            .metric(
                "AlertsFailed",
                Unit::Count,
                report.failed_alerts.len() as f64,
            )
            .metric("StuckTasks", Unit::Count, report.stuck as f64)
            .emit(&self.config.metrics);
    }
}

fn dlq_key(url: &QueueUrl) -> String {
    format!("dlq#{url}")
}

fn dlq_record(docs: &HashMap<String, String>, url: &QueueUrl) -> DlqRecord {
    docs.get(&dlq_key(url))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An SNS subject: printable ASCII, one line, at most 100 characters.
fn subject(notice: Notice, summary: &str) -> String {
    let text: String = format!("Mailroom {}: {summary}", notice.as_str())
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.len() <= 100 {
        text
    } else {
        format!("{}...", &text[..97])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<MonitorConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        MonitorConfig::from_lookup(|k| map.get(k).cloned())
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

    #[test]
    fn subjects_are_short_single_line_ascii() {
        let s = subject(Notice::Alarm, &format!("é\n{}", "x".repeat(200)));
        assert!(s.len() <= 100 && s.is_ascii() && !s.contains('\n'), "{s}");
        assert!(s.starts_with("Mailroom ALARM: ??x"));
    }
}
