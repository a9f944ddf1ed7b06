use std::sync::Mutex;

use aws_sdk_sns::types::MessageAttributeValue;
use mailroom_lambda::{Deadline, Failure, Message};

use crate::helpers::{LambdaBed, TestBed, unique};
use crate::{Order, order_json};

#[tokio::test]
async fn sns_fans_out_to_a_raw_and_an_enveloped_queue_with_a_filter_policy() {
    // GIVEN a topic with two subscriptions: raw delivery to one queue, and enveloped delivery
    // with a filter policy (kind = order.placed) to the other
    let bed = TestBed::new().await;
    let topic = bed
        .sns
        .create_topic()
        .name(unique("events"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("arn");
    let raw = bed.queue(&unique("raw"), &[]).await;
    let enveloped = bed.queue(&unique("enveloped"), &[]).await;
    bed.sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(raw.arn.as_str())
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("Subscribe raw");
    bed.sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(enveloped.arn.as_str())
        .attributes("FilterPolicy", r#"{"kind":["order.placed"]}"#)
        .send()
        .await
        .expect("Subscribe enveloped");

    // WHEN three events are published, one of another kind
    let string = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("attribute")
    };
    let mut published = Vec::new();
    for (id, kind) in [
        ("o-1", "order.placed"),
        ("o-2", "order.cancelled"),
        ("o-3", "order.placed"),
    ] {
        let out = bed
            .sns
            .publish()
            .topic_arn(&topic)
            .message(order_json(id, 100))
            .message_attributes("kind", string(kind))
            .message_attributes("task_id", string(&format!("task-{id}")))
            .send()
            .await
            .expect("Publish");
        published.push((id, out.message_id.expect("message id")));
    }

    // THEN the raw queue has all three and the enveloped queue only the two placed orders,
    // and the engine decodes both forms into the same payload with their attributes
    let (engine, _) = bed.engine(|c| {
        c.task_id = "attribute:task_id".parse().expect("source");
    });
    let seen = Mutex::new(Vec::new());
    let consume = |m: Message<Order>| {
        seen.lock().expect("lock").push((
            m.payload.order_id.clone(),
            m.is_enveloped(),
            m.string_attribute("kind").map(str::to_owned),
            m.task_id().map(str::to_owned),
            m.sns_message_id().map(str::to_owned),
        ));
        async { Ok::<(), Failure>(()) }
    };
    for queue in [&raw, &enveloped] {
        let source = bed.event_source(queue);
        let event = source.receive().await.expect("receive");
        let report = engine
            .process(event.clone(), Deadline::none(), consume)
            .await
            .expect("response");
        source
            .complete(&event, Ok::<_, String>(&report.response))
            .await
            .expect("complete");
    }
    let mut seen = seen.into_inner().expect("lock");
    seen.sort();
    let raw_seen: Vec<_> = seen.iter().filter(|s| !s.1).collect();
    let env_seen: Vec<_> = seen.iter().filter(|s| s.1).collect();
    assert_eq!(raw_seen.len(), 3, "raw delivery gets every event: {seen:?}");
    assert_eq!(
        env_seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        vec!["o-1", "o-3"],
        "the filter policy drops order.cancelled"
    );
    assert!(
        seen.iter().all(|s| s.3 == Some(format!("task-{}", s.0))),
        "task id from either layer"
    );
    assert_eq!(
        raw_seen[1].2.as_deref(),
        Some("order.cancelled"),
        "SQS-layer attribute"
    );
    assert_eq!(
        env_seen[0].2.as_deref(),
        Some("order.placed"),
        "SNS-layer attribute"
    );
    let sns_id_of_o1 = &published[0].1;
    assert_eq!(
        env_seen[0].4.as_ref(),
        Some(sns_id_of_o1),
        "SNS MessageId from the envelope"
    );
    assert!(
        raw_seen.iter().all(|s| s.4.is_none()),
        "raw bodies carry no SNS envelope"
    );
    assert_eq!(bed.depth(&raw).await, (0, 0), "successes deleted");
    assert_eq!(bed.depth(&enveloped).await, (0, 0), "successes deleted");
}
