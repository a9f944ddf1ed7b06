//! The built notifier binary under AWS's Runtime Interface Emulator (the one `sam local invoke`
//! runs, from the aws-sam-cli wheel in the project venv), fed an `events/` file over HTTP.

mod common;

use std::path::{Path, PathBuf};

use common::Receiver;
use mailroom_local::testbed::Rie;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test]
async fn the_notifier_binary_reports_exactly_the_failed_record_through_the_runtime_api() {
    // GIVEN a receiver that fails order o-1002 only, and the notifier binary under the RIE
    let rx = Receiver::start().await;
    let webhook = rx.url("/flaky");
    let rie = Rie::start(
        Path::new(env!("CARGO_BIN_EXE_notifier")),
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            // Nothing here may reach AWS: point the SDK at a closed local port.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("MAILROOM_BACKOFF", "off"),
            ("NOTIFIER_WEBHOOK_URL", webhook.as_str()),
            ("NOTIFIER_CALLBACK_FIELD", ""),
            ("NOTIFIER_SIGNING_SECRET", "whsec_cnVudGltZS1zZWNyZXQ="),
            ("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS", "true"),
        ],
    )
    .await;
    let event = std::fs::read(workspace().join("events/sqs-sns-envelope.json")).expect("fixture");
    let expected_failure =
        serde_json::from_slice::<Value>(&event).expect("json")["Records"][1]["messageId"].clone();

    // WHEN the event is invoked the way `sam local invoke` does
    let body = rie.invoke(&event).await;

    // THEN the partial batch response names only o-1002's record, and all three were delivered
    assert_eq!(
        body["batchItemFailures"],
        serde_json::json!([{ "itemIdentifier": expected_failure }]),
        "{body}"
    );
    assert_eq!(rx.deliveries().len(), 3);
}
