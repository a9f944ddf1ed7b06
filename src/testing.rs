//! Helpers for tests of code built on the engine (feature `test-util`): the `events/`
//! fixtures and the in-memory queue port.

use std::path::PathBuf;

use aws_lambda_events::sqs::SqsEvent;

pub use crate::sqs::{FakeQueues, SentMessage};

/// The path of a file in the workspace's `events/` folder, the one source of fixtures.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(name)
}

/// Reads an `SqsEvent` fixture from `events/`.
///
/// # Panics
/// When the fixture is missing or is not an `SqsEvent`: a broken fixture is a broken test.
pub fn fixture(name: &str) -> SqsEvent {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("fixture {} is not an SqsEvent: {e}", path.display()))
}
