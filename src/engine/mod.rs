//! The batch engine: one consumer function over an `SqsEvent`, one correct partial batch
//! response out.
//!
//! Per record the consumer returns success, a retry (with optional backoff), or poison. The
//! engine decodes each record on its own, bounds concurrency, keeps FIFO order per message
//! group, isolates panics, stops starting work near the Lambda deadline, moves poison to the
//! DLQ itself, sets backoff visibility in batches, and reports exactly the records that must
//! come back. It never reports an empty or unknown `itemIdentifier`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod config;

pub use config::{EngineConfig, FifoMode};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures_util::FutureExt;
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tracing::{Instrument, field};

use crate::backoff::{BackoffPolicy, clamp_visibility};
use crate::clock::ms;
use crate::config::{ConfigError, Env};
use crate::ledger::{Lease, Ledger};
use crate::message::{Message, Received, RecordMeta, parse_iso8601_ms};
use crate::outcome::{Backoff, Failure, FailureKind};
use crate::poison::{Annotation, PoisonCopy};
use crate::sqs::{
    MAX_BATCH_ENTRIES, QueueArn, QueuePort, QueueUrl, SqsError, SqsQueues, VisibilityChange,
};
use crate::telemetry::{Emf, Unit};

/// When the invocation must be finished by.
///
/// On tokio's clock, so tests run deadlines on paused time instead of waiting for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<tokio::time::Instant>);

/// A deadline further in the past than this at the start of an invocation cannot be real
/// (cargo-lambda 1.9's emulator sends a duration where the Runtime API defines an epoch time).
const IMPLAUSIBLY_PAST: Duration = Duration::from_secs(24 * 3600);

impl Deadline {
    /// No deadline (tests, local runs).
    pub fn none() -> Self {
        Self(None)
    }

    /// A deadline at `at`.
    pub fn at(at: tokio::time::Instant) -> Self {
        Self(Some(at))
    }

    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        Self(Some(tokio::time::Instant::now() + d))
    }

    /// The deadline Lambda gives the invocation. A zero deadline (a context built by hand)
    /// means none, and so does one that cannot be real: a deadline long past when the
    /// invocation starts is logged once and treated as unknown, so leases fall back to
    /// `MAILROOM_LEASE_SECS` instead of every record failing as "deadline too close".
    pub fn from_context(ctx: &lambda_runtime::Context) -> Self {
        Self::from_epoch_ms(ctx.deadline, SystemTime::now())
    }

    fn from_epoch_ms(deadline_ms: u64, now: SystemTime) -> Self {
        if deadline_ms == 0 {
            return Self::none();
        }
        let at = UNIX_EPOCH + Duration::from_millis(deadline_ms);
        match at.duration_since(now) {
            Ok(left) => Self::after(left),
            Err(past) if past.duration() > IMPLAUSIBLY_PAST => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        deadline_ms,
                        "the invocation's deadline is long past, so it cannot be real (an emulator sending a duration?); running without one"
                    );
                });
                Self::none()
            }
            Err(_) => Self::after(Duration::ZERO),
        }
    }

    fn remaining(self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
    }
}

/// Why the engine could not produce a partial batch response.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A record that must be retried has no message id, so it cannot be named in the
    /// response. Failing the invocation returns the whole batch to the queue: nothing is lost.
    #[error(
        "record {index} failed ({reason}) but has no messageId; failing the whole batch so it is retried"
    )]
    UnidentifiedFailure {
        /// The record's position in the batch.
        index: usize,
        /// Why it failed.
        reason: String,
    },
}

