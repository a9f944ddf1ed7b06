//! The engine's writes: the lease before a record runs, and its outcome after.

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::item::{is_conditional_failure, n, number, s, shard, written};
use super::{Entry, Lease, Ledger, LedgerError, State};

/// A write that must not undo a success nor cut in on a live lease, unless the writer owns it.
/// (`:owner` is empty for writers that hold no lease; owners are never empty.)
const NOT_DONE_NOR_HELD: &str = "attribute_not_exists(pk) OR (#state <> :succeeded AND \
     (#state <> :in_progress OR attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner))";

impl Ledger {
    /// Takes the lease on `task_id` at `consumer` for `owner` until `lease_until_ms`.
    ///
    /// `opened_at_ms` (the publish time, when known) is kept only if the pair is new.
    ///
    /// # Errors
    /// When DynamoDB does not answer; the caller retries the record rather than run it
    /// without the guard.
    pub async fn acquire(
        &self,
        task_id: &str,
        consumer: &str,
        owner: &str,
        lease_until_ms: u64,
        opened_at_ms: Option<u64>,
    ) -> Result<Lease, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :in_progress, lease_owner = :owner, lease_until = :until, \
                 attempts = if_not_exists(attempts, :zero) + :one, \
                 opened_at = if_not_exists(opened_at, :opened), open_shard = :shard, \
                 updated_at = :now, expires_at = :ttl",
            )
            // The owner's own lease may be taken again: an SDK retry of this call, after an
            // answer lost on the way back, must not find the task held by itself.
            .condition_expression(
                "attribute_not_exists(pk) OR (#state <> :succeeded AND \
                 (#state <> :in_progress OR lease_until < :now OR lease_owner = :owner))",
            )
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":opened", n(opened_at_ms.unwrap_or(now)))
            .expression_attribute_values(":shard", s(shard(task_id)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attempt = out
                    .attributes()
                    .and_then(|a| number(a, "attempts"))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(1);
                Ok(Lease::Acquired { attempt })
            }
            Err(e) if is_conditional_failure(&e) => {
                // Someone else's state won. Read it to say whose.
                let entry = self.get(task_id, consumer).await?;
                Ok(match entry {
                    Some(e) if e.state == State::Succeeded => Lease::AlreadySucceeded,
                    Some(Entry {
                        lease_until_ms: Some(until_ms),
                        ..
                    }) => Lease::Held { until_ms },
                    // It changed again between the two calls: come back shortly.
                    _ => Lease::Held {
                        until_ms: now + 1000,
                    },
                })
            }
            Err(e) => Err(LedgerError::from_sdk("UpdateItem", &e)),
        }
    }

    /// Marks the pair `SUCCEEDED` and closes it. Unconditional: the work is done whoever
    /// held the lease last.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn succeed(&self, task_id: &str, consumer: &str) -> Result<(), LedgerError> {
        let now = self.clock.now_ms();
        self.update(task_id, consumer)
            .update_expression(
                "SET #state = :succeeded, updated_at = :now, expires_at = :ttl, \
                 opened_at = if_not_exists(opened_at, :now), attempts = if_not_exists(attempts, :one) \
                 REMOVE lease_owner, lease_until, open_shard",
            )
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await
            .map(drop)
            .map_err(|e| LedgerError::from_sdk("UpdateItem", &e))
    }

    /// Marks the pair `FAILED` with `error` and releases the lease, if `owner` still holds
    /// it. Returns whether it did.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn fail(
        &self,
        task_id: &str,
        consumer: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let result = self
            .update(task_id, consumer)
            .update_expression(
                "SET #state = :failed, last_error = :error, updated_at = :now, expires_at = :ttl \
                 REMOVE lease_owner, lease_until",
            )
            .condition_expression("#state = :in_progress AND lease_owner = :owner")
            .expression_attribute_values(":failed", s(State::Failed.as_str()))
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }

    /// Writes `state` with a reason (keeping the pair in the open index, or taking it out for
    /// `PARKED`), unless the pair already succeeded or another live invocation holds its lease
    /// (the lease's `owner` may write). Returns whether it wrote.
    pub(crate) async fn mark(
        &self,
        task_id: &str,
        consumer: &str,
        state: State,
        reason: Option<&str>,
        owner: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let mut set = String::from(
            "SET #state = :state, updated_at = :now, expires_at = :ttl, \
             opened_at = if_not_exists(opened_at, :now), attempts = if_not_exists(attempts, :zero)",
        );
        let mut remove = String::from(" REMOVE lease_owner, lease_until");
        let mut update = self.update(task_id, consumer);
        if state.is_open() {
            set.push_str(", open_shard = :shard");
            update = update.expression_attribute_values(":shard", s(shard(task_id)));
        } else {
            remove.push_str(", open_shard");
        }
        if let Some(reason) = reason {
            set.push_str(", last_error = :reason");
            update = update.expression_attribute_values(":reason", s(reason));
        }
        set.push_str(&remove);
        let result = update
            .update_expression(set)
            .condition_expression(NOT_DONE_NOR_HELD)
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":succeeded", s(State::Succeeded.as_str()))
            .expression_attribute_values(":in_progress", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(owner.unwrap_or_default()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .send()
            .await;
        written(result)
    }

    /// Marks the pair `DEAD_LETTERED` with the poison reason (unless it already succeeded).
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn dead_letter(
        &self,
        task_id: &str,
        consumer: &str,
        reason: &str,
        owner: Option<&str>,
    ) -> Result<bool, LedgerError> {
        self.mark(task_id, consumer, State::DeadLettered, Some(reason), owner)
            .await
    }
}
