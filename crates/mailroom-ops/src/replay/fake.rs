//! In-memory ports for replay tests (feature `test-util`): a scripted DLQ that records every
//! send and delete in order, and a decorator that counts calls and injects faults.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use mailroom_lambda::sqs::{
    EntryFailure, FakeQueues, OutgoingMessage, QueueArn, QueuePort, QueueUrl, SqsError,
    VisibilityChange,
};

use super::{DeadLetter, ReplayPort};

/// One call the fake DLQ saw, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A copy SQS confirmed, with the body it carried.
    Sent {
        /// The queue it went to.
        queue: QueueUrl,
        /// Its body.
        body: String,
    },
    /// A send the fake refused (an entry failure in the batch's answer).
    Refused {
        /// Its body.
        body: String,
    },
    /// A delete of this receipt handle.
    Deleted {
        /// The receipt handle.
        receipt_handle: String,
    },
}

#[derive(Debug, Default)]
struct Script {
    batches: VecDeque<Vec<DeadLetter>>,
    log: Vec<Call>,
}

/// A DLQ that hands out scripted batches, over a [`FakeQueues`] for everything else.
#[derive(Debug, Clone, Default)]
pub struct FakeDlq {
    queues: FakeQueues,
    script: Arc<Mutex<Script>>,
    refuse: Option<String>,
}

impl FakeDlq {
    /// Receives hand out `batches` in turn, then nothing.
    pub fn new(batches: Vec<Vec<DeadLetter>>) -> Self {
        let fake = Self::default();
        fake.script().batches = batches.into();
        fake
    }

    /// Sends of bodies containing `marker` are refused, entry by entry, as SQS refuses an
    /// entry of a batch.
    #[must_use]
    pub fn refusing_bodies_containing(mut self, marker: impl Into<String>) -> Self {
        self.refuse = Some(marker.into());
        self
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The underlying queues (sends and visibility changes).
    pub fn queues(&self) -> &FakeQueues {
        &self.queues
    }

    /// Every send and delete, in order.
    pub fn log(&self) -> Vec<Call> {
        self.script().log.clone()
    }

    /// Visibility batches requested so far, one inner list per call.
    pub fn visibility_calls(&self) -> Vec<Vec<VisibilityChange>> {
        self.queues.visibility_calls()
    }
}

impl QueuePort for FakeDlq {
    async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
        self.queues.queue_url(arn).await
    }

    async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
        self.queues.dead_letter_target(queue).await
    }

    async fn maximum_message_size(&self, queue: &QueueUrl) -> Result<usize, SqsError> {
        self.queues.maximum_message_size(queue).await
    }

    async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
        self.queues.send(queue, message).await
    }

    async fn change_visibility(
        &self,
        queue: &QueueUrl,
        entries: Vec<VisibilityChange>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        self.queues.change_visibility(queue, entries).await
    }
}

impl ReplayPort for FakeDlq {
    async fn receive(
        &self,
        _queue: &QueueUrl,
        _visibility_secs: u32,
    ) -> Result<Vec<DeadLetter>, SqsError> {
        Ok(self.script().batches.pop_front().unwrap_or_default())
    }

    async fn send_batch(
        &self,
        queue: &QueueUrl,
        entries: Vec<(String, OutgoingMessage)>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        let mut failed = Vec::new();
        for (id, message) in entries {
            let body = message.body.clone();
            if self
                .refuse
                .as_ref()
                .is_some_and(|m| body.contains(m.as_str()))
            {
                self.script().log.push(Call::Refused { body });
                failed.push(EntryFailure {
                    id,
                    reason: "InvalidMessageContents: refused by the fake".into(),
                });
                continue;
            }
            self.queues.send(queue, message).await?;
            self.script().log.push(Call::Sent {
                queue: queue.clone(),
                body,
            });
        }
        Ok(failed)
    }

    async fn delete_batch(
        &self,
        _queue: &QueueUrl,
        entries: Vec<(String, String)>,
    ) -> Result<Vec<EntryFailure>, SqsError> {
        let mut script = self.script();
        for (_, receipt_handle) in entries {
            script.log.push(Call::Deleted { receipt_handle });
        }
        Ok(Vec::new())
    }

