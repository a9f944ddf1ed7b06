use mailroom_lambda::{Deadline, Failure, Message};

use crate::helpers::{LambdaBed, TestBed};
use crate::{Order, order_json};

#[tokio::test]
async fn a_message_that_keeps_failing_is_redriven_to_the_dlq_after_max_receive_count() {
    // GIVEN a queue with maxReceiveCount 2 that redelivers at once
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("redrive", 2, 0).await;
    let id = bed.send(&queue, &order_json("flaky", 1), &[]).await;
    let (engine, _) = bed.engine(|c| c.backoff = None);
    let source = bed.event_source(&queue);

    // WHEN the consumer fails it on every delivery
    let receive_counts = std::sync::Mutex::new(Vec::new());
    for _ in 0..3 {
        let event = source.receive().await.expect("receive");
        if event.records.is_empty() {
            continue;
        }
        let report = engine
            .process(event.clone(), Deadline::none(), |m: Message<Order>| {
                receive_counts.lock().expect("lock").push(m.receive_count());
                async { Err(Failure::retry("still down")) }
            })
            .await
            .expect("response");
        assert_eq!(report.failed_ids(), vec![id.as_str()]);
        source
            .complete(&event, Ok::<_, String>(&report.response))
            .await
            .expect("complete");
    }

    // THEN it was delivered twice, then SQS moved it to the DLQ
    assert_eq!(receive_counts.into_inner().expect("lock"), vec![1, 2]);
    assert_eq!(bed.depth(&queue).await, (0, 0));
    let dead = bed.drain_visible(&dlq, 10).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some(order_json("flaky", 1).as_str()));
}
