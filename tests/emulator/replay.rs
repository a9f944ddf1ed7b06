//! DLQ replay against the emulator: fidelity, FIFO, filters, dry run, parking, the allowlist,
//! and a send or a receive failing midway without losing anything.

use std::collections::HashSet;

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use mailroom_lambda::SqsQueues;
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_ops::replay::Instrumented;
use mailroom_ops::replay::{
    Allowlist, Filter, LedgerMark, REPLAY_COUNT_ATTRIBUTE, ReplayError, ReplayRequest, replay,
};

use crate::helpers::{Queue, TestBed, unique};

fn text(data_type: &str, value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .expect("attribute")
}

/// Puts a message straight into the DLQ, as redrive or the engine would have.
async fn dead_letter(bed: &TestBed, dlq: &Queue, body: &str, reason: &str, group: Option<&str>) {
    let mut req = bed
        .sqs
        .send_message()
        .queue_url(dlq.url.as_str())
        .message_body(body)
        .message_attributes("kind", text("String", "order.placed"))
        .message_attributes("weight", text("Number.float", "1.5"))
        .message_attributes("tenant", text("String.custom", "acme"))
        .message_attributes(
            "blob",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(Blob::new(vec![0u8, 7, 255]))
                .build()
                .expect("attribute"),
        )
        .message_attributes(REASON_ATTRIBUTE, text("String", reason));
    if let Some(g) = group {
        req = req
            .message_group_id(g)
            .message_deduplication_id(format!("d-{body}"));
    }
    req.send().await.expect("SendMessage");
}

/// `n` dead letters `m-00`, `m-01`, …; returns their bodies.
async fn dead_letters(bed: &TestBed, dlq: &Queue, n: usize) -> HashSet<String> {
    let all: HashSet<String> = (0..n).map(|i| format!("m-{i:02}")).collect();
    for body in &all {
        dead_letter(bed, dlq, body, "r", None).await;
    }
    all
}

/// A dead letter already replayed three times (the default maximum).
async fn replayed_three_times(bed: &TestBed, dlq: &Queue, body: &str) {
    bed.sqs
        .send_message()
        .queue_url(dlq.url.as_str())
        .message_body(body)
        .message_attributes(REPLAY_COUNT_ATTRIBUTE, text("Number", "3"))
        .send()
        .await
        .expect("SendMessage");
}

fn allow(queues: &[&Queue]) -> Allowlist {
    Allowlist::new(queues.iter().map(|q| q.url.as_str().to_owned()))
}

fn bodies(messages: &[aws_sdk_sqs::types::Message]) -> HashSet<String> {
    messages
        .iter()
        .map(|m| m.body().expect("body").to_owned())
        .collect()
}

#[tokio::test]
async fn replay_moves_every_attribute_type_back_to_the_source_queue() {
    // GIVEN a DLQ holding an SNS envelope and a raw body, with String, Number, custom and Binary attributes
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay", 3, 30).await;
    let envelope = r#"{"Type":"Notification","MessageId":"s-1","TopicArn":"arn:aws:sns:us-east-1:123456789012:t","Message":"{\"order_id\":\"o-1\"}"}"#;
    dead_letter(&bed, &dlq, envelope, "decode: x", None).await;
    dead_letter(
        &bed,
        &dlq,
        r#"{"order_id":"o-2"}"#,
        "amount must be positive",
        None,
    )
    .await;

    // WHEN replayed with no target named (it is found with ListDeadLetterSourceQueues)
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(
        &port,
        &allow(&[&queue, &dlq]),
        &ReplayRequest::new(dlq.url.clone()),
    )
    .await
    .expect("replay");

    // THEN both are back, byte for byte, with every attribute and a replay count, and the DLQ is empty
    assert_eq!(
        (report.moved, report.failed, report.skipped),
        (2, 0, 0),
        "{report:?}"
    );
    assert_eq!(bed.depth(&dlq).await, (0, 0));
    let back = bed.drain_visible(&queue, 10).await;
    assert_eq!(
        bodies(&back),
        HashSet::from([envelope.to_owned(), r#"{"order_id":"o-2"}"#.to_owned()])
    );
    for m in &back {
        let a = m.message_attributes().expect("attributes");
        assert_eq!(a["weight"].data_type(), "Number.float");
        assert_eq!(a["tenant"].data_type(), "String.custom");
        assert_eq!(
            a["blob"].binary_value().map(|b| b.as_ref().to_vec()),
            Some(vec![0, 7, 255])
        );
        assert_eq!(a[REPLAY_COUNT_ATTRIBUTE].string_value(), Some("1"));
        assert!(a.contains_key(REASON_ATTRIBUTE), "the reason history stays");
    }
}

#[tokio::test]
async fn fifo_replay_keeps_message_groups() {
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay.fifo", 3, 30).await;
    dead_letter(&bed, &dlq, "a-1", "x", Some("customer-a")).await;
    dead_letter(&bed, &dlq, "b-1", "x", Some("customer-b")).await;
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(
        &port,
        &allow(&[&queue, &dlq]),
        &ReplayRequest::new(dlq.url.clone()),
    )
    .await
    .expect("replay");
    assert_eq!(report.moved, 2, "{report:?}");
    let back = bed.drain_visible(&queue, 10).await;
    assert_eq!(back.len(), 2);
    for m in &back {
        let group = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId));
        let expected = if m.body() == Some("a-1") {
            "customer-a"
        } else {
            "customer-b"
        };
        assert_eq!(group.map(String::as_str), Some(expected));
    }
}

