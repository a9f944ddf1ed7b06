//! `mailroom local demo --noisy-tenant`: one tenant publishes ten times the volume of a quiet
//! one, all at once (the consumers paused until both are in the queue), to a webhook slower
//! than the burst; played twice in one run, with SQS
//! fair queues (the test bed's emulation of them) and with the notifier's queue tagged out
//! of them. The quiet tenant's dwell time (publish to the webhook's acceptance) and its place
//! in the webhook's order of acceptance come from the webhook's own record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use mailroom_lambda::publish::{Event, Publisher};
use serde_json::json;

use super::DemoArgs;
use super::up::bring_up;
use super::webhook::Receiver;

/// How long the webhook takes per delivery: slower than the burst arrives.
const WEBHOOK_DELAY: Duration = Duration::from_millis(100);

/// Longer than a poller's long poll (one second), so none is waiting when the burst lands.
const RECEIVE_WAIT: Duration = Duration::from_millis(1200);

/// One half of the scenario.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Half {
    fair_queues: bool,
    noisy_published: usize,
    quiet_published: usize,
    delivered: usize,
    /// The quiet tenant's dwell time, publish to acceptance, in ms.
    quiet_p50_ms: f64,
    quiet_p95_ms: f64,
    noisy_p95_ms: f64,
    /// For the quiet tenant's deliveries: the share of the noisy tenant's deliveries that
    /// the webhook accepted before each (95th percentile). 1.0: behind the whole burst.
    quiet_behind_noisy_p95: f64,
}

#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Report {
    with_fair_queues: Half,
    without: Half,
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[i]
}

pub(super) async fn noisy_tenant(args: &DemoArgs) -> anyhow::Result<()> {
    let mut common = args.common.clone();
    if common.speed == 1 {
        common.speed = 60;
    }
    let quiet = (args.events / 11).max(1);
    if !args.json {
        println!(
            "mailroom local demo --noisy-tenant: tenant `noisy` publishes {} events at once, tenant `quiet` {quiet} right after, while the consumers are paused; the webhook takes {} ms each",
            quiet * 10,
            WEBHOOK_DELAY.as_millis()
        );
    }
    let report = Report {
        with_fair_queues: half(&common, quiet, true).await?,
        without: half(&common, quiet, false).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let (a, b) = (&report.with_fair_queues, &report.without);
        println!("summary:                        with fair queues   without");
        let row = |name: &str, x: String, y: String| println!("  {name:<30} {x:<18} {y}");
        row(
            "delivered",
            a.delivered.to_string(),
            b.delivered.to_string(),
        );
        row(
            "quiet tenant dwell p50",
            format!("{:.0} ms", a.quiet_p50_ms),
            format!("{:.0} ms", b.quiet_p50_ms),
        );
        row(
            "quiet tenant dwell p95",
            format!("{:.0} ms", a.quiet_p95_ms),
            format!("{:.0} ms", b.quiet_p95_ms),
        );
        row(
            "noisy tenant dwell p95",
            format!("{:.0} ms", a.noisy_p95_ms),
            format!("{:.0} ms", b.noisy_p95_ms),
        );
        row(
            "quiet behind the burst (p95)",
            format!("{:.0}%", a.quiet_behind_noisy_p95 * 100.0),
            format!("{:.0}%", b.quiet_behind_noisy_p95 * 100.0),
        );
    }
    Ok(())
}

async fn half(common: &super::Common, quiet: usize, fair: bool) -> anyhow::Result<Half> {
    let stack = if fair {
        format!("{}-fair", common.stack)
    } else {
        format!("{}-unfair", common.stack)
    };
    let common = &super::Common {
        stack,
        ..common.clone()
    };
    let receiver = Arc::new(Receiver::default());
    receiver.fixed.store(true, Ordering::Relaxed);
    receiver.delay_ms.store(
        u64::try_from(WEBHOOK_DELAY.as_millis()).unwrap_or(100),
        Ordering::Relaxed,
    );
    let webhook = receiver.start().await?;
    let p = bring_up(common, &webhook, None, true, true).await?;
    let (queue, queue_arn) = p
        .provisioned
        .queues
        .get("Notifier/Queue")
        .context("no Notifier/Queue")?;
    if !fair {
        p.clients
            .sqs
            .tag_queue()
            .queue_url(queue.as_str())
            .tags("mailroom:fair-queues", "off")
            .send()
            .await
            .context("tagging the queue out of fair queues")?;
    }
    let topic = p
        .provisioned
        .topics
        .get("EventsTopic")
        .context("no EventsTopic")?;
    let publisher = Publisher::new(p.traffic.sns.clone(), topic);
    let event = |tenant: &str, i: usize| {
        Event::from_json(
            "order.placed",
            json!({"order_id": format!("{tenant}-{i:05}"), "amount_cents": 100, "customer": "c-ok", "tenant": tenant})
                .to_string(),
        )
        .with_tenant(tenant)
    };
    let noisy: Vec<Event> = (0..quiet * 10).map(|i| event("noisy", i)).collect();
    let quiet_events: Vec<Event> = (0..quiet).map(|i| event("quiet", i)).collect();
    // The whole burst waits in the queue before a consumer takes any of it, as a burst that
    // outruns the consumers does: paused, the notifier's pollers take nothing while it is
    // published. Otherwise how much of the burst is gone before the quiet tenant publishes
    // depends on how fast this machine publishes against how fast it consumes (as the
    // emulator got faster, the quiet tenant's place moved from about 20% of the burst to 75%).
    let pollers = p.mappings.reading(queue_arn.as_str());
    if pollers.is_empty() {
        bail!("no event source mapping reads Notifier/Queue");
    }
    for mapping in &pollers {
        mapping.enabled.store(false, Ordering::Relaxed);
    }
    // A receive already waiting (a one-second long poll) ends first.
    tokio::time::sleep(RECEIVE_WAIT).await;
    for batch in [noisy, quiet_events] {
        let report = publisher.publish(&batch).await;
        if let Some(f) = report.failed.first() {
            bail!("not published: {}", f.error);
        }
    }
    for mapping in &pollers {
        mapping.enabled.store(true, Ordering::Relaxed);
    }
    let timeout = Duration::from_secs(60 + u64::try_from(quiet).unwrap_or(0));
    if !p.drain(timeout).await {
        bail!("the queues did not drain within {timeout:?}");
    }
    let dwell = receiver
        .dwell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    p.down().await;
    let total_noisy = dwell.iter().filter(|(t, _)| t == "noisy").count().max(1);
    let (mut quiet_ms, mut noisy_ms, mut behind) = (Vec::new(), Vec::new(), Vec::new());
    let mut noisy_so_far = 0usize;
    for (tenant, ms) in &dwell {
        if tenant == "noisy" {
            noisy_so_far += 1;
            noisy_ms.push(*ms);
        } else {
            quiet_ms.push(*ms);
            #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            behind.push(noisy_so_far as f64 / total_noisy as f64);
        }
    }
    Ok(Half {
        fair_queues: fair,
        noisy_published: quiet * 10,
        quiet_published: quiet,
        delivered: dwell.len(),
        quiet_p50_ms: percentile(&mut quiet_ms.clone(), 0.5),
        quiet_p95_ms: percentile(&mut quiet_ms, 0.95),
        noisy_p95_ms: percentile(&mut noisy_ms, 0.95),
        quiet_behind_noisy_p95: percentile(&mut behind, 0.95),
    })
}
