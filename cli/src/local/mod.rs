//! `mailroom local`: the whole application on one machine, with no Docker.
//!
//! `up` starts the AWS emulator, provisions template.yaml's topology, and runs every function
//! as its real binary under AWS's Runtime Interface Emulator, fed by Lambda's event-source
//! rules and schedules. `demo` does the same, then plays a mixed workload through it: transient
//! webhook failures, poison, the DLQ alert, a replay after the fix, and the resolution.

mod cost;
mod demo;
mod fairness;
mod outage;
mod up;
mod webhook;

use std::path::PathBuf;

/// `mailroom local` commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Brings the pipeline up and prints a live summary until interrupted.
    Up(UpArgs),
    /// Brings the pipeline up, plays a mixed workload through it, and prints what happened.
    Demo(DemoArgs),
}

/// Options shared by `up` and `demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// Speed-up for queue visibility timeouts, schedules and the monitor's thresholds.
    #[arg(long, default_value_t = 1)]
    speed: u32,
    /// The stack name resources are named after.
    #[arg(long, default_value = "mailroom")]
    stack: String,
    /// Where the function binaries are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the functions' logs go (default: target/local-logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The notifier's webhook (default: a local receiver that accepts everything).
    #[arg(long)]
    webhook: Option<String>,
    /// Inject faults into this fraction of the application's AWS calls (0.05 = 5%: 2% HTTP
    /// 500/503, 2% connection resets before the call, 1% after it took effect).
    #[arg(long, default_value_t = 0.0, value_parser = fault_rate)]
    faults: f64,
}

fn fault_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=0.5).contains(&r) => Ok(r),
        _ => Err(format!("`{s}`: a fraction from 0 to 0.5, such as 0.05")),
    }
}

/// Options of `mailroom local up`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    common: Common,
    /// The application's template (default: template.yaml here). A consumer in its own
    /// repository runs with its own template; its binaries are found in its cargo target
    /// directory, Mailroom's own beside this binary, and the venv here or in Mailroom's checkout.
    #[arg(long)]
    template: Option<PathBuf>,
}

/// Options of `mailroom local demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    common: Common,
    /// Events to publish.
    #[arg(long, default_value_t = 40)]
    events: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No scripted faults: every webhook call succeeds, no panic, no killed process. The
    /// happy path, for the summary's `cost` per event.
    #[arg(long)]
    clean: bool,
    /// Run both consumers without the in-progress lease (`MAILROOM_LEASE=off`): one ledger
    /// write per record instead of two, for side effects that are idempotent in themselves
    /// (the demo's webhook deduplicates on the task id).
    #[arg(long)]
    no_lease: bool,
    /// Play a downstream outage instead of the mixed workload: the webhook is down for SECS
    /// (divided by the speed), then back; once with the notifier's circuit breaker, once with
    /// it switched off, side by side.
    #[arg(long, value_name = "SECS")]
    outage: Option<u64>,
    /// Play a noisy tenant instead: one tenant publishes ten times the volume of another, all
    /// at once, to a slow webhook; once with SQS fair queues (emulated), once without, side by
    /// side (the quiet tenant is a `--events` / 11 share).
    #[arg(long, conflicts_with = "outage")]
    noisy_tenant: bool,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::up(args.common, args.template).await,
        Command::Demo(args) => match args.outage {
            Some(secs) => outage::outage(&args, secs).await,
            None if args.noisy_tenant => fairness::noisy_tenant(&args).await,
            None => demo::demo(args).await,
        },
    }
}
