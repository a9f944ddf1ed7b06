//! Idempotency: the engine with a ledger table in the emulator's DynamoDB.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mailroom_lambda::clock::{Clock, ManualClock, SystemClock};
use mailroom_lambda::ledger::{Lease, State};
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::{Cause, Failure, Message, Outcome};

use crate::helpers::{LambdaBed, TestBed, envelope};
use crate::{Order, order_json};

fn metric(metrics: &[serde_json::Value], name: &str) -> f64 {
    metrics
        .iter()
        .map(|m| m[name].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test]
async fn a_duplicate_delivery_is_processed_once() {
    // GIVEN a guarded consumer, and SNS delivering one task twice (two SQS messages, one
    // SNS MessageId) plus a second task
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let (queue, _dlq) = bed.queue_with_dlq("dup", 5, 30).await;
    let (engine, metrics) = bed.engine(|c| c.consumer = "billing".into());
    let engine = engine.with_ledger(ledger.clone());
    for (task, order) in [("task-a", "o-1"), ("task-a", "o-1"), ("task-b", "o-2")] {
        bed.send(&queue, &envelope(task, &order_json(order, 100)), &[])
            .await;
    }
    let effects = AtomicU32::new(0);
    let handler = |_: Message<Order>| {
        effects.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), Failure>(()) }
    };

    // WHEN the batch runs, and whatever it hands back is delivered again
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let run = bed.invoke(&queue, &engine, handler).await;
        outcomes.extend(run.report.records.iter().map(|r| r.outcome.clone()));
        if run.report.response.batch_item_failures.is_empty() {
            break;
        }
        // The held duplicate comes back after its backoff; skip the wait.
        bed.make_visible(&queue, &run).await;
    }

    // THEN each task had one side effect, the duplicate was skipped or held (never run
    // twice), and the ledger says SUCCEEDED after one attempt
    assert_eq!(effects.load(Ordering::SeqCst), 2);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Succeeded)
            .count(),
        2
    );
    assert!(
        outcomes.iter().any(|o| *o == Outcome::Duplicate
            || matches!(
                o,
                Outcome::Failed {
                    cause: Cause::LeaseHeld,
                    ..
                }
            )),
        "{outcomes:?}"
    );
    for task in ["task-a", "task-b"] {
        let e = ledger
            .get(task, "billing")
            .await
            .expect("ledger call")
            .expect("recorded");
        assert_eq!((e.state, e.attempts), (State::Succeeded, 1), "{task}");
    }
    assert_eq!(bed.depth(&queue).await, (0, 0), "nothing left behind");

    // AND a later redelivery of a done task is a duplicate, counted in the metrics
    bed.send(&queue, &envelope("task-b", &order_json("o-2", 100)), &[])
        .await;
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(run.report.records[0].outcome, Outcome::Duplicate);
    assert!(run.report.response.batch_item_failures.is_empty());
    assert_eq!(effects.load(Ordering::SeqCst), 2);
    let metrics = metrics.lock().expect("lock");
    assert!(metric(&metrics, "Duplicates") >= 1.0, "{metrics:?}");
}

