//! Lambda entry point: wiring only. The logic is in the library, where tests call it.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    if std::env::var("EXAMPLE_FAULT_INJECTION").is_ok_and(|v| v == "true") {
        mailroom_lambda::run(example_consumer::handle_with_faults).await
    } else {
        mailroom_lambda::run(example_consumer::handle).await
    }
}