impl From<EngineError> for lambda_runtime::Diagnostic {
    fn from(e: EngineError) -> Self {
        Self {
            error_type: "Mailroom.UnidentifiedFailure".to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; Lambda deletes it.
    Succeeded,
    /// Skipped: the ledger says this task already succeeded at this consumer. Counts as a
    /// success; Lambda deletes it.
    Duplicate,
    /// Moved to the DLQ by the engine; reported done so it is not retried pointlessly.
    Poisoned {
        /// Why.
        reason: String,
        /// Whether the reason and source fit on the DLQ copy.
        annotation: Annotation,
    },
    /// Reported failed; SQS delivers it again.
    Failed {
        /// Why.
        reason: String,
        /// What made it fail.
        cause: Cause,
        /// When it should be visible again, if the engine changed that.
        visibility_secs: Option<u32>,
    },
}

/// What made a record fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The consumer asked for a retry.
    Retry,
    /// The consumer panicked.
    Panic,
    /// Not started: too little time was left before the Lambda deadline.
    Deadline,
    /// Cancelled at the deadline while running.
    Timeout,
    /// FIFO: an earlier record of its group (or, when stopping the batch, of the batch) failed.
    Halted,
    /// Poison, but the DLQ send failed or no DLQ is known; left to the queue's redrive.
    DeadLetterFailed,
    /// Idempotency: another live invocation holds the task's lease; retried when it runs out.
    LeaseHeld,
    /// Idempotency: the ledger could not be reached, so the record was not run unguarded.
    Ledger,
}

/// The result for one record.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// Position in the batch.
    pub index: usize,
    /// What happened.
    pub outcome: Outcome,
    meta: Arc<RecordMeta>,
}

impl RecordReport {
    /// The SQS message id (`None` if the record had none).
    pub fn message_id(&self) -> Option<&str> {
        self.meta.message_id.as_deref()
    }

    /// The task id, when the record had one.
    pub fn task_id(&self) -> Option<&str> {
        self.meta.task_id()
    }
}

/// The result of one batch: the response for Lambda and a report per record.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The partial batch response.
    pub response: SqsBatchResponse,
    /// One report per record, in batch order.
    pub records: Vec<RecordReport>,
}

impl BatchReport {
    /// Message ids listed as failed in the response.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }
}

/// Looked up once per queue per cold start.
#[derive(Debug, Default)]
struct QueueInfo {
    url: OnceCell<QueueUrl>,
    dlq: OnceCell<QueueUrl>,
}

/// The batch engine. Build it once at cold start and reuse it for every invocation.
#[derive(Debug)]
pub struct Engine<Q> {
    config: EngineConfig,
    queues: Q,
    cache: Mutex<HashMap<QueueArn, Arc<QueueInfo>>>,
    cold: AtomicBool,
    rng: Mutex<fastrand::Rng>,
    /// The EMF directive per combination of optional metrics, serialised once.
    directives: [std::sync::OnceLock<Option<Box<serde_json::value::RawValue>>>; 4],
    /// Idempotency, when configured.
    ledger: Option<Ledger>,
}

/// One record on its way through the engine.
struct Work {
    index: usize,
    received: Received,
}

/// Runs `f` over `items` with at most `limit` in flight: `limit` workers pull the next item
/// as they finish, so there is no per-item task allocation.
async fn pool<I, R, F, Fut>(items: I, limit: usize, f: F) -> Vec<R>
where
    I: ExactSizeIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = R>,
{
    let workers = limit.clamp(1, items.len().max(1));
    let queue = Mutex::new(items);
    let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    let runs = (0..workers).map(|_| async {
        let mut out = Vec::new();
        while let Some(item) = next() {
            out.push(f(item).await);
        }
        out
    });
    join_all(runs).await.into_iter().flatten().collect()
}

impl Engine<SqsQueues> {
    /// An engine configured from `env`, over an SQS client built from `aws`.
    ///
    /// # Errors
    /// When a configuration variable does not parse.
    pub fn from_env(env: &Env<'_>, aws: &aws_types::SdkConfig) -> Result<Self, ConfigError> {
        let config = EngineConfig::from_env(env)?;
        let ledger = config
            .ledger_table
            .as_ref()
            .map(|table| Ledger::new(aws_sdk_dynamodb::Client::new(aws), table));
        let engine = Self::new(config, SqsQueues::new(aws_sdk_sqs::Client::new(aws)));
        Ok(match ledger {
            Some(ledger) => engine.with_ledger(ledger),
            None => engine,
        })
    }
}

