//! The intake's record of a task: one item per task (`sk` = [`TASK_MARKER`]), written before
//! the task is published, so a producer's retry with the same idempotency key finds it.

use aws_sdk_dynamodb::types::ReturnValue;

use super::item::{Item, is_conditional_failure, n, number, s, shard, string};
use super::{Entry, Ledger, LedgerError, entry};

/// The sort key of a task's own item, beside its consumers' pairs. Sort keys starting with
/// `#` are never consumers.
pub const TASK_MARKER: &str = "#task";

/// What the intake accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Acceptance {
    /// The task id.
    pub task_id: String,
    /// The event kind.
    pub kind: String,
    /// The tenant, when the producer named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Where the completion callback goes, when the producer asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// SHA-256 of the request body, hex: the same key with another body is a conflict.
    #[serde(skip)]
    pub body_sha256: String,
    /// When it was first accepted, in ms since the epoch.
    pub accepted_at_ms: u64,
    /// Whether its completion callback already went out (or was given up).
    #[serde(skip)]
    pub callback_done: bool,
}

/// The answer to [`Ledger::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new task.
    New,
    /// The same request again (same key, same body).
    Again,
    /// The key was used for another body.
    Conflict,
}

/// One task: the intake's record (absent for tasks from other producers) and each
/// consumer's pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStory {
    /// What the intake accepted.
    pub accepted: Option<Acceptance>,
    /// Each consumer's state.
    pub consumers: Vec<Entry>,
}

impl Ledger {
    /// Records `a` as ACCEPTED, unless its task id is already taken: by the same body (a
    /// retry: [`Accepted::Again`]) or another ([`Accepted::Conflict`]). One conditional write.
    ///
    /// # Errors
    /// When DynamoDB does not answer or refuses the item.
    pub async fn accept(&self, a: &Acceptance) -> Result<Accepted, LedgerError> {
        let now = self.clock.now_ms();
        let mut set = String::from(
            "SET #state = :accepted, kind = if_not_exists(kind, :kind), \
             body_sha256 = if_not_exists(body_sha256, :hash), \
             opened_at = if_not_exists(opened_at, :now), updated_at = :now, expires_at = :ttl",
        );
        let mut update = self.update(&a.task_id, TASK_MARKER);
        if let Some(t) = &a.tenant {
            set.push_str(", tenant = if_not_exists(tenant, :tenant)");
            update = update.expression_attribute_values(":tenant", s(t));
        }
        if let Some(c) = &a.callback_url {
            // In the open index until its completion callback goes out (see `callbacks_due`).
            set.push_str(
                ", callback_url = if_not_exists(callback_url, :callback), \
                 open_shard = if_not_exists(open_shard, :shard)",
            );
            update = update
                .expression_attribute_values(":callback", s(c))
                .expression_attribute_values(":shard", s(shard(&a.task_id)));
        }
        let result = update
            .update_expression(set)
            .condition_expression("attribute_not_exists(pk) OR body_sha256 = :hash")
            .expression_attribute_values(":accepted", s("ACCEPTED"))
            .expression_attribute_values(":kind", s(&a.kind))
            .expression_attribute_values(":hash", s(&a.body_sha256))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", self.expires_at(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(match out.attributes() {
                Some(old) if old.contains_key("pk") => Accepted::Again,
                _ => Accepted::New,
            }),
            Err(e) if is_conditional_failure(&e) => Ok(Accepted::Conflict),
            Err(e) => Err(LedgerError::from_sdk("UpdateItem", &e)),
        }
    }

    /// Tasks whose completion callback has not gone out yet, from the sparse open index
    /// (their records stay in it until [`Ledger::callback_sent`]).
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn callbacks_due(&self) -> Result<Vec<Acceptance>, LedgerError> {
        let items = self
            .open_items(|q| {
                q.key_condition_expression("open_shard = :shard")
                    .filter_expression("sk = :marker")
                    .expression_attribute_values(":marker", s(TASK_MARKER))
            })
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| string(i, "pk").map(|task| acceptance(&task, i)))
            .collect())
    }

    /// Notes that the completion callback went out (`outcome`: the final status sent, or why
    /// it was given up), and takes the task out of the open index. The first outcome noted
    /// stands.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn callback_sent(&self, task_id: &str, outcome: &str) -> Result<(), LedgerError> {
        let now = self.clock.now_ms();
        self.update(task_id, TASK_MARKER)
            .update_expression(
                "SET callback_outcome = if_not_exists(callback_outcome, :outcome), \
                 callback_at = if_not_exists(callback_at, :now) REMOVE open_shard",
            )
            .condition_expression("#state = :accepted")
            .expression_attribute_values(":accepted", s("ACCEPTED"))
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .map(drop)
            .map_err(|e| LedgerError::from_sdk("UpdateItem", &e))
    }

    /// One task's whole story, in one strongly consistent query.
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn story(&self, task_id: &str) -> Result<TaskStory, LedgerError> {
        let mut story = TaskStory::default();
        for item in self.task_items(task_id).await? {
            match string(&item, "sk").as_deref() {
                Some(TASK_MARKER) => story.accepted = Some(acceptance(task_id, &item)),
                Some(sk) if sk.starts_with('#') => {}
                _ => story.consumers.push(entry("Query", &item)?),
            }
        }
        Ok(story)
    }
}

fn acceptance(task_id: &str, item: &Item) -> Acceptance {
    Acceptance {
        task_id: task_id.to_owned(),
        kind: string(item, "kind").unwrap_or_default(),
        tenant: string(item, "tenant"),
        callback_url: string(item, "callback_url"),
        body_sha256: string(item, "body_sha256").unwrap_or_default(),
        accepted_at_ms: number(item, "opened_at").unwrap_or(0),
        callback_done: item.contains_key("callback_at"),
    }
}
