//! Mailroom: reliable asynchronous work on AWS with Rust.
//!
//! A producer publishes to SNS; SNS fans out to one SQS queue per consumer; each consumer is a
//! Lambda function built on this crate's batch [`Engine`]. A consumer is one async function:
//!
//! ```no_run
//! use mailroom_lambda::{Failure, Message};
//!
//! #[derive(serde::Deserialize)]
//! struct OrderPlaced { order_id: String, amount_cents: u64 }
//!
//! async fn handle(msg: Message<OrderPlaced>) -> Result<(), Failure> {
//!     if msg.payload.amount_cents == 0 {
//!         return Err(Failure::poison("amount must be positive"));
//!     }
//!     tracing::info!(order_id = %msg.payload.order_id, "order processed");
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_runtime::Error> {
//!     mailroom_lambda::run(handle).await
//! }
//! ```
//!
//! The engine decodes each record on its own (raw body or SNS envelope), runs the consumer with
//! bounded concurrency and panic isolation, keeps FIFO order per message group, moves poison to
//! the DLQ with its reason, sets exponential backoff on retries, and returns a partial batch
//! response naming exactly the records to retry.
#![warn(missing_docs)]

pub mod aws;
pub mod backoff;
pub mod breaker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod ledger;
pub mod message;
pub mod outcome;
pub mod poison;
pub mod publish;
#[cfg(feature = "schemas")]
pub mod schema;
pub mod sqs;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use std::future::Future;

pub use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
pub use config::{ConfigError, Env};
pub use engine::{BatchReport, Deadline, Engine, EngineConfig, FifoMode};
pub use message::Message;
pub use outcome::{Backoff, Cause, Failure, Outcome};
pub use sqs::{QueuePort, SqsQueues};

/// Runs a consumer as a Lambda function: tracing, configuration from the environment, one SQS
/// client, then the Lambda runtime loop. Everything is set up once, at cold start.
///
/// # Errors
/// When the configuration does not parse, or the runtime loop fails.
pub async fn run<T, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    T: serde::de::DeserializeOwned,
    F: Fn(Message<T>) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let env = Env::process();
    telemetry::init(&env);
    let aws = aws::from_env();
    let engine = Engine::from_env(&env, &aws)?;
    serve(&engine, handler).await
}

/// The Lambda runtime loop over an engine built by the caller, for functions that set up more
/// at cold start (secrets, HTTP clients) than [`run`] does.
///
/// # Errors
/// When the runtime loop fails.
pub async fn serve<Q, T, F, Fut>(
    engine: &Engine<Q>,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    Q: QueuePort,
    T: serde::de::DeserializeOwned,
    F: Fn(Message<T>) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Box<serde_json::value::RawValue>>| {
            // Boxed once per invocation: it keeps the future's type shallow, so consumers
            // never need a `recursion_limit` attribute.
            let invocation: std::pin::Pin<Box<dyn Future<Output = _>>> =
                Box::pin(engine.handle(event, handler));
            invocation
        },
    ))
    .await
}
