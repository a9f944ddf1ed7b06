//! The circuit breaker around a batch: before it, whether its records run, are held, or one
//! of them probes; after it, the outcomes counted and the breaker moved.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::pool::pool;
use super::run::{Done, done, fail};
use super::{Deadline, Engine, Incoming, Work};
use crate::breaker::BreakerPolicy;
use crate::clock::ms;
use crate::ledger::{BreakerState, Ledger};
use crate::outcome::{Backoff, Cause, Outcome};
use crate::poison::from_lambda_attribute;
use crate::sqs::{
    MAX_MESSAGE_ATTRIBUTES, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueueArn, QueuePort,
};

/// The dependency a record goes to, from its payload (the SNS `Message`, else the body);
/// `None` for the consumer itself. Set with [`Engine::with_router`]; consulted only while a
/// breaker is open.
pub(crate) struct Router(pub(crate) Box<RouteFn>);

/// A router's function: a record's payload to its dependency.
pub(crate) type RouteFn = dyn Fn(&str) -> Option<String> + Send + Sync;

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router")
    }
}

/// An open or half-open breaker, as the plan sees it.
struct Blocked {
    dependency: String,
    /// The cool-down is over (or the last probe's claim ran out): a probe may be claimed.
    due: bool,
    /// While not due: until the cool-down ends (a running probe: its claim, at most the
    /// first cool-down).
    delay: Duration,
    reason: String,
    cooldown: Duration,
    last_error: String,
}

/// The half-open probe a batch runs.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The record that probes.
    pub(crate) index: usize,
    dependency: String,
    prober: String,
    cooldown: Duration,
    last_error: String,
}

/// What the breakers decide for a batch.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The records that run.
    pub(crate) run: Vec<(usize, Incoming)>,
    /// The records held back, with when they come back and why.
    pub(crate) held: Vec<((usize, Incoming), Duration, String)>,
    /// The half-open probe among `run`, if any.
    pub(crate) probe: Option<Probe>,
    /// Whether a breaker was open (or half-open) for this batch.
    pub(crate) open: bool,
}

/// The text a router reads: the SNS `Message`, else the body.
fn payload(record: &Incoming) -> Option<String> {
    match record {
        Incoming::Record(r) => {
            let body = r.body.as_deref()?;
            Some(crate::message::envelope_message(body).unwrap_or_else(|| body.to_owned()))
        }
        Incoming::Malformed { .. } => None,
    }
}

