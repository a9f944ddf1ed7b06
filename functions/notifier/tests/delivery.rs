//! The notifier against a real HTTP receiver on 127.0.0.1, through the engine.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Receiver;
use mailroom_lambda::testing::{FakeQueues, fixture};
use mailroom_lambda::{BatchReport, Cause, Deadline, Engine, EngineConfig, Outcome, SqsEvent};
use notifier::config::{Config, Format, SecretSource};
use notifier::{Notifier, SigningKey, signing};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(allow_private: bool) -> Config {
    Config {
        webhook_url: None,
        format: Format::Json,
        callback_field: Some("/callback_url".into()),
        secret: SecretSource::Plain(SECRET.into()),
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        allow_private,
    }
}

/// The SNS-enveloped fixture with each record's payload sent to one of `urls`.
fn event_to(urls: &[&str]) -> SqsEvent {
    let template = fixture("sqs-sns-envelope.json").records[0].clone();
    let mut event = SqsEvent::default();
    event.records = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let mut r = template.clone();
            r.message_id = Some(format!("m-{i}"));
            let mut envelope: Value =
                serde_json::from_str(r.body.as_deref().expect("body")).expect("envelope");
            let payload =
                json!({"order_id": format!("o-{i}"), "amount_cents": 100, "callback_url": url});
            envelope["Message"] = Value::String(payload.to_string());
            envelope["MessageId"] = Value::String(format!("sns-{i}"));
            envelope["MessageAttributes"]["task_id"]["Value"] = Value::String(format!("task-{i}"));
            r.body = Some(envelope.to_string());
            r
        })
        .collect();
    event
}

async fn deliver(config: Config, event: SqsEvent) -> (BatchReport, FakeQueues) {
    let key = SigningKey::from_secret(SECRET.as_bytes()).expect("key");
    let notifier = Notifier::new(config, key).expect("client");
    let queues = FakeQueues::new();
    let engine = Engine::new(
        EngineConfig {
            metrics: mailroom_lambda::telemetry::MetricsSink::Discard,
            ..EngineConfig::default()
        },
        queues.clone(),
    );
    let report = engine
        .process(event, Deadline::none(), |m| notifier.handle(m))
        .await
        .expect("response");
    (report, queues)
}

fn outcome(report: &BatchReport, i: usize) -> &Outcome {
    &report.records[i].outcome
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn a_2xx_succeeds_and_the_receiver_verifies_the_signature() {
    // GIVEN a receiver that answers 200
    let rx = Receiver::start().await;

    // WHEN an event is delivered to it
    let (report, _) = deliver(config(true), event_to(&[&rx.url("/ok")])).await;

    // THEN it succeeded, and the receiver can verify what it got
    assert_eq!(outcome(&report, 0), &Outcome::Succeeded);
    let got = rx.deliveries();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "ok");
    let header = |name: &str| got[0].headers[name].to_str().expect("ascii").to_owned();
    let key = SigningKey::from_secret(SECRET.as_bytes()).expect("key");
    let (id, ts, sig) = (
        header(signing::ID_HEADER),
        header(signing::TIMESTAMP_HEADER),
        header(signing::SIGNATURE_HEADER),
    );
    assert_eq!(key.verify(&id, &ts, &sig, &got[0].body, now(), 300), Ok(()));
    let wrong = SigningKey::from_secret(b"wrong").expect("key");
    assert!(
        wrong
            .verify(&id, &ts, &sig, &got[0].body, now(), 300)
            .is_err()
    );
    assert_eq!(id, "task-0", "the task id, for receiver-side dedup");
    let body: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["event"]["order_id"], "o-0");
    assert_eq!(body["kind"], "order.placed");
}

#[tokio::test]
async fn a_5xx_is_retried_with_backoff() {
    let rx = Receiver::start().await;
    let (report, queues) = deliver(config(true), event_to(&[&rx.url("/unavailable")])).await;
    let Outcome::Failed {
        cause,
        reason,
        visibility_secs,
    } = outcome(&report, 0)
    else {
        panic!("must be retried: {report:?}")
    };
    assert_eq!(*cause, Cause::Retry);
    assert!(reason.contains("HTTP 503"), "{reason}");
    assert!(visibility_secs.is_some(), "the policy's backoff is applied");
    assert_eq!(queues.visibility_calls().len(), 1);
}

#[tokio::test]
async fn retry_after_becomes_the_backoff() {
    let rx = Receiver::start().await;
    let (report, _) = deliver(config(true), event_to(&[&rx.url("/limited")])).await;
    assert!(matches!(
        outcome(&report, 0),
        Outcome::Failed {
            cause: Cause::Retry,
            visibility_secs: Some(7),
            ..
        }
    ));
}

