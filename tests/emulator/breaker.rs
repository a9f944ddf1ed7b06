//! The circuit breaker: a down dependency opens it, records are held rather than run, one
//! probe at a time tests the dependency, and its state is shared in the emulator's DynamoDB.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mailroom_lambda::breaker::BreakerPolicy;
use mailroom_lambda::clock::{Clock, ManualClock};
use mailroom_lambda::ledger::{BREAKER_PARTITION, Ledger, State};
use mailroom_lambda::{Cause, Failure, Message, Outcome};

use crate::helpers::{LambdaBed, TestBed, envelope};
use crate::{Order, order_json};

const CONSUMER: &str = "webhook-sender";
const HOST: &str = "hooks.example";

/// The breaker's item, read straight from the table (not through the ledger's own reader).
async fn item(bed: &TestBed, ledger: &Ledger) -> Option<(String, u64, u64, String)> {
    let out = bed
        .dynamodb
        .get_item()
        .table_name(ledger.table())
        .key("pk", AttributeValue::S(BREAKER_PARTITION.into()))
        .key("sk", AttributeValue::S(format!("{CONSUMER}#{HOST}")))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    let item = out.item()?;
    let s = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let n = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some((s("state"), n("cooldown"), n("opens"), s("last_error")))
}

fn causes(run: &crate::helpers::Invocation) -> Vec<Option<Cause>> {
    run.report
        .records
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Failed { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect()
}

fn deferred(run: &crate::helpers::Invocation) -> usize {
    run.report
        .records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Deferred { .. }))
        .count()
}

/// Waits out SQS's delay on the deferred copies (real seconds: the emulator's clock).
async fn wait_for_copies() {
    tokio::time::sleep(Duration::from_millis(1_200)).await;
}

#[tokio::test]
async fn a_down_dependency_is_held_back_and_probed_once_per_cool_down_until_it_answers() {
    // GIVEN a guarded consumer with a breaker (3 failures in a row, 1 s first cool-down, 2 s
    // at most) whose downstream is down, ten tasks in its queue, and a redrive after only
    // two receives
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let (queue, dlq) = bed.queue_with_dlq("breaker", 2, 30).await;
    let (engine, metrics) = bed.engine(|c| {
        c.consumer = CONSUMER.into();
        c.breaker = Some(BreakerPolicy {
            failures: 3,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(2),
            function: Some("webhook-sender-fn".into()),
            ..BreakerPolicy::default()
        });
    });
    let engine = engine.with_ledger(ledger.clone());
    for i in 0..10 {
        bed.send(
            &queue,
            &envelope(&format!("task-{i}"), &order_json(&format!("o-{i}"), 100)),
            &[],
        )
        .await;
    }
    let down = AtomicBool::new(true);
    let calls = AtomicU32::new(0);
    let handler = |_: Message<Order>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let result = if down.load(Ordering::SeqCst) {
            Err(Failure::retry("HTTP 503 from hooks.example").on(HOST))
        } else {
            Ok(())
        };
        async move { result }
    };

    // WHEN the first batch fails on the dependency
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(run.received, 10);
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    // THEN the breaker is OPEN in the table, naming the error, for the first cool-down
    let (state, cooldown, opens, error) = item(&bed, &ledger).await.expect("breaker item");
    assert_eq!((state.as_str(), cooldown, opens), ("OPEN", 1_000, 1));
    assert!(error.contains("503"), "{error}");

    // WHEN the records come back inside the cool-down
    bed.make_visible(&queue, &run).await;
    let run = bed.invoke(&queue, &engine, handler).await;
    // THEN none runs: each is sent back to the queue, delayed to the cool-down's end, as a
    // fresh message that carries its deferral count
    assert_eq!(calls.load(Ordering::SeqCst), 10, "held records are not run");
    assert_eq!(deferred(&run), 10);
    assert!(run.report.response.batch_item_failures.is_empty());
    let held: f64 = metrics
        .lock()
        .expect("metrics")
        .iter()
        .map(|m| m["BreakerHeld"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(held, 10.0, "the EMF line counts the held records");
    wait_for_copies().await;
    clock.advance(Duration::from_millis(1_100));

    // WHEN the cool-down is over and the dependency is still down
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(run.received, 10);
    assert!(
        run.event.records.iter().all(|r| {
            r.attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str)
                == Some("1")
                && r.message_attributes[mailroom_lambda::engine::DEFERRALS_ATTRIBUTE]
                    .string_value
                    .as_deref()
                    == Some("1")
        }),
        "fresh copies, deferred once"
    );
    // THEN exactly one record probes, it fails, and the breaker reopens for twice as long;
    // the probe's record goes back to the queue like the others
    assert_eq!(calls.load(Ordering::SeqCst), 11, "one probe");
    assert_eq!(deferred(&run), 10);
    let (state, cooldown, opens, _) = item(&bed, &ledger).await.expect("breaker item");
    assert_eq!((state.as_str(), cooldown, opens), ("OPEN", 2_000, 1));

    // WHEN the dependency is back and the longer cool-down is over
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    clock.advance(Duration::from_millis(2_100));
    let run = bed.invoke(&queue, &engine, handler).await;
    // THEN one probe succeeds and closes the breaker; the rest run on their next delivery
    assert_eq!(calls.load(Ordering::SeqCst), 12);
    let (state, _, opens, _) = item(&bed, &ledger).await.expect("breaker item");
    assert_eq!((state.as_str(), opens), ("CLOSED", 1));
    assert_eq!(run.received, 10);
    assert_eq!(deferred(&run), 9);
    wait_for_copies().await;
    for _ in 0..3 {
        let run = bed.invoke(&queue, &engine, handler).await;
        assert!(run.report.response.batch_item_failures.is_empty());
        if bed.depth(&queue).await == (0, 0) {
            break;
        }
    }
    assert_eq!(bed.depth(&queue).await, (0, 0));
    // AND though every task was received four times, none was dead-lettered
    assert_eq!(bed.depth(&dlq).await, (0, 0), "nothing dead-lettered");
    for i in 0..10 {
        let entry = ledger
            .get(&format!("task-{i}"), CONSUMER)
            .await
            .expect("get")
            .expect("pair");
        assert_eq!(entry.state, State::Succeeded, "task-{i}");
    }
}

