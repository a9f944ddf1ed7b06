use std::collections::HashMap;

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use mailroom_lambda::poison::{REASON_ATTRIBUTE, SOURCE_ATTRIBUTE};
use mailroom_lambda::{Failure, Message};

use crate::helpers::{LambdaBed, TestBed, unique};
use crate::{Order, order_json};

fn attr(data_type: &str, value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("attribute")
}

#[tokio::test]
async fn poison_arrives_in_the_dlq_with_body_attributes_and_reason() {
    // GIVEN a queue with a DLQ, and three messages carrying String, Number and Binary attributes
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("poison", 5, 30).await;
    let bodies = [
        order_json("good", 10),
        order_json("zero", 0),
        "{\"order_id\": 7}".to_owned(),
    ];
    for body in &bodies {
        bed.sqs
            .send_message()
            .queue_url(queue.url.as_str())
            .message_body(body)
            .message_attributes("kind", attr("String", "order.placed"))
            .message_attributes("weight", attr("Number.float", "1.5"))
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0u8, 1, 254, 255]))
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("SendMessage");
    }

    // WHEN the engine finds a zero amount (consumer poison) and an undecodable body
    let (engine, _) = bed.engine(|_| {});
    let run = bed
        .invoke(&queue, &engine, |m: Message<Order>| async move {
            if m.payload.amount_cents == 0 {
                Err(Failure::poison("amount must be positive"))
            } else {
                Ok(())
            }
        })
        .await;
    let report = run.report;

    // THEN nothing is reported failed, the source is empty, and the DLQ holds both copies intact
    assert!(report.response.batch_item_failures.is_empty());
    assert_eq!(bed.depth(&queue).await, (0, 0));
    let dead = bed.drain_visible(&dlq, 10).await;
    assert_eq!(dead.len(), 2);
    let by_body: HashMap<&str, &aws_sdk_sqs::types::Message> =
        dead.iter().map(|m| (m.body().expect("body"), m)).collect();
    let reason = |body: &str| {
        by_body[body].message_attributes().expect("attributes")[REASON_ATTRIBUTE]
            .string_value()
            .expect("reason")
            .to_owned()
    };
    assert_eq!(reason(&bodies[1]), "amount must be positive");
    assert!(
        reason(&bodies[2]).starts_with("decode: payload does not decode"),
        "{}",
        reason(&bodies[2])
    );
    for m in &dead {
        let a = m.message_attributes().expect("attributes");
        assert_eq!(a["weight"].data_type(), "Number.float");
        assert_eq!(a["weight"].string_value(), Some("1.5"));
        assert_eq!(
            a["blob"].binary_value().map(|b| b.as_ref().to_vec()),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(a[SOURCE_ATTRIBUTE].string_value(), Some(queue.arn.as_str()));
    }
}

#[tokio::test]
async fn fifo_poison_keeps_its_group_in_the_fifo_dlq() {
    // GIVEN a FIFO queue and FIFO DLQ, and two messages in one group
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("poison.fifo", 5, 30).await;
    for (i, body) in [order_json("bad", 0), order_json("next", 5)]
        .iter()
        .enumerate()
    {
        bed.sqs
            .send_message()
            .queue_url(queue.url.as_str())
            .message_body(body)
            .message_group_id("customer-7")
            .message_deduplication_id(format!("d-{i}"))
            .send()
            .await
            .expect("SendMessage");
    }

    // WHEN the first is poison
    let (engine, _) = bed.engine(|_| {});
    let run = bed
        .invoke(&queue, &engine, |m: Message<Order>| async move {
            if m.payload.amount_cents == 0 {
                Err(Failure::poison("bad order"))
            } else {
                Ok(())
            }
        })
        .await;
    assert_eq!(run.received, 2);
    let report = run.report;

    // THEN it is in the DLQ with its group, and the next in the group was processed
    assert!(report.response.batch_item_failures.is_empty());
    let dead = bed.drain_visible(&dlq, 10).await;
    assert_eq!(dead.len(), 1);
    let sys = dead[0].attributes().expect("system attributes");
    assert_eq!(
        sys.get(&MessageSystemAttributeName::MessageGroupId)
            .map(String::as_str),
        Some("customer-7")
    );
    assert!(
        sys.get(&MessageSystemAttributeName::MessageDeduplicationId)
            .is_some_and(|d| d.starts_with("poison-")),
        "{sys:?}"
    );
    assert_eq!(bed.depth(&queue).await, (0, 0));
}

#[tokio::test]
async fn a_failed_dlq_send_leaves_the_message_in_its_queue() {
    // GIVEN a configured DLQ URL that does not exist
    let bed = TestBed::new().await;
    let queue = bed
        .queue(
            &unique("poison-nodlq"),
            &[(QueueAttributeName::VisibilityTimeout, "30".into())],
        )
        .await;
    bed.send(&queue, &order_json("zero", 0), &[]).await;
    let missing = format!("{}-missing", queue.url);
    let (engine, _) = bed.engine(|c| c.dlq_url = Some(missing.parse().expect("url")));

    // WHEN the record is poison
    let run = bed
        .invoke(&queue, &engine, |_: Message<Order>| async {
            Err(Failure::poison("bad"))
        })
        .await;
    let report = run.report;

    // THEN it is reported failed and is still in its queue: nothing lost
    assert_eq!(report.response.batch_item_failures.len(), 1);
    assert_eq!(bed.depth(&queue).await, (0, 1));
}

#[tokio::test]
async fn a_reason_with_characters_sqs_refuses_still_reaches_the_dlq() {
    // Issue 12, point 7: `HTTP 400 from …: refused \0 \uFFFE end` as a poison reason made SQS
    // refuse the DLQ send (on 6b129e9, and on the test bed's moto, which now refuses what SQS
    // refuses), so the record was retried and re-sent to the webhook until redrive.
    // GIVEN a queue with a DLQ and one message
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("hostile-reason", 5, 30).await;
    bed.send(&queue, &order_json("o-1", 10), &[]).await;

    // WHEN the consumer calls it poison with a reason quoting a webhook's answer
    let (engine, _) = bed.engine(|_| {});
    let run = bed
        .invoke(&queue, &engine, |_m: Message<Order>| async move {
            Err(Failure::poison(
                "HTTP 400 from hooks.example: refused \0 \u{FFFE} end",
            ))
        })
        .await;

    // THEN the source is empty and the DLQ, read on the emulator, holds the copy with the
    // reason, each refused character replaced by U+FFFD
    assert!(run.report.response.batch_item_failures.is_empty());
    assert_eq!(bed.depth(&queue).await, (0, 0));
    let dead = bed.drain_visible(&dlq, 10).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].message_attributes().expect("attributes")[REASON_ATTRIBUTE]
        .string_value()
        .expect("reason")
        .to_owned();
    assert_eq!(
        reason,
        "HTTP 400 from hooks.example: refused \u{FFFD} \u{FFFD} end"
    );
}