#[tokio::test]
async fn a_lease_held_by_a_dead_invocation_expires_at_its_deadline() {
    // GIVEN an invocation that took the lease on task-t until its deadline 30 s away, then died
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let deadline = clock.now_ms() + 30_000;
    let lease = ledger
        .acquire("task-t", "billing", "dead-invocation", deadline, None)
        .await
        .expect("ledger call");
    assert_eq!(lease, Lease::Acquired { attempt: 1 });
    let (queue, _dlq) = bed.queue_with_dlq("lease", 5, 30).await;
    let (engine, _) = bed.engine(|c| c.consumer = "billing".into());
    let engine = engine.with_ledger(ledger.clone());
    let effects = AtomicU32::new(0);
    let handler = |_: Message<Order>| {
        effects.fetch_add(1, Ordering::SeqCst);
        async { Ok::<(), Failure>(()) }
    };
    bed.send(&queue, &envelope("task-t", &order_json("o-t", 1)), &[])
        .await;

    // WHEN the message comes back before the deadline
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN it is not run, and comes back when the lease runs out
    let Outcome::Failed {
        cause: Cause::LeaseHeld,
        visibility_secs,
        ..
    } = &run.report.records[0].outcome
    else {
        panic!("{:?}", run.report.records[0].outcome)
    };
    assert_eq!(*visibility_secs, Some(30));
    assert_eq!(effects.load(Ordering::SeqCst), 0);

    // WHEN the clock passes the dead invocation's deadline and the message comes back
    clock.advance(Duration::from_secs(31));
    bed.make_visible(&queue, &run).await;
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN it runs, as the second attempt, and succeeds
    assert_eq!(run.report.records[0].outcome, Outcome::Succeeded);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    let e = ledger
        .get("task-t", "billing")
        .await
        .expect("ledger call")
        .expect("recorded");
    assert_eq!(
        (e.state, e.attempts, e.lease_until_ms),
        (State::Succeeded, 2, None)
    );
}

#[tokio::test]
async fn the_engine_records_failure_poison_and_success_with_their_reasons() {
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let (queue, dlq) = bed.queue_with_dlq("states", 5, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = "billing".into();
        c.backoff = None;
    });
    let engine = engine.with_ledger(ledger.clone());
    bed.send(&queue, &envelope("task-retry", &order_json("o-r", 1)), &[])
        .await;
    bed.send(&queue, &envelope("task-poison", &order_json("o-p", 0)), &[])
        .await;
    bed.send(&queue, &envelope("task-garbled", "not json"), &[])
        .await;
    let fail_first = AtomicU32::new(0);
    let handler = |m: Message<Order>| {
        let first = m.payload.order_id == "o-r" && fail_first.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            match m.payload.amount_cents {
                0 => Err(Failure::poison("amount must be positive")),
                _ if first => Err(Failure::retry("payments API 503")),
                _ => Ok(()),
            }
        }
    };

    // WHEN the batch runs once
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN the retry is FAILED with its error, the poison DEAD_LETTERED with its reason
    // (decode failures too), and both poison records are in the DLQ
    let get = |t: &'static str| {
        let ledger = ledger.clone();
        async move {
            ledger
                .get(t, "billing")
                .await
                .expect("ledger call")
                .expect(t)
        }
    };
    let retry = get("task-retry").await;
    assert_eq!(retry.state, State::Failed);
    assert_eq!(retry.last_error.as_deref(), Some("payments API 503"));
    let poison = get("task-poison").await;
    assert_eq!(poison.state, State::DeadLettered);
    assert_eq!(
        poison.last_error.as_deref(),
        Some("amount must be positive")
    );
    let garbled = get("task-garbled").await;
    assert_eq!(garbled.state, State::DeadLettered);
    assert!(garbled.last_error.expect("reason").starts_with("decode:"));
    assert_eq!(bed.drain_visible(&dlq, 10).await.len(), 2);

    // WHEN the failed record comes back
    bed.make_visible(&queue, &run).await;
    bed.invoke(&queue, &engine, handler).await;

    // THEN it succeeded on its second attempt, and the last error is kept for the record
    let retry = get("task-retry").await;
    assert_eq!((retry.state, retry.attempts), (State::Succeeded, 2));
    assert_eq!(retry.last_error.as_deref(), Some("payments API 503"));
}

