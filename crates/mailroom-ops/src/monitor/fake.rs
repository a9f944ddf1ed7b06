//! In-memory monitor ports for unit tests (feature `test-util`): a ledger of entries and
//! documents on a manual clock, DLQs with set depths, and an alert sink that records what it
//! was given and can refuse.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailroom_lambda::clock::{Clock, ManualClock};
use mailroom_lambda::ledger::{Breaker, Entry, LedgerError, State};
use mailroom_lambda::sqs::QueueUrl;

use super::ports::{AlertMessage, AlertSink, DlqReader, TaskStore};
use super::{DeadLetterSample, MonitorError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ledger in memory.
#[derive(Debug, Clone)]
pub struct FakeStore {
    clock: Arc<ManualClock>,
    entries: Arc<Mutex<Vec<Entry>>>,
    documents: Arc<Mutex<HashMap<(String, String), String>>>,
    breakers: Arc<Mutex<Vec<Breaker>>>,
}

impl FakeStore {
    /// An empty ledger whose clock reads `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            clock: Arc::new(ManualClock::new(now_ms)),
            entries: Arc::default(),
            documents: Arc::default(),
            breakers: Arc::default(),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Adds a pair in `state`, opened at `opened_at_ms`.
    pub fn open(&self, task_id: &str, consumer: &str, state: State, opened_at_ms: u64) {
        lock(&self.entries).push(Entry {
            task_id: task_id.to_owned(),
            consumer: consumer.to_owned(),
            state,
            attempts: 0,
            last_error: None,
            opened_at_ms,
            updated_at_ms: opened_at_ms,
            lease_until_ms: None,
        });
    }

    /// Marks every pair of `task_id` succeeded.
    pub fn succeed(&self, task_id: &str) {
        for e in lock(&self.entries)
            .iter_mut()
            .filter(|e| e.task_id == task_id)
        {
            e.state = State::Succeeded;
        }
    }

    /// Every pair, in insertion order.
    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.entries).clone()
    }

    /// Sets a breaker as the engine would have left it (replacing the one of the same
    /// consumer and dependency).
    pub fn set_breaker(&self, breaker: Breaker) {
        let mut all = lock(&self.breakers);
        all.retain(|b| (&b.consumer, &b.dependency) != (&breaker.consumer, &breaker.dependency));
        all.push(breaker);
    }

    /// How many documents the monitor wrote or kept.
    pub fn document_count(&self) -> usize {
        lock(&self.documents).len()
    }
}

impl TaskStore for FakeStore {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn register(
        &self,
        task_id: &str,
        consumer: &str,
        published_ms: Option<u64>,
    ) -> Result<bool, LedgerError> {
        let mut entries = lock(&self.entries);
        if entries
            .iter()
            .any(|e| e.task_id == task_id && e.consumer == consumer)
        {
            return Ok(false);
        }
        let at = published_ms.unwrap_or_else(|| self.clock.now_ms());
        entries.push(Entry {
            task_id: task_id.to_owned(),
            consumer: consumer.to_owned(),
            state: State::Received,
            attempts: 0,
            last_error: None,
            opened_at_ms: at,
            updated_at_ms: at,
            lease_until_ms: None,
        });
        Ok(true)
    }

    async fn existing(
        &self,
        pairs: &[(String, String)],
    ) -> Result<std::collections::HashSet<(String, String)>, LedgerError> {
        let entries = lock(&self.entries);
        Ok(pairs
            .iter()
            .filter(|(t, c)| entries.iter().any(|e| e.task_id == *t && e.consumer == *c))
            .cloned()
            .collect())
    }

    async fn open_before(&self, cutoff_ms: u64) -> Result<Vec<Entry>, LedgerError> {
        let mut open: Vec<Entry> = lock(&self.entries)
            .iter()
            .filter(|e| e.state.is_open() && e.opened_at_ms < cutoff_ms)
            .cloned()
            .collect();
        open.sort_by_key(|e| e.opened_at_ms);
        Ok(open)
    }

    async fn documents(&self, partition: &str) -> Result<HashMap<String, String>, LedgerError> {
        Ok(lock(&self.documents)
            .iter()
            .filter(|((p, _), _)| p == partition)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn put_document(
        &self,
        partition: &str,
        key: &str,
        document: String,
    ) -> Result<(), LedgerError> {
        lock(&self.documents).insert((partition.to_owned(), key.to_owned()), document);
        Ok(())
    }

    async fn breakers(&self) -> Result<Vec<Breaker>, LedgerError> {
        Ok(lock(&self.breakers).clone())
    }
}

/// Event source mappings in memory: records each change it was asked for.
#[derive(Debug, Clone, Default)]
pub struct FakeEventSources {
    calls: Arc<Mutex<Vec<(String, bool)>>>,
}

impl FakeEventSources {
    /// Nothing changed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// (function, enabled) of every change asked for, in order.
    pub fn calls(&self) -> Vec<(String, bool)> {
        lock(&self.calls).clone()
    }
}

impl super::ports::EventSources for FakeEventSources {
    fn set_enabled<'a>(
        &'a self,
        function: &'a str,
        enabled: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, String>> + Send + 'a>> {
        lock(&self.calls).push((function.to_owned(), enabled));
        Box::pin(async { Ok(1) })
    }
}

/// DLQs whose depths the test sets.
#[derive(Debug, Clone, Default)]
pub struct FakeDlqs {
    depths: Arc<Mutex<HashMap<String, u64>>>,
}

impl FakeDlqs {
    /// No messages anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// `queue` now holds `depth` messages.
    pub fn set(&self, queue: &QueueUrl, depth: u64) {
        lock(&self.depths).insert(queue.to_string(), depth);
    }
}

impl DlqReader for FakeDlqs {
    async fn depth(&self, queue: &QueueUrl) -> Result<u64, MonitorError> {
        Ok(lock(&self.depths).get(queue.as_str()).copied().unwrap_or(0))
    }

    async fn peek(
        &self,
        queue: &QueueUrl,
        max: usize,
    ) -> Result<Vec<DeadLetterSample>, MonitorError> {
        let depth = self.depth(queue).await?;
        let n = usize::try_from(depth).unwrap_or(usize::MAX).min(max);
        Ok((0..n)
            .map(|i| DeadLetterSample {
                message_id: format!("{}-{i}", queue.name()),
                reason: Some("decode: expected an order".to_owned()),
            })
            .collect())
    }
}

/// Records every alert it is given; refuses the next `n` when told to.
#[derive(Debug, Clone, Default)]
pub struct FakeAlerts {
    sent: Arc<Mutex<Vec<AlertMessage>>>,
    refuse: Arc<AtomicUsize>,
}

impl FakeAlerts {
    /// Accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` publishes fail.
    pub fn refuse_next(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// What was published, in order.
    pub fn sent(&self) -> Vec<AlertMessage> {
        lock(&self.sent).clone()
    }
}

impl AlertSink for FakeAlerts {
    async fn publish(&self, alert: &AlertMessage) -> Result<(), String> {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err("injected fault: SNS unavailable".to_owned());
        }
        lock(&self.sent).push(alert.clone());
        Ok(())
    }
}
