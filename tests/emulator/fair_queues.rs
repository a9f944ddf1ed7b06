//! The test bed's emulation of SQS fair queues (moto has none): while one tenant (message
//! group) holds a disproportionate share of a standard queue's in-flight messages, a receive
//! returns quiet tenants' messages first. Locally the noisy threshold is 5 in flight (AWS's
//! is 30, for fleets of consumers); the share is AWS's, over 10%.

use crate::helpers::{TestBed, unique};

async fn send(bed: &TestBed, queue: &str, group: &str, n: usize) {
    for i in 0..n {
        bed.sqs
            .send_message()
            .queue_url(queue)
            .message_body(format!("{group}-{i}"))
            .message_group_id(group)
            .send()
            .await
            .expect("SendMessage with a group on a standard queue");
    }
}

async fn receive(bed: &TestBed, queue: &str, n: i32) -> Vec<String> {
    bed.sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(n)
        .visibility_timeout(60)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages()
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect()
}

async fn noisy_then_quiet(bed: &TestBed, fair: bool) -> (Vec<String>, Vec<String>) {
    let queue = bed.queue(&unique("fair"), &[]).await;
    let url = queue.url.as_str();
    if !fair {
        bed.sqs
            .tag_queue()
            .queue_url(url)
            .tags("mailroom:fair-queues", "off")
            .send()
            .await
            .expect("TagQueue");
    }
    // A burst from one tenant, then three messages from another.
    send(bed, url, "noisy", 30).await;
    send(bed, url, "quiet", 3).await;
    let first = receive(bed, url, 10).await;
    let second = receive(bed, url, 10).await;
    (first, second)
}

#[tokio::test]
async fn quiet_tenants_come_first_while_a_noisy_one_holds_the_in_flight_share() {
    let bed = TestBed::new().await;

    // WHEN ten of the burst are in flight (the noisy tenant holds all of them) and the
    // consumer asks for ten more
    let (first, second) = noisy_then_quiet(&bed, true).await;

    // THEN the first receive, with nothing in flight, is in order; the second returns the
    // quiet tenant's three first, then the burst where it left off
    assert!(first.iter().all(|b| b.starts_with("noisy-")), "{first:?}");
    assert_eq!(second[..3], ["quiet-0", "quiet-1", "quiet-2"], "{second:?}");
    assert_eq!(second[3], "noisy-10", "{second:?}");

    // AND a queue tagged off keeps moto's plain order: the quiet tenant waits behind the burst
    let (_, plain) = noisy_then_quiet(&bed, false).await;
    assert!(plain.iter().all(|b| b.starts_with("noisy-")), "{plain:?}");
}

#[tokio::test]
async fn a_tenant_below_the_threshold_is_not_noisy() {
    // GIVEN four of one tenant in flight (under 5), then another tenant's message behind more
    let bed = TestBed::new().await;
    let queue = bed.queue(&unique("fair-small"), &[]).await;
    let url = queue.url.as_str();
    send(&bed, url, "a", 6).await;
    send(&bed, url, "b", 1).await;
    let first = receive(&bed, url, 4).await;
    assert_eq!(first.len(), 4);

    // WHEN the consumer receives again
    let next = receive(&bed, url, 1).await;

    // THEN the order is the queue's own
    assert_eq!(next, ["a-4"]);
}