impl<Q: QueuePort> Engine<Q> {
    /// An engine over `queues` with `config`.
    pub fn new(config: EngineConfig, queues: Q) -> Self {
        let rng = config
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            config,
            queues,
            cache: Mutex::new(HashMap::new()),
            cold: AtomicBool::new(true),
            rng: Mutex::new(rng),
            directives: Default::default(),
            ledger: None,
        }
    }

    /// Turns idempotency on: before a record runs the engine takes a lease on its task in
    /// `ledger`, skips tasks that already succeeded at this consumer, retries tasks another
    /// live invocation holds, and records every outcome. Records without a task id run
    /// unguarded.
    #[must_use]
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The ledger, when idempotency is on.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.ledger.as_ref()
    }

    /// A fresh lease owner token.
    fn lease_owner(&self) -> String {
        let n = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .u64(..);
        format!("{n:016x}")
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Handles one Lambda invocation: the deadline comes from the context.
    ///
    /// # Errors
    /// Only [`EngineError::UnidentifiedFailure`]; every other problem is a record's failure.
    pub async fn handle<T, F, Fut>(
        &self,
        event: lambda_runtime::LambdaEvent<SqsEvent>,
        handler: F,
    ) -> Result<SqsBatchResponse, EngineError>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let deadline = Deadline::from_context(&event.context);
        self.process(event.payload, deadline, handler)
            .await
            .map(|r| r.response)
    }

    /// Runs `handler` over every record of `event` and builds the partial batch response.
    ///
    /// # Errors
    /// Only [`EngineError::UnidentifiedFailure`]; every other problem is a record's failure.
    pub async fn process<T, F, Fut>(
        &self,
        event: SqsEvent,
        deadline: Deadline,
        handler: F,
    ) -> Result<BatchReport, EngineError>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let started = Instant::now();
        let cold_start = self.cold.swap(false, Ordering::Relaxed);
        let source = event
            .records
            .first()
            .and_then(|r| r.event_source_arn.as_deref())
            .and_then(|a| a.parse::<QueueArn>().ok());
        let fifo = source.as_ref().is_some_and(QueueArn::is_fifo);
        let task_id = &self.config.task_id;
        let take_apart = |(index, record)| Work {
            index,
            received: Received::new(record, task_id),
        };
        let ctx = RunCtx {
            engine: self,
            handler: &handler,
            source: source.as_ref(),
            fifo,
            deadline,
            ledger_errors: std::sync::atomic::AtomicU32::new(0),
        };
        let limit = self.config.concurrency;
        let records = event.records.into_iter().enumerate();
        let mut done: Vec<Done> = if !fifo {
            // Each record is taken apart by the worker that runs it, not all up front.
            pool(records, limit, |r| ctx.run(take_apart(r))).await
        } else {
            let work: Vec<Work> = records.map(take_apart).collect();
            if self.config.fifo_mode == FifoMode::StopBatch {
                ctx.run_in_order(work).await
            } else {
                pool(group_by_message_group(work).into_iter(), limit, |g| {
                    ctx.run_in_order(g)
                })
                .await
                .into_iter()
                .flatten()
                .collect()
            }
        };
        done.sort_unstable_by_key(|d| d.index);
        let ages = Ages::of(&done);

        self.apply_backoff(source.as_ref(), &mut done).await;
        let report = build_report(done)?;
        let ledger_errors = ctx.ledger_errors.load(Ordering::Relaxed);
        self.emit_metrics(&report, started.elapsed(), &ages, cold_start, ledger_errors);
        Ok(report)
    }

    fn queue_info(&self, arn: &QueueArn) -> Arc<QueueInfo> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(arn.clone())
            .or_default()
            .clone()
    }

    async fn source_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
        let info = self.queue_info(arn);
        info.url
            .get_or_try_init(|| self.queues.queue_url(arn))
            .await
            .cloned()
    }

    /// The DLQ: from configuration, else the source queue's RedrivePolicy (cached).
    async fn dlq_url(&self, source: &QueueArn) -> Result<QueueUrl, SqsError> {
        if let Some(url) = &self.config.dlq_url {
            return Ok(url.clone());
        }
        let info = self.queue_info(source);
        info.dlq
            .get_or_try_init(|| async {
                let url = self.source_url(source).await?;
                let target = self.queues.dead_letter_target(&url).await?.ok_or_else(|| {
                    SqsError::permanent(
                        "GetQueueAttributes",
                        format!("{source} has no RedrivePolicy and MAILROOM_DLQ_URL is not set"),
                    )
                })?;
                self.queues.queue_url(&target).await
            })
            .await
            .cloned()
    }

    /// Sets the visibility of retried records in batches of ten. A failed call is logged; the
    /// records stay reported failed either way.
    async fn apply_backoff(&self, source: Option<&QueueArn>, done: &mut [Done]) {
        let mut changes = Vec::new();
        {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            for d in done.iter_mut() {
                let Outcome::Failed {
                    visibility_secs, ..
                } = &mut d.report.outcome
                else {
                    continue;
                };
                let secs = match d.backoff {
                    Backoff::Policy => self.config.backoff.as_ref().map(|p: &BackoffPolicy| {
                        clamp_visibility(p.delay(d.receive_count, &mut rng))
                    }),
                    Backoff::After(delay) => Some(clamp_visibility(delay)),
                    Backoff::QueueDefault => None,
                };
                if let (Some(secs), Some(handle)) = (secs, d.receipt_handle.take()) {
                    *visibility_secs = Some(secs);
                    changes.push(VisibilityChange {
                        id: d.index.to_string(),
                        receipt_handle: handle,
                        timeout_secs: secs,
                    });
                }
            }
        }
        if changes.is_empty() {
            return;
        }
        let Some(source) = source else {
            tracing::error!(
                "cannot set backoff visibility: the records name no valid eventSourceARN"
            );
            return;
        };
        let url = match self.source_url(source).await {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "cannot set backoff visibility: queue URL lookup failed");
                return;
            }
        };
        for chunk in changes.chunks(MAX_BATCH_ENTRIES) {
            match self.queues.change_visibility(&url, chunk.to_vec()).await {
                Ok(failed) => {
                    for f in failed {
                        tracing::warn!(entry = %f.id, reason = %f.reason, "backoff visibility change refused");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = chunk.len(), "backoff visibility change failed");
                }
            }
        }
    }

    fn emit_metrics(
        &self,
        report: &BatchReport,
        took: Duration,
        ages: &Ages,
        cold_start: bool,
        ledger_errors: u32,
    ) {
        let mut counts = [0u32; 5];
        for r in &report.records {
            let slot = match &r.outcome {
                Outcome::Succeeded => 0,
                Outcome::Failed {
                    cause: Cause::Retry,
                    ..
                } => 1,
                Outcome::Poisoned { .. } => 2,
                Outcome::Failed { .. } => 3,
                Outcome::Duplicate => 4,
            };
            counts[slot] += 1;
        }
        let [succeeded, retried, poisoned, failed, duplicates] = counts;
        tracing::info!(
            records = report.records.len(),
            succeeded,
            duplicates,
            retried,
            poisoned,
            failed,
            reported_failed = report.response.batch_item_failures.len(),
            duration_ms = took.as_millis(),
            cold_start,
            "batch done"
        );
        let dimensions = [("Consumer", self.config.consumer.as_str())];
        let mut emf = Emf::new(&self.config.namespace, &dimensions)
            .metric(
                "Records",
                Unit::Count,
                f64::from(succeeded + retried + poisoned + failed + duplicates),
            )
            .metric("Succeeded", Unit::Count, f64::from(succeeded))
            .metric("Duplicates", Unit::Count, f64::from(duplicates))
            .metric("Retried", Unit::Count, f64::from(retried))
            .metric("Poisoned", Unit::Count, f64::from(poisoned))
            .metric("Failed", Unit::Count, f64::from(failed))
            .metric(
                "BatchDuration",
                Unit::Milliseconds,
                took.as_secs_f64() * 1000.0,
            )
            .metric("ColdStart", Unit::Count, if cold_start { 1.0 } else { 0.0 })
            .metric("LedgerWriteFailed", Unit::Count, f64::from(ledger_errors));
        if let Some(age) = ages.queue_ms {
            emf = emf.metric("MessageAge", Unit::Milliseconds, age);
        }
        if let Some(age) = ages.publish_ms {
            emf = emf.metric("PublishAge", Unit::Milliseconds, age);
        }
        // The directive depends only on which ages are present: serialise each variant once.
        let variant =
            usize::from(ages.queue_ms.is_some()) | usize::from(ages.publish_ms.is_some()) << 1;
        let cached = self.directives[variant].get_or_init(|| emf.directive().ok());
        if let Some(directive) = cached {
            emf = emf.with_directive(directive);
        }
        emf.emit(&self.config.metrics);
    }
}

