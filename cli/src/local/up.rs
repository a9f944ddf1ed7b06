//! `mailroom local up`: bring the pipeline up on the emulator and show what it does, live.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use mailroom_local::faults::FaultPlan;
use mailroom_local::pipeline::{Options, Pipeline};
use serde_json::Value;

use super::Common;
use super::webhook::Receiver;

pub(super) fn bin_dir(common: &Common) -> anyhow::Result<PathBuf> {
    match &common.bin_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf()),
    }
}

/// `5m,10m,45m` divided by the speed-up, in seconds.
pub(super) fn scaled_thresholds(speed: u32) -> String {
    [300u32, 600, 2700]
        .map(|s| format!("{}s", (s / speed.max(1)).max(1)))
        .join(",")
}

/// The signing secret of local runs (a Standard Webhooks secret: `whsec_` + base64).
pub(super) const LOCAL_SIGNING_SECRET: &str = "whsec_bG9jYWwtc2lnbmluZy1zZWNyZXQ=";

/// The template to run and the project root whose venv runs the emulator: template.yaml
/// in the current directory, or `--template PATH` with the venv here, else in the Mailroom
/// checkout this binary was built from (a consumer in its own repository).
fn project(template: Option<&Path>) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    let here = std::env::current_dir()?;
    let Some(template) = template else {
        if !here.join("template.yaml").exists() {
            bail!(
                "run this from the project root (template.yaml not found), or give --template PATH"
            );
        }
        return Ok((here, None));
    };
    let template = here.join(template);
    if !template.is_file() {
        bail!("--template {}: no such file", template.display());
    }
    let has_venv = |root: &Path| mailroom_local::Moto::venv(root).join("bin/python").exists();
    let root = [here.clone(), mailroom_local::workspace_root().to_path_buf()]
        .into_iter()
        .find(|r| has_venv(r))
        .with_context(|| {
            format!(
                "no venv with the emulator here or in {}: run scripts/setup.sh there, or set MAILROOM_VENV",
                mailroom_local::workspace_root().display()
            )
        })?;
    Ok((root, Some(template)))
}

pub(super) async fn bring_up(
    common: &Common,
    webhook: &str,
    template: Option<&Path>,
    leases: bool,
    breaker: bool,
) -> anyhow::Result<Pipeline> {
    let (root, template) = project(template)?;
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
            ("NOTIFIER_SIGNING_SECRET", Some(LOCAL_SIGNING_SECRET)),
            ("NOTIFIER_WEBHOOK_URL", Some(webhook)),
            ("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS", Some("true")),
        ]),
    );
    let thresholds = scaled_thresholds(speed);
    let cooldown = (3600 / speed).max(1).to_string();
    let pause_after = (60 / speed).max(1).to_string();
    env.insert(
        "task-monitor".to_owned(),
        set(&[
            ("MAILROOM_MONITOR_THRESHOLDS", Some(&thresholds)),
            ("MAILROOM_ALERT_COOLDOWN_SECS", Some(&cooldown)),
            ("MAILROOM_BREAKER_PAUSE_AFTER_SECS", Some(&pause_after)),
            ("NOTIFIER_SIGNING_SECRET_PARAMETER", None),
            ("NOTIFIER_SIGNING_SECRET", Some(LOCAL_SIGNING_SECRET)),
            ("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS", Some("true")),
        ]),
    );
    // The circuit breakers' cool-downs, scaled like the visibility timeouts (30 s first, 10
    // minutes at most, in AWS).
    let breaker_cooldown = (30 / speed).max(1).to_string();
    let breaker_max = (600 / speed).max(2).to_string();
    for consumer in ["notifier", "example-consumer"] {
        let env = env.entry(consumer.to_owned()).or_insert_with(BTreeMap::new);
        env.insert(
            "MAILROOM_BREAKER".to_owned(),
            Some((if breaker { "on" } else { "off" }).to_owned()),
        );
        env.insert(
            "MAILROOM_BREAKER_COOLDOWN_SECS".to_owned(),
            Some(breaker_cooldown.clone()),
        );
        env.insert(
            "MAILROOM_BREAKER_MAX_COOLDOWN_SECS".to_owned(),
            Some(breaker_max.clone()),
        );
    }
    if !leases {
        for consumer in ["notifier", "example-consumer"] {
            env.entry(consumer.to_owned())
                .or_insert_with(BTreeMap::new)
                .insert("MAILROOM_LEASE".to_owned(), Some("off".to_owned()));
        }
    }
    // The intake's backlog objective, scaled like the monitor's thresholds.
    let slo = (900 / speed).max(1).to_string();
    env.insert(
        "intake".to_owned(),
        set(&[("MAILROOM_BACKLOG_SLO_SECS", Some(&slo))]),
    );
    let options = Options {
        template,
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
        log_dir: Some(log_dir(common)?),
        endpoint: mailroom_lambda::Env::process().string("MAILROOM_ENDPOINT_URL"),
        // Always through the proxy, at rate 0 when no faults are asked for: it counts the
        // application's AWS calls by action, which the demo reports.
        faults: Some(FaultPlan::mix(common.faults)),
        only: None,
    };
    Ok(Pipeline::up(&options).await?)
}

