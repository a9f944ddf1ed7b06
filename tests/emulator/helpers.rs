//! The test bed: one moto server per test binary on 127.0.0.1, SDK clients pointed at it, and
//! queue helpers. Tests isolate by unique resource names, so they run in parallel on one server.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_sqs::types::QueueAttributeName;
use std::future::Future;

use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::sqs::{QueueArn, QueueUrl};
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_lambda::{BatchReport, Deadline, Engine, EngineConfig, Failure, Message, SqsQueues};
use mailroom_local::{self as local, Completion, EventSource, Moto, REGION};
use serde_json::Value;

/// The emulator's endpoint: `MAILROOM_TEST_ENDPOINT` if set, else a moto server started once
/// for this test binary (it exits with the binary).
pub(crate) fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    static MOTO: OnceLock<Moto> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        std::env::var("MAILROOM_TEST_ENDPOINT").unwrap_or_else(|_| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let moto = MOTO.get_or_init(|| Moto::start(&Moto::venv(root)).expect("moto starts"));
            moto.endpoint().to_owned()
        })
    })
}

/// A unique suffix per call, so parallel tests never share a queue.
pub(crate) fn unique(stem: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{stem}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) struct TestBed {
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
}

/// What one emulated invocation did.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) event: mailroom_lambda::SqsEvent,
    pub(crate) received: usize,
    pub(crate) report: BatchReport,
    pub(crate) completion: Completion,
}

#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub(crate) url: QueueUrl,
    pub(crate) arn: QueueArn,
}

