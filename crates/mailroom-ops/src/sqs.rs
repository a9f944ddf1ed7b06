//! SQS reads that operations need beyond the consumer's port.

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::sqs::{QueueUrl, SqsError};

/// A queue's approximate `(visible, not visible)` message counts; not visible counts those
/// in flight and those delayed (a circuit breaker's held copies, for one).
///
/// # Errors
/// When the call fails.
pub async fn queue_depth(
    sqs: &aws_sdk_sqs::Client,
    queue: &QueueUrl,
) -> Result<(u64, u64), SqsError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue.as_str())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| SqsError::from_sdk("GetQueueAttributes", &e))?
        .attributes
        .unwrap_or_default();
    let count = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((
        count(&QueueAttributeName::ApproximateNumberOfMessages),
        count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            + count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    ))
}