/// Where functions' logs (and the local webhook's) go: `--log-dir`, else target/local-logs.
pub(super) fn log_dir(common: &Common) -> anyhow::Result<PathBuf> {
    Ok(match &common.log_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?.join("target/local-logs"),
    })
}

pub(super) fn print_topology(p: &Pipeline) {
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
        let mut triggers = sources;
        triggers.extend(f.spec.schedules.iter().cloned());
        if let Some(url) = &f.url {
            triggers.push(format!("Function URL {}", url.url()));
        }
        println!(
            "  function  {id:<22} {} ({} instance(s)) ← {}",
            f.spec.binary,
            f.processes.len(),
            if triggers.is_empty() {
                "on demand".into()
            } else {
                triggers.join(" + ")
            }
        );
    }
}

/// The intake's loopback URL, when the template has one.
pub(super) fn intake_url(p: &Pipeline) -> Option<&str> {
    p.functions
        .get("IntakeFunction")
        .and_then(|f| f.url.as_ref())
        .map(mailroom_local::function_url::FunctionUrl::url)
}

pub(super) async fn up(common: Common, template: Option<PathBuf>) -> anyhow::Result<()> {
    let receiver = Arc::new(Receiver::default());
    receiver.fixed.store(true, Ordering::Relaxed);
    let webhook = match &common.webhook {
        Some(w) => w.clone(),
        None => receiver.start().await?,
    };
    let pipeline = bring_up(&common, &webhook, template.as_deref(), true, true).await?;
    println!("mailroom local: the pipeline is up (Ctrl-C to stop)");
    print_topology(&pipeline);
    if let Some(topic) = pipeline.provisioned.topics.get("EventsTopic") {
        println!(
            "publish with: mailroom publish --endpoint-url {} --topic {} --kind order.placed --message '{{\"order_id\":\"o-1\",\"amount_cents\":100}}'",
            pipeline.endpoint, topic
        );
    }
    if let Some(url) = intake_url(&pipeline) {
        println!(
            "or through the intake: curl -i -X POST {url}/events/order.placed -H 'content-type: application/json' -H 'idempotency-key: o-1' -d '{{\"order_id\":\"o-1\",\"amount_cents\":100}}'"
        );
        println!("  and follow it: curl {url}/tasks/o-1");
        println!("  its API (OpenAPI 3.1): curl {url}/openapi.json");
    }
    println!("{}", environment_block(&pipeline.endpoint));
    let inbox = subscribe_inbox(&pipeline, &common.stack).await?;
    let consumers = consumer_queues(&pipeline).await;
    let mut alert_count = 0usize;
    let mut last = String::new();
    // SIGINT, SIGTERM and SIGHUP all stop it cleanly; SIGKILL leaves the cleanup to the
    // reaper's watchdog (`mailroom_local::reaper`).
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
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
    println!("mailroom local: stopping");
    pipeline.down().await;
    Ok(())
}

/// The shell lines that point the AWS CLI, boto3 and the SDKs at the emulator.
pub(super) fn environment_block(endpoint: &str) -> String {
    format!(
        "for the AWS CLI, boto3 and the SDKs:\n  export AWS_ENDPOINT_URL={endpoint}\n  \
         export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n  \
         export AWS_REGION={region} AWS_DEFAULT_REGION={region}",
        region = mailroom_local::REGION
    )
}