#[tokio::test]
async fn one_environment_claims_the_probe_and_the_others_hold() {
    // GIVEN an open breaker whose cool-down is over
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    assert!(
        ledger
            .open_breaker(CONSUMER, HOST, None, 10_000, "HTTP 503")
            .await
            .expect("open")
    );
    assert!(
        !ledger
            .open_breaker(CONSUMER, HOST, None, 10_000, "HTTP 503")
            .await
            .expect("open again"),
        "an open breaker is not opened twice"
    );
    let now = clock.now_ms();
    assert!(
        !ledger
            .claim_probe(CONSUMER, HOST, "a", now + 5_000)
            .await
            .expect("claim"),
        "no probe inside the cool-down"
    );
    clock.advance(Duration::from_secs(11));
    let now = clock.now_ms();

    // WHEN two environments claim the probe
    let (a, b) = tokio::join!(
        ledger.claim_probe(CONSUMER, HOST, "a", now + 5_000),
        ledger.claim_probe(CONSUMER, HOST, "b", now + 5_000)
    );

    // THEN exactly one wins, only the winner settles it, and a dead probe's claim runs out
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(a ^ b, "exactly one claim: {a} {b}");
    let (winner, loser) = if a { ("a", "b") } else { ("b", "a") };
    assert!(
        !ledger
            .settle_probe(CONSUMER, HOST, loser, None)
            .await
            .expect("settle")
    );
    clock.advance(Duration::from_secs(6));
    assert!(
        ledger
            .claim_probe(CONSUMER, HOST, loser, clock.now_ms() + 5_000)
            .await
            .expect("claim after the first ran out")
    );
    assert!(
        !ledger
            .settle_probe(CONSUMER, HOST, winner, None)
            .await
            .expect("settle"),
        "the first claimant's verdict comes too late"
    );
    assert!(
        ledger
            .settle_probe(CONSUMER, HOST, loser, None)
            .await
            .expect("settle")
    );
    let all = ledger.breakers(None).await.expect("breakers");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, mailroom_lambda::ledger::BreakerState::Closed);
    assert_eq!(all[0].opens, 1);
}

