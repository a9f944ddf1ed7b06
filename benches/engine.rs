//! The engine end to end against the pure-parse limit.
//!
//! * engine: event bytes → `SqsEvent` → engine (decode each SNS envelope and payload, run the
//!   consumer, poison 5% to a no-op SQS port, EMF document) → response bytes.
//! * parse: serde_json parsing the same bytes into the same three levels (SqsEvent → envelope →
//!   payload), and nothing else: the floor no engine can beat.
//!
//! After criterion's own report it prints the ratio engine / parse at 10, 100 and 1000 records,
//! measured interleaved so that a shared machine's drift cancels out. Target: at most 1.25×.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use mailroom_lambda::sqs::FakeQueues;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_lambda::{Deadline, Engine, EngineConfig, Failure, Message, SqsEvent};
use serde::Deserialize;

const SIZES: [usize; 3] = [10, 100, 1000];

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are parsed, as a consumer's would be")]
struct Order {
    order_id: String,
    amount_cents: u64,
    customer: String,
}

/// The envelope fields a consumer needs, parsed the plain serde way.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code, reason = "fields are parsed, as the engine parses them")]
struct Envelope {
    message_id: String,
    topic_arn: String,
    message: String,
    timestamp: String,
    #[serde(default)]
    message_attributes: HashMap<String, Attr>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "fields are parsed")]
struct Attr {
    #[serde(rename = "Type")]
    data_type: String,
    #[serde(rename = "Value")]
    value: String,
}

/// An SNS envelope with its fields in the order SNS writes them (`Type` first).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SnsBody {
    #[serde(rename = "Type")]
    kind: &'static str,
    message_id: String,
    topic_arn: &'static str,
    message: String,
    timestamp: &'static str,
    signature_version: &'static str,
    signature: &'static str,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: &'static str,
    #[serde(rename = "UnsubscribeURL")]
    unsubscribe_url: &'static str,
    message_attributes: serde_json::Value,
}

/// Two SNS-enveloped batches of `n` records, used alternately. Records are numbered on across
/// the two, and every 20th is poison (amount 0): exactly 5% at every size, 10 records included.
fn event_bytes(n: usize) -> [Vec<u8>; 2] {
    [batch_bytes(0, n), batch_bytes(n, n)]
}

fn batch_bytes(first: usize, n: usize) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            let payload = serde_json::json!({
                "order_id": format!("o-{i}"),
                "amount_cents": if i % 20 == 7 { 0 } else { 1000 + i },
                "customer": "c-42",
            });
            let envelope = SnsBody {
                kind: "Notification",
                message_id: format!("6f1c3b7e-0d5a-5b8e-9a41-{i:012}"),
                topic_arn: "arn:aws:sns:us-east-1:123456789012:mailroom-events",
                message: payload.to_string(),
                timestamp: "2026-01-01T00:00:00.000Z",
                signature_version: "1",
                signature: "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
                signing_cert_url: "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
                unsubscribe_url: "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:mailroom-events:0000",
                message_attributes: serde_json::json!({"kind": {"Type": "String", "Value": "order.placed"}}),
            };
            let envelope = serde_json::to_string(&envelope).expect("serialises");
            serde_json::json!({
                "messageId": format!("0e7a3c1b-0000-4b7e-9f3a-{i:012}"),
                "receiptHandle": format!("AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a{i:08}Mailroom=="),
                "body": envelope,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1767225600000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1767225600003",
                },
                "messageAttributes": {},
                "md5OfBody": "c25dbfcf66128494ec9d8f6fa8c38eb0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mailroom-example",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "Records": records })).expect("serialises")
}

async fn consumer(m: Message<Order>) -> Result<(), Failure> {
    if m.payload.amount_cents == 0 {
        return Err(Failure::poison("amount must be positive"));
    }
    black_box(&m.payload);
    Ok(())
}

#[inline(never)]
fn pure_parse(bytes: &[u8]) -> usize {
    let event: SqsEvent = serde_json::from_slice(bytes).expect("event");
    let mut n = 0;
    for r in &event.records {
        let env: Envelope =
            serde_json::from_str(r.body.as_deref().expect("body")).expect("envelope");
        let order: Order = serde_json::from_str(&env.message).expect("payload");
        black_box((&env, &order));
        n += 1;
    }
    n
}

type Bench = (tokio::runtime::Runtime, Engine<FakeQueues>);

