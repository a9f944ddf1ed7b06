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
/// `SendMessageBatch` to show that a failure midway loses nothing.
#[derive(Debug)]
pub struct Instrumented<P> {
    inner: P,
    calls: std::sync::atomic::AtomicUsize,
    send_batches: std::sync::atomic::AtomicUsize,
    fail_send_batch: Option<usize>,
}

impl<P> Instrumented<P> {
    /// Wraps `inner`; every call goes through.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
            send_batches: std::sync::atomic::AtomicUsize::new(0),
            fail_send_batch: None,
        }
    }

    /// The `n`-th `SendMessageBatch` (counting from 1) fails as a whole.
    #[must_use]
    pub fn failing_send_batch(mut self, n: usize) -> Self {
        self.fail_send_batch = Some(n);
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
pub struct Rie {
    _child: tokio::process::Child,
    api: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Rie {
    /// `aws-lambda-rie-x86_64` inside the venv's samcli package.
    ///
    /// # Panics
    /// When the venv or aws-sam-cli is missing: run `scripts/setup.sh`.
    pub fn emulator() -> PathBuf {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let lib = crate::local::Moto::venv(&root).join("lib");
        std::fs::read_dir(&lib)
            .expect("the venv exists: run scripts/setup.sh")
            .filter_map(Result::ok)
            .map(|d| {
                d.path()
                    .join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
            })
            .find(|p| p.exists())
            .expect("aws-sam-cli is in the venv: run scripts/setup.sh")
    }

    /// Starts `binary` under the emulator with only `env` (plus `PATH`) in its environment.
    ///
    /// # Panics
    /// When the emulator cannot start.
    pub fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let (api, runtime) = (free_port(), free_port());
        let mut command = tokio::process::Command::new(Self::emulator());
        command
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{api}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime}"))
            .arg(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        Self {
            _child: command.spawn().expect("the RIE starts"),
            api,
        }
    }

    /// Invokes the function with `event` the way `sam local invoke` does, waiting up to 20 s
    /// for the emulator to come up, and returns the function's JSON answer.
    ///
    /// # Panics
    /// When the emulator never answers or the answer is not JSON.
    pub async fn invoke(&self, event: &[u8]) -> serde_json::Value {
        let client = crate::aws::http_client_builder().build().expect("client");
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/function/invocations",
            self.api
        );
        let started = std::time::Instant::now();
        let response = loop {
            match client.post(&url).body(event.to_vec()).send().await {
                Ok(r) => break r,
                Err(e)
                    if e.is_connect() && started.elapsed() < std::time::Duration::from_secs(20) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the RIE never answered: {e}"),
            }
        };
        let bytes = response.bytes().await.expect("a response body");
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}
