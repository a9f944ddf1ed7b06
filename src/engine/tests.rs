//! Unit tests of every engine rule, driven by the `events/` fixtures and the fake SQS port.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::outcome::{Cause, Outcome};
use crate::poison::{REASON_ATTRIBUTE, SOURCE_ATTRIBUTE};
use crate::sqs::{FakeQueues, OutgoingValue};
use crate::telemetry::MetricsSink;
use crate::testing::fixture;

#[derive(Debug, Deserialize)]
struct Order {
    order_id: String,
    amount_cents: u64,
}

struct Bed {
    engine: Engine<FakeQueues>,
    queues: FakeQueues,
    metrics: Arc<Mutex<Vec<Value>>>,
}

fn bed_with(queues: FakeQueues, tweak: impl FnOnce(&mut EngineConfig)) -> Bed {
    let (sink, metrics) = MetricsSink::capture();
    let mut config = EngineConfig {
        consumer: "example".into(),
        metrics: sink,
        jitter_seed: Some(42),
        ..EngineConfig::default()
    };
    tweak(&mut config);
    Bed {
        engine: Engine::new(config, queues.clone()),
        queues,
        metrics,
    }
}

fn bed() -> Bed {
    bed_with(FakeQueues::new(), |_| {})
}

/// Poisons zero amounts, as the example consumer does.
async fn validate(m: Message<Order>) -> Result<(), Failure> {
    if m.payload.amount_cents == 0 {
        return Err(Failure::poison("amount must be positive"));
    }
    Ok(())
}

fn ids(event: &SqsEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.message_id.clone().expect("fixture ids"))
        .collect()
}

/// A standard-queue event of `n` copies of the first raw fixture record, with distinct ids.
fn raw_batch(n: usize) -> SqsEvent {
    let template = fixture("sqs-raw.json").records[0].clone();
    let mut event = SqsEvent::default();
    event.records = (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.message_id = Some(format!("m-{i}"));
            r.receipt_handle = Some(format!("rh-{i}"));
            r
        })
        .collect();
    event
}

fn outcome_of<'a>(report: &'a BatchReport, id: &str) -> &'a Outcome {
    &report
        .records
        .iter()
        .find(|r| r.message_id() == Some(id))
        .expect("record reported")
        .outcome
}

#[tokio::test]
async fn enveloped_batch_all_succeed_and_response_is_empty() {
    // GIVEN an SNS-enveloped batch and a consumer that records what it saw
    let b = bed();
    let seen = Mutex::new(Vec::new());

    // WHEN the engine runs it
    let report = b
        .engine
        .process(
            fixture("sqs-sns-envelope.json"),
            Deadline::none(),
            |m: Message<Order>| {
                seen.lock().expect("lock").push((
                    m.payload.order_id.clone(),
                    m.task_id().map(str::to_owned),
                    m.traceparent().is_some(),
                ));
                async { Ok(()) }
            },
        )
        .await
        .expect("response");

    // THEN every payload was decoded from the envelope and nothing is reported failed
    assert!(report.response.batch_item_failures.is_empty());
    let mut seen = seen.into_inner().expect("lock");
    seen.sort();
    assert_eq!(seen[0].0, "o-1001");
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, task, tp)| task.is_some() && *tp));
    assert!(b.queues.sent().is_empty() && b.queues.visibility_calls().is_empty());
}

