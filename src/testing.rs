//! Helpers for tests of code built on the engine (feature `test-util`).

use std::path::PathBuf;

use aws_lambda_events::sqs::SqsEvent;

pub use crate::sqs::{FakeQueues, SentMessage};

/// The path of a file in the workspace's `events/` folder, the one source of fixtures.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name)
}

/// Reads an `SqsEvent` fixture from `events/`.
///
/// # Panics
/// When the fixture is missing or is not an `SqsEvent`: a broken fixture is a broken test.
pub fn fixture(name: &str) -> SqsEvent {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("fixture {} is not an SqsEvent: {e}", path.display()))
}

/// A port decorator for tests and benchmarks: counts every SQS call, and can fail the n-th
/// `SendMessageBatch` or `ReceiveMessage` to show that a failure midway loses nothing.
#[derive(Debug)]
pub struct Instrumented<P> {
    inner: P,
    calls: std::sync::atomic::AtomicUsize,
    send_batches: std::sync::atomic::AtomicUsize,
    fail_send_batch: Option<usize>,
    receives: std::sync::atomic::AtomicUsize,
    fail_receive: Option<usize>,
}

impl<P> Instrumented<P> {
    /// Wraps `inner`; every call goes through.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
            send_batches: std::sync::atomic::AtomicUsize::new(0),
            fail_send_batch: None,
            receives: std::sync::atomic::AtomicUsize::new(0),
            fail_receive: None,
        }
    }

    /// The `n`-th `SendMessageBatch` (counting from 1) fails as a whole.
    #[must_use]
    pub fn failing_send_batch(mut self, n: usize) -> Self {
        self.fail_send_batch = Some(n);
        self
    }

    /// The `n`-th `ReceiveMessage` (counting from 1) fails.
    #[must_use]
    pub fn failing_receive(mut self, n: usize) -> Self {
        self.fail_receive = Some(n);
        self
    }

    /// SQS calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tick(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

mod instrumented {
    use std::sync::atomic::Ordering;

    use super::Instrumented;
    use crate::replay::{DeadLetter, ReplayPort};
    use crate::sqs::{
        EntryFailure, OutgoingMessage, QueueArn, QueuePort, QueueUrl, SqsError, VisibilityChange,
    };

    impl<P: QueuePort> QueuePort for Instrumented<P> {
        async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
            self.tick();
            self.inner.queue_url(arn).await
        }

        async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
            self.tick();
            self.inner.dead_letter_target(queue).await
        }

        async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
            self.tick();
            self.inner.send(queue, message).await
        }

        async fn change_visibility(
            &self,
            queue: &QueueUrl,
            entries: Vec<VisibilityChange>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            self.inner.change_visibility(queue, entries).await
        }
    }

    impl<P: ReplayPort> ReplayPort for Instrumented<P> {
        async fn receive(
            &self,
            queue: &QueueUrl,
            visibility_secs: u32,
        ) -> Result<Vec<DeadLetter>, SqsError> {
            self.tick();
            let n = self.receives.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_receive == Some(n) {
                return Err(SqsError::new("ReceiveMessage", "injected fault"));
            }
            self.inner.receive(queue, visibility_secs).await
        }

        async fn send_batch(
            &self,
            queue: &QueueUrl,
            entries: Vec<(String, OutgoingMessage)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            let n = self.send_batches.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_send_batch == Some(n) {
                return Err(SqsError::new("SendMessageBatch", "injected fault"));
            }
            self.inner.send_batch(queue, entries).await
        }

        async fn delete_batch(
            &self,
            queue: &QueueUrl,
            entries: Vec<(String, String)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            self.inner.delete_batch(queue, entries).await
        }

        async fn dead_letter_sources(&self, dlq: &QueueUrl) -> Result<Vec<QueueUrl>, SqsError> {
            self.tick();
            self.inner.dead_letter_sources(dlq).await
        }
    }
}

/// A function binary under AWS's Runtime Interface Emulator (the one `sam local invoke` runs,
/// from the aws-sam-cli wheel in the project venv), on two free loopback ports. It stops when
/// dropped.
#[derive(Debug)]
pub struct Rie(crate::local::runner::FunctionProcess);

impl Rie {
    /// Starts `binary` under the emulator with only `env` (plus `PATH`) in its environment.
    ///
    /// # Panics
    /// When the venv or the emulator is missing (run `scripts/setup.sh`), or it cannot start.
    pub async fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let rie = crate::local::runner::emulator(&crate::local::Moto::venv(&root))
            .expect("the venv has aws-sam-cli: run scripts/setup.sh");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self(
            crate::local::runner::FunctionProcess::start(&rie, binary, &env, None)
                .await
                .expect("the RIE starts"),
        )
    }

    /// Invokes the function with `event` the way `sam local invoke` does and returns its JSON
    /// answer (a function error's `errorType`/`errorMessage` object included).
    ///
    /// # Panics
    /// When the event is not JSON or the emulator never answers.
    pub async fn invoke(&self, event: &[u8]) -> serde_json::Value {
        let event: serde_json::Value = serde_json::from_slice(event).expect("a JSON event");
        match self.0.invoke(&event).await {
            Ok(v) => v,
            Err(crate::local::runner::InvokeError::Function {
                error_type,
                message,
            }) => {
                serde_json::json!({ "errorType": error_type, "errorMessage": message })
            }
            Err(e) => panic!("{e}"),
        }
    }
}