#[tokio::test]
async fn a_permanent_4xx_is_poison_with_the_status_as_reason() {
    let rx = Receiver::start().await;
    let (report, queues) = deliver(config(true), event_to(&[&rx.url("/gone")])).await;
    let Outcome::Poisoned { reason, .. } = outcome(&report, 0) else {
        panic!("must be poison: {report:?}")
    };
    assert!(
        reason.contains("HTTP 404") && reason.contains("no such hook"),
        "{reason}"
    );
    assert_eq!(queues.sent().len(), 1, "sent to the DLQ");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    // GIVEN a receiver slower than the 500 ms timeout, and a port nobody listens on
    let rx = Receiver::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let closed_url = format!("http://{closed}/hook");

    // WHEN both are delivered
    let (report, _) = deliver(config(true), event_to(&[&rx.url("/slow"), &closed_url])).await;

    // THEN both come back for a retry, each with its own reason
    let reasons: Vec<&str> = report
        .records
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Failed {
                cause: Cause::Retry,
                reason,
                ..
            } => reason.as_str(),
            other => panic!("must be retried: {other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("timeout"), "{}", reasons[0]);
    assert!(reasons[1].contains("cannot connect"), "{}", reasons[1]);
}

#[tokio::test]
async fn the_ssrf_guard_refuses_private_destinations_without_sending() {
    // GIVEN the guard on, and destinations on loopback, by literal and by name, and metadata
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let event = event_to(&[
        &rx.url("/ok"),
        &format!("https://127.0.0.1:{port}/ok"),
        &format!("https://localhost:{port}/ok"),
        "https://169.254.169.254/latest/meta-data/",
    ]);

    // WHEN delivered
    let (report, _) = deliver(config(false), event).await;

    // THEN every one is poison with the refusal as its reason, and nothing reached the receiver
    let reasons: Vec<String> = report
        .records
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Poisoned { reason, .. } => reason.clone(),
            other => panic!("must be refused: {other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("not https"), "{}", reasons[0]);
    assert!(reasons[1].contains("loopback"), "{}", reasons[1]);
    assert!(
        reasons[2].contains("loopback"),
        "resolved at connect time: {}",
        reasons[2]
    );
    assert!(reasons[3].contains("link-local"), "{}", reasons[3]);
    assert!(rx.deliveries().is_empty());
}

#[tokio::test]
async fn without_a_callback_the_default_endpoint_gets_a_slack_body() {
    // GIVEN a Slack-format default endpoint and callbacks switched off
    let rx = Receiver::start().await;
    let mut c = config(true);
    c.webhook_url = Some(rx.url("/ok").parse().expect("url"));
    c.format = Format::Slack;
    c.callback_field = None;

    // WHEN an event (whose callback field is now ignored) is delivered
    let (report, _) = deliver(c, event_to(&["https://ignored.example.com/"])).await;

    // THEN the default endpoint got a Slack-compatible body
    assert_eq!(outcome(&report, 0), &Outcome::Succeeded);
    let body: Value = serde_json::from_slice(&rx.deliveries()[0].body).expect("json");
    let text = body["text"].as_str().expect("text");
    assert!(
        text.starts_with("*order.placed*") && text.contains("o-0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_standard_webhooks_library_verifies_the_delivery() {
    // GIVEN a receiver, and the Standard Webhooks project's own Python library (pinned in
    // requirements-dev.txt): an implementation independent of ours
    let rx = Receiver::start().await;

    // WHEN an event is delivered
    let (report, _) = deliver(config(true), event_to(&[&rx.url("/ok")])).await;
    assert_eq!(outcome(&report, 0), &Outcome::Succeeded);
    let got = rx.deliveries();

    // THEN `Webhook(secret).verify(body, headers)` accepts it, and refuses a changed body
    let headers: serde_json::Map<String, Value> = got[0]
        .headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("webhook-"))
        .map(|(n, v)| {
            (
                n.to_string(),
                Value::String(v.to_str().expect("ascii").into()),
            )
        })
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.stdin.buffer.read()
wh = Webhook(secret)
print(json.dumps(wh.verify(body, headers)))
try:
    wh.verify(body + b" ", headers)
    print("changed body accepted")
except WebhookVerificationError:
    print("changed body refused")
"#;
    let python = mailroom_local::Moto::venv(mailroom_local::workspace_root())
        .join("bin")
        .join("python");
    let mut child = std::process::Command::new(python)
        .args(["-c", script, SECRET, &Value::Object(headers).to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python (scripts/setup.sh)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&got[0].body)
            .expect("body written");
    }
    let out = child.wait_with_output().expect("python ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let verified: Value = serde_json::from_str(lines.next().expect("a line")).expect("json");
    assert_eq!(verified["event"]["order_id"], "o-0");
    assert_eq!(lines.next(), Some("changed body refused"));
}
