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
    println!(
        "producers  intake p50 / p99 (ms)   direct SNS publish p50 / p99 (ms)   overhead at p50"
    );
    for producers in levels {
        let mut intake_times = Vec::new();
        let mut direct_times = Vec::new();
        // Alternate the two in rounds so both see the same emulator state and machine load.
        for round in 0..2 {
            let mut tasks = tokio::task::JoinSet::new();
            for p in 0..producers {
                let (http, url, sns, topic) =
                    (http.clone(), url.clone(), bed.sns.clone(), topic.clone());
                tasks.spawn(async move {
                    let mut times = (Vec::new(), Vec::new());
                    for i in 0..per_producer / 2 {
                        let body = format!(
                            r#"{{"order_id":"o-{producers}-{round}-{p}-{i}","amount_cents":100}}"#
                        );
                        let started = Instant::now();
                        let r = http
                            .post(format!("{url}/events/order.placed"))
                            .header("content-type", "application/json")
                            .header("idempotency-key", format!("k-{producers}-{round}-{p}-{i}"))
                            .body(body.clone())
                            .send()
                            .await
                            .expect("answer");
                        assert_eq!(r.status(), 202);
                        times.0.push(started.elapsed());
                        let started = Instant::now();
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
        }
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
            "{producers:>9}  {i50:>8.1} / {i99:>6.1}            {d50:>8.1} / {d99:>6.1}                   {:>6.1} ms  ({} requests each)",
            i50 - d50,
            intake_times.len()
        );
    }
}
