//! `mailroom`: the operator's and developer's command.

mod local;
mod new;
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
    /// Scaffolds a new consumer: its crate, its workspace entry and its template block, with
    /// nothing else to edit (the monitor and the replay discover it).
    #[command(subcommand)]
    New(new::Command),
}

/// The SDK configuration for an operator: the default credential chain (profiles, SSO,
/// `credential_process`, …), or the emulator at `endpoint_url`. A loopback endpoint is the local
/// emulator: it gets dummy credentials and the local region by itself, so no AWS profile, key or
/// region is needed (and none can leak to it).
async fn aws_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    if let Some(url) = endpoint_url.filter(|u| is_loopback(u)) {
        let region = mailroom_lambda::Env::process()
            .string("AWS_REGION")
            .unwrap_or_else(|| mailroom_local::REGION.to_owned());
        return mailroom_lambda::aws::emulator(url, &region);
    }
    let mut loader = aws_config::from_env();
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Whether `url` points at this machine: `127.0.0.0/8`, `localhost` or `[::1]`.
fn is_loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay::run(*args).await,
        Command::Status(args) => status::run(*args).await,
        Command::Publish(args) => publish::run(*args).await,
        Command::Local(command) => local::run(command).await,
        Command::New(command) => new::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line, the whole chain of causes: never a Debug dump or a backtrace.
            eprintln!("mailroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_endpoints_are_recognised_and_others_are_not() {
        for url in [
            "http://127.0.0.1:4566",
            "http://localhost:5000/",
            "http://[::1]:9000",
            "127.0.0.9",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://sqs.us-east-1.amazonaws.com",
            "http://10.0.0.1:4566",
            "http://localhost.example.com",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