#[tokio::test]
async fn decode_failures_and_consumer_poison_go_to_the_dlq_and_are_not_retried() {
    // GIVEN the poison fixture: one good, one zero amount, one wrong type, one not JSON
    let b = bed();
    let event = fixture("sqs-poison.json");
    let ids = ids(&event);
    let bodies: Vec<String> = event
        .records
        .iter()
        .map(|r| r.body.clone().expect("body"))
        .collect();

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), validate)
        .await
        .expect("response");

    // THEN nothing is reported failed: three copies are in the DLQ with their reasons
    assert!(report.failed_ids().is_empty(), "{:?}", report.failed_ids());
    assert_eq!(outcome_of(&report, &ids[0]), &Outcome::Succeeded);
    let sent = b.queues.sent();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter()
            .all(|s| s.queue.as_str() == "https://sqs.local/mailroom-example-dlq")
    );
    let reason = |i: usize| {
        let s = sent
            .iter()
            .find(|s| s.message.body == bodies[i])
            .expect("body kept byte for byte");
        match &s.message.attributes[REASON_ATTRIBUTE].value {
            OutgoingValue::Text(t) => t.clone(),
            OutgoingValue::Binary(_) => panic!("reason is text"),
        }
    };
    assert_eq!(reason(1), "amount must be positive");
    assert!(
        reason(2).starts_with("decode: payload does not decode as"),
        "{}",
        reason(2)
    );
    assert!(reason(3).contains("expected"), "{}", reason(3));
    let source = &sent[0].message.attributes[SOURCE_ATTRIBUTE].value;
    assert_eq!(
        source,
        &OutgoingValue::Text("arn:aws:sqs:us-east-1:123456789012:mailroom-example".into())
    );
    // The raw record's own attribute travels with it.
    assert!(
        sent.iter()
            .any(|s| s.message.attributes.contains_key("kind"))
    );
}

#[tokio::test]
async fn dlq_is_looked_up_once_per_cold_start() {
    let b = bed();
    for _ in 0..3 {
        b.engine
            .process(fixture("sqs-poison.json"), Deadline::none(), validate)
            .await
            .expect("response");
    }
    // One GetQueueUrl for the source, one for the DLQ, one GetQueueAttributes, across 3 batches.
    assert_eq!(b.queues.lookups(), (2, 1));
    assert_eq!(b.queues.sent().len(), 9);
}

#[tokio::test]
async fn configured_dlq_url_needs_no_lookup() {
    let b = bed_with(FakeQueues::new(), |c| {
        c.dlq_url = Some("https://sqs.local/ops-dlq".parse().expect("url"));
    });
    b.engine
        .process(fixture("sqs-poison.json"), Deadline::none(), validate)
        .await
        .expect("response");
    assert_eq!(b.queues.lookups(), (0, 0));
    assert!(
        b.queues
            .sent()
            .iter()
            .all(|s| s.queue.as_str() == "https://sqs.local/ops-dlq")
    );
}

#[tokio::test]
async fn failed_dlq_send_reports_the_record_failed_so_redrive_still_applies() {
    // GIVEN a DLQ that refuses sends
    let b = bed_with(FakeQueues::new().failing_sends(), |_| {});
    let event = fixture("sqs-poison.json");
    let ids = ids(&event);

    // WHEN poison records are processed
    let report = b
        .engine
        .process(event, Deadline::none(), validate)
        .await
        .expect("response");

    // THEN the three poison records come back; the good one does not
    assert_eq!(
        report.failed_ids(),
        vec![ids[1].as_str(), ids[2].as_str(), ids[3].as_str()]
    );
    let Outcome::Failed { cause, reason, .. } = outcome_of(&report, &ids[1]) else {
        panic!("must be failed")
    };
    assert_eq!(*cause, Cause::DeadLetterFailed);
    assert!(
        reason.contains("amount must be positive") && reason.contains("injected fault"),
        "{reason}"
    );
}

#[tokio::test]
async fn no_redrive_policy_and_no_configured_dlq_reports_failed() {
    let b = bed_with(FakeQueues::new().without_redrive(), |_| {});
    let report = b
        .engine
        .process(fixture("sqs-poison.json"), Deadline::none(), validate)
        .await
        .expect("response");
    assert_eq!(report.failed_ids().len(), 3);
    assert!(b.queues.sent().is_empty());
}

