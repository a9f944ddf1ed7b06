//! `mailroom status`: the task monitor's view from a terminal (open tasks by bucket, DLQs,
//! one task's detail), or the same status API served on a local port.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_ops::monitor::status::route;
use mailroom_ops::monitor::{Monitor, MonitorConfig};
use serde_json::Value;

/// Options of `mailroom status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The ledger table.
    #[arg(long, env = "MAILROOM_LEDGER_TABLE")]
    table: String,
    /// A DLQ to report on: URL or name (repeatable, or comma-separated).
    #[arg(long = "dlq", env = "MAILROOM_MONITOR_DLQS", value_delimiter = ',')]
    dlqs: Vec<String>,
    /// One task's state per consumer.
    #[arg(long)]
    task: Option<String>,
    /// Only this bucket's tasks (over-5m, over-10m, over-45m by default).
    #[arg(long)]
    bucket: Option<String>,
    /// Bucket thresholds, ascending.
    #[arg(
        long,
        env = "MAILROOM_MONITOR_THRESHOLDS",
        default_value = "5m,10m,45m"
    )]
    thresholds: String,
    /// Print JSON, as the status API returns it.
    #[arg(long)]
    json: bool,
    /// Serve the status API on this loopback address instead (GET /tasks/{id}, /tasks?bucket=…, /dlqs).
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
    /// Use this endpoint (the emulator) instead of AWS.
    #[arg(long, env = "MAILROOM_ENDPOINT_URL")]
    endpoint_url: Option<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let aws = crate::aws_config(args.endpoint_url.as_deref()).await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let mut dlqs: Vec<QueueUrl> = Vec::new();
    for q in &args.dlqs {
        dlqs.push(crate::replay::resolve(&sqs, q).await?);
    }
    let thresholds = args.thresholds.clone();
    let mut config = MonitorConfig::from_env(&mailroom_lambda::Env::from_pairs(&[(
        "MAILROOM_MONITOR_THRESHOLDS",
        &thresholds,
    )]))?;
    config.dlqs = dlqs;
    config.metrics = MetricsSink::Discard;
    let ledger = Ledger::new(aws_sdk_dynamodb::Client::new(&aws), &args.table);
    let monitor = Monitor::new(config, ledger, sqs, aws_sdk_sns::Client::new(&aws));

    if let Some(addr) = args.serve {
        return serve(monitor, addr).await;
    }
    if let Some(task) = &args.task {
        let reply = route(&monitor, "GET", &format!("/tasks/{task}"), "").await;
        if reply.body["status"] == "UNKNOWN" {
            bail!("no task {task} in the ledger (UNKNOWN): check the id, or the --table");
        }
        if reply.status != 200 {
            bail!(
                "{}",
                reply.body["error"].as_str().unwrap_or("status failed")
            );
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reply.body)?);
        } else {
            print_task(&reply.body);
        }
        return Ok(());
    }
    let query = args
        .bucket
        .as_ref()
        .map(|b| format!("bucket={b}"))
        .unwrap_or_default();
    let tasks = route(&monitor, "GET", "/tasks", &query).await;
    let dlqs = route(&monitor, "GET", "/dlqs", "").await;
    for reply in [&tasks, &dlqs] {
        if reply.status != 200 {
            bail!(
                "{}",
                reply.body["error"].as_str().unwrap_or("status failed")
            );
        }
    }
    if args.json {
        let both = serde_json::json!({
            "buckets": tasks.body["buckets"],
            "dlqs": dlqs.body["dlqs"],
        });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print_buckets(&tasks.body);
        print_dlqs(&dlqs.body);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_task(body: &Value) {
    println!("Task {}  {}", text(&body["task_id"]), text(&body["status"]));
    println!(
        "  {:<22} {:<14} {:>8}  LAST ERROR",
        "CONSUMER", "STATE", "ATTEMPTS"
    );
    for c in body["consumers"].as_array().into_iter().flatten() {
        println!(
            "  {:<22} {:<14} {:>8}  {}",
            text(&c["consumer"]),
            text(&c["state"]),
            text(&c["attempts"]),
            text(&c["last_error"])
        );
    }
}

fn print_buckets(body: &Value) {
    println!("Open tasks");
    for b in body["buckets"].as_array().into_iter().flatten() {
        let tasks = b["tasks"].as_array().map_or(&[][..], Vec::as_slice);
        println!("  {:<10} {}", text(&b["name"]), tasks.len());
        for t in tasks.iter().take(20) {
            let age = Duration::from_secs(t["open_for_secs"].as_u64().unwrap_or(0));
            println!(
                "    {:<38} {:<18} {:<14} {:>3} attempts  open {:>4} min  {}",
                text(&t["task_id"]),
                text(&t["consumer"]),
                text(&t["state"]),
                text(&t["attempts"]),
                age.as_secs() / 60,
                text(&t["last_error"])
            );
        }
        if tasks.len() > 20 {
            println!("    … and {} more (use --json)", tasks.len() - 20);
        }
    }
}

fn print_dlqs(body: &Value) {
    let dlqs = body["dlqs"].as_array().map_or(&[][..], Vec::as_slice);
    if dlqs.is_empty() {
        println!("DLQs: none given (--dlq)");
        return;
    }
    println!("DLQs");
    println!(
        "  {:<40} {:>6} {:>7}  SAMPLE REASONS",
        "NAME", "DEPTH", "GROWTH"
    );
    for d in dlqs {
        let reasons: Vec<String> = d["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["reason"].as_str().map(str::to_owned))
            .collect();
        println!(
            "  {:<40} {:>6} {:>+7}  {}",
            text(&d["name"]),
            text(&d["depth"]),
            d["growth"].as_i64().unwrap_or(0),
            if reasons.is_empty() {
                "-".into()
            } else {
                reasons.join("; ")
            }
        );
    }
}

/// Serves the status API on `addr` until interrupted.
async fn serve(monitor: Monitor, addr: SocketAddr) -> anyhow::Result<()> {
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    if !addr.ip().is_loopback() {
        bail!(
            "--serve binds loopback addresses only (127.0.0.1:PORT); this API has no auth of its own"
        );
    }
    async fn answer(State(monitor): State<Monitor>, request: Request) -> impl IntoResponse {
        let uri = request.uri();
        let reply = route(
            &monitor,
            request.method().as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
        )
        .await;
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply.body.to_string(),
        )
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("status API on http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(answer).with_state(monitor);
    axum::serve(listener, app).await?;
    Ok(())
}
