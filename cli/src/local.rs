//! `mailroom local`: the whole application on one machine, with no Docker.
//!
//! `up` starts the AWS emulator, provisions template.yaml's topology, and runs every function
//! as its real binary under AWS's Runtime Interface Emulator, fed by Lambda's event-source
//! rules and schedules. `demo` does the same, then plays a mixed workload through it: transient
//! webhook failures, poison, the DLQ alert, a replay after the fix, and the resolution.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use mailroom_lambda::ledger::{Ledger, State};
use mailroom_local::pipeline::{Options, Pipeline};
use serde_json::{Value, json};

/// `mailroom local` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Brings the pipeline up and prints a live summary until interrupted.
    Up(Common),
    /// Brings the pipeline up, plays a mixed workload through it, and prints what happened.
    Demo(DemoArgs),
}

/// Options shared by `up` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// Speed-up for queue visibility timeouts, schedules and the monitor's thresholds.
    #[arg(long, default_value_t = 1)]
    speed: u32,
    /// The stack name resources are named after.
    #[arg(long, default_value = "mailroom")]
    stack: String,
    /// Where the function binaries are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the functions' logs go (default: target/local-logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The notifier's webhook (default: a local receiver that accepts everything).
    #[arg(long)]
    webhook: Option<String>,
}

/// Options of `mailroom local demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    common: Common,
    /// Events to publish.
    #[arg(long, default_value_t = 40)]
    events: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(common) => up(common).await,
        Command::Demo(args) => demo(args).await,
    }
}

/// The notifier's destination in local runs: a webhook on loopback that plays an external
/// service. Customer `c-flaky` gets a 503 on its first delivery; `c-blocked` a 400 until the
/// "fix". It counts accepted deliveries per event, to show no side effect happens twice.
#[derive(Debug, Default)]
struct Receiver {
    fixed: AtomicBool,
    attempts: Mutex<HashMap<String, u32>>,
    accepted: Mutex<HashMap<String, u32>>,
}

impl Receiver {
    async fn start(self: &Arc<Self>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let me = me.clone();
                async move { me.answer(&body) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/hook"))
    }

    fn answer(&self, body: &[u8]) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let id = doc["id"].as_str().unwrap_or_default().to_owned();
        let customer = doc["event"]["customer"].as_str().unwrap_or_default();
        let attempt = {
            let mut a = self
                .attempts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = a.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        if customer == "c-flaky" && attempt == 1 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if customer == "c-blocked" && !self.fixed.load(Ordering::Relaxed) {
            return StatusCode::BAD_REQUEST;
        }
        *self
            .accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id)
            .or_default() += 1;
        StatusCode::NO_CONTENT
    }
}

fn bin_dir(common: &Common) -> anyhow::Result<PathBuf> {
    match &common.bin_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf()),
    }
}

/// `5m,10m,45m` divided by the speed-up, in seconds.
fn scaled_thresholds(speed: u32) -> String {
    [300u32, 600, 2700]
        .map(|s| format!("{}s", (s / speed.max(1)).max(1)))
        .join(",")
}

async fn bring_up(common: &Common, webhook: &str) -> anyhow::Result<Pipeline> {
    let root = std::env::current_dir()?;
    if !root.join("template.yaml").exists() {
        bail!("run this from the project root (template.yaml not found)");
    }
    let set = |pairs: &[(&str, Option<&str>)]| -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    };
    let speed = common.speed.max(1);
    let mut env = BTreeMap::new();
    env.insert(
        "notifier".to_owned(),
        set(&[
            ("NOTIFIER_SIGNING_SECRET_PARAMETER", None),
            ("NOTIFIER_SIGNING_SECRET", Some("local-signing-secret")),
            ("NOTIFIER_WEBHOOK_URL", Some(webhook)),
            ("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS", Some("true")),
        ]),
    );
    let thresholds = scaled_thresholds(speed);
    let cooldown = (3600 / speed).max(1).to_string();
    env.insert(
        "task-monitor".to_owned(),
        set(&[
            ("MAILROOM_MONITOR_THRESHOLDS", Some(&thresholds)),
            ("MAILROOM_ALERT_COOLDOWN_SECS", Some(&cooldown)),
        ]),
    );
    let options = Options {
        root: root.clone(),
        bin_dir: bin_dir(common)?,
        stack: common.stack.clone(),
        parameters: HashMap::new(),
        env,
        substitutes: BTreeMap::from([(
            "example-consumer".to_owned(),
            "example-consumer-faults".to_owned(),
        )]),
        speed,
        log_dir: Some(
            common
                .log_dir
                .clone()
                .unwrap_or_else(|| root.join("target/local-logs")),
        ),
        endpoint: mailroom_lambda::Env::process().string("MAILROOM_ENDPOINT_URL"),
    };
    Ok(Pipeline::up(&options).await?)
}

