//! `mailroom local demo --outage SECS`: the webhook is down for a while, then back, played
//! twice in one run: with the notifier's circuit breaker, then with it switched off.
//!
//! With the breaker the notifier trips after a few failures, holds its records (sent back to
//! the queue, delayed), probes once per cool-down, and the task monitor pauses its event
//! source mapping meanwhile; when the webhook is back one probe closes it and everything is
//! delivered. Without it every record is retried on its backoff schedule and, past
//! `maxReceiveCount`, dead-lettered. Counts come from independent reads: the notifier's DLQ,
//! the webhook's own log of what it accepted and of what reached it while it was down, the
//! alerts topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::DemoArgs;
use super::up::{alerts, bring_up, subscribe_inbox};
use super::webhook::Receiver;

/// One half of the scenario.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Outcome {
    breaker: bool,
    published: usize,
    /// Orders the webhook accepted, each counted once.
    delivered: usize,
    /// Orders it accepted more than once.
    delivered_twice: usize,
    /// Messages in the notifier's DLQ at the end.
    dead_lettered: u64,
    /// Neither delivered nor dead-lettered.
    lost: usize,
    /// Deliveries that reached the webhook while it was down.
    calls_while_down: u64,
    /// Of those, the ones after the notifier's breaker opened (by the breaker's item in the
    /// ledger, read directly): the probes, and any batch another execution environment had
    /// already let through its gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    calls_after_open: Option<usize>,
    /// The alerts topic's messages about circuit breakers.
    breaker_alerts: Vec<String>,
    /// Every alert, in order.
    alerts: Vec<String>,
    seconds: f64,
}

/// The scenario's two halves.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Report {
    outage_secs: u64,
    speed: u32,
    with_breaker: Outcome,
    without_breaker: Outcome,
}

pub(super) async fn outage(args: &DemoArgs, outage_secs: u64) -> anyhow::Result<()> {
    let mut common = args.common.clone();
    if common.speed == 1 {
        common.speed = 60;
    }
    let speed = common.speed;
    let down_for = Duration::from_secs(outage_secs) / speed.max(1);
    if !args.json {
        println!(
            "mailroom local demo --outage {outage_secs}: the webhook is down for {outage_secs} s ({:.1} s at speed ×{speed}), then back; with the notifier's circuit breaker, then without",
            down_for.as_secs_f64()
        );
    }
    let with_breaker = half(args, &common, down_for, true).await?;
    let without_breaker = half(args, &common, down_for, false).await?;
    let report = Report {
        outage_secs,
        speed,
        with_breaker,
        without_breaker,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("summary:                   with the breaker   without it");
        let (a, b) = (&report.with_breaker, &report.without_breaker);
        let row = |name: &str, x: String, y: String| println!("  {name:<24} {x:<18} {y}");
        row(
            "published",
            a.published.to_string(),
            b.published.to_string(),
        );
        row(
            "delivered",
            a.delivered.to_string(),
            b.delivered.to_string(),
        );
        row(
            "dead-lettered",
            a.dead_lettered.to_string(),
            b.dead_lettered.to_string(),
        );
        row("lost", a.lost.to_string(), b.lost.to_string());
        row(
            "delivered twice",
            a.delivered_twice.to_string(),
            b.delivered_twice.to_string(),
        );
        row(
            "webhook calls while down",
            a.calls_while_down.to_string(),
            b.calls_while_down.to_string(),
        );
        row(
            "  after it opened",
            a.calls_after_open.map_or("-".into(), |n| n.to_string()),
            b.calls_after_open.map_or("-".into(), |n| n.to_string()),
        );
        row(
            "breaker alerts",
            a.breaker_alerts.len().to_string(),
            b.breaker_alerts.len().to_string(),
        );
        for alert in &a.breaker_alerts {
            println!("    {alert}");
        }
    }
    let a = &report.with_breaker;
    if a.lost > 0 || a.dead_lettered > 0 || a.delivered_twice > 0 {
        bail!(
            "with the breaker: {} lost, {} dead-lettered, {} delivered twice",
            a.lost,
            a.dead_lettered,
            a.delivered_twice
        );
    }
    Ok(())
}

/// One pipeline, the outage, the recovery, the counts.
async fn half(
    args: &DemoArgs,
    common: &super::Common,
    down_for: Duration,
    breaker: bool,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // Each half on its own stack, so both can share one emulator; each webhook logs what it
    // accepted to its own file (`outage-with/webhook.jsonl`, `outage-without/...`).
    let (label, stack) = if breaker {
        ("with", common.stack.clone())
    } else {
        ("without", format!("{}-off", common.stack))
    };
    let logs = super::up::log_dir(common)?.join(format!("outage-{label}"));
    let common = &super::Common {
        stack,
        log_dir: Some(logs.clone()),
        ..common.clone()
    };
    let receiver = Arc::new(Receiver::default());
    receiver.log_to(&logs)?;
    receiver.fixed.store(true, Ordering::Relaxed);
    receiver.down.store(true, Ordering::Relaxed);
    let webhook = receiver.start().await?;
    let p = bring_up(common, &webhook, None, true, breaker).await?;
    let inbox = subscribe_inbox(&p, &common.stack).await?;
    let callback = webhook.replace("/hook", "/callback");
    let (ids, _) = super::demo::publish(&p, args.events, true, &callback).await?;
    tokio::time::sleep(down_for).await;
    receiver.down.store(false, Ordering::Relaxed);
    let calls_while_down = receiver.hits_while_down.load(Ordering::Relaxed);
    if !args.json {
        println!(
            "  {}: published {}, the webhook was down for {:.1} s and took {calls_while_down} calls; it is back",
            if breaker {
                "with the breaker"
            } else {
                "without it"
            },
            ids.len(),
            down_for.as_secs_f64()
        );
    }
    // Held copies come back within the longest cool-down, and a paused mapping at the next
    // sweep after it.
    let timeout = Duration::from_secs(90 + u64::try_from(args.events).unwrap_or(0) / 5);
    if !p.drain(timeout).await {
        bail!("the queues did not drain within {timeout:?}");
    }
    super::demo::sweep(&p).await?;
    let seen = alerts(&p, &inbox).await;
    let (dlq_visible, dlq_hidden) = p.depth("Notifier/DLQ").await;
    let accepted = receiver
        .accepted_orders
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // When the breaker opened, from its item in the ledger.
    let opened_at = match p.provisioned.tables.get("LedgerTable") {
        Some(table) => mailroom_lambda::ledger::Ledger::new(p.clients.dynamodb.clone(), table)
            .breakers(Some("notifier"))
            .await
            .unwrap_or_default()
            .iter()
            .map(|b| b.opened_at_ms)
            .filter(|at| *at > 0)
            .min(),
        None => None,
    };
    let calls_after_open = opened_at.map(|at| {
        receiver
            .down_calls_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|t| **t > at)
            .count()
    });
    receiver.flush();
    p.down().await;
    let delivered = accepted.len();
    let dead_lettered = dlq_visible + dlq_hidden;
    let outcome = Outcome {
        breaker,
        published: ids.len(),
        delivered,
        delivered_twice: accepted.values().filter(|n| **n > 1).count(),
        dead_lettered,
        lost: ids
            .len()
            .saturating_sub(delivered + usize::try_from(dead_lettered).unwrap_or(usize::MAX)),
        calls_while_down,
        calls_after_open,
        breaker_alerts: seen
            .iter()
            .filter(|a| a.contains("breaker:"))
            .cloned()
            .collect(),
        alerts: seen,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(outcome)
}
