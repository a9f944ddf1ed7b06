//! `mailroom local demo`: the workload, the faults, the DLQ alert, the replay after the fix,
//! the resolution, and a summary checked against the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mailroom_lambda::ledger::{Ledger, State};
use mailroom_lambda::publish::{Event, Publisher};
use mailroom_local::pipeline::Pipeline;
use serde_json::json;

use super::DemoArgs;
use super::up::{alerts, bring_up, intake_url, print_topology, subscribe_inbox};
use super::webhook::Receiver;

/// What the demo saw.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Summary {
    published: usize,
    consumers: BTreeMap<String, ConsumerSummary>,
    dead_lettered: BTreeMap<String, u64>,
    dlq_reasons: BTreeMap<String, usize>,
    replayed: usize,
    alerts: Vec<String>,
    sweeps: u64,
    lost: usize,
    /// Webhook deliveries accepted more than once for one task id (the receiver's own log).
    duplicate_side_effects: usize,
    /// The same, by business key (the order id): what a retried publish would double.
    duplicate_side_effects_by_order: usize,
    /// Orders the webhook accepted at least once.
    delivered_orders: usize,
    /// Orders posted through the intake's HTTP API, and their status from `GET /tasks/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    intake: Option<IntakeSummary>,
    /// Faults injected (`--faults`): passed, HTTP 5xx, resets before, resets after.
    #[serde(skip_serializing_if = "Option::is_none")]
    faults: Option<FaultSummary>,
    /// The application's AWS calls by action (functions, event sources, the producer; not
    /// the demo's own reads), as the proxy in front of the emulator counted them.
    calls: BTreeMap<String, u64>,
    /// What the run costs per event at AWS list prices, beside a Powertools-style design
    /// and the bare pipeline (see `cost`).
    cost: super::cost::Cost,
    /// Seconds spent in each phase, in order: where a run's time goes.
    phases: Vec<(&'static str, f64)>,
    seconds: f64,
}

/// What the run cost: the proxy's DynamoDB counts, the ledger's item sizes (read directly),
/// and the functions' time, through the model in `cost`.
async fn cost(p: &Pipeline, events: usize) -> super::cost::Cost {
    use std::sync::atomic::Ordering::Relaxed;
    let mut m = super::cost::Measured {
        events: events as u64,
        ..Default::default()
    };
    if let Some(f) = &p.faulty {
        let counts = f.counts();
        m.item_writes = counts.capacity.item_writes.load(Relaxed);
        m.read_units = counts.capacity.read_units();
        m.dynamodb_requests = counts
            .actions()
            .iter()
            .filter(|(a, _)| a.starts_with("DynamoDB"))
            .map(|(_, n)| n)
            .sum();
    }
    if let Some(table) = p.provisioned.tables.get("LedgerTable") {
        let mut pages = p
            .clients
            .dynamodb
            .scan()
            .table_name(table)
            .into_paginator()
            .items()
            .send();
        while let Some(Ok(item)) = pages.next().await {
            m.item_sizes.push(super::cost::item_size(&item));
        }
    }
    for f in p.functions.values() {
        let ms: u64 = f.processes.iter().map(|x| x.usage().1).sum();
        let consumer = f.spec.environment.contains_key("MAILROOM_CONSUMER");
        if consumer {
            m.consumer_ms += ms;
            m.consumer_queues += f.spec.queues.len() as u64;
        } else {
            m.other_ms += ms;
            m.monitor_queues += f.spec.queues.len() as u64;
        }
    }
    super::cost::model(&m)
}

/// `DynamoDB_20120810.UpdateItem` → `DynamoDB.UpdateItem`, `AmazonSQS.ReceiveMessage` →
/// `SQS.ReceiveMessage`.
fn short_action(action: &str) -> String {
    let (service, name) = action.split_once('.').unwrap_or(("", action));
    let service = match service {
        s if s.starts_with("DynamoDB") => "DynamoDB",
        "AmazonSQS" => "SQS",
        s => s,
    };
    format!("{service}.{name}")
}

