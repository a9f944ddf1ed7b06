//! What the tests that run `mailroom` as a user share.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Output};

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
