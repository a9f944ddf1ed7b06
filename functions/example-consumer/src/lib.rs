//! The example consumer: the shortest honest way to write a Mailroom consumer.
//!
//! One async function over a typed message. Return `Ok` when done, `Failure::retry` when
//! trying again could help, `Failure::poison` when it never will. The engine does the rest.

use mailroom_lambda::{Failure, Message};
use serde::Deserialize;

/// The event this consumer handles: kind `order.placed`. Its JSON Schema,
/// `schemas/order.placed.json`, is generated from this type (`tests/schema.rs`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct OrderPlaced {
    /// The order.
    #[schemars(length(min = 1))]
    pub order_id: String,
    /// The amount, in cents; must be positive.
    #[schemars(range(min = 1))]
    pub amount_cents: u64,
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
