//! The `events/` requests for `sam local invoke DlqReplayFunction` parse into what they say.

use std::path::Path;
use std::time::Duration;

use mailroom_ops::replay::{ReplayRequest, RequestJson};

fn request(name: &str) -> ReplayRequest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str::<RequestJson>(&text)
        .expect("a replay request")
        .into_request()
        .expect("valid")
}

#[test]
fn the_dry_run_event_is_a_dry_run_of_everything() {
    let r = request("replay-dry-run.json");
    assert!(r.dry_run);
    assert!(r.target.is_none(), "the target is found from the DLQ");
}

#[test]
fn the_filtered_event_carries_every_condition() {
    let r = request("replay-filtered.json");
    assert!(!r.dry_run);
    assert_eq!(r.filter.reason_contains.as_deref(), Some("HTTP 503"));
    assert_eq!(r.filter.older_than, Some(Duration::from_secs(300)));
    assert_eq!(r.filter.body_equals.len(), 1);
    assert_eq!(
        (r.max_messages, r.rate_per_sec, r.max_replays),
        (Some(500), Some(50.0), 3)
    );
    assert!(r.backoff.is_some());
}

#[test]
fn the_fifo_event_names_fifo_queues_and_one_message() {
    let r = request("replay-fifo.json");
    assert!(r.target.is_some_and(|t| t.as_str().ends_with(".fifo")));
    assert_eq!(r.filter.message_ids.map(|ids| ids.len()), Some(1));
}

#[test]
fn unknown_fields_are_refused_not_ignored() {
    let typo = r#"{"source": "https://sqs.us-east-1.amazonaws.com/1/q", "dryrun": true}"#;
    assert!(
        serde_json::from_str::<RequestJson>(typo).is_err(),
        "a typo must not turn a dry run into a real one"
    );
}
