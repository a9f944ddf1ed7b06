//! The functions' SDK configuration (`mailroom_lambda::aws::from_vars`) sends each service to
//! its own `AWS_ENDPOINT_URL_<SERVICE>` when set, and the others to `AWS_ENDPOINT_URL`, as
//! `aws-config` does: `mailroom local` points the task monitor's Lambda client at its Lambda
//! API and DynamoDB at its own process this way.

use std::sync::Arc;

use mailroom_lambda::Env;
use mailroom_local::lambda_api::{LambdaApi, Mappings};
use mailroom_local::testbed;

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    url
}

#[tokio::test]
async fn each_service_goes_to_its_own_endpoint_variable_and_the_rest_to_aws_endpoint_url() {
    // GIVEN the general endpoint on a closed port, DynamoDB's and SQS's on the emulator, and
    // Lambda's on the local Lambda API
    let mappings = Arc::new(Mappings::default());
    mappings.add(
        "Example/Function",
        "arn:aws:sqs:us-east-1:123456789012:app-example",
        10,
    );
    let lambda = LambdaApi::serve(mappings).await.expect("serves");
    let emulator = testbed::endpoint();
    let closed = closed_port();
    let env = Env::from_pairs(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_ENDPOINT_URL", &closed),
        ("AWS_ENDPOINT_URL_DYNAMODB", emulator),
        ("AWS_ENDPOINT_URL_SQS", emulator),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.url()),
    ]);
    let client = mailroom_lambda::aws::http_client_builder()
        .build()
        .expect("client");
    let aws = mailroom_lambda::aws::from_vars(env, client);

    // WHEN each client makes a call
    let tables = aws_sdk_dynamodb::Client::new(&aws)
        .list_tables()
        .send()
        .await;
    let queues = aws_sdk_sqs::Client::new(&aws).list_queues().send().await;
    let mapped = aws_sdk_lambda::Client::new(&aws)
        .list_event_source_mappings()
        .send()
        .await;
    let topics = aws_sdk_sns::Client::new(&aws).list_topics().send().await;

    // THEN those with their own variable reached their server (the Lambda API lists its one
    // mapping), and SNS, with none, went to the closed general endpoint
    tables.expect("DynamoDB answered from the emulator");
    queues.expect("SQS answered from the emulator");
    let mapped = mapped.expect("the Lambda API answered");
    assert_eq!(mapped.event_source_mappings().len(), 1);
    let err = topics.expect_err("SNS has no endpoint of its own: the closed port");
    let err = format!(
        "{:?}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert!(
        err.contains("Connection refused") || err.contains("connect") || err.contains("dispatch"),
        "{err}"
    );
}
