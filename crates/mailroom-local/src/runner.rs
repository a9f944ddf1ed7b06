//! The local pipeline's functions: each one its real binary under AWS's Runtime Interface
//! Emulator (the one `sam local invoke` runs, from the aws-sam-cli wheel), fed by Lambda's
//! SQS event-source rules and by its schedules.
//!
//! * SQS: receive up to `BatchSize` records, waiting up to `MaximumBatchingWindowInSeconds` to
//!   fill the batch; build the event as Lambda does; invoke; delete only the records the
//!   response does not list; a function error, or an invalid `itemIdentifier`, fails the
//!   whole batch. Visibility and redrive are left to the queue. One pollers per unit of
//!   `MaximumConcurrency`, each with its own emulator instance.
//! * Schedules: `rate(N unit)` fires an EventBridge scheduled event every period, divided by
//!   the speed-up.
//!
//! Why one file of a little over 400 lines: the emulator process, the poller that feeds it and
//! the schedule share one function's counters and its invocation path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::template::{FunctionSpec, SqsSource};
use crate::{Completion, EventSource, REGION};

/// A loopback port that is free now, picked below Linux's ephemeral range (32768–60999) so
/// that the many outgoing connections of a pipeline cannot take it before the emulator binds.
fn free_port() -> std::io::Result<u16> {
    for _ in 0..64 {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// Where the Runtime Interface Emulator is: `aws-lambda-rie-x86_64` inside the venv's samcli.
///
/// # Errors
/// When the venv or aws-sam-cli is missing.
pub fn emulator(venv: &Path) -> std::io::Result<PathBuf> {
    std::fs::read_dir(venv.join("lib"))?
        .filter_map(Result::ok)
        .map(|d| {
            d.path()
                .join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
        })
        .find(|p| p.exists())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "aws-sam-cli is not in the venv: run scripts/setup.sh",
            )
        })
}

/// Why an invocation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The function returned an error (or crashed).
    #[error("{error_type}: {message}")]
    Function {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
    /// The emulator could not be reached or answered nonsense.
    #[error("runtime emulator: {0}")]
    Transport(String),
}

/// One function binary under its own emulator instance, on two loopback ports. When the
/// instance dies (the emulator or the function killed), [`FunctionProcess::ensure_running`]
/// starts a new one, as Lambda replaces a failed execution environment.
#[derive(Debug)]
pub struct FunctionProcess {
    launch: Launch,
    instance: Mutex<Instance>,
    /// One invocation at a time, as in a Lambda execution environment.
    busy: Mutex<()>,
    client: reqwest::Client,
    restarts: AtomicU64,
    /// Invocations and the milliseconds they took, rounded up each as Lambda bills them.
    usage: (AtomicU64, AtomicU64),
}

/// What it takes to start an instance again.
#[derive(Debug)]
struct Launch {
    rie: PathBuf,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    log: Option<std::fs::File>,
}

/// One running emulator instance.
#[derive(Debug)]
struct Instance {
    child: tokio::process::Child,
    api: u16,
}

impl Instance {
    /// Whether the emulator process has exited (and why).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the emulator listens, or fails if it exits first.
    async fn settle(&mut self) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "the emulator exited: {status}"
                )));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.api))
                .await
                .is_ok()
            {
                // Both servers bind at start: if the other one failed, the process is gone.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(status) = self.child.try_wait()? {
                    return Err(std::io::Error::other(format!(
                        "the emulator exited: {status}"
                    )));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(std::io::Error::other(
            "the emulator did not listen within 10 s",
        ))
    }
}