fn setup() -> Bench {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::new(
        EngineConfig {
            consumer: "bench".into(),
            metrics: MetricsSink::Discard,
            ..EngineConfig::default()
        },
        FakeQueues::discarding(),
    );
    (rt, engine)
}

/// Event bytes in, response bytes out.
async fn engine_bytes(engine: &Engine<FakeQueues>, bytes: &[u8]) -> Vec<u8> {
    let event: SqsEvent = serde_json::from_slice(bytes).expect("event");
    let report = engine
        .process(event, Deadline::none(), consumer)
        .await
        .expect("response");
    serde_json::to_vec(&report.response).expect("response bytes")
}

#[inline(never)]
fn run_engine(rt: &tokio::runtime::Runtime, engine: &Engine<FakeQueues>, bytes: &[u8]) -> Vec<u8> {
    rt.block_on(engine_bytes(engine, bytes))
}

fn bench(c: &mut Criterion) {
    let (rt, engine) = setup();
    let mut group = c.benchmark_group("engine_vs_parse");
    for n in SIZES {
        let bytes = event_bytes(n);
        group.throughput(criterion::Throughput::Elements(n as u64));
        let turn = std::cell::Cell::new(0usize);
        let next = || {
            turn.set(turn.get() ^ 1);
            turn.get()
        };
        group.bench_with_input(BenchmarkId::new("parse", n), &bytes, |b, bytes| {
            b.iter(|| pure_parse(black_box(&bytes[next()])));
        });
        group.bench_with_input(BenchmarkId::new("engine", n), &bytes, |b, bytes| {
            b.iter(|| run_engine(&rt, &engine, black_box(&bytes[next()])));
        });
    }
    group.finish();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The ratio engine / parse, measured interleaved: rounds alternate between the two, so a
/// change in machine speed (a shared VM) hits both alike. Median of the per-round ratios.
fn print_ratios(quick: bool) {
    let (rt, engine) = setup();
    let rounds = if quick { 1 } else { 41 };
    if quick {
        println!(
            "\nengine / pure-parse: test mode, one round each; a check that it runs, not a measurement"
        );
    } else {
        println!("\nengine / pure-parse, interleaved, median of {rounds} rounds (target <= 1.25x)");
    }
    for n in SIZES {
        let bytes = event_bytes(n);
        // About 20 ms of parsing per round (two batches per iteration).
        let iters = if quick { 1 } else { (10_000 / n).max(1) };
        let time = |f: &dyn Fn()| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_secs_f64()
        };
        let (mut ratios, mut engine_t, mut parse_t) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let p = time(&|| {
                for batch in &bytes {
                    black_box(pure_parse(black_box(batch)));
                }
            });
            // One `block_on` per round, as Lambda's runtime drives every invocation from one
            // long-lived async loop.
            let e = time(&|| {
                rt.block_on(async {
                    for batch in &bytes {
                        black_box(engine_bytes(&engine, black_box(batch)).await);
                    }
                });
            });
            ratios.push(e / p);
            engine_t.push(e);
            parse_t.push(p);
        }
        #[allow(clippy::cast_precision_loss, reason = "counts are small")]
        let per_record = |t: f64| t * 1e9 / (2 * iters * n) as f64;
        println!(
            "  {n:>5} records: engine {:>6.0} ns/record, parse {:>6.0} ns/record, ratio {:.3}x",
            per_record(median(engine_t)),
            per_record(median(parse_t)),
            median(ratios)
        );
    }
}

/// `--only engine|parse|setup --records N`: run 20 batches of one kind and nothing else, for
/// `valgrind --tool=callgrind` (instruction counts are stable where wall time is not).
/// `setup` builds the batches and the runtime and runs nothing: the baseline both others
/// include, subtracted before their ratio (`scripts/engine-instructions.sh`).
fn only(kind: &str, n: usize) {
    let bytes = event_bytes(n);
    let (rt, engine) = setup();
    for i in 0..20 {
        let batch = &bytes[i % 2];
        match kind {
            "engine" => drop(black_box(run_engine(&rt, &engine, black_box(batch)))),
            "parse" => drop(black_box(pure_parse(black_box(batch)))),
            _ => drop(black_box(batch)),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(kind) = arg("--only") {
        let n = arg("--records").and_then(|n| n.parse().ok()).unwrap_or(100);
        only(kind, n);
        return;
    }
    // `cargo test` runs benches without `--bench`: check they work, measure nothing.
    let quick = !args.iter().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios(quick);
}
