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
    let port = mailroom_lambda::SqsQueues::new(aws_sdk_sqs::Client::new(&aws));
    let ledger = env.string("MAILROOM_LEDGER_TABLE").map(|table| {
        mailroom_lambda::ledger::Ledger::new(aws_sdk_dynamodb::Client::new(&aws), table)
    });
    let (port, config, ledger) = (&port, &config, ledger.as_ref());
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<RequestJson>| async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .ok();
            dlq_replay::handle(
                port,
                config,
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
