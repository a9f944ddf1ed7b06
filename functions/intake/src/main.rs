//! Lambda entry point: wiring only. The schemas, the ledger and the publisher are set up once,
//! at cold start.

use std::sync::Arc;

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use intake::{Intake, Request};
use lambda_runtime::{LambdaEvent, service_fn};
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::publish::Publisher;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let env = mailroom_lambda::Env::process();
    mailroom_lambda::telemetry::init(&env);
    let table = env.required("MAILROOM_LEDGER_TABLE", "the ledger table's name")?;
    let topic = env.required("MAILROOM_TOPIC_ARN", "the events topic's ARN")?;
    let max_bytes = env
        .positive("MAILROOM_MAX_EVENT_BYTES")?
        .map_or(mailroom_lambda::publish::SNS_MAX_MESSAGE_BYTES, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        });
    let schemas = Arc::new(intake::embedded_schemas()?);
    let aws = mailroom_lambda::aws::from_env();
    let publisher = Publisher::new(aws_sdk_sns::Client::new(&aws), topic)
        .with_max_bytes(max_bytes)
        .with_schemas(schemas.clone());
    let mut intake = Intake::new(
        Ledger::new(aws_sdk_dynamodb::Client::new(&aws), table),
        publisher,
        schemas,
    );
    if let Some(slo) = env.positive("MAILROOM_BACKLOG_SLO_SECS")? {
        intake = intake.with_backpressure(std::time::Duration::from_secs(slo));
    }
    let intake = &intake;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            let response = intake
                .handle(&Request::from_function_url(&event.payload))
                .await;
            Ok::<_, std::convert::Infallible>(response.into_function_url())
        },
    ))
    .await
}
