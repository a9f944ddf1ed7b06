//! The example consumer with the faults `mailroom local demo` and the end-to-end test inject.
//! A crate of its own, run only by the local pipeline in place of `example-consumer`: the
//! template never names it, so `sam build` never ships it and the deployed function has no
//! fault path.
//!
//! On an event's first delivery, `"fault": "panic"` panics (the engine isolates it and the
//! record is retried) and `"fault": "crash"` aborts the process mid-batch (the whole batch
//! comes back after its visibility timeout).

use example_consumer::OrderPlaced;
use mailroom_lambda::{Failure, Message};
use serde::Deserialize;

/// An order, with the fault to inject.
#[derive(Debug, Deserialize)]
struct Faulty {
    #[serde(flatten)]
    order: OrderPlaced,
    #[serde(default)]
    fault: Option<String>,
}

async fn handle(msg: Message<Faulty>) -> Result<(), Failure> {
    if msg.receive_count() == 1 {
        match msg.payload.fault.as_deref() {
            Some("panic") => panic!("injected fault: panic on {}", msg.payload.order.order_id),
            Some("crash") => {
                tracing::error!(order_id = %msg.payload.order.order_id, "injected fault: the process dies mid-batch");
                std::process::abort();
            }
            _ => {}
        }
    }
    example_consumer::handle(msg.map(|f| f.order)).await
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    mailroom_lambda::run(handle).await
}