/// Borrowed context for running records.
struct RunCtx<'a, Q, F> {
    engine: &'a Engine<Q>,
    handler: &'a F,
    source: Option<&'a QueueArn>,
    fifo: bool,
    deadline: Deadline,
    /// Outcomes the ledger could not record.
    ledger_errors: std::sync::atomic::AtomicU32,
}

/// A finished record, with what the backoff step still needs.
struct Done {
    index: usize,
    report: RecordReport,
    backoff: Backoff,
    receive_count: u32,
    receipt_handle: Option<String>,
}

impl<Q, F> RunCtx<'_, Q, F>
where
    Q: QueuePort,
{
    /// Runs records one after another; after the first failure the rest are halted.
    async fn run_in_order<T, Fut>(&self, work: Vec<Work>) -> Vec<Done>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let mut out = Vec::with_capacity(work.len());
        let mut halted = false;
        for w in work {
            let done = if halted { halt(w) } else { self.run(w).await };
            halted |= matches!(done.report.outcome, Outcome::Failed { .. });
            out.push(done);
        }
        out
    }

    async fn run<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let meta = w.received.meta.clone();
        let span = tracing::info_span!(
            "record",
            message_id = meta.message_id.as_deref().unwrap_or("-"),
            sns_message_id = field::Empty,
            task_id = field::Empty,
            receive_count = meta.receive_count,
            traceparent = field::Empty,
        );
        if !span.is_disabled() {
            if let Some(sns) = &meta.sns {
                span.record("sns_message_id", sns.message_id.as_str());
            }
            if let Some(t) = meta.task_id() {
                span.record("task_id", t);
            }
            if let Some(t) = &meta.traceparent {
                span.record("traceparent", t.as_str());
            }
        }
        if span.is_disabled() {
            // No subscriber wants it: skip the per-poll enter and exit entirely.
            self.run_record(w).await
        } else {
            self.run_record(w).instrument(span).await
        }
    }

    async fn run_record<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let margin = self.engine.config.deadline_margin;
        if self.deadline.remaining().is_some_and(|left| left < margin) {
            tracing::warn!("not started: the Lambda deadline is too close");
            return fail(
                w,
                "deadline: not started before the margin",
                Cause::Deadline,
                Backoff::QueueDefault,
            );
        }
        if let (Some(ledger), Some(task)) = (&self.engine.ledger, w.received.meta.task_id()) {
            let task = task.to_owned();
            // Boxed: only guarded consumers pay for the larger future.
            return Box::pin(self.run_leased(ledger, task, w)).await;
        }
        self.attempt(w).await
    }

    /// Takes the task's lease, runs the record, and records the outcome in the ledger.
    async fn run_leased<T, Fut>(&self, ledger: &Ledger, task: String, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let consumer = self.engine.config.consumer.as_str();
        let owner = self.engine.lease_owner();
        let now = ledger.clock().now_ms();
        // The lease runs out with the invocation: a run that times out or dies never leaves
        // the task stuck IN_PROGRESS beyond its deadline.
        let until = now
            + ms(self
                .deadline
                .remaining()
                .unwrap_or(self.engine.config.lease));
        let published = w.received.meta.first_seen_ms();
        match ledger
            .acquire(&task, consumer, &owner, until, published)
            .await
        {
            Ok(Lease::Acquired { attempt }) => {
                tracing::debug!(attempt, "lease taken");
            }
            Ok(Lease::AlreadySucceeded) => {
                tracing::info!("duplicate: the task already succeeded here; skipped");
                return done(w, Outcome::Duplicate, Backoff::QueueDefault);
            }
            Ok(Lease::Held { until_ms }) => {
                let wait =
                    Duration::from_millis(until_ms.saturating_sub(now)).max(Duration::from_secs(1));
                tracing::warn!(
                    lease_until_ms = until_ms,
                    "another invocation holds the task's lease; retrying later"
                );
                return fail(
                    w,
                    format!("ledger: lease held by another invocation until {until_ms}"),
                    Cause::LeaseHeld,
                    Backoff::After(wait),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "ledger unavailable; not running the record unguarded");
                return fail(w, format!("ledger: {e}"), Cause::Ledger, Backoff::Policy);
            }
        }
        let d = self.attempt(w).await;
        let written = match &d.report.outcome {
            Outcome::Succeeded => ledger.succeed(&task, consumer).await,
            Outcome::Poisoned { reason, .. } => ledger
                .dead_letter(&task, consumer, reason, Some(&owner))
                .await
                .map(drop),
            Outcome::Failed { reason, .. } => {
                ledger.fail(&task, consumer, &owner, reason).await.map(drop)
            }
            Outcome::Duplicate => Ok(()),
        };
        if let Err(e) = written {
            // The message's fate stands (deleting a success is right even so); the pair stays
            // IN_PROGRESS until its lease runs out, where the monitor's sweep sees it.
            tracing::error!(error = %e, outcome = ?d.report.outcome, "ledger: could not record the outcome");
            self.ledger_errors.fetch_add(1, Ordering::Relaxed);
        }
        d
    }

    /// Decodes the record and runs the consumer on it.
    async fn attempt<T, Fut>(&self, w: Work) -> Done
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let margin = self.engine.config.deadline_margin;
        let payload = match w.received.decode::<T>() {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("decode: {e}");
                return Box::pin(self.poison(w, reason)).await;
            }
        };
        let message = Message::new(payload, w.received.meta.clone());
        let call = AssertUnwindSafe((self.handler)(message)).catch_unwind();
        // In-flight records get half the margin; the other half is for the batch calls.
        let result = match self.deadline.0 {
            Some(at) => {
                let cutoff = at.checked_sub(margin / 2).unwrap_or(at);
                match tokio::time::timeout_at(cutoff, call).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("cancelled at the Lambda deadline");
                        return fail(
                            w,
                            "deadline: cancelled while running",
                            Cause::Timeout,
                            Backoff::QueueDefault,
                        );
                    }
                }
            }
            None => call.await,
        };
        match result {
            Ok(Ok(())) => {
                tracing::debug!("succeeded");
                done(w, Outcome::Succeeded, Backoff::QueueDefault)
            }
            Ok(Err(f)) => match f.kind {
                FailureKind::Retry(backoff) => {
                    tracing::warn!(reason = %f.reason, "retry");
                    fail(w, f.reason, Cause::Retry, backoff)
                }
                // Boxed: the rare poison path would otherwise enlarge every record's future.
                FailureKind::Poison => Box::pin(self.poison(w, f.reason)).await,
            },
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown payload".to_owned());
                tracing::error!(panic = %what, "consumer panicked");
                fail(w, format!("panic: {what}"), Cause::Panic, Backoff::Policy)
            }
        }
    }

    /// Sends the record to the DLQ; reports it done only once the send is confirmed.
    async fn poison(&self, mut w: Work, reason: String) -> Done {
        let Some(source) = self.source else {
            tracing::error!(%reason, "poison, but the record names no valid eventSourceARN; leaving it to redrive");
            return fail(
                w,
                format!("{reason} (no source queue to find the DLQ)"),
                Cause::DeadLetterFailed,
                Backoff::QueueDefault,
            );
        };
        let dlq = match self.engine.dlq_url(source).await {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(%reason, error = %e, "poison, but the DLQ is unknown; leaving it to redrive");
                return fail(
                    w,
                    format!("{reason} (DLQ lookup failed: {e})"),
                    Cause::DeadLetterFailed,
                    Backoff::QueueDefault,
                );
            }
        };
        let body = w.received.body.take().unwrap_or_default();
        let meta = &w.received.meta;
        let (message, annotation) = PoisonCopy {
            body,
            attributes: &meta.sqs_attributes,
            reason: &reason,
            source_arn: source.as_str(),
            message_id: meta.message_id.as_deref(),
            group_id: meta.group_id.as_deref(),
            fifo: self.fifo,
            max_bytes: self.engine.config.max_message_bytes,
        }
        .build();
        match self.engine.queues.send(&dlq, message).await {
            Ok(()) => {
                if annotation == Annotation::Full {
                    tracing::warn!(%reason, dlq = %dlq, "poison: moved to the DLQ");
                } else {
                    tracing::warn!(%reason, dlq = %dlq, ?annotation, "poison: moved to the DLQ; the reason did not fully fit on the message");
                }
                done(
                    w,
                    Outcome::Poisoned { reason, annotation },
                    Backoff::QueueDefault,
                )
            }
            Err(e) => {
                tracing::error!(%reason, error = %e, "poison, but the DLQ send failed; leaving it to redrive");
                fail(
                    w,
                    format!("{reason} (DLQ send failed: {e})"),
                    Cause::DeadLetterFailed,
                    Backoff::QueueDefault,
                )
            }
        }
    }
}

