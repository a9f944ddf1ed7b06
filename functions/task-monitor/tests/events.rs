//! Every `events/` file for the monitor is recognised as the trigger it stands for, and
//! anything else is a clear error.

use mailroom_lambda::testing::fixture_path;
use task_monitor::{Error, Trigger};

fn trigger(name: &str) -> Result<Trigger, Error> {
    let bytes = std::fs::read(fixture_path(name)).expect("fixture");
    Trigger::of(serde_json::from_slice(&bytes).expect("JSON"))
}

#[test]
fn each_event_file_is_its_trigger() {
    assert!(
        matches!(trigger("sqs-sns-envelope.json"), Ok(Trigger::Registration(b)) if b.records.len() == 3)
    );
    assert!(matches!(
        trigger("monitor-sweep.json"),
        Ok(Trigger::Sweep(_))
    ));
    for status in [
        "monitor-status-task.json",
        "monitor-status-bucket.json",
        "monitor-status-dlqs.json",
    ] {
        assert!(
            matches!(trigger(status), Ok(Trigger::Status(_))),
            "{status}"
        );
    }
}

#[test]
fn an_unknown_or_malformed_event_is_an_error_not_a_panic() {
    let e = Trigger::of(serde_json::json!({"hello": "world"})).expect_err("unknown");
    assert!(e.to_string().contains("unrecognised event"), "{e}");
    let e = Trigger::of(serde_json::json!({"Records": "not a list"})).expect_err("malformed");
    assert!(matches!(e, Error::Malformed { kind: "SQS", .. }), "{e}");
}