#[tokio::test]
async fn a_task_id_the_ledger_refuses_is_poison_with_its_reason_not_retried_forever() {
    // GIVEN a task id over DynamoDB's 2,048-byte key limit (the envelope's MessageId), and an
    // ordinary task beside it
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let (queue, dlq) = bed.queue_with_dlq("huge-key", 5, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = "billing".into();
        c.backoff = None;
    });
    let engine = engine.with_ledger(ledger.clone());
    let huge = "t".repeat(3000);
    bed.send(&queue, &envelope(&huge, &order_json("o-huge", 5)), &[])
        .await;
    bed.send(
        &queue,
        &envelope("task-fine", &order_json("o-fine", 5)),
        &[],
    )
    .await;
    let ran = std::sync::Mutex::new(Vec::new());
    let handler = |m: Message<Order>| {
        ran.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(m.payload.order_id.clone());
        async { Ok(()) }
    };

    // WHEN the batch runs
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN the refused task never ran and went to the DLQ now, carrying the ledger's reason;
    // the other task ran and succeeded; nothing is left to come back
    assert_eq!(ran.into_inner().unwrap_or_default(), ["o-fine"]);
    assert!(
        run.report.failed_ids().is_empty(),
        "{:?}",
        run.report.records
    );
    let dead = bed.drain_visible(&dlq, 10).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get(REASON_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .expect("a reason on the DLQ copy");
    assert!(reason.starts_with("ledger: DynamoDB"), "{reason}");
    let fine = ledger
        .get("task-fine", "billing")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(fine.state, State::Succeeded);
    assert_eq!(bed.depth(&queue).await, (0, 0));
}

#[tokio::test]
async fn completion_before_registration_keeps_the_consumers_state() {
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;

    // GIVEN a consumer that finished task-o before the monitor saw the publish
    let lease = ledger
        .acquire("task-o", "billing", "inv-1", u64::MAX, Some(1_000))
        .await
        .expect("ledger call");
    assert_eq!(lease, Lease::Acquired { attempt: 1 });
    ledger
        .succeed("task-o", "billing")
        .await
        .expect("ledger call");

    // WHEN the monitor registers the task for both expected consumers
    let billing_new = ledger
        .register("task-o", "billing", Some(1_000))
        .await
        .expect("ledger call");
    let mail_new = ledger
        .register("task-o", "mailer", Some(1_000))
        .await
        .expect("ledger call");

    // THEN billing stays SUCCEEDED (and closed), mailer is RECEIVED (and open)
    assert!(!billing_new);
    assert!(mail_new);
    let states: Vec<(String, State)> = ledger
        .task("task-o")
        .await
        .expect("ledger call")
        .into_iter()
        .map(|e| (e.consumer, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            ("billing".into(), State::Succeeded),
            ("mailer".into(), State::Received)
        ]
    );
    let open: Vec<String> = ledger
        .open_before(u64::MAX)
        .await
        .expect("ledger call")
        .into_iter()
        .filter(|e| e.task_id == "task-o")
        .map(|e| e.consumer)
        .collect();
    assert_eq!(open, vec!["mailer".to_owned()]);

    // AND a second registration (SNS delivered the publish twice) changes nothing
    assert!(
        !ledger
            .register("task-o", "mailer", Some(1_000))
            .await
            .expect("ledger call")
    );
}

#[tokio::test]
async fn replay_and_parking_move_a_dead_letter_on_and_nothing_reopens_a_success() {
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    ledger
        .dead_letter("task-d", "billing", "amount must be positive", None)
        .await
        .expect("ledger call");
    assert!(
        ledger
            .replayed("task-d", "billing")
            .await
            .expect("ledger call")
    );
    assert_eq!(
        ledger
            .get("task-d", "billing")
            .await
            .expect("ledger call")
            .expect("ledger call")
            .state,
        State::Replayed
    );
    assert!(
        ledger
            .park("task-d", "billing", "replayed 3 times")
            .await
            .expect("ledger call")
    );
    let parked = ledger
        .get("task-d", "billing")
        .await
        .expect("ledger call")
        .expect("recorded");
    assert_eq!(parked.state, State::Parked);
    assert_eq!(parked.last_error.as_deref(), Some("replayed 3 times"));
    assert!(
        ledger
            .open_before(u64::MAX)
            .await
            .expect("ledger call")
            .iter()
            .all(|e| e.task_id != "task-d")
    );

    ledger
        .succeed("task-s", "billing")
        .await
        .expect("ledger call");
    assert!(
        !ledger
            .dead_letter("task-s", "billing", "late poison", None)
            .await
            .expect("ledger call")
    );
    assert!(
        !ledger
            .replayed("task-s", "billing")
            .await
            .expect("ledger call")
    );
    assert!(
        !ledger
            .fail("task-s", "billing", "anyone", "late failure")
            .await
            .expect("ledger call")
    );
    assert_eq!(
        ledger
            .get("task-s", "billing")
            .await
            .expect("ledger call")
            .expect("ledger call")
            .state,
        State::Succeeded
    );
}

