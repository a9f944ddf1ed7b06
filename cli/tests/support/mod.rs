//! What the tests that run `mailroom` as a user share.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::Value;

/// `mailroom ARGS` in `dir`.
pub fn mailroom(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("mailroom runs")
}

/// Where this build's function binaries are: beside `mailroom`.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
        .parent()
        .expect("a target directory")
        .to_owned()
}

/// A fresh log directory for one test run.
pub fn log_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mailroom-{name}-{}", std::process::id()))
}

/// `mailroom local demo --json ARGS` from the checkout, with this build's function binaries
/// and their logs in `logs`, on the test bed's shared emulator: its JSON summary. A demo that
/// fails fails the test, with both of its outputs.
pub fn demo(args: &[&str], logs: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(&root)
        .args(["local", "demo", "--json"])
        .args(args)
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--log-dir")
        .arg(logs)
        .env("MAILROOM_ENDPOINT_URL", mailroom_local::testbed::endpoint())
        .stdin(Stdio::null())
        .output()
        .expect("mailroom runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

/// Output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `cargo ARGS` in `dir`, offline, building into the checkout's own target directory so the
/// dependencies are not built again.
pub fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed:\n{}",
        text(&out.stderr)
    );
}

/// The task ids consumer `name` (a `mailroom new consumer` scaffold) logged as handled, from
/// its own log files in `logs`.
pub fn handled(logs: &Path, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(logs)
        .expect("logs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(name))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&format!("{name}: event handled")))
                .filter_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    let fields = v.get("fields").unwrap_or(&v);
                    fields["task_id"].as_str().map(str::to_owned)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids
}

/// A string message attribute.
pub fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("attribute")
}
