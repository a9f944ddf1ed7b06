//! `mailroom publish` as a producer runs it: the real binary against the emulator.

use std::process::{Command, Output, Stdio};

use mailroom_local as local;
use serde_json::Value;

fn mailroom(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .arg("publish")
        .args(args)
        .args(["--endpoint-url", endpoint])
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("MAILROOM_TOPIC")
        .stdin(Stdio::null())
        .output()
        .expect("mailroom runs")
}

#[tokio::test]
async fn publish_sends_messages_and_json_lines_with_attributes_through_the_topic() {
    // GIVEN a topic with a queue subscribed (raw delivery keeps attributes as SQS attributes)
    let endpoint = mailroom_local::testbed::endpoint();
    let aws = local::emulator_config(endpoint).await;
    let (sns, sqs) = (
        aws_sdk_sns::Client::new(&aws),
        aws_sdk_sqs::Client::new(&aws),
    );
    let topic = sns
        .create_topic()
        .name("cli-publish-events")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    let (queue, arn) = local::create_queue(&sqs, "cli-publish-inbox", &[])
        .await
        .expect("queue");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn.as_str())
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    let dir = std::env::temp_dir().join(format!("mailroom-publish-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let lines = dir.join("orders.jsonl");
    let content: String = (0..12)
        .map(|i| format!("{{\"order_id\":\"o-{i}\"}}\n\n"))
        .collect();
    std::fs::write(&lines, content).expect("file");

    // WHEN two messages and a 12-line file are published by topic name, with an attribute
    let out = mailroom(
        endpoint,
        &[
            "--topic",
            "cli-publish-events",
            "--message",
            r#"{"order_id":"a"}"#,
            "--message",
            r#"{"order_id":"b"}"#,
            "--lines",
            lines.to_str().expect("path"),
            "--attr",
            "kind=order.placed",
            "--json",
        ],
    );

    // THEN 14 ids come back and 14 messages arrive, each with the attribute
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["topic"], topic.as_str());
    let published = printed["published"].as_array().expect("published");
    assert_eq!(published.len(), 14);
    let printed_tasks: std::collections::BTreeSet<&str> = published
        .iter()
        .map(|p| p["task_id"].as_str().expect("task id"))
        .collect();
    assert_eq!(printed_tasks.len(), 14, "a task id per message");
    let mut arrived = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        arrived.extend(got);
    }
    assert_eq!(arrived.len(), 14);
    assert!(arrived.iter().all(|m| {
        m.message_attributes()
            .and_then(|a| a.get("kind"))
            .and_then(|v| v.string_value())
            == Some("order.placed")
    }));
    assert!(
        arrived
            .iter()
            .any(|m| m.body() == Some(r#"{"order_id":"o-11"}"#))
    );
    let arrived_tasks: std::collections::BTreeSet<&str> = arrived
        .iter()
        .filter_map(|m| {
            m.message_attributes()
                .and_then(|a| a.get("task_id"))
                .and_then(|v| v.string_value())
        })
        .collect();
    assert_eq!(
        arrived_tasks, printed_tasks,
        "each message carries its printed task id"
    );

    // AND a task id given by the caller (the idempotency key) is the one that travels
    let out = mailroom(
        endpoint,
        &[
            "--topic",
            &topic,
            "--kind",
            "order.placed",
            "--task-id",
            "key-42",
            "--message",
            r#"{"order_id":"k"}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("task key-42"));
    let got = sqs
        .receive_message()
        .queue_url(queue.as_str())
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(
        got.first()
            .and_then(|m| m.message_attributes())
            .and_then(|a| a.get("task_id"))
            .and_then(|v| v.string_value()),
        Some("key-42")
    );

    // AND with the schemas, a payload that breaks its kind's schema is refused by path and
    // nothing is sent; a valid one goes
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
    let checked = |kind: &str, message: &str| {
        mailroom(
            endpoint,
            &[
                "--topic",
                &topic,
                "--kind",
                kind,
                "--schemas",
                schemas,
                "--message",
                message,
            ],
        )
    };
    let out = checked("order.placed", r#"{"order_id":"z","amount_cents":0}"#);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/amount_cents"), "{err}");
    let out = checked("order.cancelled", r#"{"order_id":"z"}"#);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no schema for the event kind `order.cancelled`")
    );
    let out = checked("order.placed", r#"{"order_id":"v","amount_cents":5}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sqs
        .receive_message()
        .queue_url(queue.as_str())
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    let bodies: Vec<&str> = got.iter().filter_map(|m| m.body()).collect();
    assert_eq!(
        bodies,
        vec![r#"{"order_id":"v","amount_cents":5}"#],
        "only the valid one"
    );

    // AND an unknown topic or a bad attribute is a clear error
    let out = mailroom(
        endpoint,
        &["--topic", "nope", "--kind", "k", "--message", "x"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no topic named nope"));
    let out = mailroom(
        endpoint,
        &["--topic", &topic, "--message", "x", "--attr", "kind"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected NAME=VALUE"));
    let out = mailroom(endpoint, &["--topic", &topic, "--message", "x"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--kind"),
        "no kind, no publish"
    );
    std::fs::remove_dir_all(&dir).ok();
}
