//! The batch engine: one consumer function over an `SqsEvent`, one correct partial batch
//! response out.
//!
//! Per record the consumer returns success, a retry (with optional backoff), or poison. The
//! engine decodes each record on its own, bounds concurrency, keeps FIFO order per message
//! group, isolates panics, stops starting work near the Lambda deadline, moves poison to the
//! DLQ itself, sets backoff visibility in batches, and reports exactly the records that must
//! come back. It never reports an empty or unknown `itemIdentifier`.

mod backoff;
mod breaker;
mod config;
mod dead_letter;
mod deadline;
mod event;
mod lease;
mod metrics;
mod pool;
mod report;
mod run;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

pub use breaker::{DEFERRALS_ATTRIBUTE, MAX_DEFERRALS};
pub use config::{EngineConfig, FifoMode};
pub use deadline::Deadline;
pub use event::Incoming;
pub use report::{BatchReport, EngineError, RecordReport};

use crate::config::{ConfigError, Env};
use crate::ledger::Ledger;
use crate::message::{Message, Received};
use crate::outcome::Failure;
use crate::sqs::{QueueArn, QueuePort, QueueUrl, SqsError, SqsQueues};
use metrics::Ages;
use pool::{group_by_message_group, pool};
use report::build_report;
use run::{Done, RunCtx};

/// Looked up once per queue per cold start.
#[derive(Debug, Default)]
struct QueueInfo {
    url: OnceCell<QueueUrl>,
    dlq: OnceCell<Dlq>,
}

/// A source queue's DLQ, as the poison path needs it.
#[derive(Debug, Clone)]
pub(crate) struct Dlq {
    pub(crate) url: QueueUrl,
    /// The most a copy sent to it may hold, body and attributes together.
    pub(crate) max_bytes: usize,
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
    /// The circuit breaker's recent outcomes in this execution environment.
    windows: Mutex<crate::breaker::Windows>,
    /// A record's dependency, for the circuit breaker (`with_router`).
    router: Option<breaker::Router>,
    /// When the breakers were last read all closed (ledger clock, ms).
    breakers_closed_at: Mutex<Option<u64>>,
    /// A transient failure since: read the breakers before the next batch.
    breaker_suspect: AtomicBool,
}

/// One record on its way through the engine.
pub(crate) struct Work {
    pub(crate) index: usize,
    pub(crate) received: Received,
    /// Why the record is not a well-formed SQS record, when it is not.
    pub(crate) malformed: Option<String>,
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
            windows: Mutex::default(),
            router: None,
            breakers_closed_at: Mutex::new(None),
            breaker_suspect: AtomicBool::new(false),
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

    /// Tells the circuit breaker which dependency a record goes to, from its payload (the SNS
    /// `Message`, else the body): while the breaker of one dependency is open, only the records
    /// bound for it are held, and the rest run. `None` is the consumer itself. Without a
    /// router, an open breaker holds every record of the consumer. Called only while a
    /// breaker is open.
    #[must_use]
    pub fn with_router(
        mut self,
        router: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.router = Some(breaker::Router(Box::new(router)));
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

    /// Handles one Lambda invocation: the event is taken apart record by record from its raw
    /// JSON, and the deadline comes from the context.
    ///
    /// # Errors
    /// Only [`EngineError`]'s cases; every other problem is a record's failure.
    pub async fn handle<T, F, Fut>(
        &self,
        event: lambda_runtime::LambdaEvent<Box<serde_json::value::RawValue>>,
        handler: F,
    ) -> Result<SqsBatchResponse, EngineError>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let deadline = Deadline::from_context(&event.context);
        let records =
            event::parse(event.payload.get()).map_err(|e| EngineError::Malformed(e.to_string()))?;
        // The raw text is done with: free it before the records run, not after.
        drop(event);
        self.process_incoming(records, deadline, handler)
            .await
            .map(|r| r.response)
    }