fn done(w: Work, outcome: Outcome, backoff: Backoff) -> Done {
    Done {
        index: w.index,
        receive_count: w.received.meta.receive_count,
        report: RecordReport {
            index: w.index,
            outcome,
            meta: w.received.meta,
        },
        backoff,
        receipt_handle: w.received.receipt_handle,
    }
}

fn fail(w: Work, reason: impl Into<String>, cause: Cause, backoff: Backoff) -> Done {
    let outcome = Outcome::Failed {
        reason: reason.into(),
        cause,
        visibility_secs: None,
    };
    done(w, outcome, backoff)
}

fn halt(w: Work) -> Done {
    let span = tracing::info_span!(
        "record",
        message_id = w.received.meta.message_id.as_deref().unwrap_or("-")
    );
    span.in_scope(|| tracing::warn!("not started: an earlier record of its FIFO group failed"));
    fail(
        w,
        "fifo: an earlier record in order failed",
        Cause::Halted,
        Backoff::QueueDefault,
    )
}

/// Splits records into FIFO message groups, keeping the batch order within each group.
fn group_by_message_group(work: Vec<Work>) -> Vec<Vec<Work>> {
    let mut order: Vec<Vec<Work>> = Vec::new();
    let mut slot: HashMap<Option<String>, usize> = HashMap::new();
    for w in work {
        let key = w.received.meta.group_id.clone();
        let i = *slot.entry(key).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[i].push(w);
    }
    order
}

