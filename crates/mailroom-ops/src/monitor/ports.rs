//! The monitor's ports: the ledger reads and writes it makes, the DLQ reads, and where alerts
//! go. Small traits, so the sweep and the alert state machine run in unit tests over the
//! fakes below, and in production over the adapters beside them.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use mailroom_lambda::ledger::{Breaker, Entry, Ledger, LedgerError};
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::sqs::{QueueUrl, SqsError};

use super::alert::Notice;
use super::{DeadLetterSample, MonitorError};

/// What the monitor reads from and writes to the ledger table.
pub trait TaskStore: Send + Sync {
    /// Now, by the store's clock, in ms since the epoch.
    fn now_ms(&self) -> u64;

    /// Registers the pair `RECEIVED` unless it exists; `true` when it created it.
    ///
    /// # Errors
    /// When the table does not answer.
    fn register(
        &self,
        task_id: &str,
        consumer: &str,
        published_ms: Option<u64>,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Which of `pairs` (task id, consumer) exist already, read in bulk.
    ///
    /// # Errors
    /// When the table does not answer.
    fn existing(
        &self,
        pairs: &[(String, String)],
    ) -> impl Future<Output = Result<HashSet<(String, String)>, LedgerError>> + Send;

    /// Open pairs opened before `cutoff_ms`.
    ///
    /// # Errors
    /// When the table does not answer.
    fn open_before(
        &self,
        cutoff_ms: u64,
    ) -> impl Future<Output = Result<Vec<Entry>, LedgerError>> + Send;

    /// The monitor's own documents in `partition`, by key.
    ///
    /// # Errors
    /// When the table does not answer.
    fn documents(
        &self,
        partition: &str,
    ) -> impl Future<Output = Result<HashMap<String, String>, LedgerError>> + Send;

    /// Writes one of the monitor's documents.
    ///
    /// # Errors
    /// When the table does not answer.
    fn put_document(
        &self,
        partition: &str,
        key: &str,
        document: String,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Every circuit breaker.
    ///
    /// # Errors
    /// When the table does not answer.
    fn breakers(&self) -> impl Future<Output = Result<Vec<Breaker>, LedgerError>> + Send;
}

impl TaskStore for Ledger {
    fn now_ms(&self) -> u64 {
        self.clock().now_ms()
    }

    async fn register(
        &self,
        task_id: &str,
        consumer: &str,
        published_ms: Option<u64>,
    ) -> Result<bool, LedgerError> {
        Ledger::register(self, task_id, consumer, published_ms).await
    }

    async fn existing(
        &self,
        pairs: &[(String, String)],
    ) -> Result<HashSet<(String, String)>, LedgerError> {
        Ledger::existing(self, pairs).await
    }

    async fn open_before(&self, cutoff_ms: u64) -> Result<Vec<Entry>, LedgerError> {
        Ledger::open_before(self, cutoff_ms).await
    }

    async fn documents(&self, partition: &str) -> Result<HashMap<String, String>, LedgerError> {
        super::documents::documents(self, partition).await
    }

    async fn put_document(
        &self,
        partition: &str,
        key: &str,
        document: String,
    ) -> Result<(), LedgerError> {
        super::documents::put_document(self, partition, key, document).await
    }

    async fn breakers(&self) -> Result<Vec<Breaker>, LedgerError> {
        Ledger::breakers(self, None).await
    }
}

/// What the monitor reads from a DLQ.
pub trait DlqReader: Send + Sync {
    /// Messages in the queue, visible and in flight.
    ///
    /// # Errors
    /// When SQS does not answer.
    fn depth(&self, queue: &QueueUrl) -> impl Future<Output = Result<u64, MonitorError>> + Send;

    /// Up to `max` messages with their poison reasons, left visible to everyone else.
    ///
    /// # Errors
    /// When SQS does not answer.
    fn peek(
        &self,
        queue: &QueueUrl,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetterSample>, MonitorError>> + Send;
}

/// [`DlqReader`] over the SQS SDK.
#[derive(Debug, Clone)]
pub struct SqsDlqs {
    client: aws_sdk_sqs::Client,
}

impl SqsDlqs {
    /// Wraps an SDK client, built once at cold start.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }
}

impl DlqReader for SqsDlqs {
    async fn depth(&self, queue: &QueueUrl) -> Result<u64, MonitorError> {
        let (visible, in_flight) =
            crate::sqs::queue_depth(&self.client, queue)
                .await
                .map_err(|source| MonitorError::Sqs {
                    queue: queue.to_string(),
                    source,
                })?;
        Ok(visible + in_flight)
    }

    async fn peek(
        &self,
        queue: &QueueUrl,
        max: usize,
    ) -> Result<Vec<DeadLetterSample>, MonitorError> {
        let want = i32::try_from(max.clamp(1, 10)).unwrap_or(10);
        // A zero visibility timeout: the samples stay available to the replay and everyone else.
        let out = self
            .client
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(want)
            .visibility_timeout(0)
            .message_attribute_names(REASON_ATTRIBUTE)
            .send()
            .await
            .map_err(|e| MonitorError::Sqs {
                queue: queue.to_string(),
                source: SqsError::from_sdk("ReceiveMessage", &e),
            })?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(DeadLetterSample {
                    message_id: m.message_id()?.to_owned(),
                    reason: m
                        .message_attributes()
                        .and_then(|a| a.get(REASON_ATTRIBUTE))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned),
                })
            })
            .collect())
    }
}

