//! Lambda entry point: wiring only. The logic is in the library, where tests call it.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mailroom_lambda::run(example_consumer::handle).await
}
