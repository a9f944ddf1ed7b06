//! The writes of operations: replay's `REPLAYED` and `PARKED` marks, and the monitor's
//! registration.

use super::item::{n, s, shard, written};
use super::{Ledger, LedgerError, State};

impl Ledger {
    /// Marks the pair `REPLAYED`: replay sent it back to the consumer's queue. A consumer that
    /// already picked the copy up (a live lease) or finished it is left alone.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn replayed(&self, task_id: &str, consumer: &str) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::Replayed, None, None)
            .await
    }

    /// Marks the pair `PARKED` with the reason and closes it: replay moved it to the parking
    /// lot, where the parking lot's own depth check watches it.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn park(
        &self,
        task_id: &str,
        consumer: &str,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::Parked, Some(reason), None)
            .await
    }

    /// Registers a published task at a consumer that is expected to handle it. Only creates:
    /// when the consumer got there first, its state stands. Returns whether it created.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn register(
        &self,
        task_id: &str,
        consumer: &str,
        published_at_ms: Option<u64>,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :received, attempts = :zero, opened_at = :opened, \
                 open_shard = :shard, updated_at = :now, expires_at = :ttl",
            )
            .condition_expression("attribute_not_exists(pk)")
            .expression_attribute_values(":received", s(State::Received.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":opened", n(published_at_ms.unwrap_or(now)))
            .expression_attribute_values(":shard", s(shard(task_id)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }
}
