//! DLQ replay throughput and SQS calls per message, against the emulator.
//!
//! `cargo bench --bench replay` loads 10,000 messages into a DLQ on a local moto server,
//! replays them with the mailroom replay (batched receive, send and delete), and counts every
//! SQS call through a counting wrapper around the port. In the same run a one-at-a-time
//! replayer (receive 1, send 1, delete 1, written here as the baseline) moves as many messages
//! from a DLQ as deep on the same emulator. It prints messages per second, calls per message,
//! and the throughput ratio. Targets: <= 0.32 calls a message, >= 8x the baseline.
//! `MAILROOM_BENCH_MESSAGES` and `MAILROOM_BENCH_BASELINE` change the counts; under
//! `cargo test` it runs 50 of each.
//!
//! The emulator is the test bed's moto, whose SQS handles each message in time proportional to
//! the queue's depth unless `src/local/moto_server.py` removes those scans; run with
//! `MAILROOM_MOTO_STOCK_SQS=1` (and smaller counts) to measure moto's own code.

use std::path::Path;
use std::time::Instant;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use mailroom::SqsQueues;
use mailroom::local::{self, Moto};
use mailroom::replay::{Allowlist, ReplayRequest, replay};
use mailroom::testing::Instrumented;

async fn create(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url")
}

async fn fill(sqs: &aws_sdk_sqs::Client, queue: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let mut req = sqs.send_message_batch().queue_url(queue);
        for i in chunk {
            req = req.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(format!(r#"{{"order_id":"o-{i}","amount_cents":0}}"#))
                    .build()
                    .expect("entry"),
            );
        }
        req.send().await.expect("SendMessageBatch");
    }
}

/// The baseline: receive one, send one, delete one.
async fn one_at_a_time(sqs: &aws_sdk_sqs::Client, dlq: &str, target: &str) -> (usize, usize) {
    let (mut moved, mut calls) = (0, 0);
    loop {
        calls += 1;
        let got = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(1)
            .send()
            .await
            .expect("receive");
        let Some(m) = got.messages().first() else {
            break;
        };
        calls += 2;
        sqs.send_message()
            .queue_url(target)
            .message_body(m.body().unwrap_or_default())
            .send()
            .await
            .expect("send");
        sqs.delete_message()
            .queue_url(dlq)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("delete");
        moved += 1;
    }
    (moved, calls)
}

fn count(var: &str, default: usize, quick: bool) -> usize {
    if quick {
        return 50;
    }
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = count("MAILROOM_BENCH_MESSAGES", 10_000, quick);
    let baseline_n = count("MAILROOM_BENCH_BASELINE", n, quick);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let moto =
        Moto::start(&Moto::venv(root)).expect("moto from the project venv (scripts/setup.sh)");
    let config = local::emulator_config(moto.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);

    // Mailroom's replay.
    let (dlq, target) = (
        create(&sqs, "bench-dlq").await,
        create(&sqs, "bench-target").await,
    );
    fill(&sqs, &dlq, n).await;
    let port = Instrumented::new(SqsQueues::new(sqs.clone()));
    let mut request = ReplayRequest::new(dlq.parse().expect("url"));
    request.target = Some(target.parse().expect("url"));
    let allow = Allowlist::new([dlq.clone(), target.clone()]);
    let started = Instant::now();
    let report = replay(&port, &allow, &request).await.expect("replay");
    let took = started.elapsed().as_secs_f64();
    assert_eq!(report.moved, n, "{report:?}");
    let (arrived, _) = local::queue_depth(&sqs, &target.parse().expect("url"))
        .await
        .expect("depth");
    assert_eq!(
        usize::try_from(arrived).ok(),
        Some(n),
        "every message arrived"
    );
    let calls = port.calls();

    // The baseline, on the same emulator.
    let (bdlq, btarget) = (
        create(&sqs, "baseline-dlq").await,
        create(&sqs, "baseline-target").await,
    );
    fill(&sqs, &bdlq, baseline_n).await;
    let started = Instant::now();
    let (moved, baseline_calls) = one_at_a_time(&sqs, &bdlq, &btarget).await;
    let baseline_took = started.elapsed().as_secs_f64();
    assert_eq!(moved, baseline_n);

    #[allow(clippy::cast_precision_loss, reason = "message counts are small")]
    let (rate, baseline_rate) = (n as f64 / took, baseline_n as f64 / baseline_took);
    #[allow(clippy::cast_precision_loss, reason = "message counts are small")]
    let (per_msg, baseline_per_msg) = (
        calls as f64 / n as f64,
        baseline_calls as f64 / baseline_n as f64,
    );
    let emulator = if std::env::var("MAILROOM_MOTO_STOCK_SQS").as_deref() == Ok("1") {
        "stock moto"
    } else {
        "moto without its per-message queue scans"
    };
    println!("emulator: {emulator}");
    println!(
        "replay of {n} messages: {rate:.0} msg/s, {calls} SQS calls = {per_msg:.3} calls/message (target <= 0.32)"
    );
    println!(
        "one-at-a-time baseline, {baseline_n} messages from a DLQ as deep: {baseline_rate:.0} msg/s, {baseline_per_msg:.3} calls/message"
    );
    println!(
        "throughput ratio: {:.1}x (target >= 8x)",
        rate / baseline_rate
    );
}
