//! `mailroom replay` as an operator runs it: the real binary against the emulator.

use std::process::Output;

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::sqs::{QueueArn, QueueUrl};
use mailroom_local as local;

/// A queue, with a RedrivePolicy to `redrive_to` when given.
async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive_to: Option<&QueueArn>,
) -> (QueueUrl, QueueArn) {
    let attrs: Vec<_> = redrive_to
        .map(|dlq| {
            let policy = format!(r#"{{"deadLetterTargetArn":"{dlq}","maxReceiveCount":"3"}}"#);
            (QueueAttributeName::RedrivePolicy, policy)
        })
        .into_iter()
        .collect();
    local::create_queue(sqs, name, &attrs)
        .await
        .expect("queue created")
}

/// Visible plus in-flight messages.
async fn depth(sqs: &aws_sdk_sqs::Client, queue: &QueueUrl) -> u64 {
    let (visible, in_flight) = mailroom_ops::sqs::queue_depth(sqs, queue)
        .await
        .expect("depth");
    visible + in_flight
}

fn mailroom(endpoint: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .arg("replay")
        .args(args)
        .arg("--endpoint-url")
        .arg(endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("MAILROOM_REPLAY_ALLOWLIST")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mailroom runs")
}

#[tokio::test]
async fn dry_run_then_confirmation_then_replay() {
    // GIVEN the emulator, a queue with a DLQ, and three dead letters
    let endpoint = mailroom_local::testbed::endpoint();
    let endpoint = endpoint.to_owned();
    let sqs = aws_sdk_sqs::Client::new(&local::emulator_config(&endpoint).await);
    let (dlq, dlq_arn) = queue(&sqs, "cli-orders-dlq", None).await;
    let (source, _) = queue(&sqs, "cli-orders", Some(&dlq_arn)).await;
    for i in 0..3 {
        sqs.send_message()
            .queue_url(dlq.as_str())
            .message_body(format!("m-{i}"))
            .send()
            .await
            .expect("send");
    }

    // WHEN a dry run asks for JSON
    let dry = mailroom(
        &endpoint,
        &[
            "--source",
            "cli-orders-dlq",
            "--target",
            "cli-orders",
            "--dry-run",
            "--json",
        ],
    );

    // THEN it reports three and the DLQ keeps them
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("JSON report");
    assert_eq!(report["would_move"], 3);
    assert_eq!(depth(&sqs, &dlq).await, 3);

    // WHEN a real run is asked for without --yes and no terminal to confirm on
    let refused = mailroom(
        &endpoint,
        &["--source", "cli-orders-dlq", "--target", "cli-orders"],
    );

    // THEN it refuses and moves nothing
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(depth(&sqs, &dlq).await, 3);

    // WHEN confirmed with --yes
    let done = mailroom(
        &endpoint,
        &[
            "--source",
            "cli-orders-dlq",
            "--target",
            "cli-orders",
            "--yes",
            "--json",
        ],
    );

    // THEN all three are back in the source queue
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).expect("JSON report");
    assert_eq!(report["moved"], 3);
    assert_eq!(depth(&sqs, &dlq).await, 0);
    assert_eq!(depth(&sqs, &source).await, 3);
}

#[tokio::test]
async fn readme_first_line_dry_run_names_only_the_dlq_and_prints_samples() {
    // Issue 12, point 4: `mailroom replay --source mailroom-notifier-dlq --dry-run`, the README's
    // first replay line, failed on 6b129e9 with "queue …/mailroom-notifier is not on the replay
    // allowlist": the DLQ's redrive source, found by the replay, was not allowed.
    // GIVEN a queue whose RedrivePolicy names a DLQ holding two dead letters with reasons
    let endpoint = mailroom_local::testbed::endpoint().to_owned();
    let sqs = aws_sdk_sqs::Client::new(&local::emulator_config(&endpoint).await);
    let (dlq, dlq_arn) = queue(&sqs, "cli-readme-dlq", None).await;
    let _source = queue(&sqs, "cli-readme", Some(&dlq_arn)).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let sent = sqs
            .send_message()
            .queue_url(dlq.as_str())
            .message_body(format!("{{\"order\":{i}}}"))
            .message_attributes(
                "mailroom.reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("HTTP 503 from 127.0.0.1")
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("send");
        ids.push(sent.message_id.expect("message id"));
    }

    // WHEN the README's line runs, naming only the DLQ
    let dry = mailroom(&endpoint, &["--source", "cli-readme-dlq", "--dry-run"]);

    // THEN it succeeds, reports both by reason, prints each as a sample, and moves nothing
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(stdout.contains("would move 2"), "{stdout}");
    assert!(stdout.contains("HTTP 503 from 127.0.0.1"), "{stdout}");
    assert!(stdout.contains("samples:"), "{stdout}");
    for id in &ids {
        assert!(
            stdout.contains(id.as_str()),
            "sample {id} missing: {stdout}"
        );
    }
    assert!(stdout.contains(r#"{"order":0}"#), "{stdout}");
    assert_eq!(depth(&sqs, &dlq).await, 2);
}

#[tokio::test]
async fn a_refused_queue_names_the_flag_that_allows_it() {
    // Issue 12, point 4: where a queue is refused, the message names the flag.
    // GIVEN a DLQ and an unrelated queue, with an explicit allowlist of the DLQ only
    let endpoint = mailroom_local::testbed::endpoint().to_owned();
    let sqs = aws_sdk_sqs::Client::new(&local::emulator_config(&endpoint).await);
    let (dlq, _) = queue(&sqs, "cli-refused-dlq", None).await;
    let (elsewhere, _) = queue(&sqs, "cli-refused-elsewhere", None).await;
    sqs.send_message()
        .queue_url(dlq.as_str())
        .message_body("x")
        .send()
        .await
        .expect("send");

    // WHEN the replay targets the queue the allowlist leaves out
    let out = mailroom(
        &endpoint,
        &[
            "--source",
            "cli-refused-dlq",
            "--target",
            "cli-refused-elsewhere",
            "--allow",
            "cli-refused-dlq",
            "--yes",
        ],
    );

    // THEN it fails in one line naming --allow, and neither queue changed
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--allow"), "{stderr}");
    assert!(stderr.contains("cli-refused-elsewhere"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(depth(&sqs, &dlq).await, 1);
    assert_eq!(depth(&sqs, &elsewhere).await, 0);
}
