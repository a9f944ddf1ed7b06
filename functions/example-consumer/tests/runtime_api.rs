//! The built example-consumer binary under AWS's Runtime Interface Emulator, fed an `events/`
//! file over HTTP the way `sam local invoke` does.

use std::path::Path;

use mailroom_local::testbed::Rie;
use serde_json::{Value, json};

#[tokio::test]
async fn a_record_with_a_bad_field_fails_alone_through_the_runtime_api() {
    // GIVEN the binary under the RIE, and an event whose second record's binary attribute is
    // not base64 (Powertools' `sqsEvent.json` shape): as a whole it is not an `SqsEvent`
    let rie = Rie::start(
        Path::new(env!("CARGO_BIN_EXE_example-consumer")),
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            // Nothing here may reach AWS: point the SDK at a closed local port.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("MAILROOM_BACKOFF", "off"),
        ],
    )
    .await;
    let event = std::fs::read(mailroom_lambda::testing::fixture_path(
        "sqs-malformed-record.json",
    ))
    .expect("fixture");
    let bad =
        serde_json::from_slice::<Value>(&event).expect("json")["Records"][1]["messageId"].clone();

    // WHEN it is invoked
    let body = rie.invoke(&event).await;

    // THEN the function answers a partial batch response naming only that record, instead of
    // failing the invocation and sending the two good records back with it
    assert_eq!(
        body,
        json!({ "batchItemFailures": [{ "itemIdentifier": bad }] }),
        "{body}"
    );
}
