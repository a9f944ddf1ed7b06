//! `cargo bench -p mailroom-cli --bench pipeline`: end-to-end throughput of the local pipeline.
//! It runs `mailroom local demo --events N --speed 60 --json` (N = `MAILROOM_BENCH_EVENTS`,
//! default 1,000) from the project root, on its own emulator, with the demo's whole fault mix,
//! and prints the demo's wall time and events per second. The function binaries must be built
//! (`cargo build --workspace --bins`).
//!
//! Under `cargo test` (no `--bench` argument) it runs nothing: the end-to-end test already
//! plays 2,000 events through the same path, and a throughput figure belongs here, not in a
//! timed test.

use std::process::Command;
use std::time::Instant;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("pipeline: run `cargo bench -p mailroom-cli --bench pipeline` to measure");
        return;
    }
    let events = mailroom_lambda::Env::process()
        .positive("MAILROOM_BENCH_EVENTS")
        .expect("MAILROOM_BENCH_EVENTS: a whole number of at least 1")
        .unwrap_or(1_000);
    let root = mailroom_local::workspace_root();
    let stack = format!("bench-{}", std::process::id());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args([
            "local", "demo", "--speed", "60", "--json", "--stack", &stack,
        ])
        .args(["--events", &events.to_string()])
        // The function binaries as `scripts/demo.sh` builds them, whatever profile this is.
        .arg("--bin-dir")
        .arg(root.join("target/debug"))
        .arg("--log-dir")
        .arg(root.join("target/local-logs").join(&stack))
        .current_dir(root)
        .env_remove("MAILROOM_ENDPOINT_URL")
        .output()
        .expect("mailroom runs");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "the demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the demo's JSON summary");
    let seconds = summary["seconds"].as_f64().unwrap_or(wall);
    println!(
        "pipeline: {events} events in {seconds:.1} s ({:.1} events/s; {wall:.1} s with start-up), lost {}, side effects twice {}",
        f64::from(u32::try_from(events).unwrap_or(u32::MAX)) / seconds,
        summary["lost"],
        summary["duplicate_side_effects"]
    );
}
