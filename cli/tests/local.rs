//! The end-to-end test: `mailroom local demo` with 1,000 events through the whole local
//! pipeline (template.yaml on moto, every function its real binary under the Runtime Interface
//! Emulator), with a fault mix: flaky and refusing webhooks, a panic in 1 of 100 records, and
//! the example consumer's process killed mid-batch once. The function binaries must be built
//! (`scripts/test.sh` builds them first).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn a_thousand_events_all_succeed_once_after_the_dlq_alert_the_replay_and_the_resolution() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mailroom"))
        .parent()
        .expect("a target directory");
    for f in ["notifier", "example-consumer", "task-monitor", "dlq-replay"] {
        assert!(
            bin_dir.join(f).exists(),
            "{f} is not built in {}: run `cargo build --workspace --bins` (scripts/test.sh does)",
            bin_dir.display()
        );
    }
    let logs = std::env::temp_dir().join(format!("mailroom-e2e-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(&root)
        .args([
            "local", "demo", "--events", "1000", "--json", "--stack", "e2e",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--log-dir")
        .arg(&logs)
        .env_remove("MAILROOM_ENDPOINT_URL")
        .stdin(Stdio::null())
        .output()
        .expect("mailroom runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    eprintln!("{s:#}");

    // Every event published, nothing lost, no webhook delivery accepted twice.
    assert_eq!(s["published"], 1000);
    assert_eq!(s["lost"], 0);
    assert_eq!(s["duplicate_side_effects"], 0);
    // Every task SUCCEEDED at both consumers in the ledger.
    for consumer in ["notifier", "example-consumer"] {
        assert_eq!(
            s["consumers"][consumer]["succeeded_in_ledger"], 1000,
            "{consumer}"
        );
    }
    // 1 in 8 met a flaky webhook once: retried, not dead-lettered. 1 in 10 was refused (400)
    // until the fix: poison in the DLQ with its reason, then replayed, every one.
    // (A batch that outlives its visibility timeout on a loaded machine is delivered twice, so
    // a refused event can reach the DLQ twice: at least once, never lost, each copy replayed,
    // and the ledger's lease keeps the copies from being delivered twice.)
    let dead = s["dead_lettered"]["NotifierDLQ"].as_u64().expect("count");
    assert!(dead >= 100, "{dead}");
    assert_eq!(s["replayed"].as_u64(), Some(dead));
    assert!(
        s["consumers"]["notifier"]["records_retried"]
            .as_u64()
            .expect("n")
            >= 100
    );
    assert_eq!(s["dead_lettered"]["ExampleDLQ"], 0);
    // The example consumer panicked on 10 records (each retried alone) and its process was
    // killed mid-batch once (that whole batch failed and came back): all succeeded in the end.
    let example = &s["consumers"]["example-consumer"];
    assert!(
        example["batches_failed"].as_u64().expect("n") >= 1,
        "{example}"
    );
    assert!(
        example["records_retried"].as_u64().expect("n") >= 11,
        "{example}"
    );
    // The alerts topic, read through a queue subscribed to it: the DLQ raised an ALARM when
    // it first filled and was RESOLVED after the replay drained it. The monitor's sweep runs
    // every 5 s here (speed ×60), so the 1,000-event backlog also crosses the scaled 45-minute
    // mark (45 s) and raises the stuck-task alert, which resolves too. Alerts fire on
    // transitions: far fewer messages than sweeps, and every alert ends resolved.
    let alerts: Vec<&str> = s["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dlq: Vec<&str> = alerts
        .iter()
        .filter(|a| a.contains(" dlq:e2e-notifier-dlq:"))
        .copied()
        .collect();
    assert!(
        dlq.first().is_some_and(|a| a.starts_with("ALARM ")),
        "{alerts:?}"
    );
    assert!(
        dlq.last().is_some_and(|a| a.starts_with("RESOLVED ")),
        "{alerts:?}"
    );
    assert_eq!(
        dlq.iter().filter(|a| a.starts_with("RESOLVED ")).count(),
        1,
        "{alerts:?}"
    );
    for key in ["dlq:e2e-notifier-dlq:", "stuck-tasks:"] {
        let last = alerts.iter().rev().find(|a| a.contains(key));
        assert!(
            last.is_none_or(|a| a.starts_with("RESOLVED ")),
            "{key} does not end resolved: {alerts:?}"
        );
    }
    let sweeps = s["sweeps"].as_u64().expect("sweeps");
    assert!(
        (alerts.len() as u64) * 2 < sweeps,
        "{} alerts for {sweeps} sweeps: alerts must fire on transitions, not per sweep",
        alerts.len()
    );
    std::fs::remove_dir_all(&logs).ok();
}
