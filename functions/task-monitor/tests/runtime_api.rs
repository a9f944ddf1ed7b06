//! The built task-monitor binary under AWS's Runtime Interface Emulator, against the moto
//! server, fed the `events/` files: registration, the status API, a sweep.

use std::path::Path;

use mailroom_local as local;
use mailroom_local::testbed::Rie;
use serde_json::Value;

fn event(name: &str) -> Vec<u8> {
    std::fs::read(mailroom_lambda::testing::fixture_path(name)).expect("fixture")
}

#[tokio::test]
async fn the_binary_registers_answers_the_status_api_and_sweeps_through_the_runtime_api() {
    // GIVEN moto with a ledger table and a DLQ holding one dead letter, and the binary under
    // the RIE expecting two consumers, billing only for order.placed
    let endpoint = mailroom_local::testbed::endpoint();
    let aws = local::emulator_config(endpoint).await;
    let table = "monitor-rie-ledger";
    mailroom_local::create_table(&aws_sdk_dynamodb::Client::new(&aws), table)
        .await
        .expect("table");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (dlq, _) = local::create_queue(&sqs, "monitor-rie-dlq", &[])
        .await
        .expect("queue");
    sqs.send_message()
        .queue_url(dlq.as_str())
        .message_body("{}")
        .send()
        .await
        .expect("SendMessage");
    let rie = Rie::start(
        Path::new(env!("CARGO_BIN_EXE_task-monitor")),
        &[
            ("AWS_REGION", local::REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_ENDPOINT_URL", endpoint),
            ("MAILROOM_LEDGER_TABLE", table),
            (
                "MAILROOM_EXPECTED_CONSUMERS",
                r#"{"notifier": "", "billing": "{\"kind\": [\"order.placed\"]}"}"#,
            ),
            ("MAILROOM_MONITOR_DLQS", dlq.as_str()),
        ],
    )
    .await;

    // WHEN the SNS-enveloped batch arrives on the monitor's queue
    let registered = rie.invoke(&event("sqs-sns-envelope.json")).await;

    // THEN every record registered, and the status API shows the first task at both consumers
    assert_eq!(
        registered["batchItemFailures"],
        serde_json::json!([]),
        "{registered}"
    );
    let reply = rie.invoke(&event("monitor-status-task.json")).await;
    assert_eq!(reply["statusCode"], 200, "{reply}");
    assert_eq!(reply["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(reply["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(
        body["task_id"], "task-1001",
        "keyed on the publisher's task_id attribute"
    );
    assert_eq!(body["status"], "ACCEPTED", "registered, not yet picked up");
    let states: Vec<(&str, &str)> = body["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| {
            (
                c["consumer"].as_str().expect("name"),
                c["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![("billing", "RECEIVED"), ("notifier", "RECEIVED")]
    );

    // AND the scheduled event sweeps: the DLQ's dead letter raises its alarm (logged, as no
    // alerts topic is configured), and the DLQ status shows it
    let report = rie.invoke(&event("monitor-sweep.json")).await;
    assert_eq!(report["dlqs"][0]["depth"], 1, "{report}");
    assert_eq!(report["alerts"][0]["notice"], "ALARM");
    let dlqs = rie.invoke(&event("monitor-status-dlqs.json")).await;
    let body: Value = serde_json::from_str(dlqs["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["dlqs"][0]["name"], "monitor-rie-dlq");
    assert_eq!(body["dlqs"][0]["depth"], 1);
}