impl<Q: QueuePort> Engine<Q> {
    /// The consumer's open breakers, from the ledger. While every breaker was closed at the
    /// last read, less than `refresh` ago, and the environment has seen no transient failure
    /// since, they are not read again. A ledger that does not answer lets the batch run: the
    /// breaker protects the dependency, and the records' own ledger calls decide whether they
    /// can run safely.
    async fn blocked(&self, policy: &BreakerPolicy, ledger: &Ledger) -> Vec<Blocked> {
        let consumer = self.config.consumer.as_str();
        let now = ledger.clock().now_ms();
        let suspect = self.breaker_suspect.swap(false, Ordering::Relaxed);
        let closed_at = *self
            .breakers_closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !suspect && closed_at.is_some_and(|at| now.saturating_sub(at) < ms(policy.refresh)) {
            return Vec::new();
        }
        let breakers = match ledger.breakers(Some(consumer)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "circuit breaker state unknown; the batch runs");
                return Vec::new();
            }
        };
        let base = policy.cooldown;
        let blocked: Vec<Blocked> = breakers
            .into_iter()
            .filter(|b| b.state != BreakerState::Closed)
            .map(|b| {
                let until = match b.state {
                    BreakerState::HalfOpen => b
                        .probe_until_ms
                        .unwrap_or(now)
                        .min(now.saturating_add(ms(base))),
                    _ => b.open_until_ms,
                };
                Blocked {
                    due: b.probe_due(now),
                    delay: Duration::from_millis(until.saturating_sub(now))
                        .max(Duration::from_secs(1)),
                    reason: format!(
                        "circuit open: {} ({})",
                        b.dependency,
                        b.last_error.as_deref().unwrap_or("no error recorded")
                    ),
                    cooldown: Duration::from_millis(b.cooldown_ms),
                    last_error: b.last_error.unwrap_or_default(),
                    dependency: b.dependency,
                }
            })
            .collect();
        *self
            .breakers_closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = blocked.is_empty().then_some(now);
        blocked
    }

    /// Which records run, which are held, and which one probes. A record is held while a
    /// breaker of its dependency is open; once that breaker's cool-down is over, the first
    /// such record claims the probe (one environment wins) and runs, and the others wait. A
    /// record's dependency is the router's answer, else the consumer itself; with no router,
    /// and on a FIFO queue (where a record held while a later one of its group ran would break
    /// the group's order), every breaker of the consumer holds every record.
    pub(crate) async fn plan(
        &self,
        policy: &BreakerPolicy,
        ledger: &Ledger,
        deadline: Deadline,
        records: Vec<(usize, Incoming)>,
        fifo: bool,
    ) -> Plan {
        let blocked = self.blocked(policy, ledger).await;
        if blocked.is_empty() {
            return Plan {
                run: records,
                ..Plan::default()
            };
        }
        let consumer = self.config.consumer.as_str();
        let mut plan = Plan {
            open: true,
            ..Plan::default()
        };
        let mut claimed: Vec<&str> = Vec::new();
        for record in records {
            let route = self
                .router
                .as_ref()
                .filter(|_| !fifo)
                .map(|r| payload(&record.1).and_then(|p| (r.0)(&p)));
            let matching: Vec<&Blocked> = blocked
                .iter()
                .filter(|b| match &route {
                    None => true,
                    Some(dependency) => b.dependency == dependency.as_deref().unwrap_or(consumer),
                })
                .collect();
            if matching.is_empty() {
                plan.run.push(record);
                continue;
            }
            if let Some(b) = matching.iter().filter(|b| !b.due).max_by_key(|b| b.delay) {
                plan.held.push((record, b.delay, b.reason.clone()));
                continue;
            }
            let b = matching[0];
            let mut probe = None;
            if plan.probe.is_none() && !claimed.contains(&b.dependency.as_str()) {
                claimed.push(&b.dependency);
                let prober = self.lease_owner();
                let now = ledger.clock().now_ms();
                let claim_until = now + ms(deadline.remaining().unwrap_or(self.config.lease));
                if let Ok(true) = ledger
                    .claim_probe(consumer, &b.dependency, &prober, claim_until)
                    .await
                {
                    tracing::info!(dependency = %b.dependency, "circuit half-open: one record probes");
                    probe = Some(Probe {
                        index: record.0,
                        dependency: b.dependency.clone(),
                        prober,
                        cooldown: b.cooldown,
                        last_error: b.last_error.clone(),
                    });
                }
            }
            match probe {
                Some(p) => {
                    plan.probe = Some(p);
                    plan.run.push(record);
                }
                None => plan.held.push((
                    record,
                    policy.cooldown,
                    format!("circuit half-open: {} is being probed", b.dependency),
                )),
            }
        }
        plan
    }

    /// Settles the probe, counts the other outcomes against their dependencies, and opens
    /// the breakers that tripped. Returns the new cool-down when the probe failed.
    pub(crate) async fn after_plan(
        &self,
        policy: &BreakerPolicy,
        ledger: &Ledger,
        probe: Option<&Probe>,
        done: &[Done],
    ) -> Option<Duration> {
        let consumer = self.config.consumer.as_str();
        let mut reopened = None;
        if let Some(p) = probe
            && let Some(d) = done.iter().find(|d| d.index == p.index)
        {
            let failed = matches!(
                d.report.outcome,
                Outcome::Failed {
                    cause: Cause::Retry,
                    ..
                }
            );
            let verdict = match &d.report.outcome {
                Outcome::Succeeded | Outcome::Poisoned { .. } => None,
                Outcome::Failed {
                    cause: Cause::Retry,
                    reason,
                    ..
                } => Some((ms(policy.next_cooldown(p.cooldown)), reason.as_str())),
                // The probe did not reach the dependency (a duplicate, the deadline, a held
                // lease): the breaker stays as it was, for the next probe.
                _ => Some((ms(p.cooldown), p.last_error.as_str())),
            };
            match ledger
                .settle_probe(consumer, &p.dependency, &p.prober, verdict)
                .await
            {
                Ok(_) if verdict.is_none() => {
                    tracing::info!(dependency = %p.dependency, "circuit closed: the probe succeeded");
                }
                Ok(_) => {
                    tracing::warn!(dependency = %p.dependency, "circuit open again: the probe failed");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "circuit breaker: the probe's verdict was not written; its claim runs out");
                }
            }
            reopened = verdict
                .filter(|_| failed)
                .map(|(cooldown, _)| Duration::from_millis(cooldown));
        }
        // (dependency, error, cool-down) of each breaker to open.
        let tripped: Vec<(String, String, Duration)> = {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            let mut tripped = Vec::new();
            let others = done
                .iter()
                .filter(|d| probe.is_none_or(|p| p.index != d.index) && !is_held(d));
            for d in others {
                match &d.report.outcome {
                    Outcome::Succeeded => windows.success(policy),
                    Outcome::Failed {
                        cause: Cause::Retry,
                        reason,
                        ..
                    } => {
                        // The next batch reads the breakers again: another environment may
                        // have opened one for this failure's dependency.
                        self.breaker_suspect.store(true, Ordering::Relaxed);
                        let dependency = d.dependency.as_deref().unwrap_or(consumer);
                        match (d.dependency.is_some(), d.backoff) {
                            // The dependency said when to come back (`Retry-After`): every
                            // record bound for it waits that long, not only this one.
                            (true, Backoff::After(delay)) => tripped.push((
                                dependency.to_owned(),
                                reason.clone(),
                                delay.clamp(Duration::from_secs(1), policy.max_cooldown),
                            )),
                            _ if windows.failure(dependency, policy) => tripped.push((
                                dependency.to_owned(),
                                reason.clone(),
                                policy.cooldown,
                            )),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            tripped
        };
        let mut opened = std::collections::HashSet::new();
        for (dependency, error, cooldown) in tripped {
            if !opened.insert(dependency.clone()) {
                continue;
            }
            match ledger
                .open_breaker(
                    consumer,
                    &dependency,
                    policy.function.as_deref(),
                    ms(cooldown),
                    &error,
                )
                .await
            {
                Ok(true) => {
                    tracing::warn!(dependency = %dependency, error = %error, cooldown_secs = cooldown.as_secs(), "circuit opened");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, dependency = %dependency, "circuit breaker: could not open");
                }
            }
        }
        reopened
    }
}

/// Whether a record was held back by the breaker.
pub(crate) fn is_held(d: &Done) -> bool {
    matches!(
        d.report.outcome,
        Outcome::Deferred { .. }
            | Outcome::Failed {
                cause: Cause::Held,
                ..
            }
    )
}

/// The attribute counting how many times the breaker sent a message back to its queue.
pub const DEFERRALS_ATTRIBUTE: &str = "mailroom.deferrals";

/// After this many deferrals a held message waits by its visibility instead, so its receive
/// count (and the queue's redrive) bounds a message that fails forever.
pub const MAX_DEFERRALS: u32 = 100;

impl<Q: QueuePort> Engine<Q> {
    /// Holds records back until `delay` is over. On a standard queue each is sent back to its
    /// queue as a fresh message delayed that long, and reported done once SQS confirmed the
    /// send, so waiting out an outage never counts toward `maxReceiveCount`. Otherwise (a FIFO
    /// queue, whose order a copy would break; a delay past SQS's 15 minutes; a copy deferred
    /// [`MAX_DEFERRALS`] times; a failed send) it is reported failed with its visibility set
    /// to `delay`.
    pub(crate) async fn hold(
        &self,
        works: Vec<(Work, Duration, String)>,
        source: Option<&QueueArn>,
        fifo: bool,
    ) -> Vec<Done> {
        let held = |w: Work, delay: Duration, reason: String| {
            fail(w, reason, Cause::Held, Backoff::After(delay))
        };
        let url = match source {
            Some(arn) if !fifo => self.source_url(arn).await.ok(),
            _ => None,
        };
        let Some(url) = url else {
            return works
                .into_iter()
                .map(|(w, delay, reason)| held(w, delay, reason))
                .collect();
        };
        let url = &url;
        pool(
            works.into_iter(),
            self.config.concurrency,
            |(mut w, delay, reason)| async move {
                let delay_secs = u32::try_from(delay.as_secs().max(1)).unwrap_or(u32::MAX);
                let copy = (delay_secs <= MAX_DELAY_SECS)
                    .then(|| deferred_copy(&mut w, delay_secs))
                    .flatten();
                let Some(copy) = copy else {
                    return held(w, delay, reason);
                };
                match self.queues.send(url, copy).await {
                    Ok(()) => {
                        tracing::info!(%reason, delay_secs, "held by the circuit breaker: sent back to its queue");
                        done(w, Outcome::Deferred { delay_secs }, Backoff::QueueDefault)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "held by the circuit breaker; the copy was not sent, so it waits by its visibility");
                        held(w, delay, reason)
                    }
                }
            },
        )
        .await
    }
}

