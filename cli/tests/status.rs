//! `mailroom status` as an operator runs it: the real binary against the emulator, as a
//! table, as JSON, and serving the status API over real HTTP on loopback.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailroom_lambda::clock::{Clock, SystemClock};
use mailroom_lambda::ledger::Ledger;
use mailroom_local as local;
use serde_json::Value;

struct Setup {
    endpoint: &'static str,
    table: String,
}

/// A ledger with one task open 50 minutes at billing (failed once) and done at the
/// notifier, and a DLQ with one dead letter carrying its reason.
async fn setup(stem: &str) -> Setup {
    let endpoint = mailroom_local::testbed::endpoint();
    let aws = local::emulator_config(endpoint).await;
    let table = format!("{stem}-ledger");
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    mailroom_local::create_table(&dynamodb, &table)
        .await
        .expect("table");
    let ledger = Ledger::new(dynamodb, &table);
    let opened = SystemClock.now_ms() - 50 * 60 * 1000;
    for consumer in ["billing", "notifier"] {
        ledger
            .register("task-1", consumer, Some(opened))
            .await
            .expect("register");
    }
    ledger
        .acquire("task-1", "billing", "inv", opened + 1_000, None)
        .await
        .expect("lease");
    ledger
        .fail("task-1", "billing", "inv", "payments API 503")
        .await
        .expect("fail");
    ledger.succeed("task-1", "notifier").await.expect("succeed");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (dlq, _) = local::create_queue(&sqs, &format!("{stem}-dlq"), &[])
        .await
        .expect("queue");
    sqs.send_message()
        .queue_url(dlq.as_str())
        .message_body("{}")
        .message_attributes(
            mailroom_lambda::poison::REASON_ATTRIBUTE,
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("amount must be positive")
                .build()
                .expect("attribute"),
        )
        .send()
        .await
        .expect("SendMessage");
    Setup { endpoint, table }
}

fn mailroom(setup: &Setup, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    c.arg("status")
        .args(["--table", &setup.table, "--endpoint-url", setup.endpoint])
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("MAILROOM_MONITOR_DLQS")
        .env_remove("MAILROOM_MONITOR_THRESHOLDS")
        .stdin(Stdio::null());
    c
}

fn run(setup: &Setup, args: &[&str]) -> Output {
    let out = mailroom(setup, args).output().expect("mailroom runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn status_prints_buckets_dlqs_and_one_task_as_tables_and_json() {
    let s = setup("cli-status").await;

    let table = String::from_utf8(run(&s, &["--dlq", "cli-status-dlq"]).stdout).expect("utf-8");
    assert!(table.contains("over-45m   1"), "{table}");
    assert!(
        table.contains("task-1") && table.contains("FAILED"),
        "{table}"
    );
    let dlq_row = table
        .lines()
        .find(|l| l.contains("cli-status-dlq"))
        .expect("a DLQ row");
    assert_eq!(dlq_row.split_whitespace().nth(1), Some("1"), "{table}");

    let json: Value =
        serde_json::from_slice(&run(&s, &["--dlq", "cli-status-dlq", "--json"]).stdout)
            .expect("JSON");
    assert_eq!(json["buckets"][2]["name"], "over-45m");
    assert_eq!(json["buckets"][2]["tasks"][0]["consumer"], "billing");
    assert_eq!(json["dlqs"][0]["depth"], 1);

    let task = String::from_utf8(run(&s, &["--task", "task-1"]).stdout).expect("utf-8");
    assert!(task.starts_with("Task task-1  FAILED"), "{task}");
    assert!(task.contains("payments API 503"), "{task}");

    let missing = mailroom(&s, &["--task", "nope"]).output().expect("runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no task nope"));
}

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn status_serves_the_api_over_http_on_loopback() {
    let s = setup("cli-serve").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = mailroom(&s, &["--dlq", "cli-serve-dlq", "--serve", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serves");
    let client = mailroom_lambda::aws::http_client_builder()
        .build()
        .expect("client");
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();
    let started = Instant::now();
    let task = loop {
        match get("/tasks/task-1").await {
            Ok(r) => break r,
            Err(e) if e.is_connect() && started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the status API never answered: {e}"),
        }
    };
    assert_eq!(task.status(), 200);
    let body = json(task).await;
    assert_eq!(body["status"], "FAILED");
    assert_eq!(body["consumers"][0]["last_error"], "payments API 503");

    let bucket = get("/tasks?bucket=over-45m").await.expect("answer");
    assert_eq!(bucket.status(), 200);
    let body = json(bucket).await;
    assert_eq!(body["buckets"][0]["tasks"][0]["task_id"], "task-1");

    let dlqs = json(get("/dlqs").await.expect("answer")).await;
    assert_eq!(dlqs["dlqs"][0]["depth"], 1);
    assert_eq!(get("/tasks/nope").await.expect("answer").status(), 404);
    assert_eq!(
        client
            .post(format!("http://{addr}/tasks/task-1"))
            .send()
            .await
            .expect("answer")
            .status(),
        405
    );
    server.kill().expect("stops");
    server.wait().expect("reaped");
}

#[tokio::test]
async fn against_a_loopback_emulator_no_credentials_or_region_are_needed_and_errors_are_one_line() {
    // GIVEN a clean environment: no AWS keys, no region, no profile, no home directory
    let s = setup("cli-clean-env").await;
    let clean = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .arg("status")
            .args(["--endpoint-url", s.endpoint])
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("mailroom runs")
    };

    // WHEN status reads the emulator's ledger, and then a table that does not exist
    let ok = clean(&["--table", &s.table, "--json"]);
    let missing = clean(&["--table", "no-such-table"]);

    // THEN the first works with the CLI's own dummy credentials and local region, and the
    // second fails with one readable line: no Debug dump, no backtrace
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("mailroom: "), "{err}");
    assert!(
        !err.contains("Caused by") && !err.contains("backtrace"),
        "{err}"
    );
}