#[tokio::test]
async fn a_retry_after_from_a_dependency_holds_every_record_bound_for_it() {
    // GIVEN a consumer with a breaker, whose dependency answers one record 429 with a
    // Retry-After of 20 minutes and takes the others
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let (queue, _dlq) = bed.queue_with_dlq("back-pressure", 10, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = CONSUMER.into();
        c.breaker = Some(BreakerPolicy {
            max_cooldown: Duration::from_secs(3600),
            ..BreakerPolicy::default()
        });
    });
    let engine = engine.with_ledger(ledger.clone());
    for i in 0..3 {
        bed.send(
            &queue,
            &envelope(&format!("bp-{i}"), &order_json(&format!("o-{i}"), 100)),
            &[],
        )
        .await;
    }
    let handler = |m: Message<Order>| {
        let result = if m.payload.order_id == "o-0" {
            Err(
                Failure::retry_after("HTTP 429 from hooks.example", Duration::from_secs(1200))
                    .on(HOST),
            )
        } else {
            Ok(())
        };
        async move { result }
    };

    // WHEN the batch runs
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(run.report.response.batch_item_failures.len(), 1);

    // THEN one back-pressure answer opened the breaker for the time the dependency asked
    // for, though it was one failure among successes
    let (state, cooldown, _, error) = item(&bed, &ledger).await.expect("breaker item");
    assert_eq!((state.as_str(), cooldown), ("OPEN", 1_200_000));
    assert!(error.contains("429"), "{error}");
    // AND the next delivery of the record is held, not run: past SQS's longest delay, it
    // waits by its visibility
    bed.make_visible(&queue, &run).await;
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(causes(&run), vec![Some(Cause::Held)]);
}

#[tokio::test]
async fn with_a_router_only_the_records_bound_for_the_down_dependency_are_held() {
    // GIVEN a consumer whose router sends `down-*` orders to down.example and the rest to
    // up.example, and whose down.example is down
    let bed = TestBed::new().await;
    let clock = Arc::new(ManualClock::starting_now());
    let ledger = bed.ledger(clock.clone()).await;
    let (queue, _dlq) = bed.queue_with_dlq("routed", 10, 30).await;
    let (engine, _) = bed.engine(|c| {
        c.consumer = CONSUMER.into();
        c.breaker = Some(BreakerPolicy {
            failures: 3,
            ..BreakerPolicy::default()
        });
    });
    let engine = engine.with_ledger(ledger.clone()).with_router(|payload| {
        let order: Order = serde_json::from_str(payload).ok()?;
        Some(
            if order.order_id.starts_with("down") {
                "down.example"
            } else {
                "up.example"
            }
            .to_owned(),
        )
    });
    let send = |prefix: &'static str, n: usize| {
        let bed = &bed;
        let queue = &queue;
        async move {
            for i in 0..n {
                let id = format!("{prefix}-{i}");
                bed.send(
                    queue,
                    &envelope(&format!("t-{id}"), &order_json(&id, 100)),
                    &[],
                )
                .await;
            }
        }
    };
    send("down", 6).await;
    send("up", 4).await;
    let (down_calls, up_calls) = (AtomicU32::new(0), AtomicU32::new(0));
    let handler = |m: Message<Order>| {
        let down = m.payload.order_id.starts_with("down");
        let result = if down {
            down_calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::retry("HTTP 503 from down.example").on("down.example"))
        } else {
            up_calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        async move { result }
    };

    // WHEN the first batch trips down.example's breaker, and more up.example work arrives
    let run = bed.invoke(&queue, &engine, handler).await;
    assert_eq!(run.received, 10);
    bed.make_visible(&queue, &run).await;
    let down_sk = format!("{CONSUMER}#down.example");
    let state = ledger
        .breakers(Some(CONSUMER))
        .await
        .expect("breakers")
        .into_iter()
        .map(|b| (format!("{}#{}", b.consumer, b.dependency), b.state))
        .collect::<Vec<_>>();
    assert_eq!(
        state,
        [(down_sk, mailroom_lambda::ledger::BreakerState::Open)]
    );
    send("up-later", 3).await;
    let mut deferred_down = 0;
    for _ in 0..3 {
        let run = bed.invoke(&queue, &engine, handler).await;
        deferred_down += deferred(&run);
        bed.make_visible(&queue, &run).await;
    }

    // THEN the down host's records were held (sent back, delayed) without a call, while
    // every up.example order ran
    assert_eq!(
        down_calls.load(Ordering::SeqCst),
        6,
        "no call after the trip"
    );
    assert_eq!(deferred_down, 6);
    assert_eq!(up_calls.load(Ordering::SeqCst), 7);
}