#[tokio::test]
async fn a_filtered_dry_run_reports_and_changes_nothing() {
    // GIVEN three dead letters with two reasons
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-dry", 3, 30).await;
    for (body, reason) in [
        ("d-1", "decode: bad"),
        ("d-2", "decode: bad"),
        ("t-1", "timeout"),
    ] {
        dead_letter(&bed, &dlq, body, reason, None).await;
    }

    // WHEN a dry run selects the decode failures
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.dry_run = true;
    request.filter = Filter {
        reason_contains: Some("decode".into()),
        ..Filter::default()
    };
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(&port, &allow(&[&queue, &dlq]), &request)
        .await
        .expect("replay");

    // THEN it reports two by reason with samples, and every message is visible in the DLQ again
    assert_eq!(
        (report.would_move, report.skipped, report.moved),
        (2, 1, 0),
        "{report:?}"
    );
    assert_eq!(report.by_reason.get("decode: bad"), Some(&2));
    assert_eq!(report.samples.len(), 2);
    assert_eq!(bed.depth(&dlq).await, (3, 0));
    assert_eq!(bed.depth(&queue).await, (0, 0));
}

#[tokio::test]
async fn a_message_over_max_replays_goes_to_the_parking_lot() {
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-park", 3, 30).await;
    let parking = bed.queue(&unique("parking"), &[]).await;
    replayed_three_times(&bed, &dlq, "tired").await;
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.parking_lot = Some(parking.url.clone());
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(&port, &allow(&[&queue, &dlq, &parking]), &request)
        .await
        .expect("replay");
    assert_eq!((report.moved, report.parked), (0, 1), "{report:?}");
    let parked = bed.drain_visible(&parking, 10).await;
    assert_eq!(bodies(&parked), HashSet::from(["tired".to_owned()]));
    assert!(
        parked[0]
            .message_attributes()
            .expect("attributes")
            .contains_key(mailroom_ops::replay::PARKED_ATTRIBUTE)
    );
    assert_eq!(bed.depth(&queue).await, (0, 0));
}

#[tokio::test]
async fn queues_off_the_allowlist_are_refused_before_anything_moves() {
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-deny", 3, 30).await;
    dead_letter(&bed, &dlq, "x", "r", None).await;
    let port = SqsQueues::new(bed.sqs.clone());
    let err = replay(&port, &allow(&[&dlq]), &ReplayRequest::new(dlq.url.clone()))
        .await
        .expect_err("target not allowed");
    assert!(matches!(err, ReplayError::NotAllowed(u) if u == queue.url));
    assert_eq!(bed.depth(&dlq).await, (1, 0));
}

#[tokio::test]
async fn a_send_failing_midway_loses_nothing_and_a_rerun_finishes_the_job() {
    // GIVEN 25 dead letters, and a port whose second send batch fails
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-fault", 3, 30).await;
    let all = dead_letters(&bed, &dlq, 25).await;
    let port = Instrumented::new(SqsQueues::new(bed.sqs.clone())).failing_send_batch(2);
    let allowed = allow(&[&queue, &dlq]);

    // WHEN a run meets the fault
    let first = replay(&port, &allowed, &ReplayRequest::new(dlq.url.clone()))
        .await
        .expect("replay");

    // THEN the failed batch is reported, visible in the DLQ again, and every message is
    // somewhere (how many the failed batch held depends on what its receive returned, and
    // which batch is second on which pipeline: SQS returns up to ten, not always ten)
    assert_eq!(first.moved + first.failed, 25, "{first:?}");
    assert!((1..=10).contains(&first.failed), "{first:?}");
    assert_eq!(bed.depth(&dlq).await, (first.failed as u64, 0));
    assert_eq!(bed.depth(&queue).await, (first.moved as u64, 0));

    // AND a re-run moves the rest: all 25 are in the target, none lost, none left behind
    let second = replay(&port, &allowed, &ReplayRequest::new(dlq.url.clone()))
        .await
        .expect("replay");
    assert_eq!(
        (second.moved, second.failed),
        (first.failed, 0),
        "{second:?}"
    );
    assert_eq!(bed.depth(&dlq).await, (0, 0));
    assert_eq!(bodies(&bed.drain_visible(&queue, 30).await), all);
}

