//! `mailroom replay`: DLQ replay from an operator's terminal, on AWS or the emulator.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mailroom_lambda::SqsQueues;
use mailroom_lambda::backoff::BackoffPolicy;
use mailroom_lambda::sqs::QueueUrl;
use mailroom_ops::replay::{
    Allowlist, Filter, ReplayError, ReplayReport, ReplayRequest, replay_with_progress,
};

/// Options of `mailroom replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The DLQ: a queue URL or name.
    #[arg(long)]
    source: String,
    /// Where messages go back to (URL or name); default: the DLQ's only source queue.
    #[arg(long)]
    target: Option<String>,
    /// Where messages replayed more than --max-replays times go (URL or name).
    #[arg(long)]
    parking_lot: Option<String>,
    /// Only messages whose attribute equals a value: NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attribute_equals: Vec<String>,
    /// Only messages that have this attribute (repeatable).
    #[arg(long = "has-attr", value_name = "NAME")]
    attribute_present: Vec<String>,
    /// Only messages whose payload has JSON at a pointer: /POINTER=JSON (repeatable).
    #[arg(long = "body", value_name = "/POINTER=JSON")]
    body_equals: Vec<String>,
    /// Only messages older than this many seconds.
    #[arg(long, value_name = "SECS")]
    older_than: Option<u64>,
    /// Only messages newer than this many seconds.
    #[arg(long, value_name = "SECS")]
    newer_than: Option<u64>,
    /// Only messages whose poison reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only these message ids (repeatable).
    #[arg(long = "message-id")]
    message_ids: Vec<String>,
    /// At most this many messages.
    #[arg(long)]
    max: Option<usize>,
    /// Messages per second, at most.
    #[arg(long)]
    rate: Option<f64>,
    /// Replays before a message is parked.
    #[arg(long, default_value_t = 3)]
    max_replays: u32,
    /// Delay re-sent messages: base seconds of a full-jitter backoff, capped at 900 s.
    #[arg(long, value_name = "SECS")]
    backoff_base: Option<u64>,
    /// Stop cleanly after this many seconds.
    #[arg(long, value_name = "SECS")]
    time_budget: Option<u64>,
    /// Receive, send and delete pipelines at once on a standard DLQ without `--max` (1 to
    /// 16); the rate limit is shared between them.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    pipelines: u8,
    /// Report what would move; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Queues that may be touched (names or URLs, comma-separated). Default: the queues named
    /// on the command line.
    #[arg(long, env = "MAILROOM_REPLAY_ALLOWLIST", value_delimiter = ',')]
    allow: Vec<String>,
    /// Use this endpoint (the emulator) instead of AWS.
    #[arg(long, env = "MAILROOM_ENDPOINT_URL")]
    endpoint_url: Option<String>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let sqs = aws_sdk_sqs::Client::new(&crate::aws_config(args.endpoint_url.as_deref()).await);
    let source = resolve(&sqs, &args.source).await?;
    let target = match &args.target {
        Some(t) => Some(resolve(&sqs, t).await?),
        // Naming a DLQ names its redrive source: the queue the README's first line replays to.
        None => redrive_source(&sqs, &source).await?,
    };
    let parking_lot = match &args.parking_lot {
        Some(p) => Some(resolve(&sqs, p).await?),
        None => None,
    };
    let mut allowed: Vec<String> = args.allow.clone();
    if allowed.is_empty() {
        allowed.extend(
            [&Some(source.clone()), &target, &parking_lot]
                .into_iter()
                .flatten()
                .map(|q| q.as_str().to_owned()),
        );
    }

    let mut request = ReplayRequest::new(source.clone());
    request.target = target;
    request.parking_lot = parking_lot;
    request.filter = filter(&args)?;
    request.max_messages = args.max;
    request.dry_run = args.dry_run;
    request.rate_per_sec = args.rate;
    request.pipelines = usize::from(args.pipelines);
    request.max_replays = args.max_replays;
    request.time_budget = args.time_budget.map(Duration::from_secs);
    request.backoff = args
        .backoff_base
        .map(|b| BackoffPolicy::new(Duration::from_secs(b), Duration::from_secs(900)));

    if !args.dry_run && !args.yes {
        confirm(&source, request.target.as_ref())?;
    }
    let (depth, _) = mailroom_ops::sqs::queue_depth(&sqs, &source)
        .await
        .unwrap_or_default();
    let bar = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(
            args.max
                .map_or(depth, |m| m.min(usize::try_from(depth).unwrap_or(m)) as u64),
        )
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} examined {msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let port = SqsQueues::new(sqs);
    let allowlist = Allowlist::new(allowed);
    let report = replay_with_progress(&port, &allowlist, &request, |r| {
        bar.set_position(r.examined as u64);
        bar.set_message(format!(
            "· {} moved · {} parked · {} failed",
            r.moved, r.parked, r.failed
        ));
    })
    .await
    .map_err(|e| match e {
        ReplayError::NotAllowed(queue) => anyhow::anyhow!(
            "queue {queue} is not on the replay allowlist: name it with --target or \
             --parking-lot, or add it to --allow (MAILROOM_REPLAY_ALLOWLIST)"
        ),
        ReplayError::AmbiguousTarget { dlq, sources } => anyhow::anyhow!(
            "{dlq} is the DLQ of {sources} queues: name the one to replay to with --target"
        ),
        other => other.into(),
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(error) = &report.stopped_by_error {
        bail!(
            "the replay stopped early: {error}; what it did not move is still in the DLQ, run it again"
        );
    }
    if report.failed > 0 {
        bail!(
            "{} messages could not be replayed; they are still in the DLQ",
            report.failed
        );
    }
    Ok(())
}

/// The queue whose RedrivePolicy names `dlq`, when exactly one does; otherwise none, and the
/// replay asks for `--target`.
async fn redrive_source(
    sqs: &aws_sdk_sqs::Client,
    dlq: &QueueUrl,
) -> anyhow::Result<Option<QueueUrl>> {
    let sources = sqs
        .list_dead_letter_source_queues()
        .queue_url(dlq.as_str())
        .send()
        .await
        .with_context(|| format!("looking up the queues whose DLQ is {dlq}"))?
        .queue_urls;
    match <[String; 1]>::try_from(sources) {
        Ok([only]) => Ok(Some(only.parse().map_err(anyhow::Error::msg)?)),
        Err(_) => Ok(None),
    }
}

/// A queue URL, or a name looked up with GetQueueUrl.
pub(crate) async fn resolve(sqs: &aws_sdk_sqs::Client, queue: &str) -> anyhow::Result<QueueUrl> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return queue.parse().map_err(anyhow::Error::msg);
    }
    let url = sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .with_context(|| format!("looking up queue {queue}"))?
        .queue_url
        .context("no queue URL")?;
    url.parse().map_err(anyhow::Error::msg)
}

