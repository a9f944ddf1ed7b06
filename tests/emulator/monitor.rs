//! The task monitor against the emulator: registration from the topic, buckets on an
//! injected clock, the alert sequence on the alerts topic, and the status routes.

use std::sync::Arc;
use std::time::Duration;

use mailroom_lambda::clock::{Clock, ManualClock};
use mailroom_lambda::ledger::{Ledger, State};
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_ops::monitor::alert::{Level, Notice};
use mailroom_ops::monitor::filter::FilterPolicy;
use mailroom_ops::monitor::status::route;
use mailroom_ops::monitor::{Monitor, MonitorConfig};
use serde_json::{Value, json};

use crate::helpers::{Queue, TestBed, unique};

const MINUTE: Duration = Duration::from_secs(60);

fn monitor(bed: &TestBed, ledger: Ledger, tweak: impl FnOnce(&mut MonitorConfig)) -> Monitor {
    let mut config = MonitorConfig {
        consumers: vec![
            ("notifier".into(), FilterPolicy::default()),
            (
                "billing".into(),
                FilterPolicy::parse(&json!({"kind": ["order.placed"]})).expect("policy"),
            ),
        ],
        metrics: MetricsSink::Discard,
        ..MonitorConfig::default()
    };
    tweak(&mut config);
    Monitor::new(config, ledger, bed.sqs.clone(), bed.sns.clone())
}

/// The alerts a test queue subscribed (raw) to the alerts topic received: (notice, body).
async fn alerts(bed: &TestBed, queue: &Queue) -> Vec<(String, Value)> {
    bed.drain_visible(queue, 50)
        .await
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().expect("body")).expect("JSON alert");
            (body["notice"].as_str().expect("notice").to_owned(), body)
        })
        .collect()
}

