//! Unit tests of selection and of the copy a replay sends.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;

use super::*;
use mailroom_lambda::poison::REASON_ATTRIBUTE;

fn letter(id: &str, body: &str, attrs: &[(&str, &str)]) -> DeadLetter {
    DeadLetter {
        message_id: id.into(),
        receipt_handle: format!("rh-{id}"),
        body: body.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OutgoingAttribute::string(*v)))
            .collect::<HashMap<_, _>>(),
        group_id: None,
        sent_at_ms: Some(1_000_000),
    }
}

fn request() -> ReplayRequest {
    ReplayRequest::new("https://sqs.local/orders-dlq".parse().expect("url"))
}

#[test]
fn filters_combine_attributes_body_age_reason_and_ids() {
    // GIVEN an enveloped message with a reason, sent 10 minutes before "now"
    let envelope =
        json!({"Type": "Notification", "MessageId": "s", "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": json!({"order_id": "o-1", "tier": 2}).to_string()})
        .to_string();
    let m = letter(
        "m-1",
        &envelope,
        &[
            ("kind", "order.placed"),
            (REASON_ATTRIBUTE, "decode: bad amount"),
        ],
    );
    let now = 1_000_000 + 600_000;

    // THEN each condition selects or rejects on its own
    let yes = |f: Filter| assert!(f.matches(&m, now), "{f:?}");
    let no = |f: Filter| assert!(!f.matches(&m, now), "{f:?}");
    yes(Filter::default());
    yes(Filter {
        attribute_equals: vec![("kind".into(), "order.placed".into())],
        ..Filter::default()
    });
    no(Filter {
        attribute_equals: vec![("kind".into(), "order.cancelled".into())],
        ..Filter::default()
    });
    yes(Filter {
        attribute_present: vec!["kind".into()],
        ..Filter::default()
    });
    no(Filter {
        attribute_present: vec!["tenant".into()],
        ..Filter::default()
    });
    yes(Filter {
        body_equals: vec![("/tier".into(), json!(2))],
        ..Filter::default()
    });
    no(Filter {
        body_equals: vec![("/tier".into(), json!(3))],
        ..Filter::default()
    });
    yes(Filter {
        older_than: Some(Duration::from_secs(300)),
        ..Filter::default()
    });
    no(Filter {
        older_than: Some(Duration::from_secs(900)),
        ..Filter::default()
    });
    yes(Filter {
        newer_than: Some(Duration::from_secs(900)),
        ..Filter::default()
    });
    no(Filter {
        newer_than: Some(Duration::from_secs(60)),
        ..Filter::default()
    });
    yes(Filter {
        reason_contains: Some("decode".into()),
        ..Filter::default()
    });
    no(Filter {
        reason_contains: Some("timeout".into()),
        ..Filter::default()
    });
    yes(Filter {
        message_ids: Some(HashSet::from(["m-1".into()])),
        ..Filter::default()
    });
    no(Filter {
        message_ids: Some(HashSet::from(["m-2".into()])),
        ..Filter::default()
    });
}

#[test]
fn a_replay_copy_keeps_everything_and_counts_the_replay() {
    let m = letter("m-1", "{\"a\":1}", &[("kind", "x")]);
    let Plan::Move(out) = plan(&m, &request(), false, &mut fastrand::Rng::with_seed(1)) else {
        panic!("a first replay moves")
    };
    assert_eq!(out.body, "{\"a\":1}");
    assert_eq!(
        out.attributes["kind"].value,
        OutgoingValue::Text("x".into())
    );
    assert_eq!(
        out.attributes[REPLAY_COUNT_ATTRIBUTE].value,
        OutgoingValue::Text("1".into())
    );
    assert_eq!(out.attributes[REPLAY_COUNT_ATTRIBUTE].data_type, "Number");
    assert_eq!(out.delay_seconds, None);
}

#[test]
fn past_max_replays_it_parks_with_a_reason() {
    let m = letter("m-1", "b", &[(REPLAY_COUNT_ATTRIBUTE, "3")]);
    let Plan::Park(out) = plan(&m, &request(), false, &mut fastrand::Rng::with_seed(1)) else {
        panic!("the fourth replay parks")
    };
    assert!(out.attributes.contains_key(PARKED_ATTRIBUTE));
}

#[test]
fn fifo_keeps_the_group_gets_a_deterministic_dedup_id_and_no_delay() {
    let mut m = letter("m-1", "b", &[]);
    m.group_id = Some("g-1".into());
    let mut r = request();
    r.backoff = Some(BackoffPolicy::default());
    let Plan::Move(a) = plan(&m, &r, true, &mut fastrand::Rng::with_seed(1)) else {
        panic!("moves")
    };
    let Plan::Move(b) = plan(&m, &r, true, &mut fastrand::Rng::with_seed(2)) else {
        panic!("moves")
    };
    assert_eq!(a.group_id.as_deref(), Some("g-1"));
    assert_eq!(a.deduplication_id.as_deref(), Some("replay-1-m-1"));
    assert_eq!(a.deduplication_id, b.deduplication_id);
    assert_eq!(a.delay_seconds, None, "FIFO forbids per-message delays");
}