fn print_topology(p: &Pipeline) {
    println!("  emulator  {}", p.endpoint);
    for (id, arn) in &p.provisioned.topics {
        println!(
            "  topic     {id:<22} {}",
            arn.rsplit(':').next().unwrap_or_default()
        );
    }
    for (id, (url, _)) in &p.provisioned.queues {
        println!("  queue     {id:<22} {}", url.name());
    }
    for (id, f) in &p.functions {
        let sources: Vec<String> = f
            .spec
            .queues
            .iter()
            .map(|q| q.arn.name().to_owned())
            .collect();
        println!(
            "  function  {id:<22} {} ({} instance(s)) ← {}{}",
            f.spec.binary,
            f.processes.len(),
            if sources.is_empty() {
                "on demand".into()
            } else {
                sources.join(", ")
            },
            if f.spec.schedules.is_empty() {
                String::new()
            } else {
                format!(" + {}", f.spec.schedules.join(", "))
            }
        );
    }
}

async fn up(common: Common) -> anyhow::Result<()> {
    let receiver = Arc::new(Receiver::default());
    receiver.fixed.store(true, Ordering::Relaxed);
    let webhook = match &common.webhook {
        Some(w) => w.clone(),
        None => receiver.start().await?,
    };
    let pipeline = bring_up(&common, &webhook).await?;
    println!("mailroom local: the pipeline is up (Ctrl-C to stop)");
    print_topology(&pipeline);
    if let Some(topic) = pipeline.provisioned.topics.get("EventsTopic") {
        println!(
            "publish with: mailroom publish --endpoint-url {} --topic {} --attr kind=order.placed --message '{{\"order_id\":\"o-1\",\"amount_cents\":100}}'",
            pipeline.endpoint, topic
        );
    }
    let inbox = subscribe_inbox(&pipeline, &common.stack).await?;
    let consumers = consumer_queues(&pipeline).await;
    let mut alert_count = 0usize;
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(2)) => {
                for a in alerts(&pipeline, &inbox).await {
                    alert_count += 1;
                    println!("  alert → {a}");
                }
                let line = live_summary(&pipeline, &consumers, alert_count).await;
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
        }
    }
    pipeline.down().await;
    Ok(())
}

/// Each consumer function: (logical id, its source queue's logical id, its DLQ's logical id).
async fn consumer_queues(p: &Pipeline) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for (id, f) in &p.functions {
        let Some(source) = f.spec.queues.first() else {
            continue;
        };
        let Some((queue_id, _)) = p
            .provisioned
            .queues
            .iter()
            .find(|(_, (_, arn))| *arn == source.arn)
        else {
            continue;
        };
        let policy = p
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(source.queue.as_str())
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .ok()
            .and_then(|o| o.attributes)
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                    .cloned()
            });
        let dlq_arn = policy
            .and_then(|p| serde_json::from_str::<Value>(&p).ok())
            .and_then(|v| v["deadLetterTargetArn"].as_str().map(str::to_owned));
        let dlq = dlq_arn.and_then(|arn| {
            p.provisioned
                .queues
                .iter()
                .find(|(_, (_, a))| a.as_str() == arn)
                .map(|(id, _)| id.clone())
        });
        out.push((id.clone(), queue_id.clone(), dlq));
    }
    out
}

/// One line: published (as the monitor's queue saw them), then per consumer: in flight,
/// succeeded, retried, dead-lettered; and the alerts so far.
async fn live_summary(
    p: &Pipeline,
    consumers: &[(String, String, Option<String>)],
    alerts: usize,
) -> String {
    let published = p
        .functions
        .get("TaskMonitorFunction")
        .map_or(0, |m| m.counters.records.load(Ordering::Relaxed));
    let mut parts = vec![format!("published {published}")];
    for (id, queue, dlq) in consumers {
        if id == "TaskMonitorFunction" {
            continue;
        }
        let c = &p.functions[id].counters;
        let (visible, in_flight) = p.depth(queue).await;
        let dead = match dlq {
            Some(d) => {
                let (v, f) = p.depth(d).await;
                v + f
            }
            None => 0,
        };
        parts.push(format!(
            "{}: {} queued, {in_flight} in flight, {} done, {} retried, {dead} dead-lettered, {} replayed in",
            p.functions[id].spec.binary,
            visible,
            c.succeeded.load(Ordering::Relaxed),
            c.retried.load(Ordering::Relaxed),
            c.replayed.load(Ordering::Relaxed),
        ));
    }
    parts.push(format!("alerts {alerts}"));
    format!("  {}", parts.join(" · "))
}

