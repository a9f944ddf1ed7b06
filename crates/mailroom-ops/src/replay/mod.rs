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
//! On a standard DLQ without a maximum, several such pipelines run at once (eight by default),
//! sharing the rate limit and the set of messages seen, so no message is counted twice; a
//! FIFO DLQ, or a run with a maximum, has one.
//!
//! Why the run loop stays in one file of about 500 lines: receive-ahead, delivery, the deletes
//! after confirmed sends and the releases at the end are one state machine over one run's
//! handles; the port, the allowlist, the plan per message and the ledger marks are beside it.

mod adapter;
mod allowlist;
#[cfg(any(test, feature = "test-util"))]
mod fake;
mod filter;
mod mark;
mod plan;
mod port;
mod report;
mod request;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailroom_lambda::backoff::BackoffPolicy;
use mailroom_lambda::sqs::{
    MAX_BATCH_ENTRIES, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueueUrl, SqsError,
    VisibilityChange,
};

pub use allowlist::Allowlist;
#[cfg(any(test, feature = "test-util"))]
pub use fake::{Call, FakeDlq, Instrumented};
pub use filter::Filter;
pub use mark::LedgerMark;
use plan::{Plan, plan};
pub use port::{DeadLetter, ReplayPort};
pub use report::{ReplayReport, Sample};
pub use request::{BackoffJson, FilterJson, RequestJson};

/// The attribute counting how often a message has been replayed.
pub const REPLAY_COUNT_ATTRIBUTE: &str = "mailroom.replay-count";
/// The attribute saying why a message was parked.
pub const PARKED_ATTRIBUTE: &str = "mailroom.parked-reason";

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
    /// How long a message looked at and not moved stays hidden from other readers (default:
    /// the time budget plus a minute, or 5 minutes). A receive whose answer was lost on the
    /// way hides its messages this long too, so a shorter hold brings them back sooner.
    pub hold: Option<Duration>,
    /// Receive, send and delete pipelines run at once on a standard DLQ without
    /// `max_messages` (default 8); a FIFO DLQ, or a run with a maximum, has one. The rate
    /// limit is shared between them.
    pub pipelines: usize,
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
            hold: None,
            pipelines: 8,
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
    progress: impl FnMut(&ReplayReport),
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
    let pipelines = if request.source.as_str().ends_with(".fifo") || request.max_messages.is_some()
    {
        1
    } else {
        request.pipelines.max(1)
    };
    let mut share = request.clone();
    share.rate_per_sec = request
        .rate_per_sec
        .map(|r| r / f64::from(u32::try_from(pipelines).unwrap_or(u32::MAX)));
    let seen = std::sync::Mutex::new(HashSet::new());
    let sofar = std::sync::Mutex::new((vec![ReplayReport::default(); pipelines], progress));
    let (share, target, seen, sofar) = (&share, &target, &seen, &sofar);
    let runs = (0..pipelines).map(|i| {
        pipeline(
            port,
            share,
            target,
            started,
            seen,
            move |r: &ReplayReport| {
                let mut guard = sofar
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (reports, progress) = &mut *guard;
                reports[i] = r.clone();
                progress(&ReplayReport::merged(reports.iter()));
            },
        )
    });
    let results = futures_util::future::join_all(runs).await;
    let looked_at: usize = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.examined)
        .sum();
    let mut reports = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(r) => reports.push(r),
            // Nothing was looked at anywhere: the run never started.
            Err(e) if looked_at == 0 => return Err(e),
            Err(ReplayError::Sqs(e)) => {
                let mut r = ReplayReport::default();
                r.stop_on_error(&e);
                reports.push(r);
            }
            Err(e) => return Err(e),
        }
    }
    let mut report = ReplayReport::merged(reports.iter());
    report.dry_run = request.dry_run;
    report.source = request.source.as_str().to_owned();
    report.target = target.as_str().to_owned();
    report.finish(started.elapsed());
    Ok(report)
}

/// One receive, send and delete pipeline of a run: the run's state machine over its own
/// handles, with the message ids seen in the whole run shared, so no message is counted twice.
async fn pipeline<P: ReplayPort>(
    port: &P,
    request: &ReplayRequest,
    target: &QueueUrl,
    started: Instant,
    seen: &std::sync::Mutex<HashSet<String>>,
    mut progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport, ReplayError> {
    let fifo = target.as_str().ends_with(".fifo");
    let mut report = ReplayReport::new(request.dry_run, &request.source, target);
    let mut rng = fastrand::Rng::new();
    // Everything looked at and not moved stays hidden until the run ends, so one run never
    // counts a message twice; then it is made visible again at once.
    let hold_secs = match request.hold {
        Some(hold) => hold.as_secs().max(1),
        None => request
            .time_budget
            .map_or(300, |b| b.as_secs().saturating_add(60)),
    }
    .min(43_000);
    let hold_secs = u32::try_from(hold_secs).unwrap_or(43_000);
    let mut release: Vec<(String, String)> = Vec::new();
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
            if !seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(m.message_id.clone())
            {
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
            target,
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
            report.last_moved_ms = started.elapsed().as_millis();
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

#[cfg(test)]
mod tests;
