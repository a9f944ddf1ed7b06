//! The circuit breaker around a batch: before it, whether its records run, are held, or one
//! of them probes; after it, the outcomes counted and the breaker moved.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::pool::pool;
use super::run::{Done, done, fail};
use super::{Deadline, Engine, Work};
use crate::breaker::BreakerPolicy;
use crate::clock::ms;
use crate::ledger::{BreakerState, Ledger};
use crate::outcome::{Backoff, Cause, Outcome};
use crate::poison::from_lambda_attribute;
use crate::sqs::{
    MAX_MESSAGE_ATTRIBUTES, OutgoingAttribute, OutgoingMessage, OutgoingValue, QueueArn, QueuePort,
};

/// What the breaker lets a batch do.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Every record runs.
    Run,
    /// No record runs: each comes back after `delay`.
    Hold {
        /// Until the cool-down ends.
        delay: Duration,
        /// The reason given for each record.
        reason: String,
    },
    /// The first record runs as the half-open probe; the rest come back after `delay`.
    Probe {
        /// The breaker being probed.
        dependency: String,
        /// This probe's claim.
        prober: String,
        /// The cool-down it opened with.
        cooldown: Duration,
        /// What opened it.
        last_error: String,
        /// When the held records come back.
        delay: Duration,
    },
}

impl<Q: QueuePort> Engine<Q> {
    /// The gate for the next batch, from the consumer's breakers in the ledger. While every
    /// breaker was closed at the last read, less than `refresh` ago, and the environment has
    /// seen no transient failure since, the batch runs without reading them again. A ledger
    /// that does not answer lets the batch run: the breaker protects the dependency, and the
    /// records' own ledger calls decide whether they can run safely.
    pub(crate) async fn gate(
        &self,
        policy: &BreakerPolicy,
        ledger: &Ledger,
        deadline: Deadline,
    ) -> Gate {
        let consumer = self.config.consumer.as_str();
        let now = ledger.clock().now_ms();
        let suspect = self.breaker_suspect.swap(false, Ordering::Relaxed);
        let closed_at = *self
            .breakers_closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !suspect && closed_at.is_some_and(|at| now.saturating_sub(at) < ms(policy.refresh)) {
            return Gate::Run;
        }
        let breakers = match ledger.breakers(Some(consumer)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "circuit breaker state unknown; the batch runs");
                return Gate::Run;
            }
        };
        let open: Vec<_> = breakers
            .iter()
            .filter(|b| b.state != BreakerState::Closed)
            .collect();
        *self
            .breakers_closed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = open.is_empty().then_some(now);
        let base = policy.cooldown;
        let reason = |b: &crate::ledger::Breaker| {
            format!(
                "circuit open: {} ({})",
                b.dependency,
                b.last_error.as_deref().unwrap_or("no error recorded")
            )
        };
        // Held until the latest cool-down still running ends (a running probe: its claim,
        // at most the first cool-down).
        let waiting = open
            .iter()
            .filter(|b| !b.probe_due(now))
            .map(|b| {
                let until = match b.state {
                    BreakerState::HalfOpen => b
                        .probe_until_ms
                        .unwrap_or(now)
                        .min(now.saturating_add(ms(base))),
                    _ => b.open_until_ms,
                };
                (until, *b)
            })
            .max_by_key(|(until, _)| *until);
        if let Some((until, b)) = waiting {
            return Gate::Hold {
                delay: Duration::from_millis(until.saturating_sub(now)).max(Duration::from_secs(1)),
                reason: reason(b),
            };
        }
        let Some(b) = open.first() else {
            return Gate::Run;
        };
        let prober = self.lease_owner();
        let claim_until = now + ms(deadline.remaining().unwrap_or(self.config.lease));
        match ledger
            .claim_probe(consumer, &b.dependency, &prober, claim_until)
            .await
        {
            Ok(true) => {
                tracing::info!(dependency = %b.dependency, "circuit half-open: one record probes");
                Gate::Probe {
                    dependency: b.dependency.clone(),
                    prober,
                    cooldown: Duration::from_millis(b.cooldown_ms),
                    last_error: b.last_error.clone().unwrap_or_default(),
                    delay: base,
                }
            }
            Ok(false) | Err(_) => Gate::Hold {
                delay: base,
                reason: reason(b),
            },
        }
    }

    /// Counts the batch's outcomes against its dependencies and moves the breakers: opens a
    /// tripped one, or settles the probe. Returns the new cool-down when the probe failed.
    pub(crate) async fn after_gate(
        &self,
        policy: &BreakerPolicy,
        ledger: &Ledger,
        gate: &Gate,
        done: &[Done],
    ) -> Option<Duration> {
        let consumer = self.config.consumer.as_str();
        if let Gate::Probe {
            dependency,
            prober,
            cooldown,
            last_error,
            ..
        } = gate
        {
            let probe = done.iter().find(|d| !is_held(d))?;
            let failed = matches!(
                probe.report.outcome,
                Outcome::Failed {
                    cause: Cause::Retry,
                    ..
                }
            );
            let verdict = match &probe.report.outcome {
                Outcome::Succeeded | Outcome::Poisoned { .. } => None,
                Outcome::Failed {
                    cause: Cause::Retry,
                    reason,
                    ..
                } => Some((ms(policy.next_cooldown(*cooldown)), reason.as_str())),
                // The probe did not reach the dependency (a duplicate, the deadline, a held
                // lease): the breaker stays as it was, for the next probe.
                _ => Some((ms(*cooldown), last_error.as_str())),
            };
            match ledger
                .settle_probe(consumer, dependency, prober, verdict)
                .await
            {
                Ok(_) if verdict.is_none() => {
                    tracing::info!(dependency = %dependency, "circuit closed: the probe succeeded");
                }
                Ok(_) => {
                    tracing::warn!(dependency = %dependency, "circuit open again: the probe failed");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "circuit breaker: the probe's verdict was not written; its claim runs out");
                }
            }
            return verdict
                .filter(|_| failed)
                .map(|(cooldown, _)| Duration::from_millis(cooldown));
        }
        // (dependency, error, cool-down) of each breaker to open.
        let tripped: Vec<(String, String, Duration)> = {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            let mut tripped = Vec::new();
            for d in done {
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
        None
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
        works: Vec<Work>,
        delay: Duration,
        reason: &str,
        source: Option<&QueueArn>,
        fifo: bool,
    ) -> Vec<Done> {
        let held = |w: Work| fail(w, reason, Cause::Held, Backoff::After(delay));
        let delay_secs = u32::try_from(delay.as_secs().max(1)).unwrap_or(u32::MAX);
        let url = match source {
            Some(arn) if !fifo && delay_secs <= MAX_DELAY_SECS => self.source_url(arn).await.ok(),
            _ => None,
        };
        let Some(url) = url else {
            return works.into_iter().map(held).collect();
        };
        let url = &url;
        pool(works.into_iter(), self.config.concurrency, |mut w| async move {
            let Some(copy) = deferred_copy(&mut w, delay_secs) else {
                return held(w);
            };
            match self.queues.send(url, copy).await {
                Ok(()) => {
                    tracing::info!(%reason, delay_secs, "held by the circuit breaker: sent back to its queue");
                    done(w, Outcome::Deferred { delay_secs }, Backoff::QueueDefault)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "held by the circuit breaker; the copy was not sent, so it waits by its visibility");
                    held(w)
                }
            }
        })
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
