//! `cargo bench --bench ledger`: one large batch through the engine with the ledger on and off.
//!
//! A batch of SNS-enveloped orders (1,000 by default, `MAILROOM_BENCH_RECORDS`), each its own
//! task, run by a consumer that does nothing, first without a ledger, then with the ledger in
//! the test bed's DynamoDB, through a proxy that counts each ledger call by action (an
//! independent count: the proxy sees the wire, not the engine's own bookkeeping). It prints the
//! batch's time both ways and the ledger calls per record. `MAILROOM_BENCH_LATENCY_MS` adds a
//! fixed latency to every ledger call at the proxy (default 0), as DynamoDB's own round trip
//! would: moto answers one request at a time, so without it the batch's time is moto's
//! throughput, whatever the engine overlaps.
//!
//! Under `cargo test` (no `--bench` argument) it runs 50 records once, to check that it works.

use std::sync::Arc;
use std::time::Instant;

use mailroom_lambda::clock::SystemClock;
use mailroom_lambda::sqs::FakeQueues;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_lambda::{Deadline, Engine, EngineConfig, Failure, Message, SqsEvent};
use mailroom_local::faults::{FaultPlan, FaultyEndpoint};
use mailroom_local::testbed::TestBed;

fn batch(first: usize, n: usize) -> SqsEvent {
    let records: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            let envelope = serde_json::json!({
                "Type": "Notification",
                "MessageId": format!("6f1c3b7e-0d5a-5b8e-9a41-{i:012}"),
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-events",
                "Message": serde_json::json!({"order_id": format!("o-{i}"), "amount_cents": 100}).to_string(),
                "Timestamp": "2026-01-01T00:00:00.000Z",
                "MessageAttributes": {
                    "kind": {"Type": "String", "Value": "order.placed"},
                    "task_id": {"Type": "String", "Value": format!("bench-task-{i}")},
                },
            });
            serde_json::json!({
                "messageId": format!("0e7a3c1b-0000-4b7e-9f3a-{i:012}"),
                "receiptHandle": format!("handle-{i}"),
                "body": envelope.to_string(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                    "ApproximateFirstReceiveTimestamp": "1767225600003",
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mailroom-bench",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

async fn consumer(m: Message<serde_json::Value>) -> Result<(), Failure> {
    std::hint::black_box(&m.payload);
    Ok(())
}

fn engine(concurrency: usize) -> Engine<FakeQueues> {
    Engine::new(
        EngineConfig {
            consumer: "bench".into(),
            metrics: MetricsSink::Discard,
            concurrency,
            ..EngineConfig::default()
        },
        FakeQueues::discarding(),
    )
}

#[tokio::main]
async fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let n = if measure {
        mailroom_lambda::Env::process()
            .positive("MAILROOM_BENCH_RECORDS")
            .expect("MAILROOM_BENCH_RECORDS: a whole number")
            .map_or(1000, |n| usize::try_from(n).unwrap_or(1000))
    } else {
        50
    };
    let concurrency = EngineConfig::default().concurrency;
    let bed = TestBed::new().await;
    let table = bed.ledger(Arc::new(SystemClock)).await.table().to_owned();
    let latency_ms = mailroom_lambda::Env::process()
        .number("MAILROOM_BENCH_LATENCY_MS")
        .expect("MAILROOM_BENCH_LATENCY_MS: a whole number")
        .unwrap_or(0);
    let proxy = FaultyEndpoint::start(
        mailroom_local::testbed::endpoint(),
        FaultPlan::latency(std::time::Duration::from_millis(latency_ms)),
        1,
    )
    .await
    .expect("proxy");
    let counted = mailroom_lambda::ledger::Ledger::new(
        aws_sdk_dynamodb::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await),
        table,
    );

    let off = engine(concurrency);
    let started = Instant::now();
    let report = off
        .process(batch(0, n), Deadline::none(), consumer)
        .await
        .expect("a report");
    let off_time = started.elapsed();
    assert!(report.failed_ids().is_empty());

    let on = engine(concurrency).with_ledger(counted);
    let started = Instant::now();
    let report = on
        .process(batch(n, n), Deadline::none(), consumer)
        .await
        .expect("a report");
    let on_time = started.elapsed();
    assert!(report.failed_ids().is_empty());
    let calls = proxy.counts().actions();
    let total: u64 = calls.values().sum();
    let per_record = total as f64 / n as f64;
    println!(
        "{n} records, one task each, engine concurrency {concurrency}, {latency_ms} ms added to each ledger call"
    );
    println!("  ledger off   {:>8.1} ms", off_time.as_secs_f64() * 1000.0);
    println!(
        "  ledger on    {:>8.1} ms   ({per_record:.2} ledger calls per record: {})",
        on_time.as_secs_f64() * 1000.0,
        calls
            .iter()
            .map(|(a, c)| format!("{} {c}", a.trim_start_matches("DynamoDB_20120810.")))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
