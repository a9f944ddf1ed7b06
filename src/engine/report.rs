//! What one batch produced: the partial batch response and a report per record.

use std::collections::HashSet;
use std::sync::Arc;

use aws_lambda_events::sqs::SqsBatchResponse;

use super::run::Done;
use crate::message::RecordMeta;
use crate::outcome::Outcome;

/// Why the engine could not produce a partial batch response.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A record that must be retried has no message id, so it cannot be named in the
    /// response. Failing the invocation returns the whole batch to the queue: nothing is lost.
    #[error(
        "record {index} failed ({reason}) but has no messageId; failing the whole batch so it is retried"
    )]
    UnidentifiedFailure {
        /// The record's position in the batch.
        index: usize,
        /// Why it failed.
        reason: String,
    },
    /// The event is not an object with a `Records` array, so no record can be named.
    #[error("the event is not an SQS event: {0}")]
    Malformed(String),
}

impl From<EngineError> for lambda_runtime::Diagnostic {
    fn from(e: EngineError) -> Self {
        let error_type = match e {
            EngineError::UnidentifiedFailure { .. } => "Mailroom.UnidentifiedFailure",
            EngineError::Malformed(_) => "Mailroom.MalformedEvent",
        };
        Self {
            error_type: error_type.to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The result for one record.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// Position in the batch.
    pub index: usize,
    /// What happened.
    pub outcome: Outcome,
    pub(crate) meta: Arc<RecordMeta>,
}

impl RecordReport {
    /// The SQS message id (`None` if the record had none).
    pub fn message_id(&self) -> Option<&str> {
        self.meta.message_id.as_deref()
    }

    /// The task id, when the record had one.
    pub fn task_id(&self) -> Option<&str> {
        self.meta.task_id()
    }
}

/// The result of one batch: the response for Lambda and a report per record.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The partial batch response.
    pub response: SqsBatchResponse,
    /// One report per record, in batch order.
    pub records: Vec<RecordReport>,
}

impl BatchReport {
    /// Message ids listed as failed in the response.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }
}

/// Builds the response from the outcomes, never naming an empty or duplicate id.
pub(crate) fn build_report(done: Vec<Done>) -> Result<BatchReport, EngineError> {
    let mut response = SqsBatchResponse::default();
    let mut listed = HashSet::new();
    let mut records = Vec::with_capacity(done.len());
    for d in done {
        if let Outcome::Failed { reason, .. } = &d.report.outcome {
            let Some(id) = d.report.message_id().filter(|id| !id.is_empty()) else {
                tracing::error!(index = d.index, %reason, "a failed record has no messageId");
                return Err(EngineError::UnidentifiedFailure {
                    index: d.index,
                    reason: reason.clone(),
                });
            };
            if listed.insert(id.to_owned()) {
                response.add_failure(id);
            }
        }
        records.push(d.report);
    }
    Ok(BatchReport { response, records })
}
