use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::{Failure, Message};
use mailroom_local::Completion;

use crate::helpers::{LambdaBed, TestBed, unique};
use crate::{Order, order_ids, order_json};

#[tokio::test]
async fn only_the_records_the_response_does_not_list_are_deleted() {
    // GIVEN six messages on a queue with a one-second visibility timeout
    let bed = TestBed::new().await;
    let queue = bed
        .queue(
            &unique("poller"),
            &[(QueueAttributeName::VisibilityTimeout, "1".into())],
        )
        .await;
    for i in 0..6 {
        bed.send(&queue, &order_json(&format!("o-{i}"), i), &[])
            .await;
    }

    // WHEN the engine fails the odd orders, leaving visibility to the queue
    let (engine, _) = bed.engine(|c| c.backoff = None);
    let run = bed
        .invoke(&queue, &engine, |m: Message<Order>| async move {
            if m.payload.amount_cents % 2 == 1 {
                Err(Failure::retry("odd"))
            } else {
                Ok(())
            }
        })
        .await;
    assert_eq!(run.received, 6);

    // THEN three were deleted and exactly the three failed ones come back
    assert_eq!(
        run.completion,
        Completion::Deleted {
            deleted: 3,
            failed: 3
        }
    );
    assert_eq!(bed.depth(&queue).await, (0, 3));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let back: HashSet<String> = order_ids(&bed.drain_visible(&queue, 10).await)
        .into_iter()
        .collect();
    assert_eq!(
        back,
        HashSet::from(["o-1".into(), "o-3".into(), "o-5".into()])
    );
}

#[tokio::test]
async fn a_function_error_or_an_unknown_item_identifier_deletes_nothing() {
    // GIVEN two messages received in one batch
    let bed = TestBed::new().await;
    let queue = bed.queue(&unique("poller-rules"), &[]).await;
    bed.send(&queue, &order_json("o-1", 1), &[]).await;
    bed.send(&queue, &order_json("o-2", 2), &[]).await;
    let source = bed.event_source(&queue);
    let event = source.receive().await.expect("receive");

    // WHEN the response names an id that is not in the batch, or the function errs
    let mut bogus = mailroom_lambda::SqsBatchResponse::default();
    bogus.add_failure("not-in-this-batch");
    let unknown = source
        .complete(&event, Ok::<_, String>(&bogus))
        .await
        .expect("complete");
    let errored = source
        .complete(
            &event,
            Err::<&mailroom_lambda::SqsBatchResponse, _>("handler crashed"),
        )
        .await
        .expect("complete");

    // THEN Lambda's rule applies: the whole batch failed, nothing deleted
    assert!(matches!(unknown, Completion::BatchFailed(r) if r.contains("invalid itemIdentifier")));
    assert!(matches!(errored, Completion::BatchFailed(_)));
    assert_eq!(bed.depth(&queue).await, (0, 2));
}
