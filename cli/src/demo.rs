//! `mailroom demo`: topic → queue → example consumer → DLQ, on the local emulator.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::poison::REASON_ATTRIBUTE;
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_lambda::{Deadline, Engine, EngineConfig, Outcome, SqsEvent, SqsQueues};
use mailroom_local::{self as local, Completion, EventSource, Moto, REGION};

const MAX_RECEIVE_COUNT: u32 = 3;

/// Options of `mailroom demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Use this emulator instead of starting moto from the project venv.
    #[arg(long, env = "MAILROOM_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Where the fixtures are.
    #[arg(long, default_value = "events")]
    events: PathBuf,
    /// Show the consumer's JSON logs.
    #[arg(long)]
    verbose: bool,
}

/// One sample event: a payload and its SNS message attributes.
struct Sample {
    payload: String,
    attributes: Vec<(String, String)>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.verbose {
        mailroom_lambda::telemetry::init();
    }
    let samples = load_samples(&args.events)?;
    let (endpoint, _moto) = match args.endpoint_url {
        Some(url) => (url, None),
        None => {
            let root = std::env::current_dir()?;
            let moto = Moto::start(&Moto::venv(&root)).context("starting the AWS emulator")?;
            (moto.endpoint().to_owned(), Some(moto))
        }
    };
    println!("mailroom demo: local pipeline on the AWS emulator at {endpoint}");
    let config = local::emulator_config(&endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);

    // Topology: the events topic fans out to the example consumer's queue, which has a DLQ.
    let topic = sns
        .create_topic()
        .name("mailroom-events")
        .send()
        .await?
        .topic_arn
        .context("topic arn")?;
    let (dlq_url, dlq_arn) = local::create_queue(&sqs, "mailroom-example-dlq", &[]).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn.as_str(), "maxReceiveCount": MAX_RECEIVE_COUNT});
    let (queue_url, queue_arn) = local::create_queue(
        &sqs,
        "mailroom-example",
        &[
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (QueueAttributeName::VisibilityTimeout, "1".to_owned()),
        ],
    )
    .await?;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn.as_str())
        .send()
        .await?;
    println!(
        "  topic  mailroom-events → queue mailroom-example (DLQ mailroom-example-dlq, maxReceiveCount {MAX_RECEIVE_COUNT})"
    );

    for s in &samples {
        let mut req = sns.publish().topic_arn(&topic).message(&s.payload);
        for (k, v) in &s.attributes {
            req = req.message_attributes(
                k,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()?,
            );
        }
        req.send().await?;
    }
    println!(
        "  published {} events from {}",
        samples.len(),
        args.events.display()
    );

    let engine = Engine::new(
        EngineConfig {
            consumer: "example-consumer".into(),
            metrics: MetricsSink::Discard,
            ..EngineConfig::default()
        },
        SqsQueues::new(sqs.clone()),
    );
    let source = EventSource::new(sqs.clone(), queue_url.clone(), queue_arn, REGION).wait_secs(1);
    let mut totals = Totals::default();
    let mut batch = 0;
    let drain_by = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let event: SqsEvent = source.receive().await?;
        if event.records.is_empty() {
            // Retried messages are in flight until their visibility ends: wait for them.
            if mailroom_ops::sqs::queue_depth(&sqs, &queue_url).await? == (0, 0) {
                break;
            }
            if Instant::now() > drain_by {
                bail!("the queue did not drain within 120 s");
            }
            continue;
        }
        batch += 1;
        let result = engine
            .process(event.clone(), Deadline::none(), example_consumer::handle)
            .await;
        let line = match &result {
            Ok(report) => totals.add(report),
            Err(e) => format!("function error: {e}"),
        };
        let completion = source
            .complete(&event, result.as_ref().map(|r| &r.response))
            .await?;
        if let Completion::BatchFailed(why) = completion {
            bail!("batch {batch} failed as a whole: {why}");
        }
        println!("  batch {batch}: {} records → {line}", event.records.len());
    }

    let dead = read_dlq(&sqs, &dlq_url).await?;
    println!("  DLQ mailroom-example-dlq holds {} messages:", dead.len());
    for (body, reason) in &dead {
        let shown: String = body.chars().take(48).collect();
        println!("    {shown:<48}  reason: {reason}");
    }
    let lost = samples.len().saturating_sub(totals.succeeded + dead.len());
    println!(
        "summary: {} published · {} succeeded · {} retried · {} dead-lettered with reasons · {lost} lost · {:.1}s",
        samples.len(),
        totals.succeeded,
        totals.retried,
        dead.len(),
        started.elapsed().as_secs_f64()
    );
    if lost != 0 {
        bail!("{lost} events are unaccounted for");
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    succeeded: usize,
    retried: usize,
}

impl Totals {
    fn add(&mut self, report: &mailroom_lambda::BatchReport) -> String {
        let (mut ok, mut poison, mut failed) = (0, 0, 0);
        for r in &report.records {
            match r.outcome {
                Outcome::Succeeded | Outcome::Duplicate => ok += 1,
                Outcome::Poisoned { .. } => poison += 1,
                Outcome::Failed { .. } => failed += 1,
            }
        }
        self.succeeded += ok;
        self.retried += failed;
        format!("{ok} succeeded, {poison} poisoned to the DLQ, {failed} to retry")
    }
}

async fn read_dlq(
    sqs: &aws_sdk_sqs::Client,
    url: &QueueUrl,
) -> anyhow::Result<Vec<(String, String)>> {
    let out = sqs
        .receive_message()
        .queue_url(url.as_str())
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .send()
        .await?;
    Ok(out
        .messages()
        .iter()
        .map(|m| {
            let body = serde_json::from_str::<serde_json::Value>(m.body().unwrap_or_default())
                .ok()
                .and_then(|v| v.get("Message").and_then(|p| p.as_str()).map(str::to_owned))
                .unwrap_or_else(|| m.body().unwrap_or_default().to_owned());
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(REASON_ATTRIBUTE))
                .and_then(|a| a.string_value())
                .unwrap_or("(no reason attribute)")
                .to_owned();
            (body, reason)
        })
        .collect())
}

/// The payloads of the SQS fixtures, unwrapped from their SNS envelopes where they have one.
fn load_samples(dir: &std::path::Path) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for name in ["sqs-sns-envelope.json", "sqs-raw.json", "sqs-poison.json"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let event: SqsEvent =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for r in event.records {
            let body = r.body.unwrap_or_default();
            let sample = match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) if v["Type"] == "Notification" => Sample {
                    payload: v["Message"].as_str().unwrap_or_default().to_owned(),
                    attributes: v["MessageAttributes"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, a)| {
                                    Some((k.clone(), a["Value"].as_str()?.to_owned()))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                _ => Sample {
                    payload: body,
                    attributes: r
                        .message_attributes
                        .into_iter()
                        .filter_map(|(k, a)| Some((k, a.string_value?)))
                        .collect(),
                },
            };
            samples.push(sample);
        }
    }
    Ok(samples)
}