/// The time each phase took, read as the run goes.
struct Laps {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Laps {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Ends the phase `name` now.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.laps.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub(super) struct IntakeSummary {
    posted: usize,
    /// Requests sent again with the same key after a 503 or a lost answer.
    resent: usize,
    /// `GET /tasks/{id}` at the end, by status.
    statuses: BTreeMap<String, usize>,
    /// Completion callbacks the local receiver got, by final status.
    callbacks: BTreeMap<String, usize>,
    /// Tasks whose completion callback came more than once (at least once: allowed, and
    /// the receiver deduplicates on `webhook-id`).
    callbacks_repeated: usize,
}

#[derive(Debug, Default, serde::Serialize)]
pub(super) struct FaultSummary {
    passed: u64,
    server_errors: u64,
    resets_before: u64,
    resets_after: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub(super) struct ConsumerSummary {
    succeeded_in_ledger: usize,
    parked: usize,
    other: BTreeMap<String, usize>,
    records_retried: u64,
    batches_failed: u64,
}

/// How many of the demo's orders go through the intake's HTTP API (the rest through the
/// library's publisher, in batches).
const THROUGH_INTAKE: usize = 20;

/// The demo's order `i` of `n`, as JSON text; with no faults when `clean`.
fn order(i: usize, n: usize, clean: bool) -> String {
    if clean {
        return json!({"order_id": format!("o-{i:05}"), "amount_cents": 100 + i, "customer": "c-ok"})
            .to_string();
    }
    // 1 in 8 is flaky at the webhook (one 503), 1 in 10 blocked until the fix (400).
    let customer = if i % 10 == 3 {
        "c-blocked"
    } else if i % 8 == 5 {
        "c-flaky"
    } else {
        "c-ok"
    };
    let mut payload =
        json!({"order_id": format!("o-{i:05}"), "amount_cents": 100 + i, "customer": customer});
    // The example consumer panics on 1 in 100 at first delivery, and once, halfway, its
    // process dies mid-batch.
    if i == n / 2 {
        payload["fault"] = json!("crash");
    } else if i % 100 == 7 {
        payload["fault"] = json!("panic");
    }
    payload.to_string()
}

/// Publishes the demo's `n` orders: the first ones through the intake, as a producer's
/// service would (each with its order id as the idempotency key), the rest through the
/// library's publisher (and so through the fault proxy, when there is one). Returns their
/// task ids, and how many intake requests had to be sent again.
pub(super) async fn publish(
    p: &Pipeline,
    n: usize,
    clean: bool,
    callback: &str,
) -> anyhow::Result<(Vec<String>, usize)> {
    let topic = p
        .provisioned
        .topics
        .get("EventsTopic")
        .context("no EventsTopic")?;
    let via_intake = if intake_url(p).is_some() {
        n.min(THROUGH_INTAKE)
    } else {
        0
    };
    let mut ids = Vec::with_capacity(n);
    let mut resent = 0;
    if let Some(url) = intake_url(p) {
        let client = reqwest::Client::new();
        for i in 0..via_intake {
            let (id, again) = post_order(
                &client,
                url,
                &format!("o-{i:05}"),
                order(i, n, clean),
                callback,
            )
            .await?;
            ids.push(id);
            resent += again;
        }
    }
    let events: Vec<Event> = (via_intake..n)
        .map(|i| Event::from_json("order.placed", order(i, n, clean)))
        .collect();
    let report = Publisher::new(p.traffic.sns.clone(), topic)
        .publish(&events)
        .await;
    if let Some(f) = report.failed.first() {
        bail!(
            "{} of {n} events not published; the first: {}",
            report.failed.len(),
            f.error
        );
    }
    ids.extend(report.published.into_iter().map(|p| p.task_id));
    Ok((ids, resent))
}

/// Posts one order to the intake as a careful producer does: on a 503 or a lost answer, the
/// same request again with the same key. Returns the task id and how many times it resent.
async fn post_order(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: String,
    callback: &str,
) -> anyhow::Result<(String, usize)> {
    for attempt in 0..10 {
        let answer = client
            .post(format!("{url}/events/order.placed"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .header("mailroom-callback-url", callback)
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
                let id = doc["task_id"].as_str().context("202 without a task id")?;
                return Ok((id.to_owned(), attempt));
            }
            Ok(r) if r.status().is_client_error() => {
                bail!(
                    "the intake refused {key}: {} {}",
                    r.status(),
                    r.text().await?
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await,
        }
    }
    bail!("the intake did not accept {key} after 10 attempts")
}

/// `GET /tasks/{id}` for each of `ids` through the intake: how many are in each status.
async fn statuses(url: &str, ids: &[String]) -> BTreeMap<String, usize> {
    let client = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for id in ids {
        let status = match client.get(format!("{url}/tasks/{id}")).send().await {
            Ok(r) => r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unreadable".into()),
            Err(e) => format!("unreachable: {e}"),
        };
        *out.entry(status).or_default() += 1;
    }
    out
}

pub(super) async fn sweep(p: &Pipeline) -> anyhow::Result<()> {
    let monitor = p
        .function("TaskMonitorFunction")
        .context("no task monitor")?;
    // A sweep that fails (an AWS call failing past its retries, with `--faults`) is run
    // again, as the next scheduled one would be.
    let mut last = None;
    for _ in 0..3 {
        match monitor
            .invoke(&mailroom_local::runner::scheduled_event("demo-sweep"))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "sweep: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

pub(super) async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut laps = Laps::start();
    let receiver = Arc::new(Receiver::default());
    receiver.log_to(&super::up::log_dir(&args.common)?)?;
    let webhook = receiver.start().await?;
    let mut common = args.common.clone();
    if common.speed == 1 {
        common.speed = 60;
    }
    let p = bring_up(&common, &webhook, None, !args.no_lease, true).await?;
    if !args.json {
        println!(
            "mailroom local demo: template.yaml on the AWS emulator, real function binaries under the Lambda Runtime Interface Emulator (speed ×{})",
            common.speed
        );
        print_topology(&p);
    }
    let inbox = subscribe_inbox(&p, &common.stack).await?;
    laps.lap("up");
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };

    let callback = webhook.replace("/hook", "/callback");
    let (ids, resent) = publish(&p, args.events, args.clean, &callback).await?;
    laps.lap("publish");
    say(if args.clean {
        format!(
            "published {} events to the events topic, with no scripted faults",
            ids.len()
        )
    } else {
        format!(
            "published {} events to the events topic (1 in 8 meets a flaky webhook, 1 in 10 a webhook that refuses it until fixed; the example consumer panics on 1 in 100 at first delivery and its process is killed mid-batch once)",
            ids.len()
        )
    });
    let timeout = Duration::from_secs(60 + u64::try_from(args.events).unwrap_or(0) / 5);
    if !p.drain(timeout).await {
        bail!("the queues did not drain within {timeout:?}");
    }
    laps.lap("drain");
    let mut summary = Summary {
        published: ids.len(),
        intake: Some(IntakeSummary {
            posted: ids.len().min(THROUGH_INTAKE),
            resent,
            ..IntakeSummary::default()
        })
        .filter(|_| intake_url(&p).is_some()),
        ..Summary::default()
    };
    for dlq in ["Notifier/DLQ", "Example/DLQ"] {
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
    laps.lap("sweep");

    // The fix, then the replay through the dlq-replay function.
    receiver.fixed.store(true, Ordering::Relaxed);
    let replay = p.function("DlqReplayFunction").context("no dlq-replay")?;
    let dlq = &p
        .provisioned
        .queues
        .get("Notifier/DLQ")
        .context("no Notifier/DLQ")?
        .0;
    // A run stopped by an AWS error (possible with `--faults`) says so in its report; the
    // operator's next step is the same request again. A receive whose answer was lost on the
    // way (a reset after the call took effect) hides its messages for the replay's hold, which
    // no report can show: the DLQ still holds them, so the operator waits out the hold (short
    // here, scaled by --speed) and replays again. The demo does either up to four times.
    let hold = (600 / u64::from(common.speed.max(1))).max(5);
    for _ in 0..5 {
        if p.depth("Notifier/DLQ").await == (0, 0) {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(hold + 5);
        while p.depth("Notifier/DLQ").await.1 > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let report = replay
            .invoke(&json!({ "source": dlq.as_str(), "hold_secs": hold }))
            .await
            .map_err(|e| anyhow::anyhow!("replay: {e}"))?;
        let count = |v: &serde_json::Value| usize::try_from(v.as_u64().unwrap_or(0)).unwrap_or(0);
        summary.replayed += count(&report["moved"]);
        for (reason, n) in report["by_reason"].as_object().into_iter().flatten() {
            *summary.dlq_reasons.entry(reason.clone()).or_default() += count(n);
        }
    }
    say(format!(
        "the webhook is fixed; dlq-replay moved {} messages back ({:?})",
        summary.replayed, summary.dlq_reasons
    ));
    if !p.drain(timeout).await {
        bail!("the replayed messages did not drain within {timeout:?}");
    }
    laps.lap("replay");
    sweep(&p).await?;
    let seen = alerts(&p, &inbox).await;
    for a in &seen {
        say(format!("  alert → {a}"));
    }
    summary.alerts.extend(seen);
    laps.lap("sweep again");

    // What a producer sees: the intake's status API for the tasks it accepted.
    if let (Some(url), Some(intake)) = (intake_url(&p), summary.intake.as_mut()) {
        intake.statuses = statuses(url, &ids[..intake.posted]).await;
        let got = receiver
            .callbacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut per_task: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, status) in &got {
            *per_task.entry(id).or_default() += 1;
            if per_task[id.as_str()] == 1 {
                *intake.callbacks.entry(status.clone()).or_default() += 1;
            }
        }
        intake.callbacks_repeated = per_task.values().filter(|n| **n > 1).count();
    }

    // The ledger's word on every task, at every consumer.
    let table = p
        .provisioned
        .tables
        .get("LedgerTable")
        .context("no LedgerTable")?;
    // In bulk: one parallel scan of the table, not a query per task (10,000 sequential
    // queries took ten minutes and one SDK timeout failed the whole demo).
    let ledger = Ledger::new(p.clients.dynamodb.clone(), table);
    let states: std::collections::HashMap<(String, String), State> = ledger
        .scan_pairs(4)
        .await
        .context("reading the ledger")?
        .into_iter()
        .map(|e| ((e.task_id, e.consumer), e.state))
        .collect();
    for id in &ids {
        for consumer in ["notifier", "example-consumer"] {
            let c = summary.consumers.entry(consumer.to_owned()).or_default();
            match states.get(&(id.clone(), consumer.to_owned())).copied() {
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
            "Notifier/Function" => "notifier",
            "Example/Function" => "example-consumer",
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
    receiver.flush();
    let count_repeats = |m: &std::sync::Mutex<std::collections::HashMap<String, u32>>| {
        let m = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (m.values().filter(|n| **n > 1).count(), m.len())
    };
    summary.duplicate_side_effects = count_repeats(&receiver.accepted).0;
    (
        summary.duplicate_side_effects_by_order,
        summary.delivered_orders,
    ) = count_repeats(&receiver.accepted_orders);
    summary.calls = p
        .faulty
        .as_ref()
        .map(|f| f.counts().actions())
        .unwrap_or_default();
    summary.faults = p.faulty.as_ref().filter(|_| common.faults > 0.0).map(|f| {
        let (passed, server_errors, resets_before, resets_after) = f.counts().snapshot();
        FaultSummary {
            passed,
            server_errors,
            resets_before,
            resets_after,
        }
    });
    summary.cost = cost(&p, summary.published).await;
    laps.lap("verify");
    summary.phases = laps.laps;
    summary.seconds = started.elapsed().as_secs_f64();
    p.down().await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("summary:");
        println!("  published        {}", summary.published);
        if let Some(i) = &summary.intake {
            println!(
                "  through intake   {} posted ({} sent again with the same key), GET /tasks/{{id}}: {:?}, completion callbacks: {:?}",
                i.posted, i.resent, i.statuses, i.callbacks
            );
        }
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
        let per_event = |n: u64| n as f64 / summary.published.max(1) as f64;
        let calls: Vec<String> = summary
            .calls
            .iter()
            .map(|(action, n)| format!("{} {:.2}", short_action(action), per_event(*n)))
            .collect();
        println!(
            "  AWS calls/event  {:.2}: {}",
            per_event(summary.calls.values().sum()),
            calls.join(", ")
        );
        let c = &summary.cost;
        println!(
            "  cost/event       {:.2} write units, {:.2} read units, {:.2} DynamoDB requests (largest ledger item {} bytes); per million events ${:.2} (Powertools-style design ${:.2}, bare pipeline ${:.2}; {})",
            c.write_units_per_event,
            c.read_units_per_event,
            c.dynamodb_requests_per_event,
            c.largest_ledger_item_bytes,
            c.mailroom,
            c.powertools_style,
            c.bare_pipeline,
            c.prices
        );
        println!("  lost             {}", summary.lost);
        println!(
            "  side effects twice {} by task id, {} by order id ({} orders delivered)",
            summary.duplicate_side_effects,
            summary.duplicate_side_effects_by_order,
            summary.delivered_orders
        );
        if let Some(f) = &summary.faults {
            println!(
                "  faults injected  {} HTTP 5xx, {} resets before the call, {} after it took effect ({} calls passed)",
                f.server_errors, f.resets_before, f.resets_after, f.passed
            );
        }
        let phases: Vec<String> = summary
            .phases
            .iter()
            .map(|(name, s)| format!("{name} {s:.1}"))
            .collect();
        println!(
            "  wall time        {:.1} s ({})",
            summary.seconds,
            phases.join(", ")
        );
    }
    if summary.lost > 0 {
        bail!("{} task/consumer pairs did not finish", summary.lost);
    }
    if summary.duplicate_side_effects_by_order > 0 {
        bail!(
            "{} orders reached the webhook twice",
            summary.duplicate_side_effects_by_order
        );
    }
    Ok(())
}
