//! The publisher against the emulator, through the fault-injecting proxy: a retried publish
//! carries the same task id, so the consumer's ledger runs it once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom_lambda::clock::SystemClock;
use mailroom_lambda::publish::{Event, PublishError, Publisher};
use mailroom_lambda::{Failure, Message};
use mailroom_local::faults::{FaultKind, FaultPlan, FaultyEndpoint};

use crate::helpers::{LambdaBed, TestBed, endpoint};
use crate::{Order, order_json};

/// An SNS client whose calls go through `proxy`.
async fn sns_through(proxy: &FaultyEndpoint) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await)
}

fn orders(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::from_json("order.placed", order_json(&format!("o-{i}"), 100)))
        .collect()
}

#[tokio::test]
async fn a_publish_whose_answer_was_lost_is_sent_again_with_the_same_task_ids_and_runs_once() {
    // Issue 13, measured: "4 PublishBatch calls took effect, lost their answers and were
    // retried by the SDK, so 40 orders were published twice under new SNS MessageIds".
    // GIVEN a topic with an enveloped queue, and a proxy that drops the answer of the first
    // call after the emulator acted on it
    let bed = TestBed::new().await;
    let topic = bed.topic("publish-lost").await;
    let (queue, _dlq) = bed.queue_with_dlq("publish-lost", 5, 30).await;
    bed.subscribe(&topic, &queue, false).await;
    let proxy = FaultyEndpoint::start(endpoint(), FaultPlan::only(FaultKind::ResetAfter, 1), 1)
        .await
        .expect("proxy");
    let publisher = Publisher::new(sns_through(&proxy).await, &topic);
    let events = orders(3);

    // WHEN the three are published
    let report = publisher.publish(&events).await;

    // THEN all three are reported published, the first call's answer was lost and retried,
    // and the queue holds each order twice: two SNS MessageIds, one task id
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.published.len(), 3);
    assert_eq!(proxy.counts().snapshot().3, 1, "one answer dropped");
    let messages = bed.drain_visible(&queue, 20).await;
    assert_eq!(messages.len(), 6, "the lost answer's call took effect too");
    let mut by_task: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &messages {
        let envelope: serde_json::Value =
            serde_json::from_str(m.body().expect("body")).expect("an SNS envelope");
        let task = envelope["MessageAttributes"]["task_id"]["Value"]
            .as_str()
            .expect("task_id attribute")
            .to_owned();
        by_task.entry(task).or_default().insert(
            envelope["MessageId"]
                .as_str()
                .expect("MessageId")
                .to_owned(),
        );
    }
    let drawn: BTreeSet<String> = events.iter().map(|e| e.task_id().to_owned()).collect();
    assert_eq!(by_task.keys().cloned().collect::<BTreeSet<_>>(), drawn);
    assert!(
        by_task.values().all(|ids| ids.len() == 2),
        "each copy has its own SNS MessageId: {by_task:?}"
    );

    // AND the consumer, keyed on the task id by default, runs each order once
    for m in &messages {
        bed.sqs
            .change_message_visibility()
            .queue_url(queue.url.as_str())
            .receipt_handle(m.receipt_handle().expect("handle"))
            .visibility_timeout(0)
            .send()
            .await
            .expect("ChangeMessageVisibility");
    }
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let (engine, _) = bed.engine(|_| {});
    let engine = engine.with_ledger(ledger.clone());
    let ran = Mutex::new(Vec::new());
    let handler = |m: Message<Order>| {
        ran.lock().expect("lock").push(m.payload.order_id.clone());
        async { Ok::<(), Failure>(()) }
    };
    for _ in 0..6 {
        if bed.depth(&queue).await == (0, 0) {
            break;
        }
        // A copy that met its twin's live lease in the same batch comes back after backoff.
        let run = bed.invoke(&queue, &engine, handler).await;
        bed.make_visible(&queue, &run).await;
    }
    let mut ran = ran.into_inner().expect("lock");
    ran.sort();
    assert_eq!(ran, vec!["o-0", "o-1", "o-2"], "each side effect once");
    assert_eq!(bed.depth(&queue).await, (0, 0), "duplicates deleted too");
    for task in &drawn {
        let entry = ledger
            .get(task, "emulator-test")
            .await
            .expect("ledger read")
            .expect("the task is in the ledger under its publisher's id");
        assert_eq!(entry.state, mailroom_lambda::ledger::State::Succeeded);
    }
}