#[tokio::test]
async fn replay_and_parking_never_cut_in_on_a_live_lease() {
    // GIVEN a consumer that picked up a replayed copy and holds its lease
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let until = clock.now_ms() + 30_000;
    ledger
        .acquire("task-r", "billing", "inv-1", until, None)
        .await
        .expect("lease");

    // WHEN replay's marks for another copy of the task arrive meanwhile
    let replayed = ledger.replayed("task-r", "billing").await.expect("ledger");
    let parked = ledger
        .park("task-r", "billing", "too many")
        .await
        .expect("ledger");
    let other_poison = ledger
        .dead_letter("task-r", "billing", "x", Some("inv-2"))
        .await
        .expect("ledger");

    // THEN none of them wrote: the lease holds, so a second copy is held off, not run twice
    assert!(!replayed && !parked && !other_poison);
    let e = ledger
        .get("task-r", "billing")
        .await
        .expect("ledger")
        .expect("entry");
    assert_eq!(
        (e.state, e.lease_until_ms),
        (State::InProgress, Some(until))
    );
    assert_eq!(
        ledger
            .acquire("task-r", "billing", "inv-2", until, None)
            .await
            .expect("ledger"),
        Lease::Held { until_ms: until }
    );
    // AND the lease's owner can still record its own poison
    assert!(
        ledger
            .dead_letter(
                "task-r",
                "billing",
                "amount must be positive",
                Some("inv-1")
            )
            .await
            .expect("ledger")
    );
    // AND once a lease has run out, replay may mark the pair again
    ledger
        .acquire("task-q", "billing", "dead", clock.now_ms() + 1_000, None)
        .await
        .expect("lease");
    clock.advance(Duration::from_secs(2));
    assert!(ledger.replayed("task-q", "billing").await.expect("ledger"));
}

#[tokio::test]
async fn a_bulk_read_of_the_ledger_gets_every_pair_through_transient_errors() {
    // Issue 12, point 12: on 6b129e9 `mailroom local demo --events 10000` finished the work,
    // then verified it with 10,000 sequential Query calls and failed on one SDK timeout. The
    // verification now reads the table in bulk (`Ledger::scan_pairs`) and asks again for a
    // page that failed transiently.
    // GIVEN a ledger with 600 pairs, and a path to it whose first 5 connections answer 500
    // (more than the SDK's own three attempts)
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let mut writes = Vec::new();
    for task in 0..300 {
        for consumer in ["notifier", "example-consumer"] {
            let ledger = ledger.clone();
            writes.push(async move {
                let id = format!("task-{task}");
                let Lease::Acquired { .. } = ledger
                    .acquire(&id, consumer, "writer", SystemClock.now_ms() + 60_000, None)
                    .await
                    .expect("acquire")
                else {
                    panic!("a fresh pair is acquired");
                };
                ledger.succeed(&id, consumer).await.expect("succeed");
            });
        }
    }
    {
        use futures_util::StreamExt;
        futures_util::stream::iter(writes)
            .buffer_unordered(50)
            .collect::<Vec<()>>()
            .await;
    }
    let proxy = mailroom_local::testbed::FaultProxy::start(crate::helpers::endpoint(), 5).await;
    let through = mailroom_lambda::ledger::Ledger::new(
        aws_sdk_dynamodb::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await),
        ledger.table(),
    );

    // WHEN every pair is read in bulk through it, in one segment, so that all five faults
    // meet the same page: three attempts by the SDK, then the scan's own retry
    let pairs = through.scan_pairs(1).await.expect("the scan completes");

    // THEN all 600 come back, each once, each SUCCEEDED, and the faults were met
    assert_eq!(proxy.failed(), 5);
    assert_eq!(pairs.len(), 600);
    let distinct: std::collections::HashSet<_> = pairs
        .iter()
        .map(|e| (e.task_id.clone(), e.consumer.clone()))
        .collect();
    assert_eq!(distinct.len(), 600);
    assert!(pairs.iter().all(|e| e.state == State::Succeeded));
}

