//! Consumers discovered from the events topic (issue 14, point 2): the monitor and the
//! replay learn them from the topic's subscriptions instead of lists kept by hand.

use std::sync::Arc;

use aws_sdk_sns::types::MessageAttributeValue;
use mailroom_lambda::clock::ManualClock;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_ops::discovery::{CONSUMER_TAG, Consumer, Discovery, discover};
use mailroom_ops::monitor::{Monitor, MonitorConfig};

use crate::helpers::{Queue, TestBed, unique};

async fn tag(bed: &TestBed, queue: &Queue, consumer: &str) {
    bed.sqs
        .tag_queue()
        .queue_url(queue.url.as_str())
        .tags(CONSUMER_TAG, consumer)
        .send()
        .await
        .expect("TagQueue");
}

#[tokio::test]
async fn the_consumers_are_the_tagged_queues_on_the_topic_with_their_policies_and_dlqs() {
    let bed = TestBed::new().await;
    let topic = bed.topic("events").await;
    let (orders, orders_dlq) = bed.queue_with_dlq("orders", 5, 30).await;
    tag(&bed, &orders, "orders").await;
    let audit = bed.queue(&unique("audit"), &[]).await;
    tag(&bed, &audit, "audit-log").await;
    // Subscribed but untagged (the monitor's own queue, say): not a consumer.
    let tap = bed.queue(&unique("tap"), &[]).await;
    // Tagged but on another topic: not this application's consumer.
    let elsewhere = bed.queue(&unique("elsewhere"), &[]).await;
    tag(&bed, &elsewhere, "elsewhere").await;
    let other_topic = bed.topic("other").await;

    bed.sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(orders.arn.as_str())
        .attributes("RawMessageDelivery", "true")
        .attributes("FilterPolicy", r#"{"kind": ["order.placed"]}"#)
        .send()
        .await
        .expect("Subscribe");
    bed.subscribe(&topic, &audit, false).await;
    bed.subscribe(&topic, &tap, true).await;
    bed.subscribe(&other_topic, &elsewhere, true).await;

    let found = discover(&bed.sns, &bed.sqs, &topic)
        .await
        .expect("discovered");
    assert_eq!(
        found,
        vec![
            Consumer {
                name: "orders".into(),
                queue: orders.url.clone(),
                dlq: Some(orders_dlq.url.clone()),
                filter_policy: Some(r#"{"kind": ["order.placed"]}"#.into()),
                filters_body: false,
                raw: true,
            },
            Consumer {
                name: "audit-log".into(),
                queue: audit.url.clone(),
                dlq: None,
                filter_policy: None,
                filters_body: false,
                raw: false,
            },
        ]
    );

    // The monitor registers for both (by their policies) and watches the discovered DLQ
    // beside the ones it is given.
    let parking = bed.queue(&unique("parking"), &[]).await;
    let base = MonitorConfig {
        dlqs: vec![parking.url.clone()],
        metrics: MetricsSink::Discard,
        ..MonitorConfig::default()
    };
    let config = base.with_discovered(&found);
    let names: Vec<&str> = config.consumers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["orders", "audit-log"]);
    assert_eq!(config.dlqs, [orders_dlq.url.clone(), parking.url.clone()]);

    bed.send(&orders_dlq, "a dead letter", &[]).await;
    let ledger = bed.ledger(Arc::new(ManualClock::starting_now())).await;
    let monitor = Monitor::new(config, ledger.clone(), bed.sqs.clone(), bed.sns.clone());
    let dlqs = monitor.dlqs().await.expect("DLQ status");
    let depth = |url: &str| dlqs.iter().find(|d| d.url == url).map(|d| d.depth);
    assert_eq!(depth(orders_dlq.url.as_str()), Some(1), "{dlqs:?}");
    assert_eq!(depth(parking.url.as_str()), Some(0), "{dlqs:?}");

    // A task of another kind is registered for the audit log only, as SNS would deliver it.
    bed.sns
        .publish()
        .topic_arn(&topic)
        .message(r#"{"refund_id": "r-1"}"#)
        .message_attributes(
            "kind",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("refund.issued")
                .build()
                .expect("attribute"),
        )
        .message_attributes(
            "task_id",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("t-refund")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("Publish");
    let event = bed
        .event_source(&tap)
        .receive()
        .await
        .expect("the tap's batch");
    let response = monitor.register(event).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let story = ledger.story("t-refund").await.expect("story");
    let consumers: Vec<&str> = story
        .consumers
        .iter()
        .map(|e| e.consumer.as_str())
        .collect();
    assert_eq!(consumers, ["audit-log"], "{story:?}");
}

#[tokio::test]
async fn discovery_is_cached_and_refused_without_a_topic() {
    let bed = TestBed::new().await;
    let topic = bed.topic("events").await;
    let queue = bed.queue(&unique("late"), &[]).await;
    tag(&bed, &queue, "late").await;
    let env = mailroom_lambda::Env::from_pairs(&[
        ("MAILROOM_EVENTS_TOPIC_ARN", topic.as_str()),
        ("MAILROOM_DISCOVERY_TTL_SECS", "3600"),
    ]);
    let mut discovery = Discovery::from_env(&env, bed.sns.clone(), bed.sqs.clone())
        .expect("config")
        .expect("a topic, so discovery");
    assert!(discovery.consumers().await.expect("discovered").is_empty());
    // Subscribed after the first look: seen only when the TTL has passed.
    bed.subscribe(&topic, &queue, true).await;
    assert!(discovery.consumers().await.expect("cached").is_empty());
    let mut fresh = Discovery::from_env(&env, bed.sns.clone(), bed.sqs.clone())
        .expect("config")
        .expect("discovery");
    assert_eq!(fresh.consumers().await.expect("discovered").len(), 1);

    let none = mailroom_lambda::Env::from_pairs(&[]);
    assert!(
        Discovery::from_env(&none, bed.sns.clone(), bed.sqs.clone())
            .expect("config")
            .is_none()
    );
}
