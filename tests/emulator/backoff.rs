use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::{Failure, Message, Outcome};

use crate::helpers::{LambdaBed, TestBed, unique};
use crate::{Order, order_ids, order_json};

#[tokio::test]
async fn retry_backoff_is_visible_as_changed_visibility() {
    // GIVEN a queue that redelivers after one second, and three messages
    let bed = TestBed::new().await;
    let queue = bed
        .queue(
            &unique("backoff"),
            &[(QueueAttributeName::VisibilityTimeout, "1".into())],
        )
        .await;
    for (id, amount) in [("later", 1), ("now", 2), ("policy", 3)] {
        bed.send(&queue, &order_json(id, amount), &[]).await;
    }

    // WHEN one is retried after 10 minutes, one without backoff, one with the exponential
    // policy (base 5 minutes, so at most 300 s on a first delivery)
    let (engine, _) = bed.engine(|c| {
        c.backoff = Some(mailroom_lambda::backoff::BackoffPolicy::new(
            Duration::from_secs(300),
            Duration::from_secs(900),
        ));
    });
    let run = bed
        .invoke(&queue, &engine, |m: Message<Order>| async move {
            match m.payload.order_id.as_str() {
                "later" => Err(Failure::retry_after(
                    "rate limited",
                    Duration::from_secs(600),
                )),
                "now" => Err(Failure::retry("flaky").without_backoff()),
                _ => Err(Failure::retry("busy")),
            }
        })
        .await;
    let report = run.report;

    // THEN after the queue's own timeout only the un-backed-off message is visible again, and the
    // policy's delay is whatever the engine reported for it
    let policy_delay = report
        .records
        .iter()
        .find_map(|r| match &r.outcome {
            Outcome::Failed {
                reason,
                visibility_secs,
                ..
            } if reason == "busy" => *visibility_secs,
            _ => None,
        })
        .expect("policy delay reported");
    assert!(policy_delay <= 300);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let back: Vec<String> = order_ids(&bed.drain_visible(&queue, 10).await);
    let mut expected = vec!["now".to_owned()];
    if policy_delay <= 1 {
        expected.push("policy".to_owned());
    }
    assert_eq!(back, expected, "'later' stays hidden for 600 s");
}