/// SQS's longest per-message delay.
const MAX_DELAY_SECS: u32 = 900;

/// The record's copy for its own queue, `delay_secs` later, with its deferral count one up;
/// `None` when it cannot be made (no body, no room for the count, deferred too often).
fn deferred_copy(w: &mut Work, delay_secs: u32) -> Option<OutgoingMessage> {
    let meta = &w.received.meta;
    let deferrals: u32 = meta
        .sqs_attributes
        .get(DEFERRALS_ATTRIBUTE)
        .and_then(|a| a.string_value.as_deref()?.parse().ok())
        .unwrap_or(0);
    let mut attributes: std::collections::HashMap<_, _> = meta
        .sqs_attributes
        .iter()
        .filter_map(|(name, a)| Some((name.clone(), from_lambda_attribute(a)?)))
        .collect();
    attributes.insert(
        DEFERRALS_ATTRIBUTE.to_owned(),
        OutgoingAttribute {
            data_type: "Number".to_owned(),
            value: OutgoingValue::Text((deferrals + 1).to_string()),
        },
    );
    if deferrals >= MAX_DEFERRALS || attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return None;
    }
    Some(OutgoingMessage {
        body: w.received.body.take()?,
        attributes,
        delay_seconds: i32::try_from(delay_secs).ok(),
        ..OutgoingMessage::default()
    })
}
