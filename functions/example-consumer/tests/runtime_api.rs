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

#[tokio::test]
async fn a_killed_execution_environment_is_replaced_and_takes_no_batch_while_down() {
    // Issue 12, point 14: on 6b129e9, after `kill -9` of a function's emulator process it was
    // never restarted, and its poller kept taking batches that each failed whole after 20 s of
    // connection retries, burning receive counts.
    use mailroom_local::runner::{FunctionProcess, emulator, poll};
    use mailroom_local::template::SqsSource;
    use mailroom_local::testbed::{TestBed, envelope, unique};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    // GIVEN the binary under the emulator, fed by a poller from a queue on the emulator
    let bed = TestBed::new().await;
    let queue = bed.queue(&unique("restart"), &[]).await;
    let rie = emulator(&mailroom_local::Moto::venv(mailroom_local::workspace_root())).expect("rie");
    let env: BTreeMap<String, String> = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", mailroom_local::testbed::endpoint()),
        ("MAILROOM_BACKOFF", "off"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let function = Arc::new(
        FunctionProcess::start(
            &rie,
            Path::new(env!("CARGO_BIN_EXE_example-consumer")),
            &env,
            None,
        )
        .await
        .expect("the emulator starts"),
    );

    // WHEN its emulator process is killed with SIGKILL, and only then are messages sent
    let pid = function.pid().await.expect("a pid");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counters = Arc::new(mailroom_local::runner::Counters::default());
    let poller = tokio::spawn(poll(
        bed.sqs.clone(),
        SqsSource {
            queue: queue.url.clone(),
            arn: queue.arn.clone(),
            batch_size: 10,
            batching_window_secs: 0,
            maximum_concurrency: None,
            report_batch_item_failures: true,
        },
        function.clone(),
        counters.clone(),
        1,
        mailroom_local::lambda_api::Mappings::default().add(
            "example-consumer",
            queue.arn.as_str(),
            10,
        ),
    ));
    for i in 0..3 {
        let order = format!(r#"{{"order_id":"o-{i}","amount_cents":100}}"#);
        bed.send(&queue, &envelope(&format!("sns-restart-{i}"), &order), &[])
            .await;
    }

    // THEN a new instance runs them all at their first delivery: the queue, read on the
    // emulator, empties in far less than the 20 s a batch to the dead instance took to fail
    let started = Instant::now();
    loop {
        let (visible, in_flight) = bed.depth(&queue).await;
        if visible + in_flight == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {visible} visible, {in_flight} in flight: the dead instance was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    poller.abort();
    assert_eq!(function.restarts(), 1);
    assert_eq!(
        counters
            .batch_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_ne!(function.pid().await, Some(pid));
    function.stop().await;
}
