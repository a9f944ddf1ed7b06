//! `mailroom`: the operator's and developer's command.

mod local;
mod publish;
mod replay;
mod status;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Reliable asynchronous work on AWS with Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends dead letters back to their queue, or parks them: filtered, rate-limited, with a
    /// dry run, and never deleting a message before its copy is confirmed sent.
    Replay(Box<replay::Args>),
    /// The task monitor's view: open tasks by age bucket, DLQ depths with reasons, or one
    /// task's state per consumer; `--serve` runs the status API on a loopback port.
    Status(Box<status::Args>),
    /// Publishes events (text, files, or JSON Lines) to the topic with message attributes,
    /// locally or on AWS. Prints each SNS MessageId: the task id the ledger tracks.
    Publish(Box<publish::Args>),
    /// The whole application on this machine, no Docker: template.yaml on the AWS emulator,
    /// every function its real binary under the Lambda Runtime Interface Emulator.
    #[command(subcommand)]
    Local(local::Command),
}

/// The SDK configuration for an operator: the default credential chain (profiles, SSO,
/// `credential_process`, …), or the emulator at `endpoint_url`.
async fn aws_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::from_env();
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => replay::run(*args).await,
        Command::Status(args) => status::run(*args).await,
        Command::Publish(args) => publish::run(*args).await,
        Command::Local(command) => local::run(command).await,
    }
}
