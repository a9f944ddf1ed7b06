//! The emulator tests' own helpers over the shared test bed (`mailroom_local::testbed`): an
//! engine on the emulator, and one emulated Lambda invocation through it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use mailroom_lambda::telemetry::MetricsSink;
use mailroom_lambda::{BatchReport, Deadline, Engine, EngineConfig, Failure, Message, SqsQueues};
use mailroom_local::Completion;
pub(crate) use mailroom_local::testbed::{Queue, TestBed, endpoint, envelope, unique};
use serde_json::Value;

/// What one emulated invocation did.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) event: mailroom_lambda::SqsEvent,
    pub(crate) received: usize,
    pub(crate) report: BatchReport,
    pub(crate) completion: Completion,
}

/// What the emulator tests do with Lambda on the test bed.
pub(crate) trait LambdaBed {
    /// An engine against the emulator, with captured metrics and a fixed jitter seed.
    fn engine(
        &self,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> (Engine<SqsQueues>, Arc<Mutex<Vec<Value>>>);

    /// One Lambda invocation on `queue`: receive a batch as the event source does, run
    /// `handler` through `engine`, and apply Lambda's rules to the response.
    fn invoke<T, F, Fut>(
        &self,
        queue: &Queue,
        engine: &Engine<SqsQueues>,
        handler: F,
    ) -> impl Future<Output = Invocation>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>;

    /// Makes the records an invocation reported failed visible again now, instead of after
    /// their backoff.
    fn make_visible(&self, queue: &Queue, run: &Invocation) -> impl Future<Output = ()>;
}

impl LambdaBed for TestBed {
    /// An engine against the emulator, with captured metrics and a fixed jitter seed.
    fn engine(
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

    /// One Lambda invocation on `queue`: receive a batch as the event source does, run
    /// `handler` through `engine`, and apply Lambda's rules to the response.
    async fn invoke<T, F, Fut>(
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
    async fn make_visible(&self, queue: &Queue, run: &Invocation) {
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
}
