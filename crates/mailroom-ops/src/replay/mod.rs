//! DLQ replay: moves dead letters back to their queue, or parks them, without ever losing one.
//!
//! A run receives from the DLQ in batches of ten, selects with a [`Filter`], and for each
//! selected message sends a faithful copy (body and every attribute unchanged, the SNS envelope
//! never re-wrapped) with its replay count incremented, to the target, or to the parking lot
//! once it has been replayed too often. A message is deleted from the DLQ only after SQS has
//! confirmed its send, so a run that dies midway at worst leaves a duplicate, never a loss.
//! Messages the run looked at but did not move are made visible again when it ends.
//!
//! Three SQS calls move ten messages (receive, send batch, delete batch): 0.3 calls a message.

mod adapter;
#[cfg(any(test, feature = "test-util"))]
mod fake;
mod filter;
mod report;
mod request;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};

use mailroom_lambda::backoff::BackoffPolicy;
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::message::{Message, TaskIdSource};
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::sqs::{
    DEFAULT_MAX_MESSAGE_BYTES, EntryFailure, MAX_BATCH_ENTRIES, MAX_MESSAGE_ATTRIBUTES,
    OutgoingAttribute, OutgoingMessage, OutgoingValue, QueuePort, QueueUrl, SqsError,
    VisibilityChange,
};

#[cfg(any(test, feature = "test-util"))]
pub use fake::{Call, FakeDlq, Instrumented};
pub use filter::Filter;
pub use report::{ReplayReport, Sample};
pub use request::{BackoffJson, FilterJson, RequestJson};

/// The attribute counting how often a message has been replayed.
pub const REPLAY_COUNT_ATTRIBUTE: &str = "mailroom.replay-count";
/// The attribute saying why a message was parked.
pub const PARKED_ATTRIBUTE: &str = "mailroom.parked-reason";

/// A message received from a DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The SQS message id.
    pub message_id: String,
    /// This receive's handle.
    pub receipt_handle: String,
    /// The body, unchanged.
    pub body: String,
    /// Every message attribute, of every type.
    pub attributes: HashMap<String, OutgoingAttribute>,
    /// FIFO only: the message group.
    pub group_id: Option<String>,
    /// When SQS first accepted the message, in epoch milliseconds.
    pub sent_at_ms: Option<i64>,
}

