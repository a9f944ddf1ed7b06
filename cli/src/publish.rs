//! `mailroom publish`: publishes events to the topic, locally or on AWS.
//!
//! Through the library's publisher: each message gets a task id before its first attempt
//! (`--task-id`, else drawn), sent with `kind` and any `--attr` as SNS message attributes
//! (what subscriptions filter on); only entries SNS did not take are sent again, with the
//! same ids. Sources: `--message` (repeatable), files (one message each), or `--lines` files
//! (one message per non-empty line, JSON Lines).

use std::path::PathBuf;

use anyhow::{Context, bail};
use mailroom_lambda::message::TASK_ID_ATTRIBUTE;
use mailroom_lambda::publish::{Event, KIND_ATTRIBUTE, Publisher};
use mailroom_lambda::schema::Schemas;

/// Options of `mailroom publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The topic: an ARN, or a name looked up in the account.
    #[arg(long, env = "MAILROOM_TOPIC")]
    topic: String,
    /// A message body (repeatable).
    #[arg(long = "message", value_name = "TEXT")]
    messages: Vec<String>,
    /// Files to publish, one message each (or one per line with --lines).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Read each file as JSON Lines: one message per non-empty line.
    #[arg(long)]
    lines: bool,
    /// The event's kind (the `kind` attribute subscriptions filter on), e.g. order.placed.
    #[arg(long)]
    kind: Option<String>,
    /// The task id (the idempotency key) of each message, in order; by default one is drawn
    /// per message. Publishing the same id again is the same task to every consumer.
    #[arg(long = "task-id", value_name = "ID")]
    task_ids: Vec<String>,
    /// Check each message against `DIR/<kind>.json` (JSON Schema) first; a message that does
    /// not match, or a kind without a schema, is refused with the schema's error paths.
    #[arg(long, value_name = "DIR")]
    schemas: Option<PathBuf>,
    /// The tenant the events belong to.
    #[arg(long)]
    tenant: Option<String>,
    /// Another String message attribute, NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// FIFO topics: the message group.
    #[arg(long)]
    group_id: Option<String>,
    /// Print the task ids and SNS message ids as JSON.
    #[arg(long)]
    json: bool,
    /// Use this endpoint (the emulator) instead of AWS.
    #[arg(long, env = "MAILROOM_ENDPOINT_URL")]
    endpoint_url: Option<String>,
}

async fn topic_arn(sns: &aws_sdk_sns::Client, topic: &str) -> anyhow::Result<String> {
    if topic.starts_with("arn:") {
        return Ok(topic.to_owned());
    }
    let mut pages = sns.list_topics().into_paginator().items().send();
    while let Some(t) = pages.next().await {
        let arn = t.context("ListTopics")?.topic_arn.unwrap_or_default();
        if arn.rsplit(':').next() == Some(topic) {
            return Ok(arn);
        }
    }
    bail!("no topic named {topic}")
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let mut bodies = args.messages.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if args.lines {
            bodies.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        } else {
            bodies.push(text);
        }
    }
    if bodies.is_empty() {
        bail!("nothing to publish: give --message or files");
    }
    if !args.task_ids.is_empty() && args.task_ids.len() != bodies.len() {
        bail!(
            "{} --task-id for {} messages: give one per message, in order",
            args.task_ids.len(),
            bodies.len()
        );
    }
    let mut attributes = Vec::new();
    let mut kind = args.kind.clone();
    for a in &args.attributes {
        let (name, value) = a
            .split_once('=')
            .with_context(|| format!("--attr {a}: expected NAME=VALUE"))?;
        match name {
            KIND_ATTRIBUTE if kind.is_none() => kind = Some(value.to_owned()),
            KIND_ATTRIBUTE | TASK_ID_ATTRIBUTE => {
                bail!("--attr {name}=…: give it as --{}", name.replace('_', "-"));
            }
            _ => attributes.push((name.to_owned(), value.to_owned())),
        }
    }
    let kind = kind.context("give the event's kind: --kind order.placed")?;
    let events: Vec<Event> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut event = Event::from_json(kind.clone(), body);
            if let Some(id) = args.task_ids.get(i) {
                event = event.with_task_id(id.clone());
            }
            if let Some(t) = &args.tenant {
                event = event.with_tenant(t.clone());
            }
            if let Some(g) = &args.group_id {
                event = event.with_group_id(g.clone());
            }
            for (n, v) in &attributes {
                event = event.with_attribute(n.clone(), v.clone());
            }
            event
        })
        .collect();
    let sns = aws_sdk_sns::Client::new(&crate::aws_config(args.endpoint_url.as_deref()).await);
    let topic = topic_arn(&sns, &args.topic).await?;
    let mut publisher = Publisher::new(sns, &topic);
    if let Some(dir) = &args.schemas {
        publisher = publisher.with_schemas(std::sync::Arc::new(Schemas::load(dir)?));
    }
    let report = publisher.publish(&events).await;
    let failed: Vec<String> = report
        .failed
        .iter()
        .map(|f| format!("message {} (task {}): {}", f.index, f.task_id, f.error))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "topic": topic, "published": report.published, "failed": failed })
        );
    } else {
        println!(
            "published {} of {} to {topic}",
            report.published.len(),
            events.len()
        );
        for p in &report.published {
            println!("  task {}  (SNS MessageId {})", p.task_id, p.message_id);
        }
    }
    if !failed.is_empty() {
        bail!("{} not published: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
