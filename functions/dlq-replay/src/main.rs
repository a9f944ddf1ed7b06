//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom::replay::RequestJson;
use mailroom::telemetry::MetricsSink;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mailroom::telemetry::init();
    let config = dlq_replay::Config::from_lookup(|k| std::env::var(k).ok())?;
    let aws = aws_config::load_from_env().await;
    let port = mailroom::SqsQueues::new(aws_sdk_sqs::Client::new(&aws));
    let (port, config) = (&port, &config);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<RequestJson>| async move {
            let remaining = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .ok();
            dlq_replay::handle(port, config, event.payload, remaining, &MetricsSink::Stdout).await
        },
    ))
    .await
}