#[tokio::test]
async fn a_success_whose_ledger_write_fails_past_the_sdks_retries_is_written_on_a_later_try() {
    // Found by `mailroom local demo --faults 0.05`: a success the ledger never heard of leaves
    // the pair IN_PROGRESS, and the next delivery after the lease runs the work again.
    // GIVEN a guarded consumer whose ledger calls go through a fault proxy, armed by the
    // handler itself, once the lease is taken, to fail the next four calls with HTTP 500
    // (more than the SDK's three attempts)
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let proxy = mailroom_local::faults::FaultyEndpoint::start(
        crate::helpers::endpoint(),
        mailroom_local::faults::FaultPlan::mix(0.0),
        3,
    )
    .await
    .expect("proxy");
    let through_proxy =
        aws_sdk_dynamodb::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await);
    let (queue, _dlq) = bed.queue_with_dlq("record-retry", 5, 30).await;
    let (engine, _) = bed.engine(|c| c.consumer = "billing".into());
    let engine = engine.with_ledger(mailroom_lambda::ledger::Ledger::new(
        through_proxy,
        ledger.table(),
    ));
    bed.send(&queue, &envelope("task-r", &order_json("o-r", 100)), &[])
        .await;
    let effects = AtomicU32::new(0);
    let handler = |_: Message<Order>| {
        effects.fetch_add(1, Ordering::SeqCst);
        proxy.arm(mailroom_local::faults::FaultPlan::only(
            mailroom_local::faults::FaultKind::ServerError,
            4,
        ));
        async { Ok::<(), Failure>(()) }
    };

    // WHEN the record runs
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN it succeeded once, the four faults were spent, and the ledger, read directly,
    // says SUCCEEDED
    assert_eq!(run.report.records[0].outcome, Outcome::Succeeded);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.counts().snapshot().1, 4);
    let entry = ledger
        .get("task-r", "billing")
        .await
        .expect("ledger read")
        .expect("the pair");
    assert_eq!(entry.state, State::Succeeded);
}

/// A ledger table read directly, and the same table through a proxy that counts every call
/// (the engine's view, counted independently of the engine's own bookkeeping).
async fn counted_ledger(
    bed: &TestBed,
) -> (
    mailroom_lambda::ledger::Ledger,
    mailroom_local::faults::FaultyEndpoint,
    mailroom_lambda::ledger::Ledger,
) {
    let direct = bed.ledger(Arc::new(SystemClock)).await;
    let proxy = mailroom_local::faults::FaultyEndpoint::start(
        crate::helpers::endpoint(),
        mailroom_local::faults::FaultPlan::mix(0.0),
        3,
    )
    .await
    .expect("proxy");
    let counted = mailroom_lambda::ledger::Ledger::new(
        aws_sdk_dynamodb::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await),
        direct.table(),
    );
    (direct, proxy, counted)
}

