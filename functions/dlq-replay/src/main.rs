//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom_lambda::telemetry::MetricsSink;
use mailroom_ops::replay::RequestJson;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = mailroom_lambda::Env::process();
    mailroom_lambda::telemetry::init(&env);
    let config = dlq_replay::Config::from_env(&env)?;
    let aws = mailroom_lambda::aws::from_env();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let discovery = mailroom_ops::discovery::Discovery::from_env(
        &env,
        aws_sdk_sns::Client::new(&aws),
        sqs.clone(),
    )?;
    // One invocation at a time per execution environment: the lock is never contended.
    let discovery = tokio::sync::Mutex::new(discovery);
    let port = mailroom_lambda::SqsQueues::new(sqs);
    let ledger = env.string("MAILROOM_LEDGER_TABLE").map(|table| {
        mailroom_lambda::ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&aws), table)
    });
    let (port, config, ledger, discovery) = (&port, &config, ledger.as_ref(), &discovery);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<RequestJson>| async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .ok();
            let config = match discovery.lock().await.as_mut() {
                Some(d) => {
                    config.with_discovered(d.consumers().await.map_err(dlq_replay::Error::from)?)
                }
                None => config.clone(),
            };
            dlq_replay::handle(
                port,
                &config,
                ledger,
                event.payload,
                remaining,
                &MetricsSink::Stdout,
            )
            .await
        },
    ))
    .await
}