#[tokio::test]
async fn tasks_register_per_expected_consumer_and_move_through_the_buckets() {
    // GIVEN the monitor's queue on the events topic, and two expected consumers, billing
    // filtered to order.placed
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let topic = bed.topic("events").await;
    let registrations = bed.queue(&unique("monitor"), &[]).await;
    bed.subscribe(&topic, &registrations, false).await;
    let alerts_topic = bed.topic("alerts").await;
    let inbox = bed.queue(&unique("alerts-inbox"), &[]).await;
    bed.subscribe(&alerts_topic, &inbox, true).await;
    let monitor = monitor(&bed, ledger.clone(), |c| {
        c.alerts_topic = Some(alerts_topic.clone());
    });

    // WHEN two tasks are published and the monitor's queue is processed
    let placed = bed
        .publish_kind(&topic, r#"{"order_id":"o-1"}"#, "order.placed")
        .await;
    let shipped = bed
        .publish_kind(&topic, r#"{"order_id":"o-1"}"#, "order.shipped")
        .await;
    let event = bed
        .event_source(&registrations)
        .receive()
        .await
        .expect("receive");
    assert_eq!(event.records.len(), 2);
    let response = monitor.register(event).await;

    // THEN placed is expected at both consumers and shipped only at the notifier
    assert!(response.batch_item_failures.is_empty());
    let consumers = |entries: Vec<mailroom_lambda::ledger::Entry>| {
        entries
            .into_iter()
            .map(|e| (e.consumer, e.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        consumers(ledger.task(&placed).await.expect("task")),
        vec![
            ("billing".into(), State::Received),
            ("notifier".into(), State::Received)
        ]
    );
    assert_eq!(
        consumers(ledger.task(&shipped).await.expect("task")),
        vec![("notifier".into(), State::Received)]
    );

    // WHEN the clock moves (no sleeping), billing finishes its task at minute 8
    let counts = |m: &Monitor| {
        let m = m.clone();
        async move {
            m.buckets()
                .await
                .expect("buckets")
                .into_iter()
                .map(|b| b.tasks.len())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(counts(&monitor).await, vec![0, 0, 0]);
    clock.advance(6 * MINUTE);
    assert_eq!(counts(&monitor).await, vec![3, 0, 0]);
    clock.advance(2 * MINUTE);
    ledger.succeed(&placed, "billing").await.expect("succeed");
    clock.advance(3 * MINUTE);
    assert_eq!(counts(&monitor).await, vec![0, 2, 0]);
    clock.advance(35 * MINUTE);
    assert_eq!(counts(&monitor).await, vec![0, 0, 2]);

    // THEN a sweep past 45 minutes raises one stuck-task alarm naming the open pairs, and a
    // second sweep stays quiet
    let report = monitor.sweep().await.expect("sweep");
    assert_eq!(report.stuck, 2);
    assert_eq!(report.alerts.len(), 1);
    assert_eq!(
        (report.alerts[0].notice, report.alerts[0].level),
        (Notice::Alarm, Level::Critical)
    );
    assert!(monitor.sweep().await.expect("sweep").alerts.is_empty());
    let got = alerts(&bed, &inbox).await;
    assert_eq!(got.len(), 1);
    let (notice, body) = &got[0];
    assert_eq!(notice, "ALARM");
    assert_eq!(body["alert"], "stuck-tasks");
    let samples: Vec<&str> = body["details"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| s["task_id"].as_str().expect("task id"))
        .collect();
    assert_eq!(samples.len(), 2);
    assert!(samples.contains(&placed.as_str()) && samples.contains(&shipped.as_str()));

    // AND when the notifier finishes both, the next sweep resolves it
    ledger.succeed(&placed, "notifier").await.expect("succeed");
    ledger.succeed(&shipped, "notifier").await.expect("succeed");
    let report = monitor.sweep().await.expect("sweep");
    assert_eq!(report.alerts.len(), 1);
    assert_eq!(report.alerts[0].notice, Notice::Resolved);
    assert_eq!(alerts(&bed, &inbox).await[0].0, "RESOLVED");
}

async fn dead_letter(bed: &TestBed, dlq: &Queue, reason: &str) -> String {
    bed.send(dlq, r#"{"order_id":"o-9"}"#, &[(REASON_ATTRIBUTE, reason)])
        .await
}

#[tokio::test]
async fn dlq_growth_raises_one_alert_a_resweep_none_and_draining_resolves_it() {
    // GIVEN a watched DLQ and a test queue on the alerts topic
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let dlq = bed.queue(&unique("orders-dlq"), &[]).await;
    let alerts_topic = bed.topic("alerts").await;
    let inbox = bed.queue(&unique("alerts-inbox"), &[]).await;
    bed.subscribe(&alerts_topic, &inbox, true).await;
    let monitor = monitor(&bed, ledger, |c| {
        c.alerts_topic = Some(alerts_topic.clone());
        c.dlqs = vec![dlq.url.clone()];
        c.dlq_critical_depth = 5;
    });
    let mut sequence = Vec::new();
    let mut sweep = async |what: &str| {
        clock.advance(5 * MINUTE);
        let report = monitor.sweep().await.expect("sweep");
        for a in &report.alerts {
            sequence.push(format!("{what}: {} {:?}", a.notice.as_str(), a.level));
        }
        report
    };

    // WHEN: an empty DLQ, then three dead letters, a re-sweep, one more, a jump past the
    // critical depth, and a drain
    sweep("empty").await;
    let first = dead_letter(&bed, &dlq, "amount must be positive").await;
    dead_letter(&bed, &dlq, "decode: missing field order_id").await;
    dead_letter(&bed, &dlq, "amount must be positive").await;
    let grown = sweep("grew to 3").await;
    sweep("still 3").await;
    dead_letter(&bed, &dlq, "amount must be positive").await;
    sweep("grew to 4").await;
    dead_letter(&bed, &dlq, "amount must be positive").await;
    sweep("grew to 5").await;
    for m in bed.drain_visible(&dlq, 10).await {
        bed.sqs
            .delete_message()
            .queue_url(dlq.url.as_str())
            .receipt_handle(m.receipt_handle().expect("handle"))
            .send()
            .await
            .expect("DeleteMessage");
    }
    sweep("drained").await;

    // THEN one alarm on growth, silence while it stays a warning, one alarm when it turns
    // critical, one resolution
    assert_eq!(
        sequence,
        vec![
            "grew to 3: ALARM Warning",
            "grew to 5: ALARM Critical",
            "drained: RESOLVED Ok",
        ]
    );
    assert_eq!(grown.dlqs[0].depth, 3);
    assert_eq!(grown.dlqs[0].growth, 3);
    let got = alerts(&bed, &inbox).await;
    let notices: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(notices, vec!["ALARM", "ALARM", "RESOLVED"]);
    let details = &got[0].1["details"];
    assert_eq!(details["depth"], 3);
    assert_eq!(details["growth"], 3);
    let samples = details["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 3);
    assert!(samples.iter().any(|s| s["message_id"] == first.as_str()));
    assert!(
        samples
            .iter()
            .any(|s| s["reason"] == "decode: missing field order_id")
    );
}

#[tokio::test]
async fn the_status_routes_answer_for_tasks_buckets_and_dlqs() {
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let dlq = bed.queue(&unique("status-dlq"), &[]).await;
    dead_letter(&bed, &dlq, "amount must be positive").await;
    let monitor = monitor(&bed, ledger.clone(), |c| c.dlqs = vec![dlq.url.clone()]);
    let opened = clock.now_ms();
    ledger
        .register("task-1", "notifier", Some(opened))
        .await
        .expect("register");
    ledger
        .register("task-1", "billing", Some(opened))
        .await
        .expect("register");
    ledger
        .acquire("task-1", "billing", "inv", opened + 1_000, None)
        .await
        .expect("lease");
    ledger
        .fail("task-1", "billing", "inv", "payments API 503")
        .await
        .expect("fail");
    ledger.succeed("task-1", "notifier").await.expect("succeed");
    clock.advance(50 * MINUTE);

    let task = route(&monitor, "GET", "/tasks/task-1", "").await;
    assert_eq!(task.status, 200);
    assert_eq!(
        task.body["status"], "FAILED",
        "billing's last attempt failed"
    );
    assert_eq!(task.body["consumers"][0]["consumer"], "billing");
    assert_eq!(task.body["consumers"][0]["state"], "FAILED");
    assert_eq!(task.body["consumers"][0]["attempts"], 1);
    assert_eq!(task.body["consumers"][0]["last_error"], "payments API 503");
    assert_eq!(task.body["consumers"][1]["state"], "SUCCEEDED");

    let bucket = route(&monitor, "GET", "/tasks", "bucket=over-45m").await;
    assert_eq!(bucket.status, 200);
    assert_eq!(bucket.body["buckets"][0]["tasks"][0]["task_id"], "task-1");
    assert_eq!(bucket.body["buckets"][0]["tasks"][0]["open_for_secs"], 3000);
    assert_eq!(
        route(&monitor, "GET", "/tasks", "bucket=over-1d")
            .await
            .status,
        400
    );

    let dlqs = route(&monitor, "GET", "/dlqs", "").await;
    assert_eq!(dlqs.status, 200);
    assert_eq!(dlqs.body["dlqs"][0]["depth"], 1);

    assert_eq!(route(&monitor, "GET", "/tasks/nope", "").await.status, 404);
    assert_eq!(
        route(&monitor, "DELETE", "/tasks/task-1", "").await.status,
        405
    );
    assert_eq!(route(&monitor, "GET", "/elsewhere", "").await.status, 404);
}

#[tokio::test]
async fn registration_reads_in_bulk_and_never_writes_a_pair_that_exists() {
    // Issue 15, measured: "376 of the monitor's 600 registrations failed their condition,
    // still billed". A conditional write known to fail is not sent.
    // GIVEN three order.placed tasks on the monitor's queue, expected at notifier and billing:
    // the first done at both consumers already, the second at billing only, the third new;
    // and the monitor's ledger calls counted by the proxy in front of the emulator
    let bed = TestBed::new().await;
    let ledger = bed
        .ledger(Arc::new(mailroom_lambda::clock::SystemClock))
        .await;
    let topic = bed.topic("events").await;
    let registrations = bed.queue(&unique("monitor-bulk"), &[]).await;
    bed.subscribe(&topic, &registrations, false).await;
    let mut tasks = Vec::new();
    for order in ["o-1", "o-2", "o-3"] {
        tasks.push(
            bed.publish_kind(
                &topic,
                &format!(r#"{{"order_id":"{order}"}}"#),
                "order.placed",
            )
            .await,
        );
    }
    for (task, consumer) in [
        (&tasks[0], "notifier"),
        (&tasks[0], "billing"),
        (&tasks[1], "billing"),
    ] {
        ledger.succeed(task, consumer).await.expect("done");
    }
    let proxy = mailroom_local::faults::FaultyEndpoint::start(
        crate::helpers::endpoint(),
        mailroom_local::faults::FaultPlan::mix(0.0),
        9,
    )
    .await
    .expect("proxy");
    let counted = mailroom_lambda::ledger::Ledger::new(
        aws_sdk_dynamodb::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await),
        ledger.table(),
    );
    let monitor = monitor(&bed, counted, |_| {});
    let event = bed
        .event_source(&registrations)
        .receive()
        .await
        .expect("receive");
    assert_eq!(event.records.len(), 3);

    // WHEN the batch is registered
    let response = monitor.register(event).await;

    // THEN one bulk read and three writes (the second task's notifier, the third's two), and
    // the done pairs are untouched
    assert!(response.batch_item_failures.is_empty());
    let actions = proxy.counts().actions();
    assert_eq!(
        actions.get("DynamoDB_20120810.BatchGetItem"),
        Some(&1),
        "{actions:?}"
    );
    assert_eq!(
        actions.get("DynamoDB_20120810.UpdateItem"),
        Some(&3),
        "{actions:?}"
    );
    let state = |t: &str, c: &str| {
        let ledger = ledger.clone();
        let (t, c) = (t.to_owned(), c.to_owned());
        async move { ledger.get(&t, &c).await.expect("read").expect("pair").state }
    };
    assert_eq!(state(&tasks[0], "notifier").await, State::Succeeded);
    assert_eq!(state(&tasks[1], "billing").await, State::Succeeded);
    assert_eq!(state(&tasks[1], "notifier").await, State::Received);
    assert_eq!(state(&tasks[2], "billing").await, State::Received);
}
