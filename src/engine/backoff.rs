//! Backoff: the visibility of retried records, set in batches of ten.

use std::sync::PoisonError;

use super::Engine;
use super::run::Done;
use crate::backoff::{BackoffPolicy, clamp_visibility};
use crate::outcome::{Backoff, Outcome};
use crate::sqs::{MAX_BATCH_ENTRIES, QueueArn, QueuePort, VisibilityChange};

impl<Q: QueuePort> Engine<Q> {
    /// Sets the visibility of retried records in batches of ten. A failed call is logged; the
    /// records stay reported failed either way.
    pub(crate) async fn apply_backoff(&self, source: Option<&QueueArn>, done: &mut [Done]) {
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
                        clamp_visibility(p.delay(d.report.meta.receive_count, &mut rng))
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
}
