//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom_lambda::ledger::Ledger;
use mailroom_ops::monitor::{Monitor, MonitorConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mailroom_lambda::telemetry::init();
    let config = MonitorConfig::from_env()?;
    let table = std::env::var("MAILROOM_LEDGER_TABLE")
        .map_err(|_| "MAILROOM_LEDGER_TABLE is not set: the monitor needs the ledger table")?;
    let aws = mailroom_lambda::aws::from_env();
    let monitor = Monitor::new(
        config,
        Ledger::new(aws_sdk_dynamodb::Client::new(&aws), table),
        aws_sdk_sqs::Client::new(&aws),
        aws_sdk_sns::Client::new(&aws),
    );
    let monitor = &monitor;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            task_monitor::handle(monitor, event.payload).await
        },
    ))
    .await
}
