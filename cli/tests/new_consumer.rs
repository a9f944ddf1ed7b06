//! `mailroom new consumer` as a user runs it (issue 14, points 3 and 5): in a copy of this
//! repository, one command adds `audit-log` filtered on `kind=order.placed`, and with no other
//! edit the template stays clean (`sam validate --lint`, cfn-lint, checkov), the new crate
//! builds and passes its own tests, and on the local pipeline the consumer gets exactly the
//! events its filter admits (read from its own log), the monitor registers and sweeps it and
//! raises the alarm for its DLQ (read from the alerts topic), and dlq-replay accepts its DLQ.
//! The function binaries must be built (`scripts/test.sh` builds them first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailroom_local::pipeline::{Options, Pipeline};
use serde_json::{Value, json};

mod support;
use support::{attribute, cargo, handled, mailroom, text};

/// Every file git tracks under `root`, copied to `to`: a fresh checkout, without the target
/// directory or the venvs.
fn copy_repository(root: &Path, to: &Path) {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files");
    for file in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let file = std::str::from_utf8(file).expect("a UTF-8 path");
        let (from, dest) = (root.join(file), to.join(file));
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&from, &dest).expect("copy");
    }
}

/// Every file under `dir`, by path relative to it, with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with(".venv") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("readable"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_added_with_one_command_is_fed_watched_alarmed_and_replayable() {
    let root = mailroom_local::workspace_root()
        .canonicalize()
        .expect("the checkout");
    let copy = std::env::temp_dir().join(format!("mailroom-new-consumer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    copy_repository(&root, &copy);
    for venv in [".venv", ".venv-checkov"] {
        if root.join(venv).exists() {
            std::os::unix::fs::symlink(root.join(venv), copy.join(venv)).expect("symlink");
        }
    }
    let before = snapshot(&copy);

    // GIVEN names that cannot be a new consumer: each refused, nothing written
    for (args, says) in [
        (vec!["new", "consumer", "Audit_Log"], "not a consumer name"),
        (vec!["new", "consumer", "notifier"], "exists already"),
        (
            vec!["new", "consumer", "audit-log", "--filter", "kind"],
            "expected KEY=VALUE",
        ),
    ] {
        let out = mailroom(&copy, &args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = text(&out.stderr);
        assert!(
            err.contains(says) && err.contains("nothing written"),
            "{args:?}: {err}"
        );
        assert_eq!(snapshot(&copy), before, "{args:?} changed the project");
    }

    // WHEN one command adds the consumer
    let out = mailroom(
        &copy,
        &[
            "new",
            "consumer",
            "audit-log",
            "--filter",
            "kind=order.placed",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("cargo test -p audit-log"), "{said}");

    // THEN only the workspace list, the template and the new crate changed
    let after = snapshot(&copy);
    let changed: BTreeSet<String> = after
        .iter()
        .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from(
            [
                "Cargo.toml",
                "template.yaml",
                "functions/audit-log/Cargo.toml",
                "functions/audit-log/src/lib.rs",
                "functions/audit-log/src/main.rs",
                "functions/audit-log/tests/handler.rs",
            ]
            .map(str::to_owned)
        )
    );
    assert_eq!(
        after.len() - before.len(),
        4,
        "nothing removed, four files added"
    );

    // AND the consumer is one short block in template.yaml, nesting the consumer definition
    let template = std::fs::read_to_string(copy.join("template.yaml")).expect("template");
    let block: Vec<&str> = template
        .lines()
        .skip_while(|l| *l != "  AuditLog:")
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        (5..=15).contains(&block.len()),
        "a consumer's block is at most 15 lines: {block:#?}"
    );
    assert!(
        block.contains(&"      Location: templates/consumer.yaml"),
        "{block:#?}"
    );
    assert!(
        block.contains(&r#"        FilterPolicy: '{"kind":["order.placed"]}'"#),
        "{block:#?}"
    );

    // AND the template stays clean for SAM's validator, cfn-lint and checkov
    let check = Command::new("bash")
        .arg(copy.join("scripts/check-template.sh"))
        .env_remove("MAILROOM_SAM_BUILD")
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );

    // AND the new crate is formatted as the project's CI wants, builds, and passes the tests
    // it came with
    let fmt = Command::new("cargo")
        .args(["fmt", "-p", "audit-log", "--check"])
        .current_dir(&copy)
        .output()
        .expect("cargo fmt runs");
    assert!(fmt.status.success(), "{}", text(&fmt.stdout));
    // The target directory this test binary was built in (CARGO_TARGET_DIR or not), whose
    // `debug/` holds the function binaries the pipeline runs.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mailroom"))
        .parent()
        .expect("a profile directory")
        .to_path_buf();
    let target = bin_dir.parent().expect("a target directory").to_path_buf();
    cargo(&copy, &target, &["build", "-p", "audit-log", "--bins"]);
    cargo(&copy, &target, &["test", "-p", "audit-log"]);

    // AND on the local pipeline (the new consumer, the monitor and the replay; the notifier's
    // webhook is not this test's), it is fed, watched, alarmed and replayable
    let stack = format!("newc-{}", std::process::id());
    let logs = root.join("target/local-logs").join(&stack);
    let set = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    };
    let options = Options {
        template: None,
        root: copy.clone(),
        bin_dir: bin_dir.clone(),
        stack: stack.clone(),
        parameters: std::collections::HashMap::new(),
        env: BTreeMap::from([(
            "task-monitor".to_owned(),
            set(&[("NOTIFIER_SIGNING_SECRET_PARAMETER", None)]),
        )]),
        substitutes: BTreeMap::new(),
        speed: 60,
        log_dir: Some(logs.clone()),
        endpoint: None,
        faults: None,
        only: Some(
            [
                "AuditLog/Function",
                "TaskMonitorFunction",
                "DlqReplayFunction",
            ]
            .map(str::to_owned)
            .into(),
        ),
    };
    let p = Pipeline::up(&options).await.expect("the pipeline comes up");
    let topic = p.provisioned.topics["EventsTopic"].clone();
    let alerts = p.provisioned.topics["AlertsTopic"].clone();
    let (inbox_url, inbox_arn) =
        mailroom_local::create_queue(&p.clients.sqs, &format!("{stack}-inbox"), &[])
            .await
            .expect("inbox");
    p.clients
        .sns
        .subscribe()
        .topic_arn(&alerts)
        .protocol("sqs")
        .endpoint(inbox_arn.as_str())
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("Subscribe");

    // Three orders, two refunds (not for it), and one order whose body is not JSON.
    let events = [
        ("o-1", "order.placed", r#"{"order_id":"o-1"}"#),
        ("o-2", "order.placed", r#"{"order_id":"o-2"}"#),
        ("r-1", "refund.issued", r#"{"refund_id":"r-1"}"#),
        ("o-3", "order.placed", r#"{"order_id":"o-3"}"#),
        ("r-2", "refund.issued", r#"{"refund_id":"r-2"}"#),
        ("o-bad", "order.placed", "not json"),
    ];
    for (task, kind, body) in events {
        p.clients
            .sns
            .publish()
            .topic_arn(&topic)
            .message(body)
            .message_attributes("kind", attribute(kind))
            .message_attributes("task_id", attribute(task))
            .send()
            .await
            .expect("Publish");
    }
    let (dlq_url, _) = p.provisioned.queues["AuditLog/DLQ"].clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (queue, q_flight) = p.depth("AuditLog/Queue").await;
        let (monitor, m_flight) = p.depth("MonitorQueue").await;
        let (dead, _) = p.depth("AuditLog/DLQ").await;
        if queue + monitor + q_flight + m_flight == 0 && dead == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the queues did not drain");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // What the consumer itself logged: the three orders, once each, nothing else.
    let handled_here = handled(&logs, "audit-log");
    assert_eq!(handled_here, ["o-1", "o-2", "o-3"]);

    // The ledger: the monitor registered the orders for it (not the refunds), and each ended
    // as it should.
    let ledger = mailroom_lambda::ledger::Ledger::new(
        p.clients.dynamodb.clone(),
        p.provisioned.tables["LedgerTable"].clone(),
    );
    for (task, kind, _) in events {
        let story = ledger.story(task).await.expect("story");
        let state = story
            .consumers
            .iter()
            .find(|e| e.consumer == "audit-log")
            .map(|e| e.state.as_str());
        let expected = match (task, kind) {
            ("o-bad", _) => Some("DEAD_LETTERED"),
            (_, "order.placed") => Some("SUCCEEDED"),
            _ => None,
        };
        assert_eq!(state, expected, "{task}: {story:?}");
        assert!(
            story.consumers.iter().any(|e| e.consumer == "notifier"),
            "{task}: the notifier is registered too: {story:?}"
        );
    }

    // The monitor's sweep watches its DLQ and alarms it.
    let sweep: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("events/monitor-sweep.json")).expect("fixture"),
    )
    .expect("JSON");
    let report = p
        .function("TaskMonitorFunction")
        .expect("the monitor")
        .invoke(&sweep)
        .await
        .expect("a sweep");
    let dlqs = report["dlqs"].as_array().cloned().unwrap_or_default();
    assert!(
        dlqs.iter()
            .any(|d| d["url"] == dlq_url.as_str() && d["depth"] == 1),
        "{report:#}"
    );
    let got = p
        .clients
        .sqs
        .receive_message()
        .queue_url(inbox_url.as_str())
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    let alarms: Vec<String> = got.iter().filter_map(|m| m.body.clone()).collect();
    assert!(
        alarms
            .iter()
            .any(|a| a.contains("ALARM") && a.contains(&format!("{stack}-audit-log-dlq"))),
        "{alarms:#?}"
    );

    // dlq-replay accepts its DLQ (discovered, never listed) and moves the message back.
    let replayed = p
        .function("DlqReplayFunction")
        .expect("the replay")
        .invoke(&json!({ "source": dlq_url.as_str() }))
        .await
        .expect("a replay");
    assert_eq!(replayed["moved"], 1, "{replayed:#}");

    p.down().await;

    // AND the README's next step, `mailroom local demo`, runs the application with it: every
    // order of the demo reaches it once, and the demo's own checks pass.
    let demo_stack = format!("newd-{}", std::process::id());
    let demo_logs = root.join("target/local-logs").join(&demo_stack);
    let demo = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args([
            "local",
            "demo",
            "--events",
            "40",
            "--json",
            "--stack",
            &demo_stack,
        ])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--log-dir")
        .arg(&demo_logs)
        .current_dir(&copy)
        .env_remove("MAILROOM_ENDPOINT_URL")
        .output()
        .expect("mailroom runs");
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    let summary: Value = serde_json::from_slice(&demo.stdout).expect("the demo's summary");
    assert_eq!(summary["lost"], 0, "{summary:#}");
    let ids = handled(&demo_logs, "audit-log");
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 40, "{ids:?}");
    assert_eq!(ids.len(), 40, "each order handled once: {ids:?}");

    let _ = std::fs::remove_dir_all(&copy);
}
