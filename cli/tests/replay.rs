//! `mailroom replay` as an operator runs it: the real binary against the emulator.

use std::path::Path;
use std::process::Output;

use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use mailroom::local::Moto;

async fn client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "cli-tests",
        ))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive_to: Option<&str>,
) -> (String, String) {
    let mut req = sqs.create_queue().queue_name(name);
    if let Some(dlq_arn) = redrive_to {
        req = req.attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}"#),
        );
    }
    let url = req
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("arn");
    (url, arn)
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum()
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
    let moto = Moto::start(&Moto::venv(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    ))
    .expect("moto");
    let endpoint = moto.endpoint().to_owned();
    let sqs = client(&endpoint).await;
    let (dlq, dlq_arn) = queue(&sqs, "cli-orders-dlq", None).await;
    let (source, _) = queue(&sqs, "cli-orders", Some(&dlq_arn)).await;
    for i in 0..3 {
        sqs.send_message()
            .queue_url(&dlq)
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
