//! An in-memory [`QueuePort`] that records calls and injects faults (feature `test-util`).

use super::{
    EntryFailure, OutgoingMessage, QueueArn, QueuePort, QueueUrl, SqsError, VisibilityChange,
};
use std::sync::{Arc, Mutex, PoisonError};

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The queue it was sent to.
    pub queue: QueueUrl,
    /// The message.
    pub message: OutgoingMessage,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<SentMessage>,
    visibility: Vec<Vec<VisibilityChange>>,
    url_lookups: usize,
    redrive_lookups: usize,
    size_lookups: usize,
}

/// An in-memory queue service. Every queue has the URL `https://sqs.local/<name>` and,
/// unless told otherwise, a DLQ named `<name>-dlq`.
#[derive(Debug, Clone, Default)]
pub struct FakeQueues {
    state: Arc<Mutex<State>>,
    fail_sends: bool,
    fail_visibility: bool,
    no_redrive: bool,
    discard: bool,
    /// Every queue's `MaximumMessageSize`; none: SQS's default, 1 MiB.
    maximum_message_size: Option<usize>,
}

impl FakeQueues {
    /// A fake where every call succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that accepts calls and keeps nothing (for benchmarks).
    pub fn discarding() -> Self {
        Self {
            discard: true,
            ..Self::default()
        }
    }

    /// Every send fails.
    #[must_use]
    pub fn failing_sends(mut self) -> Self {
        self.fail_sends = true;
        self
    }

    /// Every visibility change fails.
    #[must_use]
    pub fn failing_visibility(mut self) -> Self {
        self.fail_visibility = true;
        self
    }

    /// Queues have no RedrivePolicy.
    #[must_use]
    pub fn without_redrive(mut self) -> Self {
        self.no_redrive = true;
        self
    }

    /// Every queue's `MaximumMessageSize`: larger messages are refused, as SQS refuses them.
    #[must_use]
    pub fn with_maximum_message_size(mut self, bytes: usize) -> Self {
        self.maximum_message_size = Some(bytes);
        self
    }

    /// How many times a queue's `MaximumMessageSize` was read.
    pub fn size_lookups(&self) -> usize {
        self.state().size_lookups
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Messages sent so far.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state().sent.clone()
    }

    /// Visibility batches requested so far, one inner list per call.
    pub fn visibility_calls(&self) -> Vec<Vec<VisibilityChange>> {
        self.state().visibility.clone()
    }

    /// How many times a queue URL and a redrive policy were looked up.
    pub fn lookups(&self) -> (usize, usize) {
        let s = self.state();
        (s.url_lookups, s.redrive_lookups)
    }
}

impl QueuePort for FakeQueues {
    async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
        self.state().url_lookups += 1;
        Ok(QueueUrl(format!("https://sqs.local/{}", arn.name())))
    }

    async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
        self.state().redrive_lookups += 1;
        if self.no_redrive {
            return Ok(None);
        }
        let name = queue.as_str().rsplit('/').next().unwrap_or_default();
        let dlq = match name.strip_suffix(".fifo") {
            Some(stem) => format!("{stem}-dlq.fifo"),
            None => format!("{name}-dlq"),
        };
        format!("arn:aws:sqs:us-east-1:123456789012:{dlq}")
            .parse()
            .map(Some)
            .map_err(|e| SqsError::permanent("GetQueueAttributes", e))
    }

    async fn maximum_message_size(&self, _queue: &QueueUrl) -> Result<usize, SqsError> {
        self.state().size_lookups += 1;
        Ok(self
            .maximum_message_size
            .unwrap_or(super::SQS_MAX_MESSAGE_BYTES))
    }

    async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
        if self.fail_sends {
            return Err(SqsError::retryable("SendMessage", "injected fault"));
        }
        let limit = self
            .maximum_message_size
            .unwrap_or(super::SQS_MAX_MESSAGE_BYTES);
        if message.size() > limit {
            return Err(SqsError::permanent(
                "SendMessage",
                format!("Message must be shorter than {limit} bytes."),
            ));
        }
        if !self.discard {
            self.state().sent.push(SentMessage {
                queue: queue.clone(),
                message,
            });
        }
        Ok(())
    }

    async fn change_visibility(
        &self,
        _queue: &QueueUrl,
        entries: Vec<VisibilityChange>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        if self.fail_visibility {
            return Err(SqsError::retryable(
                "ChangeMessageVisibilityBatch",
                "injected fault",
            ));
        }
        if !self.discard {
            self.state().visibility.push(entries);
        }
        Ok(Vec::new())
    }
}