    async fn dead_letter_sources(&self, _dlq: &QueueUrl) -> Result<Vec<QueueUrl>, SqsError> {
        Ok(Vec::new())
    }
}

/// A port decorator for tests and benchmarks: counts every SQS call, and can fail the n-th
/// `SendMessageBatch` or `ReceiveMessage` to show that a failure midway loses nothing.
#[derive(Debug)]
pub struct Instrumented<P> {
    inner: P,
    calls: std::sync::atomic::AtomicUsize,
    send_batches: std::sync::atomic::AtomicUsize,
    fail_send_batch: Option<usize>,
    receives: std::sync::atomic::AtomicUsize,
    fail_receive: Option<usize>,
}

impl<P> Instrumented<P> {
    /// Wraps `inner`; every call goes through.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
            send_batches: std::sync::atomic::AtomicUsize::new(0),
            fail_send_batch: None,
            receives: std::sync::atomic::AtomicUsize::new(0),
            fail_receive: None,
        }
    }

    /// The `n`-th `SendMessageBatch` (counting from 1) fails as a whole.
    #[must_use]
    pub fn failing_send_batch(mut self, n: usize) -> Self {
        self.fail_send_batch = Some(n);
        self
    }

    /// The `n`-th `ReceiveMessage` (counting from 1) fails.
    #[must_use]
    pub fn failing_receive(mut self, n: usize) -> Self {
        self.fail_receive = Some(n);
        self
    }

    /// SQS calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn tick(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

mod instrumented {
    use std::sync::atomic::Ordering;

    use mailroom_lambda::sqs::{
        EntryFailure, OutgoingMessage, QueueArn, QueuePort, QueueUrl, SqsError, VisibilityChange,
    };

    use super::Instrumented;
    use crate::replay::{DeadLetter, ReplayPort};

    impl<P: QueuePort> QueuePort for Instrumented<P> {
        async fn queue_url(&self, arn: &QueueArn) -> Result<QueueUrl, SqsError> {
            self.tick();
            self.inner.queue_url(arn).await
        }

        async fn dead_letter_target(&self, queue: &QueueUrl) -> Result<Option<QueueArn>, SqsError> {
            self.tick();
            self.inner.dead_letter_target(queue).await
        }

        async fn maximum_message_size(&self, queue: &QueueUrl) -> Result<usize, SqsError> {
            self.tick();
            self.inner.maximum_message_size(queue).await
        }

        async fn send(&self, queue: &QueueUrl, message: OutgoingMessage) -> Result<(), SqsError> {
            self.tick();
            self.inner.send(queue, message).await
        }

        async fn change_visibility(
            &self,
            queue: &QueueUrl,
            entries: Vec<VisibilityChange>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            self.inner.change_visibility(queue, entries).await
        }
    }

    impl<P: ReplayPort> ReplayPort for Instrumented<P> {
        async fn receive(
            &self,
            queue: &QueueUrl,
            visibility_secs: u32,
        ) -> Result<Vec<DeadLetter>, SqsError> {
            self.tick();
            let n = self.receives.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_receive == Some(n) {
                return Err(SqsError::retryable("ReceiveMessage", "injected fault"));
            }
            self.inner.receive(queue, visibility_secs).await
        }

        async fn send_batch(
            &self,
            queue: &QueueUrl,
            entries: Vec<(String, OutgoingMessage)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            let n = self.send_batches.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_send_batch == Some(n) {
                return Err(SqsError::retryable("SendMessageBatch", "injected fault"));
            }
            self.inner.send_batch(queue, entries).await
        }

        async fn delete_batch(
            &self,
            queue: &QueueUrl,
            entries: Vec<(String, String)>,
        ) -> Result<Vec<EntryFailure>, SqsError> {
            self.tick();
            self.inner.delete_batch(queue, entries).await
        }

        async fn dead_letter_sources(&self, dlq: &QueueUrl) -> Result<Vec<QueueUrl>, SqsError> {
            self.tick();
            self.inner.dead_letter_sources(dlq).await
        }
    }
}