#[tokio::test]
async fn a_receive_failing_midway_ends_the_run_with_its_report_and_loses_nothing() {
    // GIVEN 35 dead letters, and a port whose third receive fails (the second batch is received
    // while the first is sent, the third while the second is)
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-rfault", 3, 30).await;
    let all = dead_letters(&bed, &dlq, 35).await;
    let allowed = allow(&[&queue, &dlq]);
    let port = Instrumented::new(SqsQueues::new(bed.sqs.clone())).failing_receive(3);
    // One pipeline: the sequence of receives above is one pipeline's.
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.pipelines = 1;

    // WHEN a run meets the fault
    let first = replay(&port, &allowed, &request)
        .await
        .expect("a report, not an error: two batches had moved");

    // THEN the report says what moved and why it stopped, and the rest is visible in the DLQ
    assert_eq!(first.moved, 20, "{first:?}");
    assert!(
        first
            .stopped_by_error
            .as_deref()
            .is_some_and(|e| e.contains("injected fault")),
        "{first:?}"
    );
    assert_eq!(bed.depth(&dlq).await, (15, 0));
    assert_eq!(bed.depth(&queue).await, (20, 0));

    // AND a re-run moves the rest
    let second = replay(&port, &allowed, &ReplayRequest::new(dlq.url.clone()))
        .await
        .expect("replay");
    assert_eq!((second.moved, second.stopped_by_error), (15, None));
    assert_eq!(bodies(&bed.drain_visible(&queue, 40).await), all);

    // AND a failure of the very first receive is an error: nothing was looked at
    let port = Instrumented::new(SqsQueues::new(bed.sqs.clone())).failing_receive(1);
    let refused = replay(&port, &allowed, &ReplayRequest::new(dlq.url.clone())).await;
    assert!(matches!(refused, Err(ReplayError::Sqs(_))), "{refused:?}");
}

#[tokio::test]
async fn pipelines_at_once_move_everything_once_and_a_failing_one_loses_nothing() {
    // GIVEN 200 dead letters, and a port whose fifth receive fails (in one of four pipelines)
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-pipes", 3, 30).await;
    let all = dead_letters(&bed, &dlq, 200).await;
    let allowed = allow(&[&queue, &dlq]);
    let port = Instrumented::new(SqsQueues::new(bed.sqs.clone())).failing_receive(5);
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.pipelines = 4;

    // WHEN a run meets the fault
    let first = replay(&port, &allowed, &request)
        .await
        .expect("a report: other pipelines had moved messages");

    // THEN the report adds up the pipelines, says why one stopped, and every message is in
    // exactly one of the two queues
    assert!(first.stopped_by_error.is_some(), "{first:?}");
    assert!(first.moved > 0, "{first:?}");
    assert_eq!(first.examined, first.moved, "{first:?}");
    assert_eq!(
        bed.depth(&queue).await,
        (u64::try_from(first.moved).expect("fits"), 0)
    );
    assert_eq!(
        bed.depth(&dlq).await.0,
        200 - u64::try_from(first.moved).expect("fits")
    );

    // AND a re-run with four pipelines moves the rest, each message once
    let second = replay(&port, &allowed, &request).await.expect("replay");
    assert_eq!(second.stopped_by_error, None, "{second:?}");
    assert_eq!(first.moved + second.moved, 200, "{second:?}");
    assert_eq!(second.duplicated, 0);
    assert_eq!(bed.depth(&dlq).await, (0, 0));
    let back = bed.drain_visible(&queue, 250).await;
    assert_eq!(back.len(), 200, "each message back once");
    assert_eq!(bodies(&back), all);
}

#[tokio::test]
async fn a_run_stopped_by_its_budget_puts_back_the_batch_it_received_ahead() {
    // GIVEN 30 dead letters and a run limited to 10 messages a second with a 0.5 s budget
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-budget", 3, 30).await;
    dead_letters(&bed, &dlq, 30).await;
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.rate_per_sec = Some(10.0);
    request.time_budget = Some(std::time::Duration::from_millis(500));
    request.pipelines = 1;

    // WHEN it runs: the first batch's send waits for the rate until 1 s, while the next batch
    // is received ahead
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(&port, &allow(&[&queue, &dlq]), &request)
        .await
        .expect("replay");

    // THEN it stops at the budget having moved one batch, and the batch received ahead was
    // neither counted nor left hidden: all 20 are visible in the DLQ at once
    assert!(report.stopped_by_budget, "{report:?}");
    assert_eq!((report.moved, report.examined), (10, 10), "{report:?}");
    assert_eq!(bed.depth(&dlq).await, (20, 0));
    assert_eq!(bed.depth(&queue).await, (10, 0));
}