/// Each consumer function: (logical id, its source queue's logical id, its DLQ's logical id).
pub(super) async fn consumer_queues(p: &Pipeline) -> Vec<(String, String, Option<String>)> {
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

/// What one consumer's counts are, each for what it is.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ConsumerCounts {
    pub(super) binary: String,
    /// Visible in the source queue now.
    pub(super) queued: u64,
    /// Received and not yet deleted or returned.
    pub(super) in_flight: u64,
    /// Records the function finished with, so the poller deleted them: done, or sent to the DLQ
    /// by the engine (a poison record is finished too).
    pub(super) deleted: u64,
    /// Records the function listed as failed, returned to the queue for another try.
    pub(super) returned: u64,
    /// The DLQ's depth now (it falls when a replay moves messages back).
    pub(super) dlq_now: u64,
    /// Records that arrived replayed from the DLQ.
    pub(super) replayed_in: u64,
}

/// One line: the tasks the monitor has registered, then per consumer what its queue and
/// function did; and the alerts so far.
pub(super) fn format_summary(
    registered: u64,
    consumers: &[ConsumerCounts],
    alerts: usize,
) -> String {
    let mut parts = vec![format!("monitor registered {registered}")];
    for c in consumers {
        parts.push(format!(
            "{}: {} queued, {} in flight, {} deleted (done or to DLQ), {} returned for retry, \
             DLQ holds {}, {} replayed in",
            c.binary, c.queued, c.in_flight, c.deleted, c.returned, c.dlq_now, c.replayed_in
        ));
    }
    parts.push(format!("alerts {alerts}"));
    format!("  {}", parts.join(" · "))
}

/// [`format_summary`] of the pipeline now.
pub(super) async fn live_summary(
    p: &Pipeline,
    consumers: &[(String, String, Option<String>)],
    alerts: usize,
) -> String {
    let registered = p
        .functions
        .get("TaskMonitorFunction")
        .map_or(0, |m| m.counters.records.load(Ordering::Relaxed));
    let mut counts = Vec::new();
    for (id, queue, dlq) in consumers {
        if id == "TaskMonitorFunction" {
            continue;
        }
        let c = &p.functions[id].counters;
        let (queued, in_flight) = p.depth(queue).await;
        let dlq_now = match dlq {
            Some(d) => {
                let (v, f) = p.depth(d).await;
                v + f
            }
            None => 0,
        };
        counts.push(ConsumerCounts {
            binary: p.functions[id].spec.binary.clone(),
            queued,
            in_flight,
            deleted: c.succeeded.load(Ordering::Relaxed),
            returned: c.retried.load(Ordering::Relaxed),
            dlq_now,
            replayed_in: c.replayed.load(Ordering::Relaxed),
        });
    }
    format_summary(registered, &counts, alerts)
}

/// A queue subscribed (raw) to the alerts topic, to show alerts as they go out.
pub(super) async fn subscribe_inbox(
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

pub(super) async fn alerts(p: &Pipeline, inbox: &mailroom_lambda::sqs::QueueUrl) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_live_count_is_labelled_for_what_it_is() {
        // Issue 12, point 5: on 6b129e9 the line read "published 7 · notifier: … 5 done, …
        // 2 dead-lettered": "done" counted the dead-lettered too, "dead-lettered" was the DLQ's
        // depth now (0 after a replay) and "published" was what the monitor had seen so far.
        let line = format_summary(
            7,
            &[ConsumerCounts {
                binary: "notifier".into(),
                queued: 1,
                in_flight: 2,
                deleted: 5,
                returned: 3,
                dlq_now: 0,
                replayed_in: 2,
            }],
            1,
        );
        assert_eq!(
            line,
            "  monitor registered 7 · notifier: 1 queued, 2 in flight, 5 deleted (done or to DLQ), \
             3 returned for retry, DLQ holds 0, 2 replayed in · alerts 1"
        );
        assert!(!line.contains("published"));
        assert!(!line.contains(" done,"));
    }
}
