//! The built intake binary under AWS's Runtime Interface Emulator, against the moto server,
//! fed `events/intake-post.json` (a Function URL request, as `sam local invoke -e` takes it).

use std::path::Path;

use aws_sdk_dynamodb::types::AttributeValue;
use mailroom_local as local;
use mailroom_local::testbed::{Rie, TestBed, unique};
use serde_json::Value;

#[tokio::test]
async fn the_binary_accepts_the_fixture_through_the_runtime_api_and_publishes_it() {
    // GIVEN moto with a ledger table and the events topic with a raw queue, and the binary
    // under the RIE
    let endpoint = local::testbed::endpoint();
    let bed = TestBed::new().await;
    let table = unique("intake-rie-ledger");
    local::create_table(&bed.dynamodb, &table)
        .await
        .expect("table");
    let topic = bed.topic("intake-rie").await;
    let queue = bed.queue(&unique("intake-rie"), &[]).await;
    bed.subscribe(&topic, &queue, true).await;
    let rie = Rie::start(
        Path::new(env!("CARGO_BIN_EXE_intake")),
        &[
            ("AWS_REGION", local::REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", endpoint),
            ("MAILROOM_LEDGER_TABLE", &table),
            ("MAILROOM_TOPIC_ARN", &topic),
        ],
    )
    .await;
    let fixture =
        std::fs::read(mailroom_lambda::testing::fixture_path("intake-post.json")).expect("fixture");

    // WHEN the Function URL request is invoked
    let reply = rie.invoke(&fixture).await;

    // THEN a 202 in the Function URL response shape, with the task's status URL
    assert_eq!(reply["statusCode"], 202, "{reply}");
    let body: Value = serde_json::from_str(reply["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["task_id"], "acme:order-o-7001");
    assert_eq!(
        reply["headers"]["location"],
        "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/tasks/acme%3Aorder-o-7001"
    );

    // AND the queue got the order with its task id, tenant and traceparent, and the ledger
    // its record
    let got = bed.drain_visible(&queue, 10).await;
    assert_eq!(got.len(), 1);
    let attr = |n: &str| {
        got[0]
            .message_attributes()
            .and_then(|a| a.get(n))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    assert_eq!(attr("task_id").as_deref(), Some("acme:order-o-7001"));
    assert_eq!(attr("tenant").as_deref(), Some("acme"));
    assert_eq!(
        attr("traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    let item = bed
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("acme:order-o-7001".into()))
        .key("sk", AttributeValue::S("#task".into()))
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the task's record");
    assert_eq!(item["state"], AttributeValue::S("ACCEPTED".into()));
}
