//! The ledger's `REPLAYED` and `PARKED` marks for what a replay moved.

use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};

use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::message::{Message, TaskIdSource};
use mailroom_lambda::sqs::OutgoingValue;

use super::DeadLetter;

/// Records replay's outcome for each message in the task ledger.
#[derive(Debug, Clone)]
pub struct LedgerMark {
    /// The ledger.
    pub ledger: Ledger,
    /// The consumer whose DLQ this is.
    pub consumer: String,
    /// Where the task id comes from, as the consumer reads it.
    pub task_id: TaskIdSource,
}

impl LedgerMark {
    /// Marks the message's task `REPLAYED`, or `PARKED` with `reason`. A ledger failure is
    /// logged: the message itself has already moved safely, and the monitor still sees the
    /// pair open.
    pub(crate) async fn record(&self, m: &DeadLetter, parked: Option<&str>) {
        let Some(task) = task_id_of(m, &self.task_id) else {
            tracing::debug!(message_id = %m.message_id, "no task id; nothing to mark in the ledger");
            return;
        };
        let written = match parked {
            Some(reason) => self.ledger.park(&task, &self.consumer, reason).await,
            None => self.ledger.replayed(&task, &self.consumer).await,
        };
        if let Err(e) = written {
            tracing::warn!(task_id = %task, error = %e, "replay: could not mark the ledger");
        }
    }
}

/// The task id of a dead letter, read the way the consumer's engine reads it.
fn task_id_of(m: &DeadLetter, source: &TaskIdSource) -> Option<String> {
    let mut record = SqsMessage::default();
    record.message_id = Some(m.message_id.clone());
    record.body = Some(m.body.clone());
    for (name, a) in &m.attributes {
        if let OutgoingValue::Text(t) = &a.value {
            let mut attr = SqsMessageAttribute::default();
            attr.data_type = Some(a.data_type.clone());
            attr.string_value = Some(t.clone());
            record.message_attributes.insert(name.clone(), attr);
        }
    }
    Message::metadata(record, source)
        .task_id()
        .map(str::to_owned)
}
