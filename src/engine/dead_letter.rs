//! The poison path: the record's copy to the DLQ, reported done only once SQS confirmed it.

use super::Work;
use super::run::{Done, RunCtx, done, fail};
use crate::outcome::{Backoff, Cause, Outcome};
use crate::poison::{Annotation, PoisonCopy};
use crate::sqs::QueuePort;

impl<Q, F> RunCtx<'_, Q, F>
where
    Q: QueuePort,
{
    /// Sends the record to the DLQ; reports it done only once the send is confirmed.
    pub(crate) async fn poison(&self, mut w: Work, reason: String) -> Done {
        let Some(source) = self.source else {
            tracing::error!(%reason, "poison, but the record names no valid eventSourceARN; leaving it to redrive");
            return fail(
                w,
                format!("{reason} (no source queue to find the DLQ)"),
                Cause::DeadLetterFailed,
                Backoff::QueueDefault,
            );
        };
        let dlq = match self.engine.dlq(source).await {
            Ok(dlq) => dlq,
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
            max_bytes: dlq.max_bytes,
        }
        .build();
        let dlq = dlq.url;
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