#[tokio::test]
async fn replay_marks_the_ledger_replayed_and_parked_with_the_reason() {
    // GIVEN two dead-lettered tasks in the ledger and their enveloped messages in the DLQ,
    // one already replayed to the maximum
    let bed = TestBed::new().await;
    let ledger = bed
        .ledger(std::sync::Arc::new(mailroom_lambda::clock::SystemClock))
        .await;
    let (queue, dlq) = bed.queue_with_dlq("replay-ledger", 3, 30).await;
    let parking = bed.queue(&unique("parking"), &[]).await;
    for task in ["task-back", "task-tired"] {
        ledger
            .dead_letter(task, "billing", "amount must be positive", None)
            .await
            .expect("ledger");
    }
    bed.send(&dlq, &crate::helpers::envelope("task-back", "{}"), &[])
        .await;
    replayed_three_times(&bed, &dlq, &crate::helpers::envelope("task-tired", "{}")).await;

    // WHEN replay runs with the ledger mark
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.parking_lot = Some(parking.url.clone());
    request.ledger = Some(LedgerMark {
        ledger: ledger.clone(),
        consumer: "billing".into(),
        task_id: mailroom_lambda::message::TaskIdSource::default(),
    });
    let port = SqsQueues::new(bed.sqs.clone());
    let report = replay(&port, &allow(&[&queue, &dlq, &parking]), &request)
        .await
        .expect("replay");

    // THEN the moved task is REPLAYED (still open: its consumer must finish it) and the parked
    // one PARKED with replay's reason (closed: the parking lot's depth check watches it)
    assert_eq!((report.moved, report.parked), (1, 1), "{report:?}");
    let back = ledger
        .get("task-back", "billing")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(back.state, mailroom_lambda::ledger::State::Replayed);
    let tired = ledger
        .get("task-tired", "billing")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(tired.state, mailroom_lambda::ledger::State::Parked);
    assert_eq!(
        tired.last_error.as_deref(),
        Some("replayed 3 times, the maximum is 3")
    );
}

#[tokio::test]
async fn a_receive_whose_answer_was_lost_hides_its_batch_only_for_the_hold() {
    // GIVEN 30 dead letters, and a proxy that drops the answer of the first ReceiveMessage
    // after SQS acted on it (its ten messages are now hidden, and no report can know)
    let bed = TestBed::new().await;
    let (queue, dlq) = bed.queue_with_dlq("replay-lost", 3, 30).await;
    let all = dead_letters(&bed, &dlq, 30).await;
    let proxy = mailroom_local::faults::FaultyEndpoint::start(
        crate::helpers::endpoint(),
        mailroom_local::faults::FaultPlan::only(mailroom_local::faults::FaultKind::ResetAfter, 1),
        7,
    )
    .await
    .expect("proxy");
    let sqs = aws_sdk_sqs::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await);
    let port = SqsQueues::new(sqs);
    let mut request = ReplayRequest::new(dlq.url.clone());
    request.target = Some(queue.url.clone());
    // One pipeline, so the first receive is the one that takes a batch. With eight, the receive
    // whose answer the proxy dropped could reach moto after the others had taken all 30 and
    // lose an empty answer (a CI run moved all 30 at once).
    request.pipelines = 1;
    // Long enough that the run ends (its last, empty receive waits a second) before the lost
    // batch shows again, on a loaded 2-core machine too.
    let hold = std::time::Duration::from_secs(4);
    request.hold = Some(hold);
    let allowed = allow(&[&queue, &dlq]);

    // WHEN a run meets it (the SDK's retry of the receive gets the next batch)
    let started = std::time::Instant::now();
    let first = replay(&port, &allowed, &request).await.expect("replay");

    // THEN the run moved the rest and ended clean, the lost batch in flight in the DLQ
    assert_eq!(proxy.counts().snapshot().3, 1, "one answer lost");
    assert_eq!(
        (first.moved, first.stopped_by_error.as_deref()),
        (20, None),
        "{first:?}"
    );
    assert_eq!(bed.depth(&dlq).await, (0, 10));

    // AND after the hold, the same request moves them: none lost
    tokio::time::sleep(
        (hold + std::time::Duration::from_millis(500)).saturating_sub(started.elapsed()),
    )
    .await;
    let second = replay(&port, &allowed, &request).await.expect("replay");
    assert_eq!(second.moved, 10, "{second:?}");
    assert_eq!(bed.depth(&dlq).await, (0, 0));
    assert_eq!(bodies(&bed.drain_visible(&queue, 40).await), all);
}
