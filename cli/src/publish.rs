//! `mailroom publish`: publishes events to the topic, locally or on AWS.
//!
//! Each message is published with its attributes (`task_id`, `kind`, …) as SNS message
//! attributes, which is what subscriptions filter on. Sources: `--message` (repeatable), files
//! (one message each), or `--lines` files (one message per non-empty line, JSON Lines).

use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

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
    /// A String message attribute, NAME=VALUE (repeatable), e.g. kind=order.placed.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// FIFO topics: the message group.
    #[arg(long)]
    group_id: Option<String>,
    /// Print the message ids as JSON.
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
    let mut attributes = Vec::new();
    for a in &args.attributes {
        let (name, value) = a
            .split_once('=')
            .with_context(|| format!("--attr {a}: expected NAME=VALUE"))?;
        attributes.push((
            name.to_owned(),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()?,
        ));
    }
    let sns = aws_sdk_sns::Client::new(&crate::aws_config(args.endpoint_url.as_deref()).await);
    let topic = topic_arn(&sns, &args.topic).await?;
    let fifo = topic.ends_with(".fifo");
    if fifo && args.group_id.is_none() {
        bail!("{topic} is a FIFO topic: give --group-id");
    }

    let mut ids = Vec::with_capacity(bodies.len());
    let mut failed = Vec::new();
    for (chunk_no, chunk) in bodies.chunks(10).enumerate() {
        let mut request = sns.publish_batch().topic_arn(&topic);
        for (i, body) in chunk.iter().enumerate() {
            let mut entry = PublishBatchRequestEntry::builder()
                .id(i.to_string())
                .message(body)
                .set_message_attributes(
                    (!attributes.is_empty()).then(|| attributes.iter().cloned().collect()),
                );
            if let Some(g) = &args.group_id {
                entry = entry.message_group_id(g);
            }
            request = request.publish_batch_request_entries(entry.build()?);
        }
        let out = request.send().await.context("PublishBatch")?;
        for ok in out.successful() {
            ids.push(ok.message_id().unwrap_or_default().to_owned());
        }
        for f in out.failed() {
            let n = chunk_no * 10 + f.id().parse::<usize>().unwrap_or(0);
            failed.push(format!("message {n}: {}", f.message().unwrap_or(f.code())));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "topic": topic, "message_ids": ids, "failed": failed })
        );
    } else {
        println!("published {} of {} to {topic}", ids.len(), bodies.len());
        for id in &ids {
            println!("  {id}");
        }
    }
    if !failed.is_empty() {
        bail!("{} not published: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}
