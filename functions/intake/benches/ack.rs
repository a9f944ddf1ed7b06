//! `cargo bench -p intake --bench ack`: how fast a producer gets its answer.
//!
//! The intake's handler behind a loopback HTTP server, on the test bed's moto (a ledger table,
//! the events topic, a queue subscribed to it), with 1, 10 and 50 concurrent producers each
//! posting orders with their own idempotency keys; beside it, in the same run and against the
//! same emulator, the same producers publishing straight to SNS. It prints p50 and p99 of each,
//! and the intake's overhead at p50. It measures the intake's own work (validation, the
//! ledger's conditional write, the publish) over HTTP; Lambda's invoke
//! path in front of a Function URL is not in it. `MAILROOM_BENCH_REQUESTS` sets the requests
//! per producer (default 100), `MAILROOM_BENCH_PRODUCERS` the levels (default `1,10,50`).
//!
//! By default the producers never pause (a closed loop: each sends its next request as soon as
//! the last is answered), which on two cores shared with the emulator measures the machine's
//! saturation as much as the intake. `MAILROOM_BENCH_RATE=R` paces them instead: each producer
//! sends R intake requests a second (and as many direct publishes, half a period later), on a
//! fixed schedule whatever the answers' speed, and a request's latency counts from when it was
//! due, so a request sent late because the last one was slow counts its wait (no coordinated
//! omission).
//!
//! Under `cargo test` (no `--bench` argument) it runs nothing: latency belongs in a bench.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use intake::{Intake, Request};
use mailroom_lambda::clock::SystemClock;
use mailroom_lambda::publish::Publisher;
use mailroom_local::testbed::{TestBed, unique};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn serve(intake: Arc<Intake>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let intake = intake.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let intake = intake.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            let request = Request {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body: body.to_vec(),
                                base_url: format!("http://{addr}"),
                            };
                            let answer = intake.handle(&request).await;
                            let mut response = hyper::Response::new(Full::new(Bytes::from(
                                answer.body.to_string(),
                            )));
                            *response.status_mut() =
                                hyper::StatusCode::from_u16(answer.status).expect("status");
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

// One thread for the producers and the intake: on two cores, a multi-threaded runtime's idle
// workers waking to look for work took CPU from the emulator and added about 0.3 ms to every
// SDK call (a GetItem at p50: 1.32 ms against 1.16 ms on one thread).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ack: run `cargo bench -p intake --bench ack` to measure");
        return;
    }
    let per_producer = mailroom_lambda::Env::process()
        .positive("MAILROOM_BENCH_REQUESTS")
        .expect("MAILROOM_BENCH_REQUESTS: a whole number")
        .unwrap_or(100);
    let levels: Vec<usize> = std::env::var("MAILROOM_BENCH_PRODUCERS")
        .unwrap_or_else(|_| "1,10,50".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("MAILROOM_BENCH_PRODUCERS: numbers, comma-separated")
        })
        .collect();
    let rate = mailroom_lambda::Env::process()
        .positive("MAILROOM_BENCH_RATE")
        .expect("MAILROOM_BENCH_RATE: requests a second per producer, a whole number");
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let topic = bed.topic("ack").await;
    let queue = bed.queue(&unique("ack"), &[]).await;
    bed.subscribe(&topic, &queue, true).await;
    let schemas = Arc::new(intake::embedded_schemas().expect("schemas"));
    let intake = Arc::new(Intake::new(
        ledger,
        Publisher::new(bed.sns.clone(), &topic).with_schemas(schemas.clone()),
        schemas,
    ));
    let url = serve(intake).await;
    let http = reqwest::Client::new();
    match rate {
        Some(r) => {
            println!("paced: {r} intake requests and {r} direct publishes a second per producer");
        }
        None => {
            println!("closed loop: each producer sends its next request when the last is answered");
        }
    }
    println!(
        "producers  intake p50 / p99 (ms)   direct SNS publish p50 / p99 (ms)   overhead at p50"
    );
    for producers in levels {
        let mut intake_times = Vec::new();
        let mut direct_times = Vec::new();
        let cpu_before = cpu_times();
        let period = rate.map(|r| Duration::from_secs(1) / u32::try_from(r).unwrap_or(1));
        // Each producer alternates the two, so both see the same emulator state and load.
        let mut tasks = tokio::task::JoinSet::new();
        for p in 0..producers {
            let (http, url, sns, topic) =
                (http.clone(), url.clone(), bed.sns.clone(), topic.clone());
            // Paced producers start spread over one period, not all at once.
            let first = tokio::time::Instant::now()
                + period.map_or(Duration::ZERO, |d| {
                    d * u32::try_from(p).unwrap_or(0) / u32::try_from(producers).unwrap_or(1)
                });
            tasks.spawn(async move {
                let mut times = (Vec::new(), Vec::new());
                // When a request is due: now in a closed loop, its slot when paced.
                let due = |i: u64, half: bool| async move {
                    let Some(period) = period else {
                        return Instant::now();
                    };
                    let at = first
                        + period * u32::try_from(i).unwrap_or(u32::MAX)
                        + if half { period / 2 } else { Duration::ZERO };
                    tokio::time::sleep_until(at).await;
                    at.into_std()
                };
                for i in 0..per_producer {
                    let body =
                        format!(r#"{{"order_id":"o-{producers}-{p}-{i}","amount_cents":100}}"#);
                    let started = due(i, false).await;
                    let r = http
                        .post(format!("{url}/events/order.placed"))
                        .header("content-type", "application/json")
                        .header("idempotency-key", format!("k-{producers}-{p}-{i}"))
                        .body(body.clone())
                        .send()
                        .await
                        .expect("answer");
                    assert_eq!(r.status(), 202);
                    times.0.push(started.elapsed());
                    let started = due(i, true).await;
                    sns.publish()
                        .topic_arn(&topic)
                        .message(body)
                        .send()
                        .await
                        .expect("Publish");
                    times.1.push(started.elapsed());
                }
                times
            });
        }
        while let Some(t) = tasks.join_next().await {
            let (a, b) = t.expect("producer");
            intake_times.extend(a);
            direct_times.extend(b);
        }
        let stolen = match (cpu_before, cpu_times()) {
            (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
                format!(
                    ", {:.0}% of CPU stolen",
                    100.0 * (s1 - s0) as f64 / (t1 - t0) as f64
                )
            }
            _ => String::new(),
        };
        intake_times.sort();
        direct_times.sort();
        let (i50, i99) = (
            percentile(&intake_times, 0.5),
            percentile(&intake_times, 0.99),
        );
        let (d50, d99) = (
            percentile(&direct_times, 0.5),
            percentile(&direct_times, 0.99),
        );
        println!(
            "{producers:>9}  {i50:>8.1} / {i99:>6.1}            {d50:>8.1} / {d99:>6.1}                   {:>6.1} ms  ({} requests each{stolen})",
            i50 - d50,
            intake_times.len()
        );
    }
}

/// The machine's CPU time stolen by the hypervisor and its total, in ticks, from
/// `/proc/stat` (Linux): on a shared VM, time the benchmark's processes were ready to run and
/// did not, which shows in the tail as pauses of tens of milliseconds.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user)
    let counted = fields.get(..8)?;
    Some((counted[7], counted.iter().sum()))
}