/// A queue subscribed (raw) to the alerts topic, to show alerts as they go out.
async fn subscribe_inbox(
    p: &Pipeline,
    stack: &str,
) -> anyhow::Result<mailroom_lambda::sqs::QueueUrl> {
    let (inbox, inbox_arn) =
        mailroom_local::create_queue(&p.clients.sqs, &format!("{stack}-alerts-inbox"), &[])
            .await
            .context("alerts inbox")?;
    p.clients
        .sns
        .subscribe()
        .topic_arn(
            p.provisioned
                .topics
                .get("AlertsTopic")
                .context("no AlertsTopic")?,
        )
        .protocol("sqs")
        .endpoint(inbox_arn.as_str())
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .context("subscribing the alerts inbox")?;
    Ok(inbox)
}

/// What the demo saw.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    published: usize,
    consumers: BTreeMap<String, ConsumerSummary>,
    dead_lettered: BTreeMap<String, u64>,
    dlq_reasons: BTreeMap<String, usize>,
    replayed: usize,
    alerts: Vec<String>,
    sweeps: u64,
    lost: usize,
    duplicate_side_effects: usize,
    seconds: f64,
}

#[derive(Debug, Default, serde::Serialize)]
struct ConsumerSummary {
    succeeded_in_ledger: usize,
    parked: usize,
    other: BTreeMap<String, usize>,
    records_retried: u64,
    batches_failed: u64,
}

async fn publish(p: &Pipeline, n: usize) -> anyhow::Result<Vec<String>> {
    let topic = p
        .provisioned
        .topics
        .get("EventsTopic")
        .context("no EventsTopic")?;
    let mut ids = Vec::with_capacity(n);
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(10) {
        let mut req = p.clients.sns.publish_batch().topic_arn(topic);
        for &i in chunk {
            // 1 in 8 is flaky at the webhook (one 503), 1 in 10 blocked until the fix (400).
            let customer = if i % 10 == 3 {
                "c-blocked"
            } else if i % 8 == 5 {
                "c-flaky"
            } else {
                "c-ok"
            };
            let mut payload = json!({"order_id": format!("o-{i:05}"), "amount_cents": 100 + i, "customer": customer});
            // The example consumer panics on 1 in 100 at first delivery, and once, halfway,
            // its process dies mid-batch.
            if i == n / 2 {
                payload["fault"] = json!("crash");
            } else if i % 100 == 7 {
                payload["fault"] = json!("panic");
            }
            req = req.publish_batch_request_entries(
                PublishBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message(payload.to_string())
                    .message_attributes(
                        "kind",
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value("order.placed")
                            .build()?,
                    )
                    .build()?,
            );
        }
        let out = req.send().await.context("PublishBatch")?;
        if let Some(f) = out.failed().first() {
            bail!("publish refused: {:?}", f.message());
        }
        ids.extend(
            out.successful()
                .iter()
                .filter_map(|s| s.message_id().map(str::to_owned)),
        );
    }
    Ok(ids)
}

async fn alerts(p: &Pipeline, inbox: &mailroom_lambda::sqs::QueueUrl) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = p
            .clients
            .sqs
            .receive_message()
            .queue_url(inbox.as_str())
            .max_number_of_messages(10)
            .send()
            .await
            .map(|o| o.messages.unwrap_or_default())
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        for m in got {
            let body: Value =
                serde_json::from_str(m.body().unwrap_or_default()).unwrap_or(Value::Null);
            out.push(format!(
                "{} {}: {}",
                body["notice"].as_str().unwrap_or("?"),
                body["alert"].as_str().unwrap_or("?"),
                body["summary"].as_str().unwrap_or("?")
            ));
            if let Some(h) = m.receipt_handle() {
                let _ = p
                    .clients
                    .sqs
                    .delete_message()
                    .queue_url(inbox.as_str())
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
    }
}

