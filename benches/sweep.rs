//! The task monitor's sweep cost against the ledger's size.
//!
//! `cargo bench --bench sweep` loads a ledger table on a local moto server with 100 items and
//! then with 100,000 items, 10 of them stuck (open for 50 minutes) and the rest finished, and
//! watches two DLQs. It runs two sweeps on each (the first raises the alerts, the second is a
//! steady-state sweep) and prints the API calls each made (counted by an SDK interceptor on
//! every request that goes out, pages and retries included) and its duration. Both must be
//! flat in the table's size: the sweep reads the sparse open index, never the table.
//! `MAILROOM_BENCH_LEDGER_ITEMS` (comma-separated) changes the sizes; under `cargo test` it
//! runs 100 and 1,000.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::StreamExt;
use mailroom_lambda::clock::{Clock, SystemClock};
use mailroom_lambda::ledger::{Ledger, OPEN_SHARDS};
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_local as local;
use mailroom_ops::monitor::{Monitor, MonitorConfig};

/// Counts every request the client sends.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "Counter"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Counter {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::Relaxed)
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// `total` items: `stuck` open for 50 minutes, the rest succeeded (closed, so not in the
/// open index), written 25 at a time, 8 calls in flight.
async fn load(dynamodb: &aws_sdk_dynamodb::Client, table: &str, total: usize, stuck: usize) {
    let now = SystemClock.now_ms();
    let opened = now - 50 * 60 * 1000;
    let items: Vec<WriteRequest> = (0..total)
        .map(|i| {
            let open = i < stuck;
            let mut put = PutRequest::builder()
                .item("pk", s(format!("task-{i:06}")))
                .item("sk", s("billing"))
                .item("state", s(if open { "IN_PROGRESS" } else { "SUCCEEDED" }))
                .item("attempts", n(1))
                .item("opened_at", n(opened))
                .item("updated_at", n(opened + 1000));
            if open {
                put = put
                    .item(
                        "open_shard",
                        s(format!("open#{}", i % OPEN_SHARDS as usize)),
                    )
                    .item("lease_until", n(opened + 30_000));
            }
            WriteRequest::builder()
                .put_request(put.build().expect("put"))
                .build()
        })
        .collect();
    futures_util::stream::iter(items.chunks(25).map(<[WriteRequest]>::to_vec))
        .map(|chunk| async move {
            dynamodb
                .batch_write_item()
                .request_items(table, chunk)
                .send()
                .await
                .expect("BatchWriteItem");
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

#[tokio::main]
async fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = mailroom_lambda::Env::process()
        .list("MAILROOM_BENCH_LEDGER_ITEMS")
        .iter()
        .map(|x| {
            x.parse()
                .expect("MAILROOM_BENCH_LEDGER_ITEMS: whole numbers")
        })
        .collect();
    let sizes = Some(sizes).filter(|s| !s.is_empty()).unwrap_or_else(|| {
        if quick {
            vec![100, 1_000]
        } else {
            vec![100, 100_000]
        }
    });
    if quick {
        println!("(test mode: small sizes, figures not a measurement)");
    }
    let endpoint = mailroom_local::testbed::endpoint();
    let aws = local::emulator_config(endpoint).await;
    let counter = Counter::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&aws)
            .interceptor(counter.clone())
            .build(),
    );
    let topic = sns
        .create_topic()
        .name("sweep-bench-alerts")
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    for total in sizes {
        let table = format!("sweep-bench-{total}");
        mailroom_local::create_table(&dynamodb, &table)
            .await
            .expect("table");
        let loading = Instant::now();
        load(&dynamodb, &table, total, 10).await;
        let loaded = loading.elapsed();
        let mut dlqs = Vec::new();
        for name in ["a", "b"] {
            let (url, _) =
                local::create_queue(&sqs, &format!("sweep-bench-{total}-{name}-dlq"), &[])
                    .await
                    .expect("queue");
            dlqs.push(url);
        }
        sqs.send_message()
            .queue_url(dlqs[0].as_str())
            .message_body("{}")
            .send()
            .await
            .expect("dead letter");
        let config = MonitorConfig {
            dlqs,
            alerts_topic: Some(topic.clone()),
            metrics: MetricsSink::Discard,
            ..MonitorConfig::default()
        };
        let monitor = Monitor::new(
            config,
            Ledger::new(dynamodb.clone(), &table),
            sqs.clone(),
            sns.clone(),
        );
        counter.take();
        for sweep in ["first (alerts)", "steady"] {
            let started = Instant::now();
            let report = monitor.sweep().await.expect("sweep");
            let took = started.elapsed();
            println!(
                "{total:>7} ledger items (10 stuck, loaded in {:.1} s): {sweep:<14} sweep: {:>3} API calls, {:>7.1} ms; stuck {}, over-45m {}, alerts {}",
                loaded.as_secs_f64(),
                counter.take(),
                took.as_secs_f64() * 1000.0,
                report.stuck,
                report.buckets.last().map_or(0, |b| b.1),
                report.alerts.len()
            );
        }
    }
}