    /// Runs `handler` over every record of the event in `json`, decoding each record on its
    /// own: a record that is not a well-formed SQS record is reported failed by its
    /// `messageId`, and the others run.
    ///
    /// # Errors
    /// [`EngineError::Malformed`] when `json` is not an object with a `Records` array;
    /// [`EngineError::UnidentifiedFailure`] when a failed record has no `messageId`.
    pub async fn process_json<T, F, Fut>(
        &self,
        json: &str,
        deadline: Deadline,
        handler: F,
    ) -> Result<BatchReport, EngineError>
    where
        T: DeserializeOwned,
        F: Fn(Message<T>) -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        let records = event::parse(json).map_err(|e| EngineError::Malformed(e.to_string()))?;
        self.process_incoming(records, deadline, handler).await
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
        self.process_incoming(event::from_event(event), deadline, handler)
            .await
    }

    async fn process_incoming<T, F, Fut>(
        &self,
        records: Vec<Incoming>,
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
        let source = records
            .iter()
            .find_map(Incoming::event_source_arn)
            .and_then(|a| a.parse::<QueueArn>().ok());
        let fifo = source.as_ref().is_some_and(QueueArn::is_fifo);
        let task_id = &self.config.task_id;
        let take_apart = |(index, incoming)| match incoming {
            Incoming::Record(record) => Work {
                index,
                received: Received::new(record, task_id),
                malformed: None,
            },
            Incoming::Malformed {
                message_id,
                event_source_arn,
                reason,
            } => {
                let mut record = SqsMessage::default();
                record.message_id = message_id;
                record.event_source_arn = event_source_arn;
                Work {
                    index,
                    received: Received::new(record, task_id),
                    malformed: Some(reason),
                }
            }
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
        let breaker = self.config.breaker.as_ref().zip(self.ledger.as_ref());
        let records: Vec<(usize, Incoming)> = records.into_iter().enumerate().collect();
        let plan = match breaker {
            // Boxed, as each breaker step below: the batch's future stays small without one.
            Some((policy, ledger)) => {
                Box::pin(self.plan(policy, ledger, deadline, records, fifo)).await
            }
            None => breaker::Plan {
                run: records,
                ..breaker::Plan::default()
            },
        };
        let breaker::Plan {
            run: records,
            held,
            probe,
            open,
        } = plan;
        // The probe's record, to send back to the queue if the probe fails: a failed probe
        // must not count toward the record's maxReceiveCount either.
        let probe_copy = probe
            .as_ref()
            .and_then(|p| records.iter().find(|(i, _)| *i == p.index).cloned());
        let held = if held.is_empty() {
            Vec::new()
        } else {
            let held = held
                .into_iter()
                .map(|(r, delay, reason)| (take_apart(r), delay, reason))
                .collect();
            Box::pin(self.hold(held, source.as_ref(), fifo)).await
        };
        let records = records.into_iter();
        let guarded = self.ledger.as_ref().filter(|_| self.config.leases);
        let mut done: Vec<Done> = if let (false, Some(ledger)) = (fifo, guarded) {
            // Two waves: every lease, LEASE_FANOUT at a time; then the records, `limit` at a
            // time, each writing its outcome as it finishes. A record waits on one round of
            // lease writes, however far down the batch it is.
            let prepared: Vec<run::Prepared> = pool(records, run::LEASE_FANOUT, |r| {
                ctx.prepare(ledger, take_apart(r))
            })
            .await;
            pool(prepared.into_iter(), limit, |p| ctx.finish(ledger, p)).await
        } else if !fifo {
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
        done.extend(held);
        done.sort_unstable_by_key(|d| d.index);
        if let Some((policy, ledger)) = breaker {
            let reopened = Box::pin(self.after_plan(policy, ledger, probe.as_ref(), &done)).await;
            if let (Some(cooldown), Some(copy)) = (reopened, probe_copy) {
                let index = copy.0;
                let reason = "circuit open again: the probe failed".to_owned();
                let w = take_apart(copy);
                if let (Some(again), Some(slot)) = (
                    Box::pin(self.hold(vec![(w, cooldown, reason)], source.as_ref(), fifo))
                        .await
                        .pop(),
                    done.iter_mut().find(|d| d.index == index),
                ) {
                    *slot = again;
                }
            }
        }
        let ages = Ages::of(&done);

        self.apply_backoff(source.as_ref(), &mut done).await;
        let report = build_report(done)?;
        let ledger_errors = ctx.ledger_errors.load(Ordering::Relaxed);
        let open = breaker.map(|_| open);
        self.emit_metrics(
            &report,
            started.elapsed(),
            &ages,
            cold_start,
            ledger_errors,
            open,
        );
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

    /// The DLQ: from configuration, else the source queue's RedrivePolicy; with its
    /// `MaximumMessageSize` unless configured. Looked up once per source queue.
    pub(crate) async fn dlq(&self, source: &QueueArn) -> Result<Dlq, SqsError> {
        let info = self.queue_info(source);
        info.dlq
            .get_or_try_init(|| async {
                let url = match &self.config.dlq_url {
                    Some(url) => url.clone(),
                    None => {
                        let url = self.source_url(source).await?;
                        let target = self.queues.dead_letter_target(&url).await?.ok_or_else(|| {
                            SqsError::permanent(
                                "GetQueueAttributes",
                                format!(
                                    "{source} has no RedrivePolicy and MAILROOM_DLQ_URL is not set"
                                ),
                            )
                        })?;
                        self.queues.queue_url(&target).await?
                    }
                };
                let max_bytes = match self.config.max_message_bytes {
                    Some(bytes) => bytes,
                    None => self.queues.maximum_message_size(&url).await.unwrap_or_else(|e| {
                        // Every queue accepts the classic limit: a copy sized for it is safe.
                        tracing::warn!(dlq = %url, error = %e, "the DLQ's MaximumMessageSize is unknown; sizing poison copies for 256 KiB");
                        crate::sqs::DEFAULT_MAX_MESSAGE_BYTES
                    }),
                };
                Ok(Dlq { url, max_bytes })
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests;