fn filter(args: &Args) -> anyhow::Result<Filter> {
    let pair = |s: &String, what: &str| -> anyhow::Result<(String, String)> {
        s.split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .with_context(|| format!("{what} `{s}` is not NAME=VALUE"))
    };
    Ok(Filter {
        attribute_equals: args
            .attribute_equals
            .iter()
            .map(|s| pair(s, "--attr"))
            .collect::<Result<_, _>>()?,
        attribute_present: args.attribute_present.clone(),
        body_equals: args
            .body_equals
            .iter()
            .map(|s| {
                let (ptr, json) = pair(s, "--body")?;
                if !ptr.starts_with('/') {
                    bail!("--body `{s}`: the pointer must start with /");
                }
                // A bare word is a string: --body /status=failed
                let value = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
                Ok((ptr, value))
            })
            .collect::<Result<_, _>>()?,
        older_than: args.older_than.map(Duration::from_secs),
        newer_than: args.newer_than.map(Duration::from_secs),
        reason_contains: args.reason.clone(),
        message_ids: (!args.message_ids.is_empty())
            .then(|| args.message_ids.iter().cloned().collect::<HashSet<_>>()),
    })
}

fn confirm(source: &QueueUrl, target: Option<&QueueUrl>) -> anyhow::Result<()> {
    let to = target.map_or("its source queue".to_owned(), ToString::to_string);
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to replay from {source} without confirmation: pass --yes (or --dry-run first)"
        );
    }
    eprint!("Replay messages from {source} to {to}? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed; nothing was moved");
    }
    Ok(())
}

/// The first `max` characters of `text` on one line: control characters escaped.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn print_report(r: &ReplayReport) {
    let mode = if r.dry_run { "dry run" } else { "replay" };
    println!("{mode}: {} → {}", r.source, r.target);
    if r.dry_run {
        println!(
            "  would move {} (of which {} would be parked)",
            r.would_move, r.would_park
        );
    } else {
        println!(
            "  moved {} · parked {} · duplicated {}",
            r.moved, r.parked, r.duplicated
        );
    }
    println!(
        "  examined {} · skipped by filter {} · failed {} · {} ms{}",
        r.examined,
        r.skipped,
        r.failed,
        r.duration_ms,
        if r.stopped_by_budget {
            " · stopped at the time budget"
        } else {
            ""
        }
    );
    if let Some(error) = &r.stopped_by_error {
        println!("  stopped early: {error}");
    }
    for (reason, n) in &r.by_reason {
        println!("  {n:>6}  {reason}");
    }
    if !r.samples.is_empty() {
        println!("  samples:");
    }
    for s in &r.samples {
        println!(
            "    {}  {}  {}",
            s.message_id,
            s.reason.as_deref().unwrap_or("(no reason)"),
            printable(&s.body, 80)
        );
    }
    for f in &r.failures {
        println!(
            "  failed {}: {}",
            f.message_id,
            f.reason.as_deref().unwrap_or_default()
        );
    }
}
