//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom_lambda::ledger::Ledger;
use mailroom_ops::discovery::Discovery;
use mailroom_ops::monitor::{LambdaMappings, Monitor, MonitorConfig};
use task_monitor::Watched;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = mailroom_lambda::Env::process();
    mailroom_lambda::telemetry::init(&env);
    let config = MonitorConfig::from_env(&env)?;
    let table = env.required("MAILROOM_LEDGER_TABLE", "the ledger table's name")?;
    let aws = mailroom_lambda::aws::from_env();
    let (sqs, sns) = (
        aws_sdk_sqs::Client::new(&aws),
        aws_sdk_sns::Client::new(&aws),
    );
    let discovery = Discovery::from_env(&env, sns.clone(), sqs.clone())?;
    let monitor = Monitor::new(
        config,
        Ledger::new(aws_sdk_dynamodb::Client::new(&aws), table),
        sqs,
        sns,
    )
    // Consumers' event source mappings pause while their circuit breakers are open.
    // (On `AWS_ENDPOINT_URL_LAMBDA` when set: `mailroom local` serves them apart from moto.)
    .with_event_sources(LambdaMappings::new(aws_sdk_lambda::Client::new(&aws)));
    // Completion callbacks go out signed, as the notifier's deliveries do, with its secret:
    // on when a signing secret is configured.
    let signed = [
        "NOTIFIER_SIGNING_SECRET_PARAMETER",
        "NOTIFIER_SIGNING_SECRET_ARN",
        "NOTIFIER_SIGNING_SECRET",
    ]
    .iter()
    .any(|v| env.string(v).is_some());
    let callbacks = if signed {
        let config = notifier::Config::from_env(&env)?;
        let secret = notifier::secret::resolve(&config.secret, &aws).await?;
        Some(notifier::Notifier::new(
            config,
            notifier::SigningKey::from_secret(&secret)?,
        )?)
    } else {
        tracing::warn!("no NOTIFIER_SIGNING_SECRET*: completion callbacks are off");
        None
    };
    // One invocation at a time per execution environment: the lock is never contended.
    let watched = tokio::sync::Mutex::new(Watched::new(monitor, discovery));
    let (watched, callbacks) = (&watched, callbacks.as_ref());
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let mut watched = watched.lock().await;
            let monitor = watched.current().await?;
            task_monitor::handle(monitor, callbacks, event.payload).await
        },
    ))
    .await
}
