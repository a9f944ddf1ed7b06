//! Issue 16's outage scenario, as the README runs it: `mailroom local demo --outage 1200`.
//! The webhook is down for 20 s (1200 s at speed ×60), then back; once with the notifier's
//! circuit breaker, once with it switched off. Delivered orders are counted from each
//! webhook's own log, independently of the demo's summary.
//! The function binaries must be built (`scripts/test.sh` builds them first).

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// Orders in a webhook's log, with how many times each was accepted.
fn accepted(log: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in std::fs::read_to_string(log)
        .expect("the webhook's log")
        .lines()
    {
        let doc: Value = serde_json::from_str(line).expect("a JSON line");
        *out.entry(doc["order_id"].as_str().expect("an order id").to_owned())
            .or_default() += 1;
    }
    out
}

#[test]
fn with_the_breaker_an_outage_dead_letters_nothing_and_alarms_once() {
    let logs = support::log_dir("outage");
    let report = support::demo(
        &["--outage", "1200", "--events", "40", "--stack", "outage"],
        &logs,
    );
    let (with, without) = (&report["with_breaker"], &report["without_breaker"]);

    // With the breaker: every order delivered once by the webhook's own log, none
    // dead-lettered, one ALARM when it opened and one RESOLVED when it closed.
    let delivered = accepted(&logs.join("outage-with/webhook.jsonl"));
    assert_eq!(delivered.len(), 40, "{report:#}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    assert_eq!(with["dead_lettered"], 0, "{report:#}");
    assert_eq!(with["lost"], 0, "{report:#}");
    let alerts: Vec<&str> = with["breaker_alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(
        alerts[0].starts_with("ALARM breaker:notifier/"),
        "{alerts:?}"
    );
    assert!(alerts[0].contains("HTTP 503"), "{alerts:?}");
    assert!(
        alerts[1].starts_with("RESOLVED breaker:notifier/"),
        "{alerts:?}"
    );

    // While it was down, after the breaker opened, the webhook saw the probes (each logged by
    // the notifier that ran it) and at most one batch that another execution environment had
    // already let through its gate: a handful, against every record's every retry without it.
    let probes: usize = ["notifier-0.log", "notifier-1.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(logs.join("outage-with").join(f)).ok())
        .map(|log| log.matches("circuit half-open: one record probes").count())
        .sum();
    assert!(probes >= 1, "{report:#}");
    let after = with["calls_after_open"].as_u64().expect("a count");
    assert!(
        after as usize <= probes + 10,
        "{after} calls after it opened, {probes} probes: {report:#}"
    );

    // Without it: what the webhook did not take is in the DLQ (nothing lost either way), and
    // the down webhook was called several times as often.
    let delivered_without = accepted(&logs.join("outage-without/webhook.jsonl")).len();
    let dead = without["dead_lettered"].as_u64().expect("a count");
    assert!(dead > 0, "{report:#}");
    assert_eq!(delivered_without as u64 + dead, 40, "{report:#}");
    let calls = |v: &Value| v["calls_while_down"].as_u64().expect("a count");
    assert!(calls(with) * 3 < calls(without), "{report:#}");
    assert_eq!(without["breaker_alerts"].as_array().map(Vec::len), Some(0));
}
