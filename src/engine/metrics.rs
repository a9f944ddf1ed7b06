//! One EMF line per invocation, and the ages of the batch's oldest message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::run::Done;
use super::{BatchReport, Engine};
use crate::message::parse_iso8601_ms;
use crate::outcome::{Cause, Outcome};
use crate::sqs::QueuePort;
use crate::telemetry::{Emf, Unit};

impl<Q: QueuePort> Engine<Q> {
    pub(crate) fn emit_metrics(
        &self,
        report: &BatchReport,
        took: Duration,
        ages: &Ages,
        cold_start: bool,
        ledger_errors: u32,
        breaker_open: Option<bool>,
    ) {
        let mut counts = [0u32; 7];
        let mut held = 0u32;
        // Poison copies that could not carry their whole reason (the reason is in the log).
        let mut reason_dropped = 0u32;
        for r in &report.records {
            if let Outcome::Poisoned { annotation, .. } = &r.outcome {
                reason_dropped += u32::from(*annotation != crate::poison::Annotation::Full);
            }
            let slot = match &r.outcome {
                Outcome::Succeeded => 0,
                Outcome::Failed {
                    cause: Cause::Retry,
                    ..
                } => 1,
                Outcome::Poisoned { .. } => 2,
                Outcome::Failed { .. } => 3,
                Outcome::Duplicate => 4,
                Outcome::Skipped { .. } => 5,
                Outcome::Deferred { .. } => 6,
            };
            counts[slot] += 1;
            held += u32::from(matches!(
                r.outcome,
                Outcome::Deferred { .. }
                    | Outcome::Failed {
                        cause: Cause::Held,
                        ..
                    }
            ));
        }
        let [
            succeeded,
            retried,
            poisoned,
            failed,
            duplicates,
            skipped,
            deferred,
        ] = counts;
        tracing::info!(
            records = report.records.len(),
            succeeded,
            duplicates,
            skipped,
            retried,
            poisoned,
            failed,
            held,
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
                f64::from(
                    succeeded + retried + poisoned + failed + duplicates + skipped + deferred,
                ),
            )
            .metric("Succeeded", Unit::Count, f64::from(succeeded))
            .metric("Duplicates", Unit::Count, f64::from(duplicates))
            .metric("Skipped", Unit::Count, f64::from(skipped))
            .metric("Retried", Unit::Count, f64::from(retried))
            .metric("Poisoned", Unit::Count, f64::from(poisoned))
            .metric(
                "PoisonReasonTruncated",
                Unit::Count,
                f64::from(reason_dropped),
            )
            .metric("Failed", Unit::Count, f64::from(failed))
            .metric(
                "BatchDuration",
                Unit::Milliseconds,
                took.as_secs_f64() * 1000.0,
            )
            .metric("ColdStart", Unit::Count, if cold_start { 1.0 } else { 0.0 })
            .metric("LedgerWriteFailed", Unit::Count, f64::from(ledger_errors));
        if let Some(open) = breaker_open {
            // Records the circuit breaker held back, and whether a breaker was open (or
            // half-open) for this batch.
            emf = emf
                .metric("BreakerHeld", Unit::Count, f64::from(held))
                .metric("BreakerOpen", Unit::Count, if open { 1.0 } else { 0.0 });
        }
        if let Some(age) = ages.queue_ms {
            emf = emf.metric("MessageAge", Unit::Milliseconds, age);
        }
        // Dwell time per tenant, so one tenant's backlog shows apart from the others'.
        for (tenant, age) in &ages.tenants {
            let dims = [
                ("Consumer", self.config.consumer.as_str()),
                ("Tenant", tenant.as_str()),
            ];
            Emf::new(&self.config.namespace, &dims)
                .metric("MessageAge", Unit::Milliseconds, *age)
                .emit(&self.config.metrics);
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

/// The most tenants a batch reports dwell time for: a dimension per tenant is a custom
/// metric each in CloudWatch, so a batch of many small tenants reports the oldest ones.
const MAX_TENANTS: usize = 20;

/// The oldest message in the batch, by SQS and by SNS timestamps, and per tenant.
pub(crate) struct Ages {
    queue_ms: Option<f64>,
    publish_ms: Option<f64>,
    /// The oldest message of each tenant in the batch (by SQS's timestamp), oldest first.
    tenants: Vec<(String, f64)>,
}

impl Ages {
    pub(crate) fn of(done: &[Done]) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        // Saturating: a hostile `SentTimestamp` (i64::MIN) must not overflow outside the
        // per-record isolation.
        let age = |t: i64| now.saturating_sub(t).max(0);
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
        let mut tenants: Vec<(String, i64)> = Vec::new();
        for d in done {
            let meta = &d.report.meta;
            let (Some(tenant), Some(sent)) = (meta.tenant(), meta.sent_at_ms) else {
                continue;
            };
            match tenants.iter_mut().find(|(t, _)| t == tenant) {
                Some((_, oldest)) => *oldest = (*oldest).max(age(sent)),
                None => tenants.push((tenant.to_owned(), age(sent))),
            }
        }
        tenants.sort_unstable_by_key(|(_, a)| std::cmp::Reverse(*a));
        tenants.truncate(MAX_TENANTS);
        #[allow(clippy::cast_precision_loss, reason = "ages in ms fit f64 exactly")]
        Self {
            queue_ms: queue.map(|a| a as f64),
            publish_ms: publish.map(|a| a as f64),
            tenants: tenants.into_iter().map(|(t, a)| (t, a as f64)).collect(),
        }
    }
}
