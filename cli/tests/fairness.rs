//! Issue 16's noisy tenant, as the README runs it: `mailroom local demo --noisy-tenant --events 220`. One
//! tenant publishes ten times the other's volume at once, to a webhook slower than the burst;
//! with the test bed's emulation of SQS fair queues the quiet tenant is served ahead of most
//! of the burst, without it behind all of it. Asserted on the webhook's order of acceptance
//! (not on times), from the demo's JSON, which the webhook's own record feeds.
//! The function binaries must be built (`scripts/test.sh` builds them first).

use std::path::Path;
use std::process::{Command, Stdio};

use mailroom_local::testbed::endpoint;
use serde_json::Value;

#[test]
fn with_fair_queues_the_quiet_tenant_is_not_stuck_behind_the_noisy_ones_burst() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mailroom"))
        .parent()
        .expect("a target directory");
    let out = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(&root)
        .args([
            "local",
            "demo",
            "--noisy-tenant",
            "--events",
            "220",
            "--json",
            "--stack",
            "tenants",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--log-dir")
        .arg(std::env::temp_dir().join(format!("mailroom-tenants-{}", std::process::id())))
        .env("MAILROOM_ENDPOINT_URL", endpoint())
        .stdin(Stdio::null())
        .output()
        .expect("mailroom runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let (fair, plain) = (&report["with_fair_queues"], &report["without"]);
    for half in [fair, plain] {
        assert_eq!(half["noisy_published"], 200, "{report:#}");
        assert_eq!(half["quiet_published"], 20, "{report:#}");
        assert_eq!(half["delivered"], 220, "every event delivered: {report:#}");
    }
    let behind = |h: &Value| h["quiet_behind_noisy_p95"].as_f64().expect("a share");
    assert!(
        behind(plain) > 0.9,
        "plain order: behind the burst: {report:#}"
    );
    assert!(
        behind(fair) < 0.6,
        "fair queues: ahead of most of it: {report:#}"
    );
}
