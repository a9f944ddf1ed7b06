//! The example consumer: the shortest honest way to write a Mailroom consumer.
//!
//! One async function over a typed message. Return `Ok` when done, `Failure::retry` when
//! trying again could help, `Failure::poison` when it never will. The engine does the rest.

use mailroom_lambda::{Failure, Message};
use serde::Deserialize;

/// The event this consumer handles.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// The amount, in cents; must be positive.
    pub amount_cents: u64,
    /// Fault injection for the local pipeline's demo and end-to-end test: `panic` or `crash`
    /// on an event's first delivery. Ignored unless `EXAMPLE_FAULT_INJECTION=true`.
    #[serde(default)]
    pub fault: Option<String>,
}

/// Handles one order.
///
/// # Errors
/// Poison when the amount is zero: no retry will fix that.
pub async fn handle(msg: Message<OrderPlaced>) -> Result<(), Failure> {
    let order = &msg.payload;
    if order.amount_cents == 0 {
        return Err(Failure::poison("amount_cents must be positive"));
    }
    tracing::info!(order_id = %order.order_id, amount_cents = order.amount_cents, "order accepted");
    Ok(())
}

/// [`handle`], with the faults the local pipeline injects: on an event's first delivery,
/// `panic` panics (the engine isolates it and the record is retried) and `crash` aborts the
/// process mid-batch (the whole batch comes back after its visibility timeout).
///
/// # Errors
/// As [`handle`].
pub async fn handle_with_faults(msg: Message<OrderPlaced>) -> Result<(), Failure> {
    if msg.receive_count() == 1 {
        match msg.payload.fault.as_deref() {
            Some("panic") => panic!("injected fault: panic on {}", msg.payload.order_id),
            Some("crash") => {
                tracing::error!(order_id = %msg.payload.order_id, "injected fault: the process dies mid-batch");
                std::process::abort();
            }
            _ => {}
        }
    }
    handle(msg).await
}
