//! Mailroom on one machine: everything that exists to run the application locally and in
//! tests, and nothing that ships in a Lambda function.
//!
//! - [`Moto`]: the AWS emulator from the project's venv, on 127.0.0.1, patched to be as strict
//!   as SQS where moto is laxer (and faster where it scans whole queues).
//! - [`runner`]: each function as its real binary under AWS's Runtime Interface Emulator.
//! - [`template`]: template.yaml provisioned on the emulator, intrinsics resolved.
//! - [`event_source`]: Lambda's SQS event source mapping, with Lambda's batch rules.
//! - [`pipeline`]: all of it together, as `mailroom local up` runs it.
//! - [`testbed`]: the one test bed every test binary shares.
#![warn(missing_docs)]

pub mod event_source;
pub mod faults;
pub mod function_url;
mod http;
pub mod lambda_api;
mod moto;
pub mod pipeline;
pub mod proxy;
pub mod reaper;
pub mod resources;
pub mod runner;
pub mod template;
pub mod testbed;

pub use event_source::{Completion, EventSource, lambda_record};
pub use moto::Moto;
pub use resources::{ProvisionError, create_queue, create_table};

/// The root of this checkout: template.yaml, `events/`, the venv and the target directory.
pub fn workspace_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The region local runs and tests use.
pub const REGION: &str = "us-east-1";

/// The SDK configuration for an emulator at `endpoint`: a fixed region and dummy credentials,
/// so nothing reads the user's AWS profile and nothing can reach AWS.
pub async fn emulator_config(endpoint: &str) -> aws_types::SdkConfig {
    mailroom_lambda::aws::emulator(endpoint, REGION)
}