impl DeadLetter {
    /// The engine's poison reason, when the message carries one.
    pub fn reason(&self) -> Option<&str> {
        match self.attributes.get(REASON_ATTRIBUTE).map(|a| &a.value) {
            Some(OutgoingValue::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// How many times it has been replayed already.
    pub fn replay_count(&self) -> u32 {
        match self
            .attributes
            .get(REPLAY_COUNT_ATTRIBUTE)
            .map(|a| &a.value)
        {
            Some(OutgoingValue::Text(t)) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }
}

/// The queue operations a replay needs beyond the engine's.
pub trait ReplayPort: QueuePort {
    /// Receives up to ten messages, hidden for `visibility_secs`, with every attribute.
    ///
    /// # Errors
    /// When the receive fails.
    fn receive(
        &self,
        queue: &QueueUrl,
        visibility_secs: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, SqsError>> + Send;

    /// Sends up to ten messages in one call; returns the entries SQS refused.
    ///
    /// # Errors
    /// When the call as a whole fails (then no entry is known to be sent).
    fn send_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, OutgoingMessage)>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, SqsError>> + Send;

    /// Deletes up to ten deliveries by `(id, receipt handle)`; returns the entries refused.
    ///
    /// # Errors
    /// When the call as a whole fails.
    fn delete_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, SqsError>> + Send;

    /// The queues whose RedrivePolicy names this DLQ.
    ///
    /// # Errors
    /// When the call fails.
    fn dead_letter_sources(
        &self,
        dlq: &QueueUrl,
    ) -> impl Future<Output = Result<Vec<QueueUrl>, SqsError>> + Send;
}

/// What to replay, where, and how fast.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The DLQ.
    pub source: QueueUrl,
    /// Where messages go back to; default: the DLQ's only source queue.
    pub target: Option<QueueUrl>,
    /// Where messages replayed more than `max_replays` times go.
    pub parking_lot: Option<QueueUrl>,
    /// Which messages to move.
    pub filter: Filter,
    /// At most this many messages are moved or parked.
    pub max_messages: Option<usize>,
    /// Report what would move; change nothing.
    pub dry_run: bool,
    /// Messages sent per second, at most.
    pub rate_per_sec: Option<f64>,
    /// Stop cleanly after this long.
    pub time_budget: Option<Duration>,
    /// A message replayed this many times already is parked instead.
    pub max_replays: u32,
    /// Delay each re-sent message (standard queues only), full jitter, capped at 900 s.
    pub backoff: Option<BackoffPolicy>,
    /// Where to record each move (`REPLAYED`) and park (`PARKED`, with the reason).
    pub ledger: Option<LedgerMark>,
}

/// Records replay's outcome for each message in the task ledger.
#[derive(Debug, Clone)]
pub struct LedgerMark {
    /// The ledger.
    pub ledger: Ledger,
    /// The consumer whose DLQ this is.
    pub consumer: String,
    /// Where the task id comes from, as the consumer reads it.
    pub task_id: TaskIdSource,
}

impl LedgerMark {
    /// Marks the message's task `REPLAYED`, or `PARKED` with `reason`. A ledger failure is
    /// logged: the message itself has already moved safely, and the monitor still sees the
    /// pair open.
    async fn record(&self, m: &DeadLetter, parked: Option<&str>) {
        let Some(task) = task_id_of(m, &self.task_id) else {
            tracing::debug!(message_id = %m.message_id, "no task id; nothing to mark in the ledger");
            return;
        };
        let written = match parked {
            Some(reason) => self.ledger.park(&task, &self.consumer, reason).await,
            None => self.ledger.replayed(&task, &self.consumer).await,
        };
        if let Err(e) = written {
            tracing::warn!(task_id = %task, error = %e, "replay: could not mark the ledger");
        }
    }
}

/// The task id of a dead letter, read the way the consumer's engine reads it.
fn task_id_of(m: &DeadLetter, source: &TaskIdSource) -> Option<String> {
    let mut record = SqsMessage::default();
    record.message_id = Some(m.message_id.clone());
    record.body = Some(m.body.clone());
    for (name, a) in &m.attributes {
        if let OutgoingValue::Text(t) = &a.value {
            let mut attr = SqsMessageAttribute::default();
            attr.data_type = Some(a.data_type.clone());
            attr.string_value = Some(t.clone());
            record.message_attributes.insert(name.clone(), attr);
        }
    }
    Message::metadata(record, source)
        .task_id()
        .map(str::to_owned)
}

impl ReplayRequest {
    /// A request to replay everything from `source` to its source queue.
    pub fn new(source: QueueUrl) -> Self {
        Self {
            source,
            target: None,
            parking_lot: None,
            filter: Filter::default(),
            max_messages: None,
            dry_run: false,
            rate_per_sec: None,
            time_budget: None,
            max_replays: 3,
            backoff: None,
            ledger: None,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A queue is not on the allowlist.
    #[error("queue {0} is not on the replay allowlist")]
    NotAllowed(QueueUrl),
    /// No target given, and the DLQ does not have exactly one source queue.
    #[error("no target: {dlq} is the DLQ of {sources} queues; name the target")]
    AmbiguousTarget {
        /// The DLQ.
        dlq: QueueUrl,
        /// How many queues name it.
        sources: usize,
    },
    /// Parking is needed but no parking lot is configured.
    #[error("max_replays is set but no parking lot is configured")]
    NoParkingLot,
    /// An SQS call failed before anything was looked at.
    #[error(transparent)]
    Sqs(#[from] SqsError),
}

/// Queues a replay may touch. Empty allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Allowlist(HashSet<String>);

impl Allowlist {
    /// An allowlist of queue URLs or queue names.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(queues: I) -> Self {
        Self(queues.into_iter().map(Into::into).collect())
    }

    /// Whether `queue` (by URL or by name) is allowed.
    pub fn allows(&self, queue: &QueueUrl) -> bool {
        let name = queue.as_str().rsplit('/').next().unwrap_or_default();
        self.0.contains(queue.as_str()) || self.0.contains(name)
    }

    fn check(&self, queue: &QueueUrl) -> Result<(), ReplayError> {
        if self.allows(queue) {
            Ok(())
        } else {
            Err(ReplayError::NotAllowed(queue.clone()))
        }
    }
}

/// What to do with one selected message.
enum Plan {
    Move(OutgoingMessage),
    Park(OutgoingMessage),
    Fail(String),
}

/// Runs one replay.
///
/// # Errors
/// Only before anything was looked at: a queue off the allowlist, no target, or a failed first
/// receive. Failures of single messages are in the report, and so is an SQS error that ends a
/// run midway (`stopped_by_error`).
pub async fn replay<P: ReplayPort>(
    port: &P,
    allowlist: &Allowlist,
    request: &ReplayRequest,
) -> Result<ReplayReport, ReplayError> {
    replay_with_progress(port, allowlist, request, |_| {}).await
}

/// [`replay`], calling `progress` with the report so far after each batch (for progress bars).
///
/// # Errors
/// As [`replay`].
pub async fn replay_with_progress<P: ReplayPort>(
    port: &P,
    allowlist: &Allowlist,
    request: &ReplayRequest,
    mut progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    allowlist.check(&request.source)?;
    let target = match &request.target {
        Some(t) => t.clone(),
        None => {
            let sources = port.dead_letter_sources(&request.source).await?;
            match <[QueueUrl; 1]>::try_from(sources) {
                Ok([only]) => only,
                Err(all) => {
                    return Err(ReplayError::AmbiguousTarget {
                        dlq: request.source.clone(),
                        sources: all.len(),
                    });
                }
            }
        }
    };
    allowlist.check(&target)?;
    if let Some(p) = &request.parking_lot {
        allowlist.check(p)?;
    }
    let fifo = target.as_str().ends_with(".fifo");
    let mut report = ReplayReport::new(request.dry_run, &request.source, &target);
    let mut rng = fastrand::Rng::new();
    // Everything looked at and not moved stays hidden until the run ends, so one run never
    // counts a message twice; then it is made visible again at once.
    let hold_secs = request
        .time_budget
        .map_or(300, |b| b.as_secs().saturating_add(60))
        .min(43_000);
    let hold_secs = u32::try_from(hold_secs).unwrap_or(43_000);
    let mut release: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut sent_total = 0usize;

    // On a standard DLQ the next batch is received while this one is sent and deleted. Not on
    // FIFO: a group stays locked until its messages are deleted, so a receive made meanwhile
    // could come back empty from a queue that is not.
    let prefetch = !request.source.as_str().ends_with(".fifo");
    let mut next: Option<Vec<DeadLetter>> = None;

    loop {
        if request
            .max_messages
            .is_some_and(|m| report.moved + report.parked + report.would_move >= m)
        {
            break;
        }
        if request
            .time_budget
            .is_some_and(|budget| started.elapsed() >= budget)
        {
            report.stopped_by_budget = true;
            break;
        }
        let batch = match next.take() {
            Some(batch) => batch,
            None => match port.receive(&request.source, hold_secs).await {
                Ok(batch) => batch,
                Err(e) if report.examined == 0 => return Err(e.into()),
                Err(e) => {
                    report.stop_on_error(&e);
                    break;
                }
            },
        };
        if batch.is_empty() {
            break;
        }
        let mut sends: Vec<(OutgoingMessage, DeadLetter, bool)> = Vec::new();
        for m in batch {
            if !seen.insert(m.message_id.clone()) {
                // Received again within this run (a hold expired): leave it for the next run,
                // released with this newest handle, the only one SQS still honours.
                release.push((m.message_id.clone(), m.receipt_handle.clone()));
                continue;
            }
            report.examined += 1;
            if !request.filter.matches(&m, now_ms) {
                report.skipped += 1;
                release.push((m.message_id.clone(), m.receipt_handle.clone()));
                continue;
            }
            if request.max_messages.is_some_and(|max| {
                report.moved + report.parked + report.would_move + sends.len() >= max
            }) {
                release.push((m.message_id.clone(), m.receipt_handle.clone()));
                continue;
            }
            match plan(&m, request, fifo, &mut rng) {
                Plan::Fail(reason) => {
                    report.fail(&m, reason);
                    release.push((m.message_id.clone(), m.receipt_handle.clone()));
                }
                Plan::Move(out) | Plan::Park(out) if request.dry_run => {
                    let parks = out.attributes.contains_key(PARKED_ATTRIBUTE);
                    report.would(&m, parks);
                    release.push((m.message_id.clone(), m.receipt_handle.clone()));
                }
                Plan::Move(out) => sends.push((out, m, false)),
                Plan::Park(out) => {
                    if request.parking_lot.is_none() {
                        report.fail(
                            &m,
                            "over max_replays and no parking lot is configured".into(),
                        );
                        release.push((m.message_id.clone(), m.receipt_handle.clone()));
                    } else {
                        sends.push((out, m, true));
                    }
                }
            }
        }
        let more_wanted = request
            .max_messages
            .is_none_or(|max| report.moved + report.parked + report.would_move + sends.len() < max);
        let receive_ahead = async {
            if prefetch && more_wanted {
                Some(port.receive(&request.source, hold_secs).await)
            } else {
                None
            }
        };
        let deliver = deliver(
            port,
            request,
            &target,
            sends,
            started,
            &mut sent_total,
            &mut report,
            &mut release,
        );
        let (ahead, ()) = tokio::join!(receive_ahead, deliver);
        match ahead {
            Some(Ok(batch)) => next = Some(batch),
            Some(Err(e)) => {
                report.stop_on_error(&e);
                progress(&report);
                break;
            }
            None => {}
        }
        progress(&report);
    }
    // A batch received ahead and not looked at goes back as it came.
    for m in next.into_iter().flatten() {
        release.push((m.message_id, m.receipt_handle));
    }

    // One entry per message, with its newest handle: a message received twice in a run is in
    // the list twice, and a batch may not name a message twice.
    let mut newest: HashMap<String, usize> = HashMap::new();
    for (i, (id, _)) in release.iter().enumerate() {
        newest.insert(id.clone(), i);
    }
    let release: Vec<&String> = release
        .iter()
        .enumerate()
        .filter(|(i, (id, _))| newest.get(id) == Some(i))
        .map(|(_, (_, handle))| handle)
        .collect();
    for chunk in release.chunks(MAX_BATCH_ENTRIES) {
        let changes = chunk
            .iter()
            .enumerate()
            .map(|(i, handle)| VisibilityChange {
                id: i.to_string(),
                receipt_handle: (*handle).clone(),
                timeout_secs: 0,
            })
            .collect();
        match port.change_visibility(&request.source, changes).await {
            Ok(failed) if failed.is_empty() => {}
            Ok(failed) => tracing::warn!(
                count = failed.len(),
                "some examined messages could not be made visible again; they reappear when their hold ends"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not make examined messages visible again; they reappear when their hold ends");
            }
        }
    }
    report.finish(started.elapsed());
    Ok(report)
}

/// Sends the selected messages (moves to the target, parks to the parking lot, one batch call
/// each), then deletes from the DLQ exactly those whose send SQS confirmed.
#[allow(
    clippy::too_many_arguments,
    reason = "the run's state, borrowed for one batch"
)]
async fn deliver<P: ReplayPort>(
    port: &P,
    request: &ReplayRequest,
    target: &QueueUrl,
    sends: Vec<(OutgoingMessage, DeadLetter, bool)>,
    started: Instant,
    sent_total: &mut usize,
    report: &mut ReplayReport,
    release: &mut Vec<(String, String)>,
) {
    for parked in [false, true] {
        let group: Vec<_> = sends.iter().filter(|s| s.2 == parked).collect();
        if group.is_empty() {
            continue;
        }
        let queue = if parked {
            request.parking_lot.as_ref().unwrap_or(target)
        } else {
            target
        };
        if let Some(rate) = request.rate_per_sec.filter(|r| *r > 0.0) {
            pace(started, *sent_total + group.len(), rate).await;
        }
        let entries: Vec<(String, OutgoingMessage)> = group
            .iter()
            .enumerate()
            .map(|(i, s)| (i.to_string(), s.0.clone()))
            .collect();
        let refused: HashMap<String, String> = match port.send_batch(queue, entries).await {
            Ok(failed) => failed.into_iter().map(|f| (f.id, f.reason)).collect(),
            Err(e) => (0..group.len())
                .map(|i| (i.to_string(), e.to_string()))
                .collect(),
        };
        *sent_total += group.len();
        // Delete only what SQS confirmed sent.
        let mut confirmed = Vec::new();
        for (i, s) in group.iter().enumerate() {
            match refused.get(&i.to_string()) {
                Some(reason) => {
                    report.fail(&s.1, format!("send refused: {reason}"));
                    // Not sent: visible again when the run ends, ready for a re-run.
                    release.push((s.1.message_id.clone(), s.1.receipt_handle.clone()));
                }
                None => confirmed.push(*s),
            }
        }
        let deletes: Vec<(String, String)> = confirmed
            .iter()
            .enumerate()
            .map(|(i, s)| (i.to_string(), s.1.receipt_handle.clone()))
            .collect();
        let not_deleted: HashSet<String> = if deletes.is_empty() {
            HashSet::new()
        } else {
            match port.delete_batch(&request.source, deletes).await {
                Ok(failed) => failed.into_iter().map(|f| f.id).collect(),
                Err(_) => (0..confirmed.len()).map(|i| i.to_string()).collect(),
            }
        };
        for (i, s) in confirmed.iter().enumerate() {
            if not_deleted.contains(&i.to_string()) {
                // Sent but still in the DLQ: a duplicate at worst, never a loss.
                report.duplicated += 1;
            }
            report.done(&s.1, parked);
            if let Some(mark) = &request.ledger {
                let reason = parked.then(|| match s.0.attributes.get(PARKED_ATTRIBUTE) {
                    Some(OutgoingAttribute {
                        value: OutgoingValue::Text(t),
                        ..
                    }) => t.as_str(),
                    _ => "parked",
                });
                mark.record(&s.1, reason).await;
            }
        }
    }
}

/// Waits so that `sent` messages since `started` stay within `rate` a second.
async fn pace(started: Instant, sent: usize, rate: f64) {
    #[allow(clippy::cast_precision_loss, reason = "message counts are small")]
    let due = Duration::from_secs_f64(sent as f64 / rate);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

/// The copy to send for one selected message, or why it cannot be sent.
fn plan(m: &DeadLetter, request: &ReplayRequest, fifo: bool, rng: &mut fastrand::Rng) -> Plan {
    let count = m.replay_count() + 1;
    let parks = m.replay_count() >= request.max_replays;
    let mut out = OutgoingMessage {
        body: m.body.clone(),
        attributes: m.attributes.clone(),
        ..OutgoingMessage::default()
    };
    out.attributes.insert(
        REPLAY_COUNT_ATTRIBUTE.to_owned(),
        OutgoingAttribute {
            data_type: "Number".to_owned(),
            value: OutgoingValue::Text(count.to_string()),
        },
    );
    if parks {
        out.attributes.insert(
            PARKED_ATTRIBUTE.to_owned(),
            OutgoingAttribute::string(format!(
                "replayed {} times, the maximum is {}",
                m.replay_count(),
                request.max_replays
            )),
        );
    }
    if out.attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Plan::Fail(format!(
            "{} attributes with the replay count; SQS allows {MAX_MESSAGE_ATTRIBUTES}",
            out.attributes.len()
        ));
    }
    if out.size() > DEFAULT_MAX_MESSAGE_BYTES {
        return Plan::Fail(format!(
            "{} bytes with the replay count; SQS allows {DEFAULT_MAX_MESSAGE_BYTES}",
            out.size()
        ));
    }
    if fifo {
        let Some(group) = &m.group_id else {
            return Plan::Fail("FIFO target, but the message has no MessageGroupId".into());
        };
        out.group_id = Some(group.clone());
        // Fresh for each replay, yet the same if this replay is retried after a crash.
        out.deduplication_id = Some(format!("replay-{count}-{}", m.message_id));
    } else if let Some(policy) = request.backoff {
        let delay = policy.delay(count, rng).as_secs().min(900);
        out.delay_seconds = Some(i32::try_from(delay).unwrap_or(900));
    }
    if parks {
        Plan::Park(out)
    } else {
        Plan::Move(out)
    }
}

#[cfg(test)]
mod tests;
