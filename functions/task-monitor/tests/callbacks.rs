//! Completion callbacks against the emulator's ledger and a real HTTP receiver on loopback:
//! sent once, when the task is final, signed; a refused destination is given up.

#[path = "../../notifier/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Receiver;
use mailroom_lambda::clock::SystemClock;
use mailroom_lambda::ledger::{Acceptance, Ledger};
use mailroom_local::testbed::TestBed;
use mailroom_ops::monitor::filter::FilterPolicy;
use mailroom_ops::monitor::{Monitor, MonitorConfig};
use notifier::config::{Config, Format, SecretSource};
use notifier::{Notifier, SigningKey, signing};
use serde_json::{Value, json};
use task_monitor::callbacks::{CallbackReport, send_due};

const SECRET: &str = "whsec_Y2FsbGJhY2stc2VjcmV0";

fn notifier() -> Notifier {
    let config = Config {
        webhook_url: None,
        format: Format::Json,
        callback_field: None,
        secret: SecretSource::Plain(SECRET.into()),
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        allow_private: true,
    };
    Notifier::new(
        config,
        SigningKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("client")
}

/// A monitor expecting `billing` for every event and `notifier` for order.placed only.
async fn monitor(bed: &TestBed) -> (Monitor, Ledger) {
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let config = MonitorConfig {
        consumers: vec![
            ("billing".into(), FilterPolicy::default()),
            (
                "notifier".into(),
                FilterPolicy::parse(&json!({"kind": ["order.placed"]})).expect("policy"),
            ),
        ],
        ..MonitorConfig::default()
    };
    (
        Monitor::new(config, ledger.clone(), bed.sqs.clone(), bed.sns.clone()),
        ledger,
    )
}

fn accepted(task: &str, kind: &str, url: &str) -> Acceptance {
    Acceptance {
        task_id: task.into(),
        kind: kind.into(),
        tenant: None,
        callback_url: Some(url.into()),
        body_sha256: "h".into(),
        accepted_at_ms: 0,
        callback_done: false,
    }
}

#[tokio::test]
async fn one_signed_callback_goes_out_when_every_expected_consumer_succeeded() {
    // GIVEN an order.placed task with a callback URL, expected at billing and notifier
    let bed = TestBed::new().await;
    let (monitor, ledger) = monitor(&bed).await;
    let rx = Receiver::start().await;
    let sender = notifier();
    ledger
        .accept(&accepted("t-1", "order.placed", &rx.url("/ok")))
        .await
        .expect("accepted");

    // WHEN only billing has succeeded, a sweep's round sends nothing
    ledger.succeed("t-1", "billing").await.expect("billing");
    let first = send_due(&monitor, &sender).await.expect("round");
    assert_eq!(
        first,
        CallbackReport {
            waiting: 1,
            ..CallbackReport::default()
        }
    );
    assert!(
        rx.deliveries().is_empty(),
        "not final: notifier is still owed"
    );

    // WHEN the notifier succeeds too, the next round sends one callback, and later rounds none
    ledger.succeed("t-1", "notifier").await.expect("notifier");
    let second = send_due(&monitor, &sender).await.expect("round");
    let third = send_due(&monitor, &sender).await.expect("round");

    // THEN the receiver got exactly one, verifiable, with the task id as its webhook-id
    assert_eq!(second.sent, 1);
    assert_eq!(
        third,
        CallbackReport::default(),
        "out of the index once sent"
    );
    // AND a producer repeating its request afterwards (same key, same body) does not bring
    // a second callback
    ledger
        .accept(&accepted("t-1", "order.placed", &rx.url("/ok")))
        .await
        .expect("accepted again");
    let after = send_due(&monitor, &sender).await.expect("round");
    assert_eq!(after, CallbackReport::default(), "{after:?}");
    let got = rx.deliveries();
    assert_eq!(got.len(), 1);
    let header = |name: &str| got[0].headers[name].to_str().expect("ascii").to_owned();
    assert_eq!(header(signing::ID_HEADER), "t-1");
    let key = SigningKey::from_secret(SECRET.as_bytes()).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert_eq!(
        key.verify(
            &header(signing::ID_HEADER),
            &header(signing::TIMESTAMP_HEADER),
            &header(signing::SIGNATURE_HEADER),
            &got[0].body,
            now,
            300
        ),
        Ok(())
    );
    let body: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(body["type"], "task.completed");
    assert_eq!(body["status"], "SUCCEEDED");
    assert_eq!(body["consumers"].as_array().expect("consumers").len(), 2);
}

#[tokio::test]
async fn a_dead_letter_is_final_and_a_refused_destination_is_given_up() {
    // GIVEN two tasks of a kind only billing handles: one dead-lettered there, with a
    // receiver that answers; one that succeeded, with a receiver that refuses (404)
    let bed = TestBed::new().await;
    let (monitor, ledger) = monitor(&bed).await;
    let rx = Receiver::start().await;
    let sender = notifier();
    ledger
        .accept(&accepted("t-dead", "order.cancelled", &rx.url("/ok")))
        .await
        .expect("accepted");
    ledger
        .dead_letter("t-dead", "billing", "amount must be positive", None)
        .await
        .expect("dead letter");
    ledger
        .accept(&accepted("t-gone", "order.cancelled", &rx.url("/gone")))
        .await
        .expect("accepted");
    ledger.succeed("t-gone", "billing").await.expect("billing");

    // WHEN a round runs, then another
    let first = send_due(&monitor, &sender).await.expect("round");
    let second = send_due(&monitor, &sender).await.expect("round");

    // THEN the dead letter's callback says so, the refused one is given up, and neither is
    // tried again
    assert_eq!(first.sent, 1, "{first:?}");
    assert_eq!(first.given_up, 1, "{first:?}");
    assert_eq!(second, CallbackReport::default());
    let got = rx.deliveries();
    assert_eq!(got.len(), 2);
    let ok = got
        .iter()
        .find(|d| d.path == "ok")
        .expect("the dead letter's callback");
    let body: Value = serde_json::from_slice(&ok.body).expect("JSON");
    assert_eq!(body["status"], "DEAD_LETTERED");
    assert_eq!(body["task_id"], "t-dead");
    let item = bed
        .dynamodb
        .get_item()
        .table_name(ledger.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("t-gone".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("#task".into()),
        )
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the task's record");
    let outcome = item["callback_outcome"].as_s().expect("outcome");
    assert!(outcome.starts_with("given up: "), "{outcome}");
    assert!(outcome.contains("404"), "{outcome}");
}