#[tokio::test]
async fn transient_failures_beyond_the_sdks_retries_are_retried_by_the_publisher_with_the_same_ids()
{
    // GIVEN a proxy answering HTTP 500 to the first four calls (the SDK tries three times)
    let bed = TestBed::new().await;
    let topic = bed.topic("publish-500").await;
    let queue = bed.queue(&crate::helpers::unique("publish-500"), &[]).await;
    bed.subscribe(&topic, &queue, true).await;
    let proxy = FaultyEndpoint::start(endpoint(), FaultPlan::only(FaultKind::ServerError, 4), 2)
        .await
        .expect("proxy");
    let publisher = Publisher::new(sns_through(&proxy).await, &topic)
        .with_retries(5, Duration::from_millis(10));
    let events = orders(12);

    // WHEN twelve events are published
    let report = publisher.publish(&events).await;

    // THEN every one is published once, with the id it was given before the first attempt
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.published.len(), 12);
    assert_eq!(report.calls, 3, "two batches, the first sent twice");
    assert_eq!(proxy.counts().snapshot().1, 4);
    let messages = bed.drain_visible(&queue, 30).await;
    let mut tasks: Vec<String> = messages
        .iter()
        .map(|m| {
            m.message_attributes()
                .and_then(|a| a.get("task_id"))
                .and_then(|v| v.string_value())
                .expect("raw delivery keeps the task_id attribute")
                .to_owned()
        })
        .collect();
    tasks.sort();
    let mut drawn: Vec<String> = events.iter().map(|e| e.task_id().to_owned()).collect();
    drawn.sort();
    assert_eq!(tasks, drawn, "once each, with the drawn ids");
}

#[tokio::test]
async fn an_event_over_the_size_limit_is_refused_before_sending_and_the_rest_are_published() {
    // GIVEN a topic, one event of 300 KB and two small ones
    let bed = TestBed::new().await;
    let topic = bed.topic("publish-size").await;
    let queue = bed
        .queue(&crate::helpers::unique("publish-size"), &[])
        .await;
    bed.subscribe(&topic, &queue, true).await;
    let publisher = Publisher::new(bed.sns.clone(), &topic);
    let big = format!(r#"{{"order_id":"o-big","pad":"{}"}}"#, "x".repeat(300_000));
    let events = vec![
        Event::from_json("order.placed", order_json("o-1", 1)),
        Event::from_json("order.placed", big),
        Event::from_json("order.placed", order_json("o-2", 2)),
    ];

    // WHEN they are published together
    let report = publisher.publish(&events).await;

    // THEN the big one is refused with the limit in its reason, and only the others arrive
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].index, 1);
    assert!(
        matches!(
            report.failed[0].error,
            PublishError::TooLarge { limit: 262_144, .. }
        ),
        "{}",
        report.failed[0].error
    );
    assert!(report.failed[0].error.to_string().contains("262144 bytes"));
    assert_eq!(report.published.len(), 2);
    let bodies: Vec<String> = bed
        .drain_visible(&queue, 10)
        .await
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| !b.contains("o-big")));
}

#[tokio::test]
async fn on_a_standard_topic_the_tenant_travels_as_the_message_group_for_fair_queues() {
    // GIVEN a standard topic and queue, and two events, one with a tenant
    let bed = TestBed::new().await;
    let topic = bed.topic("publish-tenant").await;
    let (queue, _dlq) = bed.queue_with_dlq("publish-tenant", 5, 30).await;
    bed.subscribe(&topic, &queue, true).await;
    let publisher = Publisher::new(bed.sns.clone(), &topic);
    let events = [
        Event::from_json("order.placed", order_json("o-acme", 100)).with_tenant("acme"),
        Event::from_json("order.placed", order_json("o-none", 100)),
    ];

    // WHEN they are published
    let report = publisher.publish(&events).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // THEN the queue's messages carry the tenant as their MessageGroupId (read from SQS's
    // own system attributes), and the one without a tenant has none
    let messages = bed.drain_visible(&queue, 10).await;
    let mut groups: Vec<(String, Option<String>)> = messages
        .iter()
        .map(|m| {
            let body: serde_json::Value =
                serde_json::from_str(m.body().expect("body")).expect("the raw event");
            let group = m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                })
                .cloned();
            (
                body["order_id"].as_str().expect("order id").to_owned(),
                group,
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("o-acme".to_owned(), Some("acme".to_owned())),
            ("o-none".to_owned(), None)
        ]
    );
}