async fn sweep(p: &Pipeline) -> anyhow::Result<()> {
    let monitor = p
        .function("TaskMonitorFunction")
        .context("no task monitor")?;
    monitor
        .invoke(&mailroom_local::runner::scheduled_event("demo-sweep"))
        .await
        .map(drop)
        .map_err(|e| anyhow::anyhow!("sweep: {e}"))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let receiver = Arc::new(Receiver::default());
    let webhook = receiver.start().await?;
    let mut common = args.common.clone();
    if common.speed == 1 {
        common.speed = 60;
    }
    let p = bring_up(&common, &webhook).await?;
    if !args.json {
        println!(
            "mailroom local demo: template.yaml on the AWS emulator, real function binaries under the Lambda Runtime Interface Emulator (speed ×{})",
            common.speed
        );
        print_topology(&p);
    }
    let inbox = subscribe_inbox(&p, &common.stack).await?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };

    let ids = publish(&p, args.events).await?;
    say(format!(
        "published {} events to the events topic (1 in 8 meets a flaky webhook, 1 in 10 a webhook that refuses it until fixed; the example consumer panics on 1 in 100 at first delivery and its process is killed mid-batch once)",
        ids.len()
    ));
    let timeout = Duration::from_secs(60 + u64::try_from(args.events).unwrap_or(0) / 5);
    if !p.drain(timeout).await {
        bail!("the queues did not drain within {timeout:?}");
    }
    let mut summary = Summary {
        published: ids.len(),
        ..Summary::default()
    };
    for dlq in ["NotifierDLQ", "ExampleDLQ"] {
        let (v, f) = p.depth(dlq).await;
        summary.dead_lettered.insert(dlq.to_owned(), v + f);
    }
    say(format!(
        "drained: dead-lettered {:?}",
        summary.dead_lettered
    ));
    sweep(&p).await?;
    let seen = alerts(&p, &inbox).await;
    for a in &seen {
        say(format!("  alert → {a}"));
    }
    summary.alerts.extend(seen);

    // The fix, then the replay through the dlq-replay function.
    receiver.fixed.store(true, Ordering::Relaxed);
    let replay = p.function("DlqReplayFunction").context("no dlq-replay")?;
    let dlq = &p
        .provisioned
        .queues
        .get("NotifierDLQ")
        .context("no NotifierDLQ")?
        .0;
    let report = replay
        .invoke(&json!({ "source": dlq.as_str() }))
        .await
        .map_err(|e| anyhow::anyhow!("replay: {e}"))?;
    summary.replayed = usize::try_from(report["moved"].as_u64().unwrap_or(0)).unwrap_or(0);
    for (reason, n) in report["by_reason"].as_object().into_iter().flatten() {
        summary.dlq_reasons.insert(
            reason.clone(),
            usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0),
        );
    }
    say(format!(
        "the webhook is fixed; dlq-replay moved {} messages back ({:?})",
        summary.replayed, summary.dlq_reasons
    ));
    if !p.drain(timeout).await {
        bail!("the replayed messages did not drain within {timeout:?}");
    }
    sweep(&p).await?;
    let seen = alerts(&p, &inbox).await;
    for a in &seen {
        say(format!("  alert → {a}"));
    }
    summary.alerts.extend(seen);

    // The ledger's word on every task, at every consumer.
    let table = p
        .provisioned
        .tables
        .get("LedgerTable")
        .context("no LedgerTable")?;
    let ledger = Ledger::new(p.clients.dynamodb.clone(), table);
    for id in &ids {
        let entries = ledger.task(id).await?;
        for consumer in ["notifier", "example-consumer"] {
            let c = summary.consumers.entry(consumer.to_owned()).or_default();
            match entries
                .iter()
                .find(|e| e.consumer == consumer)
                .map(|e| e.state)
            {
                Some(State::Succeeded) => c.succeeded_in_ledger += 1,
                Some(State::Parked) => c.parked += 1,
                other => {
                    summary.lost += 1;
                    *c.other.entry(format!("{other:?}")).or_default() += 1;
                }
            }
        }
    }
    for (id, f) in &p.functions {
        let name = match id.as_str() {
            "NotifierFunction" => "notifier",
            "ExampleConsumerFunction" => "example-consumer",
            _ => continue,
        };
        let c = summary.consumers.entry(name.to_owned()).or_default();
        c.records_retried = f.counters.retried.load(Ordering::Relaxed);
        c.batches_failed = f.counters.batch_failures.load(Ordering::Relaxed);
    }
    if let Some(monitor) = p.functions.get("TaskMonitorFunction") {
        // The scheduled sweeps, plus the two the demo asks for.
        summary.sweeps = monitor.counters.scheduled.load(Ordering::Relaxed) + 2;
    }
    summary.duplicate_side_effects = receiver
        .accepted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .filter(|n| **n > 1)
        .count();
    summary.seconds = started.elapsed().as_secs_f64();
    p.down().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("summary:");
        println!("  published        {}", summary.published);
        for (name, c) in &summary.consumers {
            println!(
                "  {name:<16} {} succeeded (ledger), {} parked, {} records retried on the way, {} whole batches failed",
                c.succeeded_in_ledger, c.parked, c.records_retried, c.batches_failed
            );
        }
        println!(
            "  dead-lettered    {:?}, replayed {}",
            summary.dead_lettered, summary.replayed
        );
        println!("  alerts           {}", summary.alerts.len());
        println!("  lost             {}", summary.lost);
        println!("  side effects twice {}", summary.duplicate_side_effects);
        println!("  wall time        {:.1} s", summary.seconds);
    }
    if summary.lost > 0 {
        bail!("{} task/consumer pairs did not finish", summary.lost);
    }
    Ok(())
}
