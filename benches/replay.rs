//! DLQ replay throughput and SQS calls per message, against the emulator.
//!
//! `cargo bench --bench replay` loads 10,000 messages into DLQs on a local moto server, behind
//! the test bed's proxy adding 10 ms to every call (`MAILROOM_BENCH_LATENCY_MS`; SQS answers
//! in about 5 to 20 ms, loopback in well under one), and 10,000 more for the baseline.
//! Mailroom's replay (batched receive, send and delete, several pipelines at once, each
//! receiving its next batch while it sends the last) moves its DLQs' messages, counting every
//! SQS call through a counting wrapper around the port; a one-at-a-time replayer (receive 1,
//! send 1, delete 1, written here as the baseline) moves the others'. They take turns, a tenth
//! of the messages each (one DLQ per round and side), so a shared machine's drifting speed
//! falls on both alike. `MAILROOM_BENCH_PIPELINES` sets the replay's pipelines (default 8). It prints messages
//! per second, calls per message, and the throughput ratio (total and per round). Targets:
//! <= 0.32 calls a message, >= 8x the baseline. `MAILROOM_BENCH_MESSAGES` and
//! `MAILROOM_BENCH_ROUNDS` change the counts; under `cargo test` it runs 50 in 2 rounds.
//!
//! The emulator is the test bed's moto, whose SQS handles each message in time proportional to
//! the queue's depth unless `src/local/moto_server.py` removes those scans; run with
//! `MAILROOM_MOTO_STOCK_SQS=1` (and smaller counts) to measure moto's own code.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use mailroom_lambda::SqsQueues;
use mailroom_local as local;
use mailroom_local::faults::FaultPlan;
use mailroom_ops::replay::Instrumented;
use mailroom_ops::replay::{Allowlist, ReplayRequest, replay};

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

/// The baseline: receive one, send one, delete one, long polling as the replay does; stops
/// after `limit` messages.
async fn one_at_a_time(
    sqs: &aws_sdk_sqs::Client,
    dlq: &str,
    target: &str,
    limit: usize,
) -> (usize, usize) {
    let (mut moved, mut calls) = (0, 0);
    while moved < limit {
        calls += 1;
        let got = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
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

fn setting(var: &str, default: usize) -> usize {
    mailroom_lambda::Env::process()
        .number(var)
        .unwrap_or_else(|e| panic!("{e}"))
        .map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[allow(clippy::cast_precision_loss, reason = "message counts are small")]
fn per(n: usize, of: f64) -> f64 {
    n as f64 / of
}

#[allow(clippy::cast_precision_loss, reason = "message counts are small")]
fn per_message(calls: usize, n: usize) -> f64 {
    calls as f64 / n as f64
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n, rounds, latency_ms) = if quick {
        (50, 2, 0)
    } else {
        (
            setting("MAILROOM_BENCH_MESSAGES", 10_000),
            setting("MAILROOM_BENCH_ROUNDS", 10).max(1),
            setting("MAILROOM_BENCH_LATENCY_MS", 10),
        )
    };
    // Every call through the test bed's proxy, `latency_ms` later: SQS is not on loopback.
    let proxy = mailroom_local::faults::FaultyEndpoint::start(
        mailroom_local::testbed::endpoint(),
        FaultPlan::latency(Duration::from_millis(
            u64::try_from(latency_ms).unwrap_or(0),
        )),
        0,
    )
    .await
    .expect("the latency proxy");
    let config = local::emulator_config(proxy.endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);

    // One DLQ per round and side, each with that round's share: a replay run drains its DLQ
    // (with its pipelines at once), then the baseline drains its own.
    let (target, btarget) = (
        create(&sqs, "bench-target").await,
        create(&sqs, "baseline-target").await,
    );
    let mut dlqs = Vec::new();
    for round in 0..rounds {
        let share = n / rounds + usize::from(round < n % rounds);
        let (dlq, bdlq) = (
            create(&sqs, &format!("bench-dlq-{round}")).await,
            create(&sqs, &format!("baseline-dlq-{round}")).await,
        );
        fill(&sqs, &dlq, share).await;
        fill(&sqs, &bdlq, share).await;
        dlqs.push((share, dlq, bdlq));
    }
    let port = Instrumented::new(SqsQueues::new(sqs.clone()));
    let pipelines = setting("MAILROOM_BENCH_PIPELINES", 8);

    let (mut took, mut baseline_took, mut baseline_calls) = (0.0, 0.0, 0);
    let mut moving = 0.0;
    let mut ratios = Vec::new();
    for (share, dlq, bdlq) in &dlqs {
        let mut request = ReplayRequest::new(dlq.parse().expect("url"));
        request.target = Some(target.parse().expect("url"));
        request.pipelines = pipelines;
        let allow = Allowlist::new([dlq.clone(), target.clone()]);
        let started = Instant::now();
        let report = replay(&port, &allow, &request).await.expect("replay");
        let replay_secs = started.elapsed().as_secs_f64();
        assert_eq!(report.moved, *share, "{report:?}");
        eprintln!(
            "round: replay moved {share} in {replay_secs:.2} s ({} ms to the last move)",
            report.last_moved_ms
        );

        let started = Instant::now();
        let (moved, calls) = one_at_a_time(&sqs, bdlq, &btarget, *share).await;
        let one_secs = started.elapsed().as_secs_f64();
        assert_eq!(moved, *share);

        took += replay_secs;
        #[allow(clippy::cast_precision_loss, reason = "milliseconds of a bench run")]
        let moved_secs = report.last_moved_ms as f64 / 1000.0;
        moving += moved_secs;
        baseline_took += one_secs;
        baseline_calls += calls;
        ratios.push(one_secs / replay_secs);
    }
    for queue in [&target, &btarget] {
        let (arrived, _) = mailroom_ops::sqs::queue_depth(&sqs, &queue.parse().expect("url"))
            .await
            .expect("depth");
        assert_eq!(
            usize::try_from(arrived).ok(),
            Some(n),
            "every message arrived"
        );
    }
    let calls = port.calls();
    ratios.sort_by(f64::total_cmp);

    let stock = mailroom_lambda::Env::process().string("MAILROOM_MOTO_STOCK_SQS");
    let emulator = if stock.as_deref() == Some("1") {
        "stock moto"
    } else {
        "moto without its per-message queue scans"
    };
    println!(
        "emulator: {emulator}, {latency_ms} ms added to every call; {n} messages each, in {rounds} alternating rounds; {pipelines} pipelines (MAILROOM_BENCH_PIPELINES)"
    );
    println!(
        "replay: {:.0} msg/s while moving (start to the last confirmed delete; target >= 1000), {:.0} msg/s end to end (each run ends with an empty 1 s long poll); {calls} SQS calls = {:.3} calls/message (target <= 0.32)",
        per(n, moving),
        per(n, took),
        per_message(calls, n),
    );
    println!(
        "one-at-a-time baseline: {:.0} msg/s, {:.3} calls/message",
        per(n, baseline_took),
        per_message(baseline_calls, n),
    );
    println!(
        "throughput ratio: {:.1}x (target >= 8x); per round: min {:.1}x, median {:.1}x, max {:.1}x",
        baseline_took / took,
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
    );
}