#[test]
fn fifo_without_a_group_and_full_attribute_sets_are_reported_not_dropped() {
    let no_group = letter("m-1", "b", &[]);
    assert!(
        matches!(plan(&no_group, &request(), true, &mut fastrand::Rng::new()), Plan::Fail(r) if r.contains("MessageGroupId"))
    );
    let attrs: Vec<(String, String)> = (0..10).map(|i| (format!("a{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let full = letter("m-2", "b", &refs);
    assert!(
        matches!(plan(&full, &request(), false, &mut fastrand::Rng::new()), Plan::Fail(r) if r.contains("attributes"))
    );
}

#[test]
fn standard_queues_get_a_jittered_delay_capped_at_900_seconds() {
    let m = letter("m-1", "b", &[(REPLAY_COUNT_ATTRIBUTE, "1")]);
    let mut r = request();
    r.backoff = Some(BackoffPolicy::new(
        Duration::from_secs(600),
        Duration::from_secs(3600),
    ));
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..50 {
        let Plan::Move(out) = plan(&m, &r, false, &mut rng) else {
            panic!("moves")
        };
        assert!(out.delay_seconds.is_some_and(|d| (0..=900).contains(&d)));
    }
}

#[test]
fn the_allowlist_matches_urls_and_names() {
    let list = Allowlist::new(["orders-dlq", "https://sqs.local/orders"]);
    assert!(list.allows(&"https://sqs.local/orders-dlq".parse().expect("url")));
    assert!(list.allows(&"https://sqs.local/orders".parse().expect("url")));
    assert!(!list.allows(&"https://sqs.local/payments".parse().expect("url")));
    assert!(!Allowlist::default().allows(&"https://sqs.local/orders".parse().expect("url")));
}

#[tokio::test]
async fn a_message_received_again_in_one_run_is_counted_once_and_released_with_its_new_handle() {
    // GIVEN a dry run whose hold on "a" expired, so the DLQ hands it out again with a new handle
    let again = DeadLetter {
        receipt_handle: "rh-a-second".into(),
        ..letter("a", "{}", &[])
    };
    let port = FakeDlq::new(vec![
        vec![letter("a", "{}", &[]), letter("b", "{}", &[])],
        vec![again],
    ]);
    let mut request = request();
    request.dry_run = true;
    request.target = Some("https://sqs.local/orders".parse().expect("url"));
    let allow = Allowlist::new(["orders-dlq", "orders"]);

    // WHEN the run ends
    let report = replay(&port, &allow, &request).await.expect("replay");

    // THEN "a" counts once, and its latest handle is released too: SQS honours only that one
    assert_eq!((report.examined, report.would_move), (2, 2), "{report:?}");
    let mut released: Vec<String> = port
        .visibility_calls()
        .into_iter()
        .flatten()
        .map(|c| c.receipt_handle)
        .collect();
    released.sort();
    assert_eq!(released, ["rh-a-second", "rh-b"]);
}

#[tokio::test]
async fn a_dead_letter_is_deleted_only_after_its_copy_is_confirmed_sent() {
    // GIVEN three dead letters, the second of which SQS refuses to accept back
    let port = FakeDlq::new(vec![vec![
        letter("a", r#"{"n":1}"#, &[]),
        letter("b", r#"{"n":2,"refuse":true}"#, &[]),
        letter("c", r#"{"n":3}"#, &[]),
    ]])
    .refusing_bodies_containing("refuse");
    let mut request = request();
    request.target = Some("https://sqs.local/orders".parse().expect("url"));
    let allow = Allowlist::new(["orders-dlq", "orders"]);

    // WHEN the replay runs
    let report = replay(&port, &allow, &request).await.expect("replay");

    // THEN every delete follows the confirmed send of that message's copy, in the fake's own
    // log of calls, and the refused message is never deleted: it stays in the DLQ
    let log = port.log();
    let position = |wanted: &Call| log.iter().position(|c| c == wanted);
    let sent = |body: &str| Call::Sent {
        queue: "https://sqs.local/orders".parse().expect("url"),
        body: body.to_owned(),
    };
    let deleted = |id: &str| Call::Deleted {
        receipt_handle: format!("rh-{id}"),
    };
    for (id, body) in [("a", r#"{"n":1}"#), ("c", r#"{"n":3}"#)] {
        let send = position(&sent(body)).unwrap_or_else(|| panic!("{id} sent: {log:?}"));
        let delete = position(&deleted(id)).unwrap_or_else(|| panic!("{id} deleted: {log:?}"));
        assert!(
            send < delete,
            "{id} deleted before its copy was confirmed: {log:?}"
        );
    }
    assert_eq!(position(&deleted("b")), None, "refused, so kept: {log:?}");
    assert!(
        log.iter().any(|c| matches!(c, Call::Refused { .. })),
        "{log:?}"
    );
    assert_eq!(report.moved, 2, "{report:?}");
}
