//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom::ledger::Ledger;
use mailroom::monitor::{Monitor, MonitorConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mailroom::telemetry::init();
    let config = MonitorConfig::from_env()?;
    let table = std::env::var("MAILROOM_LEDGER_TABLE")
        .map_err(|_| "MAILROOM_LEDGER_TABLE is not set: the monitor needs the ledger table")?;
    let aws = mailroom::aws::from_env();
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