#[tokio::test]
async fn a_panicking_record_fails_alone() {
    // GIVEN a consumer that panics on one order
    let b = bed();
    let event = fixture("sqs-sns-envelope.json");
    let ids = ids(&event);

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| async move {
            assert!(
                m.payload.order_id != "o-1002",
                "boom on {}",
                m.payload.order_id
            );
            Ok(())
        })
        .await
        .expect("response");

    // THEN only that record is failed, with the panic message as its reason
    assert_eq!(report.failed_ids(), vec![ids[1].as_str()]);
    let Outcome::Failed { cause, reason, .. } = outcome_of(&report, &ids[1]) else {
        panic!("must be failed")
    };
    assert_eq!(*cause, Cause::Panic);
    assert!(reason.contains("boom on o-1002"), "{reason}");
}

#[tokio::test]
async fn retries_set_visibility_in_batches_of_ten_within_the_backoff_ceiling() {
    // GIVEN 25 records on their third delivery, all retried with the policy
    let b = bed();
    let mut event = raw_batch(25);
    for r in &mut event.records {
        r.attributes
            .insert("ApproximateReceiveCount".into(), "3".into());
    }

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("busy"))
        })
        .await
        .expect("response");

    // THEN all are reported failed and visibility is set in 3 calls, each delay <= 2s * 2^2
    assert_eq!(report.failed_ids().len(), 25);
    let calls = b.queues.visibility_calls();
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let delays: Vec<u32> = calls.iter().flatten().map(|c| c.timeout_secs).collect();
    assert!(delays.iter().all(|d| *d <= 8), "{delays:?}");
    assert!(
        delays.iter().collect::<HashSet<_>>().len() > 1,
        "jittered: {delays:?}"
    );
    let handles: HashSet<&str> = calls
        .iter()
        .flatten()
        .map(|c| c.receipt_handle.as_str())
        .collect();
    assert_eq!(handles.len(), 25, "every delivery's own receipt handle");
}

#[tokio::test]
async fn explicit_delay_is_honoured_and_no_backoff_leaves_visibility_alone() {
    let b = bed();
    let report = b
        .engine
        .process(
            raw_batch(3),
            Deadline::none(),
            |m: Message<Order>| async move {
                match m.message_id() {
                    Some("m-0") => Err(Failure::retry_after(
                        "rate limited",
                        Duration::from_secs(30),
                    )),
                    Some("m-1") => Err(Failure::retry("flaky").without_backoff()),
                    _ => Err(Failure::retry_after("huge", Duration::from_secs(1_000_000))),
                }
            },
        )
        .await
        .expect("response");
    let calls = b.queues.visibility_calls();
    let set: HashMap<&str, u32> = calls
        .iter()
        .flatten()
        .map(|c| (c.receipt_handle.as_str(), c.timeout_secs))
        .collect();
    assert_eq!(set.get("rh-0"), Some(&30));
    assert_eq!(set.get("rh-1"), None);
    assert_eq!(
        set.get("rh-2"),
        Some(&42_300),
        "capped below the 12-hour limit"
    );
    assert!(matches!(
        outcome_of(&report, "m-0"),
        Outcome::Failed {
            cause: Cause::Retry,
            visibility_secs: Some(30),
            ..
        }
    ));
}

#[tokio::test]
async fn backoff_off_sets_no_visibility() {
    let b = bed_with(FakeQueues::new(), |c| c.backoff = None);
    let report = b
        .engine
        .process(raw_batch(2), Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("x"))
        })
        .await
        .expect("response");
    assert_eq!(report.failed_ids().len(), 2);
    assert!(b.queues.visibility_calls().is_empty());
}

#[tokio::test]
async fn failed_visibility_call_still_reports_the_records_failed() {
    let b = bed_with(FakeQueues::new().failing_visibility(), |_| {});
    let report = b
        .engine
        .process(raw_batch(3), Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("x"))
        })
        .await
        .expect("a failed visibility call is not an invocation error");
    assert_eq!(report.failed_ids(), vec!["m-0", "m-1", "m-2"]);
}