/// One alert message, as it goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMessage {
    /// `dlq:<name>` or `stuck-tasks`.
    pub key: String,
    /// Alarm, reminder or resolution.
    pub notice: Notice,
    /// The subject line.
    pub subject: String,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// Where alerts go.
pub trait AlertSink: Send + Sync {
    /// Publishes one alert.
    ///
    /// # Errors
    /// When it was not published, with the reason; the monitor keeps the alert's old state,
    /// so the next sweep sends it again.
    fn publish(&self, alert: &AlertMessage) -> impl Future<Output = Result<(), String>> + Send;
}

/// [`AlertSink`] over SNS; with no topic, alerts are logged at error level.
#[derive(Debug, Clone)]
pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic: Option<String>,
}

impl SnsAlerts {
    /// Alerts to `topic` (none: logged only) through `client`.
    pub fn new(client: aws_sdk_sns::Client, topic: Option<String>) -> Self {
        Self { client, topic }
    }
}

impl AlertSink for SnsAlerts {
    async fn publish(&self, alert: &AlertMessage) -> Result<(), String> {
        let (key, subject, body) = (&alert.key, &alert.subject, &alert.body);
        let Some(topic) = &self.topic else {
            tracing::error!(alert = %key, %subject, body = %body, "ALERT (no alerts topic configured)");
            return Ok(());
        };
        // SNS delivers to SQS, which refuses characters outside XML's set: an alert quoting a
        // webhook's answer must not be lost for a U+FFFE in it.
        use mailroom_lambda::sqs::sanitise;
        let attr = |v: &str| {
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(sanitise(v))
                .build()
                .map_err(|e| e.to_string())
        };
        self.client
            .publish()
            .topic_arn(topic)
            .subject(sanitise(subject))
            .message(sanitise(&body.to_string()))
            .message_attributes("mailroom.notice", attr(alert.notice.as_str())?)
            .message_attributes("mailroom.alert", attr(key)?)
            .send()
            .await
            .map(|_| tracing::warn!(alert = %key, %subject, "alert sent"))
            .map_err(|e| mailroom_lambda::error::describe(&e))
    }
}

/// Pauses and resumes a function's event source mappings, as a circuit breaker asks.
pub trait EventSources: Send + Sync + std::fmt::Debug {
    /// Enables (or disables) every SQS event source mapping of `function`; says how many it
    /// changed.
    ///
    /// # Errors
    /// When Lambda does not answer, with the reason.
    fn set_enabled<'a>(
        &'a self,
        function: &'a str,
        enabled: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u32, String>> + Send + 'a>>;
}

/// [`EventSources`] over the Lambda SDK (`ListEventSourceMappings`,
/// `UpdateEventSourceMapping`).
#[derive(Debug, Clone)]
pub struct LambdaMappings {
    client: aws_sdk_lambda::Client,
}

impl LambdaMappings {
    /// Wraps an SDK client, built once at cold start.
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        Self { client }
    }

    async fn apply(&self, function: &str, enabled: bool) -> Result<u32, String> {
        let mut changed = 0;
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_event_source_mappings()
                .function_name(function)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| mailroom_lambda::error::describe(&e))?;
            for m in page.event_source_mappings() {
                let sqs = m.event_source_arn().is_some_and(|a| a.contains(":sqs:"));
                let state = m.state().unwrap_or_default();
                let already = if enabled {
                    matches!(state, "Enabled" | "Enabling")
                } else {
                    matches!(state, "Disabled" | "Disabling")
                };
                let Some(uuid) = m.uuid().filter(|_| sqs && !already) else {
                    continue;
                };
                self.client
                    .update_event_source_mapping()
                    .uuid(uuid)
                    .enabled(enabled)
                    .send()
                    .await
                    .map_err(|e| mailroom_lambda::error::describe(&e))?;
                changed += 1;
            }
            match page.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(changed),
            }
        }
    }
}

impl EventSources for LambdaMappings {
    fn set_enabled<'a>(
        &'a self,
        function: &'a str,
        enabled: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<u32, String>> + Send + 'a>> {
        Box::pin(self.apply(function, enabled))
    }
}
