//! A consumer in its own repository (issue 14, point 4), as the README shows it: `mailroom new
//! app` creates an application outside this checkout (a workspace on Mailroom's library by
//! path, a template with the events topic, the ledger and the alerts topic, and the consumer
//! definition); `mailroom new consumer --root` adds a consumer to it; the template is clean for
//! SAM's validator and cfn-lint; the crate builds; and `mailroom local up --template PATH`
//! runs that application: the consumer gets exactly the events its filter admits (read from
//! its own log). The function binaries must be built (`scripts/test.sh` builds them first).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{attribute, cargo, handled, mailroom, text};

/// The value after `flag` on a line `mailroom local up` printed.
fn after<'a>(lines: &'a [String], flag: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == flag)?;
        words.next()
    })
}

fn venv_tool(root: &Path, tool: &str, args: &[&str], dir: &Path) {
    let out = Command::new(root.join(".venv/bin").join(tool))
        .args(args)
        .current_dir(dir)
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .expect("the venv's tool runs");
    assert!(
        out.status.success(),
        "{tool} {args:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_in_its_own_repository_runs_with_local_up_template() {
    let root = mailroom_local::workspace_root()
        .canonicalize()
        .expect("the checkout");
    let bin_dir = std::path::PathBuf::from(env!("CARGO_BIN_EXE_mailroom"))
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    let target = bin_dir
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let base = std::env::temp_dir().join(format!("mailroom-own-repo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("mkdir");
    let app = base.join("shop");

    // GIVEN an application of its own, made with one command, and a consumer added to it
    let out = mailroom(&base, &["new", "app", "shop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("mailroom local up --template template.yaml"),
        "{said}"
    );
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains(&format!(
            "mailroom-lambda = {{ path = \"{}\" }}",
            root.display()
        )),
        "{manifest}"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("templates/consumer.yaml")).expect("the definition"),
        std::fs::read_to_string(root.join("templates/consumer.yaml")).expect("ours"),
        "the consumer definition, as this checkout has it"
    );
    let again = mailroom(&base, &["new", "app", "shop"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("not empty")
            && text(&again.stderr).contains("nothing written"),
        "{}",
        text(&again.stderr)
    );
    let out = mailroom(
        &base,
        &[
            "new",
            "consumer",
            "order-audit",
            "--filter",
            "kind=order.placed",
            "--root",
            "shop",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("mailroom local up --template template.yaml") && !said.contains("local demo"),
        "the next steps are the application's own: {said}"
    );

    // THEN its template is clean for SAM's validator and cfn-lint
    venv_tool(
        &root,
        "sam",
        &[
            "validate",
            "--lint",
            "--template",
            "template.yaml",
            "--region",
            "us-east-1",
        ],
        &app,
    );
    venv_tool(
        &root,
        "cfn-lint",
        &["template.yaml", "templates/consumer.yaml"],
        &app,
    );

    // AND it builds against Mailroom's library by path (the checkout's lock file pins the
    // versions this machine has; the shared target directory keeps it from building them again)
    std::fs::copy(root.join("Cargo.lock"), app.join("Cargo.lock")).expect("lock file");
    cargo(&app, &target, &["build", "--bins"]);

    // WHEN `mailroom local up --template template.yaml` runs it, from its own directory
    let stack = format!("own-{}", std::process::id());
    let logs = base.join("logs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args([
            "local",
            "up",
            "--template",
            "template.yaml",
            "--speed",
            "60",
        ])
        .args(["--stack", &stack])
        .arg("--log-dir")
        .arg(&logs)
        .current_dir(&app)
        .env_remove("MAILROOM_ENDPOINT_URL")
        .env_remove("MAILROOM_VENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mailroom runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let started = Instant::now();
    while !lines.iter().any(|l| l.contains("AWS_DEFAULT_REGION=")) {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                let err = child.wait_with_output().map(|o| text(&o.stderr));
                panic!("`mailroom local up --template` did not come up ({e}): {lines:#?} {err:?}");
            }
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("OrderAudit/Function") && l.contains("order-audit")),
        "the nested consumer runs: {lines:#?}"
    );
    let endpoint = after(&lines, "--endpoint-url")
        .expect("the emulator")
        .to_owned();
    let topic = after(&lines, "--topic")
        .expect("the events topic")
        .to_owned();
    let sns = aws_sdk_sns::Client::new(&mailroom_local::emulator_config(&endpoint).await);
    for (task, kind) in [
        ("own-1", "order.placed"),
        ("own-r", "refund.issued"),
        ("own-2", "order.placed"),
    ] {
        sns.publish()
            .topic_arn(&topic)
            .message(r#"{"order_id":"x"}"#)
            .message_attributes("kind", attribute(kind))
            .message_attributes("task_id", attribute(task))
            .send()
            .await
            .expect("Publish");
    }

    // THEN its consumer logs exactly the two orders, once each
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = if logs.exists() {
            handled(&logs, "order-audit")
        } else {
            Vec::new()
        };
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A moment more, so a third (wrong) delivery would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen_after = handled(&logs, "order-audit");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(seen, ["own-1", "own-2"]);
    assert_eq!(seen_after, ["own-1", "own-2"]);
    let _ = std::fs::remove_dir_all(&base);
}