#[tokio::test]
async fn when_every_record_fails_the_response_lists_them_all() {
    let b = bed();
    let event = fixture("sqs-raw.json");
    let expected = ids(&event);
    let report = b
        .engine
        .process(event, Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("down"))
        })
        .await
        .expect("all-failed is a response, not an error");
    assert_eq!(
        report.failed_ids(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fifo_failure_halts_the_rest_of_its_group_only() {
    // GIVEN the FIFO fixture: groups a = [0, 1, 3], b = [2, 4]; record 1 fails
    let b = bed();
    let event = fixture("sqs-fifo.json");
    let ids = ids(&event);
    let order = Mutex::new(Vec::new());

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| {
            order.lock().expect("lock").push(m.payload.order_id.clone());
            let fail = m.payload.order_id == "o-3002";
            async move {
                if fail {
                    Err(Failure::retry("down"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .expect("response");

    // THEN record 3 (same group, later) is halted without running; group b is untouched
    assert_eq!(report.failed_ids(), vec![ids[1].as_str(), ids[3].as_str()]);
    assert!(matches!(
        outcome_of(&report, &ids[3]),
        Outcome::Failed {
            cause: Cause::Halted,
            ..
        }
    ));
    let order = order.into_inner().expect("lock");
    assert!(
        !order.contains(&"o-3004".to_owned()),
        "halted record never ran"
    );
    let pos = |id: &str| order.iter().position(|o| o == id).expect("ran");
    assert!(pos("o-3001") < pos("o-3002"), "in order within group a");
    assert!(pos("o-3003") < pos("o-3005"), "in order within group b");
}

#[tokio::test]
async fn fifo_stop_batch_mode_fails_everything_after_the_first_failure() {
    let b = bed_with(FakeQueues::new(), |c| c.fifo_mode = FifoMode::StopBatch);
    let event = fixture("sqs-fifo.json");
    let ids = ids(&event);
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| async move {
            if m.payload.order_id == "o-3002" {
                Err(Failure::retry("down"))
            } else {
                Ok(())
            }
        })
        .await
        .expect("response");
    assert_eq!(
        report.failed_ids(),
        ids[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fifo_poison_keeps_the_group_moves_on_and_dedups_deterministically() {
    // GIVEN a FIFO batch where the first record of group a is poison
    let b = bed();
    let event = fixture("sqs-fifo.json");
    let ids = ids(&event);

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| async move {
            if m.payload.order_id == "o-3001" {
                Err(Failure::poison("bad order"))
            } else {
                Ok(())
            }
        })
        .await
        .expect("response");

    // THEN it is in the FIFO DLQ with its group and a dedup id derived from its message id,
    // and the rest of its group went on (poison is done, not failed)
    assert!(report.failed_ids().is_empty());
    let sent = b.queues.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].queue.as_str(),
        "https://sqs.local/mailroom-example-dlq.fifo"
    );
    assert_eq!(sent[0].message.group_id.as_deref(), Some("customer-a"));
    assert_eq!(
        sent[0].message.deduplication_id,
        Some(format!("poison-{}", ids[0]))
    );
}

#[tokio::test(start_paused = true)]
async fn records_not_started_before_the_margin_are_reported_failed_not_lost() {
    // GIVEN one second left and a two-second margin
    let b = bed();
    let event = fixture("sqs-raw.json");
    let expected = ids(&event);
    let calls = AtomicUsize::new(0);

    // WHEN processed
    let report = b
        .engine
        .process(
            event,
            Deadline::after(Duration::from_secs(1)),
            |_: Message<Order>| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .await
        .expect("response");

    // THEN nothing ran and everything comes back
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        report.failed_ids(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(report.records.iter().all(|r| matches!(
        r.outcome,
        Outcome::Failed {
            cause: Cause::Deadline,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn a_record_still_running_at_the_deadline_is_cancelled_and_reported_failed() {
    // GIVEN 400 ms left, a 200 ms margin, and one record that would run for a minute
    let b = bed_with(FakeQueues::new(), |c| {
        c.deadline_margin = Duration::from_millis(200);
    });
    let report = b
        .engine
        .process(
            raw_batch(2),
            Deadline::after(Duration::from_millis(400)),
            |m: Message<Order>| async move {
                if m.message_id() == Some("m-1") {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(())
            },
        )
        .await
        .expect("response");

    // THEN the engine returns in time, with that record failed and the other done
    assert_eq!(report.failed_ids(), vec!["m-1"]);
    assert!(matches!(
        outcome_of(&report, "m-1"),
        Outcome::Failed {
            cause: Cause::Timeout,
            ..
        }
    ));
}

#[tokio::test]
async fn concurrency_is_bounded() {
    // GIVEN a concurrency of 3 and 20 records that each wait a little
    let b = bed_with(FakeQueues::new(), |c| c.concurrency = 3);
    let (now, max) = (AtomicUsize::new(0), AtomicUsize::new(0));

    // WHEN processed
    b.engine
        .process(raw_batch(20), Deadline::none(), |_: Message<Order>| {
            let (now, max) = (&now, &max);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .expect("response");

    // THEN at most 3 ran at once, and more than one did
    assert_eq!(max.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_record_without_message_id_fails_the_invocation_instead_of_naming_nothing() {
    let b = bed();
    let mut event = raw_batch(2);
    event.records[1].message_id = None;
    let err = b
        .engine
        .process(event, Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("x"))
        })
        .await
        .expect_err("an unnamed failure cannot be reported");
    assert!(matches!(
        err,
        EngineError::UnidentifiedFailure { index: 1, .. }
    ));
}

#[tokio::test]
async fn a_successful_record_without_message_id_is_fine_and_ids_are_never_empty_or_repeated() {
    let b = bed();
    let mut event = raw_batch(4);
    event.records[0].message_id = None;
    event.records[3].message_id = Some("m-2".into()); // a duplicate delivery in one batch
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| async move {
            if m.message_id() == Some("m-2") {
                Err(Failure::retry("x"))
            } else {
                Ok(())
            }
        })
        .await
        .expect("response");
    assert_eq!(report.failed_ids(), vec!["m-2"]);
}

#[tokio::test]
async fn emf_line_counts_every_outcome_and_cold_start_once() {
    // GIVEN two batches: the poison fixture, then a retry
    let b = bed_with(FakeQueues::new().failing_sends(), |_| {});
    b.engine
        .process(fixture("sqs-poison.json"), Deadline::none(), validate)
        .await
        .expect("first");
    let b2 = &b;
    b2.engine
        .process(raw_batch(2), Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry("x"))
        })
        .await
        .expect("second");

    // THEN each invocation wrote one EMF document with the right counts
    let docs = b.metrics.lock().expect("lock").clone();
    assert_eq!(docs.len(), 2);
    let (first, second) = (&docs[0], &docs[1]);
    assert_eq!(first["Records"], 4.0);
    assert_eq!(first["Succeeded"], 1.0);
    assert_eq!(first["Failed"], 3.0, "poison whose DLQ send failed");
    assert_eq!(first["ColdStart"], 1.0);
    assert_eq!(first["Consumer"], "example");
    assert!(first["MessageAge"].as_f64().is_some_and(|a| a > 0.0));
    assert!(first["PublishAge"].as_f64().is_some_and(|a| a > 0.0));
    assert_eq!(second["Retried"], 2.0);
    assert_eq!(second["ColdStart"], 0.0);
    let names: Vec<&str> = first["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .filter_map(|m| m["Name"].as_str())
        .collect();
    for n in [
        "Records",
        "Succeeded",
        "Retried",
        "Poisoned",
        "Failed",
        "BatchDuration",
        "ColdStart",
    ] {
        assert!(names.contains(&n), "{n} declared");
    }
}

#[tokio::test]
async fn logs_carry_message_sns_task_ids_receive_count_and_traceparent() {
    // GIVEN a JSON subscriber writing to a buffer, scoped to this test
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let b = bed();

    // WHEN an enveloped record is retried
    b.engine
        .process(
            fixture("sqs-sns-envelope.json"),
            Deadline::none(),
            |m: Message<Order>| async move {
                if m.payload.order_id == "o-1001" {
                    Err(Failure::retry("downstream 503"))
                } else {
                    Ok(())
                }
            },
        )
        .await
        .expect("response");

    // THEN the retry line names the record by every id
    let text = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["reason"] == "downstream 503")
        .expect("a retry log line");
    let span = &line["span"];
    assert_eq!(span["message_id"], "0e7a3c1b-0000-4b7e-9f3a-5c2d8e1f0000");
    assert_eq!(
        span["sns_message_id"],
        "6f1c3b7e-0d5a-5b8e-9a41-2f8c1e4d1001"
    );
    assert_eq!(
        span["task_id"], "task-1001",
        "the publisher's task_id attribute"
    );
    assert_eq!(span["receive_count"], 1);
    assert_eq!(
        span["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
}

#[test]
fn a_deadline_long_past_at_the_start_is_unknown_not_due() {
    // GIVEN cargo-lambda 1.9's `lambda-runtime-deadline-ms: 600000` (a duration, read as 1970),
    // a deadline two seconds ago, and one a minute ahead
    let now = SystemTime::now();
    let epoch_ms = |t: SystemTime| {
        u64::try_from(
            t.duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("fits")
    };

    // WHEN each is read as the invocation's deadline
    let bogus = Deadline::from_epoch_ms(600_000, now);
    let just_past = Deadline::from_epoch_ms(epoch_ms(now - Duration::from_secs(2)), now);
    let ahead = Deadline::from_epoch_ms(epoch_ms(now + Duration::from_secs(60)), now);

    // THEN the impossible one is no deadline, the recent one is due now, the future one holds
    assert_eq!(bogus, Deadline::none());
    assert_eq!(just_past.remaining(), Some(Duration::ZERO));
    assert!(
        ahead
            .remaining()
            .is_some_and(|left| left > Duration::from_secs(50))
    );
}

#[tokio::test]
async fn a_record_with_a_bad_field_fails_alone_and_the_rest_of_the_batch_runs() {
    // GIVEN Powertools' sample shape: the second record's binary attribute is not base64, so
    // the event does not deserialise as a whole (the runtime alone would fail the invocation)
    let json = std::fs::read_to_string(crate::testing::fixture_path("sqs-malformed-record.json"))
        .expect("fixture");
    assert!(serde_json::from_str::<SqsEvent>(&json).is_err());
    let b = bed();
    let ran = Mutex::new(Vec::new());

    // WHEN the engine takes the event apart record by record
    let report = b
        .engine
        .process_json(&json, Deadline::none(), |m: Message<Order>| {
            ran.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(m.payload.order_id.clone());
            async { Ok(()) }
        })
        .await
        .expect("response");

    // THEN only the malformed record is reported failed, by its id, and the others ran
    assert_eq!(
        report.failed_ids(),
        ["0e7a3c1b-0051-4b7e-9f3a-5c2d8e1f0051"]
    );
    let mut ran = ran.into_inner().unwrap_or_default();
    ran.sort();
    assert_eq!(ran, ["o-6001", "o-6003"]);
    assert!(matches!(
        outcome_of(&report, "0e7a3c1b-0051-4b7e-9f3a-5c2d8e1f0051"),
        Outcome::Failed {
            cause: Cause::Malformed,
            ..
        }
    ));
}

#[tokio::test]
async fn an_event_that_is_not_an_sqs_event_is_an_error_not_a_panic() {
    let b = bed();
    let e = b
        .engine
        .process_json(
            r#"{"Records": "nope"}"#,
            Deadline::none(),
            |_: Message<Order>| async { Ok(()) },
        )
        .await
        .expect_err("no records to name");
    assert!(matches!(e, EngineError::Malformed(_)), "{e}");
}

#[tokio::test]
async fn sns_control_messages_are_skipped_and_never_reach_the_consumer() {
    // GIVEN a batch with an SNS SubscriptionConfirmation, an UnsubscribeConfirmation and one
    // ordinary order
    let b = bed();
    let mut event = raw_batch(3);
    for (r, kind) in event
        .records
        .iter_mut()
        .zip(["SubscriptionConfirmation", "UnsubscribeConfirmation"])
    {
        r.body = Some(
            serde_json::json!({
                "Type": kind,
                "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                "Token": "2336412f37f",
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-events",
                "Message": "You have chosen to subscribe to the topic",
                "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                "Timestamp": "2026-01-01T00:00:00.000Z",
            })
            .to_string(),
        );
    }
    let seen = Mutex::new(Vec::new());

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |m: Message<Order>| {
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(m.message_id().map(str::to_owned));
            async { Ok(()) }
        })
        .await
        .expect("response");

    // THEN only the order reached the consumer; the control messages succeed as skipped,
    // and the metric counts them
    assert_eq!(
        seen.into_inner().unwrap_or_default(),
        [Some("m-2".to_owned())]
    );
    assert!(report.failed_ids().is_empty());
    assert_eq!(
        outcome_of(&report, "m-0"),
        &Outcome::Skipped {
            kind: "SubscriptionConfirmation"
        }
    );
    let docs = b.metrics.lock().expect("lock").clone();
    assert_eq!(docs[0]["Skipped"], 2.0);
    assert_eq!(docs[0]["Succeeded"], 1.0);
}

#[tokio::test]
async fn hostile_timestamps_and_delays_saturate_instead_of_overflowing() {
    // GIVEN a record whose SentTimestamp is i64::MIN, and a consumer asking for a retry after
    // Duration::MAX (both once overflowed: a panic outside the record's isolation)
    let b = bed();
    let mut event = raw_batch(1);
    event.records[0]
        .attributes
        .insert("SentTimestamp".into(), i64::MIN.to_string());

    // WHEN processed
    let report = b
        .engine
        .process(event, Deadline::none(), |_: Message<Order>| async {
            Err(Failure::retry_after("busy", Duration::MAX))
        })
        .await
        .expect("response");

    // THEN the record is retried with the longest visibility SQS allows, and the age is a
    // large number, not a wrap-around
    assert_eq!(report.failed_ids(), ["m-0"]);
    let calls = b.queues.visibility_calls();
    assert_eq!(
        u64::from(calls[0][0].timeout_secs),
        crate::backoff::MAX_BACKOFF.as_secs()
    );
    let docs = b.metrics.lock().expect("lock").clone();
    assert!(
        docs[0]["MessageAge"].as_f64().is_some_and(|a| a > 1e18),
        "{}",
        docs[0]
    );
}

/// A raw record whose body is `bytes` long, poisoned by the consumer.
fn big_poison_event(bytes: usize) -> SqsEvent {
    let mut event = raw_batch(1);
    event.records[0].body = Some(format!(
        r#"{{"order_id":"{}","amount_cents":0}}"#,
        "x".repeat(bytes.saturating_sub(35))
    ));
    event.records[0].message_attributes.clear();
    event
}

fn reason_of(sent: &crate::sqs::SentMessage) -> Option<&OutgoingValue> {
    sent.message
        .attributes
        .get(crate::poison::REASON_ATTRIBUTE)
        .map(|a| &a.value)
}

#[tokio::test]
async fn a_poison_copy_follows_the_dlqs_maximum_message_size_read_once() {
    // Issue 12, point 8: SQS accepts messages up to 1 MiB, but on 6b129e9 the engine assumed
    // 256 KiB, so a poison copy between the two lost its reason.
    // GIVEN a DLQ whose MaximumMessageSize is 1 MiB, and two batches each poisoning a
    // 300 KiB record
    let b = bed_with(
        FakeQueues::new().with_maximum_message_size(1024 * 1024),
        |_| {},
    );
    for _ in 0..2 {
        b.engine
            .process(big_poison_event(300 * 1024), Deadline::none(), validate)
            .await
            .expect("response");
    }

    // THEN both copies carry their reason, and the size was read once, with the redrive policy
    let sent = b.queues.sent();
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(
            reason_of(s),
            Some(&OutgoingValue::Text("amount must be positive".into()))
        );
    }
    assert_eq!(b.queues.size_lookups(), 1);
    let docs = b.metrics.lock().expect("lock").clone();
    assert_eq!(docs[0]["PoisonReasonTruncated"], 0.0);
}

#[tokio::test]
async fn a_copy_that_cannot_carry_its_reason_still_reports_it_in_the_metric() {
    // Issue 12, point 8: a copy that cannot carry its reason still gets it in the log and the
    // metric.
    // GIVEN a DLQ whose limit the body alone fills
    let b = bed_with(FakeQueues::new().with_maximum_message_size(2048), |_| {});

    // WHEN a 2,048-byte record is poison
    let report = b
        .engine
        .process(big_poison_event(2048), Deadline::none(), validate)
        .await
        .expect("response");

    // THEN the copy is in the DLQ without the reason, and the metric counts it
    assert!(report.response.batch_item_failures.is_empty());
    let sent = b.queues.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(reason_of(&sent[0]), None);
    let docs = b.metrics.lock().expect("lock").clone();
    assert_eq!(docs[0]["Poisoned"], 1.0);
    assert_eq!(docs[0]["PoisonReasonTruncated"], 1.0);
}

#[tokio::test]
async fn max_message_bytes_configured_overrides_the_queue() {
    // GIVEN MAILROOM_MAX_MESSAGE_BYTES set: the queue's size is not read
    let b = bed_with(FakeQueues::new(), |c| c.max_message_bytes = Some(4096));
    b.engine
        .process(big_poison_event(300), Deadline::none(), validate)
        .await
        .expect("response");
    assert_eq!(b.queues.size_lookups(), 0);
    assert!(reason_of(&b.queues.sent()[0]).is_some());
}

#[tokio::test]
async fn dwell_time_is_reported_per_tenant_by_attribute_or_message_group() {
    // GIVEN a batch of three: tenant `acme` by attribute (sent 5 s ago), tenant `globex` by
    // message group (sent 9 s ago and 2 s ago), and one without a tenant
    let b = bed();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let mut event = raw_batch(4);
    let sent = |r: &mut aws_lambda_events::sqs::SqsMessage, secs: u128| {
        r.attributes
            .insert("SentTimestamp".into(), (now - secs * 1000).to_string());
    };
    let mut tenant = aws_lambda_events::sqs::SqsMessageAttribute::default();
    tenant.string_value = Some("acme".into());
    tenant.data_type = Some("String".into());
    event.records[0]
        .message_attributes
        .insert("tenant".into(), tenant);
    sent(&mut event.records[0], 5);
    for (r, secs) in [(1, 9), (2, 2)] {
        event.records[r]
            .attributes
            .insert("MessageGroupId".into(), "globex".into());
        sent(&mut event.records[r], secs);
    }

    // WHEN it runs
    b.engine
        .process(event, Deadline::none(), |_: Message<Order>| async {
            Ok(())
        })
        .await
        .expect("runs");

    // THEN besides the batch's line, one MessageAge line per tenant, with its oldest message
    let docs = b.metrics.lock().expect("lock").clone();
    let per_tenant: std::collections::BTreeMap<&str, f64> = docs
        .iter()
        .filter_map(|d| Some((d["Tenant"].as_str()?, d["MessageAge"].as_f64()?)))
        .collect();
    assert_eq!(per_tenant.len(), 2, "{docs:#?}");
    assert!(
        (8_900.0..20_000.0).contains(&per_tenant["globex"]),
        "{per_tenant:?}"
    );
    assert!(
        (4_900.0..8_900.0).contains(&per_tenant["acme"]),
        "{per_tenant:?}"
    );
    let dims = &docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0];
    assert_eq!(dims, &serde_json::json!(["Consumer", "Tenant"]));
}
