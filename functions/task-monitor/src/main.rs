//! Lambda entry point: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};
use mailroom_lambda::ledger::Ledger;
use mailroom_ops::monitor::{Monitor, MonitorConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = mailroom_lambda::Env::process();
    mailroom_lambda::telemetry::init(&env);
    let config = MonitorConfig::from_env(&env)?;
    let table = env.required("MAILROOM_LEDGER_TABLE", "the ledger table's name")?;
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
