//! Bounded concurrency without a task per record, and FIFO message groups.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use futures_util::future::join_all;

use super::Work;

/// Runs `f` over `items` with at most `limit` in flight: `limit` workers pull the next item
/// as they finish, so there is no per-item task allocation.
pub(crate) async fn pool<I, R, F, Fut>(items: I, limit: usize, f: F) -> Vec<R>
where
    I: ExactSizeIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = R>,
{
    let workers = limit.clamp(1, items.len().max(1));
    let queue = Mutex::new(items);
    let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    let runs = (0..workers).map(|_| async {
        let mut out = Vec::new();
        while let Some(item) = next() {
            out.push(f(item).await);
        }
        out
    });
    join_all(runs).await.into_iter().flatten().collect()
}

/// Splits records into FIFO message groups, keeping the batch order within each group.
pub(crate) fn group_by_message_group(work: Vec<Work>) -> Vec<Vec<Work>> {
    let mut order: Vec<Vec<Work>> = Vec::new();
    let mut slot: HashMap<Option<String>, usize> = HashMap::new();
    for w in work {
        let key = w.received.meta.group_id.clone();
        let i = *slot.entry(key).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[i].push(w);
    }
    order
}
