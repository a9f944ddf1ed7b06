//! The queues a replay may touch.

use std::collections::HashSet;

use mailroom_lambda::sqs::QueueUrl;

use super::ReplayError;

/// Queues a replay may touch. Empty allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Allowlist(HashSet<String>);

impl Allowlist {
    /// An allowlist of queue URLs or queue names.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(queues: I) -> Self {
        Self(queues.into_iter().map(Into::into).collect())
    }

    /// This allowlist with `more` queues (URLs or names).
    #[must_use]
    pub fn with<I: IntoIterator<Item = S>, S: Into<String>>(mut self, more: I) -> Self {
        self.0.extend(more.into_iter().map(Into::into));
        self
    }

    /// Whether `queue` (by URL or by name) is allowed.
    pub fn allows(&self, queue: &QueueUrl) -> bool {
        let name = queue.as_str().rsplit('/').next().unwrap_or_default();
        self.0.contains(queue.as_str()) || self.0.contains(name)
    }

    pub(crate) fn check(&self, queue: &QueueUrl) -> Result<(), ReplayError> {
        if self.allows(queue) {
            Ok(())
        } else {
            Err(ReplayError::NotAllowed(queue.clone()))
        }
    }
}
