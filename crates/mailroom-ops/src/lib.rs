//! Mailroom's operations: what runs beside the consumers rather than inside them.
//!
//! - [`discovery`]: the application's consumers, from the events topic's subscriptions.
//! - [`monitor`]: registers every task, sweeps the ledger and the DLQs on a schedule, raises
//!   one alert per transition, and answers "what happened to my task?".
//! - [`replay`]: sends dead letters back to their queue (or parks them), filtered and
//!   rate-limited, never deleting a message before its copy is confirmed sent.
//!
//! The `task-monitor` and `dlq-replay` functions and the `mailroom` CLI are thin wiring over
//! these modules. Their AWS calls go through small ports, so the logic has unit tests without
//! the emulator.
#![warn(missing_docs)]

pub mod discovery;
pub mod monitor;
pub mod replay;
pub mod sqs;