impl Launch {
    /// Starts an instance and waits until it listens. A port can still be taken between the
    /// check and the bind: start again on new ports when the emulator exits at once.
    async fn start(&self) -> std::io::Result<Instance> {
        let mut last = None;
        for _ in 0..5 {
            let mut instance = self.spawn()?;
            match instance.settle().await {
                Ok(()) => return Ok(instance),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the emulator did not start")))
    }

    fn spawn(&self) -> std::io::Result<Instance> {
        let (api, runtime) = (free_port()?, free_port()?);
        let mut command = tokio::process::Command::new(&self.rie);
        command
            .arg("--runtime-interface-emulator-address")
            .arg(format!("127.0.0.1:{api}"))
            .arg("--runtime-api-address")
            .arg(format!("127.0.0.1:{runtime}"))
            .arg(&self.binary)
            .env_clear()
            .env(
                "PATH",
                mailroom_lambda::Env::process()
                    .raw("PATH")
                    .unwrap_or_default(),
            )
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            // The emulator and the function it starts die with this process, however it ends.
            .process_group(crate::reaper::group()?)
            .kill_on_drop(true);
        match &self.log {
            Some(file) => {
                command.stdout(file.try_clone()?).stderr(file.try_clone()?);
            }
            None => {
                command
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        Ok(Instance {
            child: command.spawn()?,
            api,
        })
    }
}

impl FunctionProcess {
    /// Starts `binary` under the emulator at `rie`, with only `env` (plus `PATH`) as its
    /// environment. Its logs go to `log`, when given.
    ///
    /// # Errors
    /// When the emulator cannot start.
    pub async fn start(
        rie: &Path,
        binary: &Path,
        env: &BTreeMap<String, String>,
        log: Option<std::fs::File>,
    ) -> std::io::Result<Self> {
        let launch = Launch {
            rie: rie.to_path_buf(),
            binary: binary.to_path_buf(),
            env: env.clone(),
            log,
        };
        let instance = launch.start().await?;
        Ok(Self {
            launch,
            instance: Mutex::new(instance),
            busy: Mutex::new(()),
            client: mailroom_lambda::aws::http_client_builder()
                .build()
                .map_err(std::io::Error::other)?,
            restarts: AtomicU64::new(0),
            usage: (AtomicU64::new(0), AtomicU64::new(0)),
        })
    }

    /// Invocations so far and their billed milliseconds (each rounded up to a millisecond),
    /// timed from the request to the answer: the cost model's Lambda duration.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.usage.0.load(Ordering::Relaxed),
            self.usage.1.load(Ordering::Relaxed),
        )
    }

    /// The emulator's process id, while it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.instance.lock().await.child.id()
    }

    /// How many times a dead instance was replaced.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Replaces the instance if it has died; true when it did. Pollers call this before they
    /// take a batch, so no batch goes to a dead instance.
    ///
    /// # Errors
    /// When a new instance cannot start (the caller tries again later, taking no batch).
    pub async fn ensure_running(&self) -> std::io::Result<bool> {
        let _no_invocation_meanwhile = self.busy.lock().await;
        let mut instance = self.instance.lock().await;
        let Some(status) = instance.exited() else {
            return Ok(false);
        };
        tracing::warn!(
            binary = %self.launch.binary.display(),
            %status,
            "the function's emulator died; starting a new instance, as Lambda replaces an execution environment"
        );
        *instance = self.launch.start().await?;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Invokes the function with `event`, waiting up to 20 s for the emulator to come up.
    ///
    /// # Errors
    /// A function error, or the emulator not answering (at once when its process is gone).
    pub async fn invoke(&self, event: &Value) -> Result<Value, InvokeError> {
        let _one_at_a_time = self.busy.lock().await;
        let api = self.instance.lock().await.api;
        let url = format!("http://127.0.0.1:{api}/2015-03-31/functions/function/invocations");
        let body = serde_json::to_vec(event).map_err(|e| InvokeError::Transport(e.to_string()))?;
        let started = std::time::Instant::now();
        let response = loop {
            match self.client.post(&url).body(body.clone()).send().await {
                Ok(r) => break r,
                Err(e) if e.is_connect() && started.elapsed() < Duration::from_secs(20) => {
                    if let Some(status) = self.instance.lock().await.exited() {
                        return Err(InvokeError::Transport(format!(
                            "the emulator is gone ({status})"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(InvokeError::Transport(e.to_string())),
            }
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| InvokeError::Transport(e.to_string()))?;
        let took = u64::try_from(started.elapsed().as_micros().div_ceil(1000)).unwrap_or(0);
        self.usage.0.fetch_add(1, Ordering::Relaxed);
        self.usage.1.fetch_add(took, Ordering::Relaxed);
        if !status.is_success() {
            // The emulator answers 502 when the function process dies mid-invocation.
            return Err(InvokeError::Function {
                error_type: format!("Runtime.ExitError (HTTP {status})"),
                message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            InvokeError::Transport(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
        })?;
        if let (Some(t), Some(m)) = (body["errorType"].as_str(), body["errorMessage"].as_str()) {
            return Err(InvokeError::Function {
                error_type: t.to_owned(),
                message: m.to_owned(),
            });
        }
        Ok(body)
    }

    /// Stops the emulator and the function.
    pub async fn stop(&self) {
        let _ = self.instance.lock().await.child.kill().await;
    }
}

/// Counters per function, updated by its pollers.
#[derive(Debug, Default)]
pub struct Counters {
    /// Invocations.
    pub invocations: AtomicU64,
    /// Records handed to the function.
    pub records: AtomicU64,
    /// Records deleted after success.
    pub succeeded: AtomicU64,
    /// Records listed as failed (they come back).
    pub retried: AtomicU64,
    /// Whole batches failed (function error or invalid response).
    pub batch_failures: AtomicU64,
    /// Scheduled invocations.
    pub scheduled: AtomicU64,
    /// Records that arrived replayed from a DLQ (they carry the replay count).
    pub replayed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One SQS poller: Lambda's event-source rules over one emulator instance.
///
/// # Errors
/// Never returns while the pipeline runs; a receive error is retried after a pause.
pub async fn poll(
    sqs: aws_sdk_sqs::Client,
    source: SqsSource,
    function: Arc<FunctionProcess>,
    counters: Arc<Counters>,
    speed: u32,
    mapping: Arc<crate::lambda_api::Mapping>,
) {
    let events = EventSource::new(sqs, source.queue.clone(), source.arn.clone(), REGION)
        .batch_size(source.batch_size.min(10))
        .wait_secs(1);
    let window =
        Duration::from_secs(u64::try_from(source.batching_window_secs).unwrap_or(0)) / speed.max(1);
    loop {
        // A disabled mapping takes no batch (`UpdateEventSourceMapping`, `Enabled: false`).
        if !mapping.is_enabled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // Lambda takes no batch for an execution environment that is gone: replace it first.
        if let Err(e) = function.ensure_running().await {
            tracing::warn!(error = %e, queue = %source.queue, "the function cannot start; taking no batch");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut event = match events.receive().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, queue = %source.queue, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if event.records.is_empty() {
            continue;
        }
        // The batching window: wait to fill the batch, as Lambda does.
        let deadline = tokio::time::Instant::now() + window;
        let wanted = usize::try_from(
            mapping
                .batch_size
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(10);
        while event.records.len() < wanted && tokio::time::Instant::now() < deadline {
            match events.receive().await {
                Ok(more) if !more.records.is_empty() => event.records.extend(more.records),
                _ => break,
            }
        }
        deliver(&events, &event, &function, &counters).await;
    }
}

async fn deliver(
    events: &EventSource,
    event: &SqsEvent,
    function: &FunctionProcess,
    counters: &Counters,
) {
    Counters::add(&counters.invocations, 1);
    Counters::add(&counters.records, event.records.len());
    let replayed = event
        .records
        .iter()
        .filter(|r| {
            r.message_attributes
                .contains_key(mailroom_ops::replay::REPLAY_COUNT_ATTRIBUTE)
        })
        .count();
    Counters::add(&counters.replayed, replayed);
    let payload = serde_json::to_value(event).unwrap_or(Value::Null);
    let result = function.invoke(&payload).await.and_then(|v| {
        serde_json::from_value::<SqsBatchResponse>(v)
            .map_err(|e| InvokeError::Transport(format!("not a batch response: {e}")))
    });
    match events.complete(event, result.as_ref()).await {
        Ok(Completion::Deleted { deleted, failed }) => {
            Counters::add(&counters.succeeded, deleted);
            Counters::add(&counters.retried, failed);
        }
        Ok(Completion::BatchFailed(why)) => {
            tracing::warn!(%why, records = event.records.len(), "batch failed; every record comes back");
            Counters::add(&counters.batch_failures, 1);
            Counters::add(&counters.retried, event.records.len());
        }
        Err(e) => tracing::warn!(error = %e, "delete failed; the records come back"),
    }
}

/// The period of `rate(N minute[s]|hour[s]|day[s]|second[s])`.
pub fn rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit.trim().trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n * secs))
}

/// The EventBridge scheduled event the function receives.
pub fn scheduled_event(rule: &str) -> Value {
    let now = time_now_rfc3339();
    serde_json::json!({
        "version": "0",
        "id": format!("local-{}", fastrand::u64(..)),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now,
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:123456789012:rule/{rule}")],
        "detail": {}
    })
}

fn time_now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Fires `function`'s schedule every `period / speed`.
pub async fn schedule(
    function: Arc<FunctionProcess>,
    rule: String,
    period: Duration,
    speed: u32,
    counters: Arc<Counters>,
) {
    let period = (period / speed.max(1)).max(Duration::from_millis(100));
    let mut ticks = tokio::time::interval(period);
    // A sweep that outlasts its period is not followed by the missed ones back to back: the
    // next waits a whole period (and invocations of one instance never overlap).
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if let Err(e) = function.ensure_running().await {
            tracing::warn!(%rule, error = %e, "the function cannot start; skipping this tick");
            continue;
        }
        Counters::add(&counters.scheduled, 1);
        if let Err(e) = function.invoke(&scheduled_event(&rule)).await {
            tracing::warn!(%rule, error = %e, "scheduled invocation failed");
        }
    }
}

/// A function spec's binary in a cargo target directory.
pub fn binary_path(target_dir: &Path, spec: &FunctionSpec) -> PathBuf {
    target_dir.join(&spec.binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_eventbridge_writes_them() {
        assert_eq!(rate("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate("cron(0 12 * * ? *)"), None);
        assert_eq!(rate("rate(0 minutes)"), None);
    }

    #[test]
    fn scheduled_events_carry_a_utc_time() {
        let e = scheduled_event("sweep");
        let t = e["time"].as_str().expect("time");
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z') && t.starts_with("20"), "{t}");
        assert_eq!(e["detail-type"], "Scheduled Event");
    }
}