impl TestBed {
    pub(crate) async fn new() -> Self {
        let config = local::emulator_config(endpoint()).await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
        }
    }

    /// Publishes `body` to `topic` with the String attribute `kind`; returns the message id.
    pub(crate) async fn publish_kind(&self, topic: &str, body: &str, kind: &str) -> String {
        self.sns
            .publish()
            .topic_arn(topic)
            .message(body)
            .message_attributes(
                "kind",
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(kind)
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("Publish")
            .message_id
            .expect("id")
    }

    /// A new SNS topic; returns its ARN.
    pub(crate) async fn topic(&self, stem: &str) -> String {
        self.sns
            .create_topic()
            .name(unique(stem))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("arn")
    }

    /// Subscribes `queue` to `topic`, raw or enveloped. (moto does not check queue policies.)
    pub(crate) async fn subscribe(&self, topic: &str, queue: &Queue, raw: bool) {
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue.arn.as_str())
            .attributes("RawMessageDelivery", raw.to_string())
            .send()
            .await
            .expect("Subscribe");
    }

    /// A fresh ledger table, as template.yaml declares it, on `clock`.
    pub(crate) async fn ledger(&self, clock: Arc<dyn mailroom_lambda::clock::Clock>) -> Ledger {
        let table = unique("ledger");
        mailroom_local::create_table(&self.dynamodb, &table)
            .await
            .expect("table created");
        Ledger::new(self.dynamodb.clone(), table).with_clock(clock)
    }

    /// Creates a queue with the given attributes.
    pub(crate) async fn queue(
        &self,
        name: &str,
        attributes: &[(QueueAttributeName, String)],
    ) -> Queue {
        let (url, arn) = local::create_queue(&self.sqs, name, attributes)
            .await
            .expect("queue created");
        Queue { url, arn }
    }

    /// A source queue and its DLQ, with a RedrivePolicy.
    pub(crate) async fn queue_with_dlq(
        &self,
        stem: &str,
        max_receive: u32,
        visibility_secs: u32,
    ) -> (Queue, Queue) {
        let fifo = stem.ends_with(".fifo");
        let base = stem.trim_end_matches(".fifo");
        let suffix = if fifo { ".fifo" } else { "" };
        let mut attrs = Vec::new();
        if fifo {
            attrs.push((QueueAttributeName::FifoQueue, "true".to_owned()));
        }
        let dlq = self
            .queue(
                &format!("{}{suffix}", unique(&format!("{base}-dlq"))),
                &attrs,
            )
            .await;
        attrs.push((
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        ));
        attrs.push((
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq.arn.as_str(), "maxReceiveCount": max_receive}).to_string(),
        ));
        let source = self
            .queue(&format!("{}{suffix}", unique(base)), &attrs)
            .await;
        (source, dlq)
    }

    /// An engine against the emulator, with captured metrics and a fixed jitter seed.
    pub(crate) fn engine(
        &self,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> (Engine<SqsQueues>, Arc<Mutex<Vec<Value>>>) {
        let (sink, metrics) = MetricsSink::capture();
        let mut config = EngineConfig {
            consumer: "emulator-test".into(),
            metrics: sink,
            jitter_seed: Some(7),
            ..EngineConfig::default()
        };
        tweak(&mut config);
        (
            Engine::new(config, SqsQueues::new(self.sqs.clone())),
            metrics,
        )
    }

    /// Lambda's event source mapping over `queue`.
    pub(crate) fn event_source(&self, queue: &Queue) -> EventSource {
        EventSource::new(
            self.sqs.clone(),
            queue.url.clone(),
            queue.arn.clone(),
            REGION,
        )
    }

    /// One Lambda invocation on `queue`: receive a batch as the event source does, run
    /// `handler` through `engine`, and apply Lambda's rules to the response.
    pub(crate) async fn invoke<T, F, Fut>(
        &self,
        queue: &Queue,
        engine: &Engine<SqsQueues>,
        handler: F,
    ) -> Invocation
    where
        T: serde::de::DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let source = self.event_source(queue);
        let event = source.receive().await.expect("receive");
        let report = engine
            .process(event.clone(), Deadline::none(), handler)
            .await
            .expect("response");
        let completion = source
            .complete(&event, Ok::<_, String>(&report.response))
            .await
            .expect("complete");
        Invocation {
            received: event.records.len(),
            event,
            report,
            completion,
        }
    }

    /// Makes the records an invocation reported failed visible again now, instead of after
    /// their backoff.
    pub(crate) async fn make_visible(&self, queue: &Queue, run: &Invocation) {
        let failed = run.report.failed_ids();
        for r in &run.event.records {
            if failed.contains(&r.message_id.as_deref().unwrap_or_default()) {
                self.sqs
                    .change_message_visibility()
                    .queue_url(queue.url.as_str())
                    .receipt_handle(r.receipt_handle.clone().expect("handle"))
                    .visibility_timeout(0)
                    .send()
                    .await
                    .expect("ChangeMessageVisibility");
            }
        }
    }

    /// (visible, in flight) message counts.
    pub(crate) async fn depth(&self, queue: &Queue) -> (u64, u64) {
        mailroom_ops::sqs::queue_depth(&self.sqs, &queue.url)
            .await
            .expect("GetQueueAttributes")
    }

    /// Receives everything visible now (up to `max`), with all attributes, without deleting.
    pub(crate) async fn drain_visible(
        &self,
        queue: &Queue,
        max: usize,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue.url.as_str())
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .visibility_timeout(60)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default();
            if got.is_empty() || out.len() >= max {
                return out;
            }
            out.extend(got);
        }
    }

    /// Sends a plain message with string attributes; returns its message id.
    pub(crate) async fn send(&self, queue: &Queue, body: &str, attrs: &[(&str, &str)]) -> String {
        let mut req = self
            .sqs
            .send_message()
            .queue_url(queue.url.as_str())
            .message_body(body);
        for (k, v) in attrs {
            req = req.message_attributes(
                *k,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*v)
                    .build()
                    .expect("attribute"),
            );
        }
        req.send()
            .await
            .expect("SendMessage")
            .message_id
            .expect("id")
    }
}

/// An SNS notification envelope, as SNS writes it to a queue without raw delivery.
pub(crate) fn envelope(sns_message_id: &str, message: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": sns_message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-events",
        "Message": message,
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}