#[tokio::test]
async fn without_the_lease_a_consumer_skips_what_succeeded_and_writes_only_outcomes() {
    // GIVEN a consumer with MAILROOM_LEASE=off, its ledger calls counted by a proxy, and a
    // task that already succeeded there
    let bed = TestBed::new().await;
    let (direct, proxy, counted) = counted_ledger(&bed).await;
    direct
        .succeed("task-done", "billing")
        .await
        .expect("written");
    let (queue, _dlq) = bed.queue_with_dlq("unleased", 5, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = "billing".into();
        c.leases = false;
    });
    let engine = engine.with_ledger(counted);
    for (task, order) in [
        ("task-done", "o-1"),
        ("task-new", "o-2"),
        ("task-flaky", "o-3"),
    ] {
        bed.send(&queue, &envelope(task, &order_json(order, 100)), &[])
            .await;
    }
    let effects = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = |m: Message<Order>| {
        let effects = effects.clone();
        async move {
            effects
                .lock()
                .expect("lock")
                .push(m.payload.order_id.clone());
            if m.payload.order_id == "o-3" {
                return Err(Failure::retry("downstream 503"));
            }
            Ok::<(), Failure>(())
        }
    };

    // WHEN the batch runs
    let run = bed.invoke(&queue, &engine, handler).await;

    // THEN the task that succeeded before is skipped, the others run once each
    let mut ran = effects.lock().expect("lock").clone();
    ran.sort();
    assert_eq!(ran, ["o-2", "o-3"]);
    let mut outcomes: Vec<String> = run
        .report
        .records
        .iter()
        .map(|r| format!("{:?}", r.outcome).chars().take(9).collect())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["Duplicate", "Failed { ", "Succeeded"]);
    // AND the ledger, read directly, has each outcome
    let state = |task: &'static str| {
        let direct = direct.clone();
        async move {
            direct
                .get(task, "billing")
                .await
                .expect("ledger call")
                .map(|e| (e.state, e.last_error))
        }
    };
    assert_eq!(state("task-new").await, Some((State::Succeeded, None)));
    assert_eq!(
        state("task-flaky").await,
        Some((State::Failed, Some("downstream 503".to_owned())))
    );
    // AND the proxy saw one read per record and one write per outcome, no lease writes
    let capacity = &proxy.counts().capacity;
    assert_eq!(capacity.item_writes.load(Ordering::Relaxed), 2);
    assert_eq!(capacity.read_units(), 3.0, "three consistent reads");
}

#[tokio::test]
async fn a_batchs_leases_are_one_wave_before_its_records_run() {
    // GIVEN a guarded consumer running two records at a time, its ledger calls counted by a
    // proxy, and a batch of 40 tasks
    let bed = TestBed::new().await;
    let (direct, proxy, counted) = counted_ledger(&bed).await;
    let (queue, _dlq) = bed.queue_with_dlq("waves", 5, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = "billing".into();
        c.concurrency = 2;
    });
    let engine = engine.with_ledger(counted);
    for i in 0..40 {
        bed.send(
            &queue,
            &envelope(&format!("wave-{i}"), &order_json(&format!("o-{i}"), 100)),
            &[],
        )
        .await;
    }
    // The writes the proxy had seen when each record started to run.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = |_: Message<Order>| {
        let (seen, proxy) = (seen.clone(), &proxy);
        let writes = proxy.counts().capacity.item_writes.load(Ordering::Relaxed);
        seen.lock().expect("lock").push(writes);
        async { Ok::<(), Failure>(()) }
    };

    // WHEN the tasks run, in batches of up to ten
    let writes = || proxy.counts().capacity.item_writes.load(Ordering::Relaxed);
    let mut ran = 0;
    while ran < 40 {
        seen.lock().expect("lock").clear();
        let before = writes();
        let run = bed.invoke(&queue, &engine, handler).await;
        let batch = run.report.records.len() as u64;
        assert!(batch > 0, "the queue ran dry at {ran}");
        ran += run.report.records.len();

        // THEN no record ran before every lease of its batch was written (a record waits on
        // one round of lease writes; with each worker taking its own record's lease, the
        // first to run would have seen one or two)
        let first = seen.lock().expect("lock").iter().copied().min();
        assert_eq!(
            first,
            Some(before + batch),
            "a batch of {batch}: {:?}",
            seen.lock().expect("lock")
        );
    }

    // AND each record cost two writes, its lease and its outcome
    assert_eq!(
        proxy.counts().capacity.item_writes.load(Ordering::Relaxed),
        80
    );
    for i in [0, 17, 39] {
        let e = direct
            .get(&format!("wave-{i}"), "billing")
            .await
            .expect("ledger call")
            .expect("recorded");
        assert_eq!(e.state, State::Succeeded);
    }
}