/// Builds the response from the outcomes, never naming an empty or duplicate id.
fn build_report(done: Vec<Done>) -> Result<BatchReport, EngineError> {
    let mut response = SqsBatchResponse::default();
    let mut listed = HashSet::new();
    let mut records = Vec::with_capacity(done.len());
    for d in done {
        if let Outcome::Failed { reason, .. } = &d.report.outcome {
            let Some(id) = d.report.message_id().filter(|id| !id.is_empty()) else {
                tracing::error!(index = d.index, %reason, "a failed record has no messageId");
                return Err(EngineError::UnidentifiedFailure {
                    index: d.index,
                    reason: reason.clone(),
                });
            };
            if listed.insert(id.to_owned()) {
                response.add_failure(id);
            }
        }
        records.push(d.report);
    }
    Ok(BatchReport { response, records })
}

/// The oldest message in the batch, by SQS and by SNS timestamps.
struct Ages {
    queue_ms: Option<f64>,
    publish_ms: Option<f64>,
}

impl Ages {
    fn of(done: &[Done]) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let age = |t: i64| (now - t).max(0);
        let queue = done
            .iter()
            .filter_map(|d| d.report.meta.sent_at_ms)
            .map(age)
            .max();
        // SNS timestamps share one RFC 3339 layout, so the smallest string is the oldest:
        // one parse per batch instead of one per record.
        let publish = done
            .iter()
            .filter_map(|d| d.report.meta.sns.as_ref()?.timestamp.as_deref())
            .min()
            .and_then(parse_iso8601_ms)
            .map(age);
        #[allow(clippy::cast_precision_loss, reason = "ages in ms fit f64 exactly")]
        Self {
            queue_ms: queue.map(|a| a as f64),
            publish_ms: publish.map(|a| a as f64),
        }
    }
}

#[cfg(test)]
mod tests;
