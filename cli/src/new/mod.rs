//! `mailroom new consumer NAME`: a consumer's crate under `functions/`, its workspace entry
//! and its block in template.yaml, in one step. The task monitor and dlq-replay discover it
//! by its queue's tag, so nothing else changes. `mailroom new app DIR`: an application of
//! its own (a workspace depending on Mailroom's library, a template with the events topic,
//! the ledger and the alerts topic, and the consumer definition), for consumers that live
//! outside Mailroom's repository.
//!
//! Everything is checked before anything is written: an invalid or taken name, a missing
//! project file or a filter that does not parse leaves the project as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// `mailroom new …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// A new consumer: its crate (handler, wiring, tests), its workspace entry, and its
    /// queue, DLQ, subscription, function and alarms in template.yaml.
    Consumer(ConsumerArgs),
    /// A new application in its own directory: a cargo workspace depending on Mailroom's
    /// library, template.yaml (events topic, ledger, alerts topic), templates/consumer.yaml
    /// and samconfig.toml. Add consumers to it with `mailroom new consumer NAME --root DIR`.
    App(AppArgs),
}

/// Options of `mailroom new app`.
#[derive(Debug, clap::Args)]
pub(crate) struct AppArgs {
    /// The directory to create (it must not exist, or be empty); its name is the stack's.
    dir: PathBuf,
    /// The Mailroom checkout whose library the workspace depends on, by path (default: the
    /// checkout this binary was built from). Edit Cargo.toml for a git dependency instead.
    #[arg(long)]
    mailroom: Option<PathBuf>,
}

/// Options of `mailroom new consumer`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumerArgs {
    /// The consumer's name: lowercase letters, digits and single hyphens, starting with a
    /// letter, at most 40 characters. It names the crate, the binary, the queues and the
    /// consumer in the ledger.
    name: String,
    /// Deliver only events whose message attribute KEY is VALUE (repeat it; the same KEY
    /// twice admits either value). Without it the consumer gets every event.
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Raw message delivery: the event itself, without the SNS envelope.
    #[arg(long)]
    raw: bool,
    /// The project: its Cargo.toml (a workspace) and template.yaml.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

const CARGO: &str = include_str!("Cargo.toml.tmpl");
const MAIN: &str = include_str!("main.rs.tmpl");
const LIB: &str = include_str!("lib.rs.tmpl");
const HANDLER_TEST: &str = include_str!("handler.rs.tmpl");
const BLOCK: &str = include_str!("consumer.yaml.tmpl");
const APP_CARGO: &str = include_str!("app/Cargo.toml.tmpl");
const APP_TEMPLATE: &str = include_str!("app/template.yaml.tmpl");
const APP_SAMCONFIG: &str = include_str!("app/samconfig.toml.tmpl");
const APP_GITIGNORE: &str = include_str!("app/gitignore.tmpl");
/// The consumer definition itself, as this binary was built with it.
const CONSUMER_DEFINITION: &str = include_str!("../../../templates/consumer.yaml");
/// The consumer definition every consumer's block nests.
const DEFINITION: &str = "templates/consumer.yaml";
/// Where the block goes: before the ledger's section, or before `Outputs:`.
const SECTION: &str =
    "  # ---------------------------------------------------------------- ledger and task monitor";

pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Consumer(args) => consumer(&args),
        Command::App(args) => app(&args),
    }
}

fn app(args: &AppArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose a new directory (nothing written)",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the directory needs a name")?;
    let stack_ok = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !stack_ok {
        bail!(
            "`{name}` cannot name a stack: letters, digits and hyphens, a letter first, at most 40 characters (nothing written)"
        );
    }
    let mailroom = match &args.mailroom {
        Some(m) => m.clone(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    let mailroom = mailroom.canonicalize().with_context(|| {
        format!(
            "--mailroom {}: not a Mailroom checkout (nothing written)",
            mailroom.display()
        )
    })?;
    if !mailroom.join("src/engine").is_dir() {
        bail!(
            "{} is not a Mailroom checkout (no src/engine): give --mailroom PATH (nothing written)",
            mailroom.display()
        );
    }
    let mailroom_text = mailroom
        .to_str()
        .context("the checkout's path is not UTF-8")?;
    let fill = |text: &str| {
        text.replace("__APP__", name)
            .replace("__MAILROOM__", &mailroom_text.replace('\\', "/"))
    };
    std::fs::create_dir_all(dir.join("templates"))?;
    for (path, text) in [
        ("Cargo.toml", fill(APP_CARGO)),
        ("template.yaml", fill(APP_TEMPLATE)),
        ("samconfig.toml", fill(APP_SAMCONFIG)),
        (".gitignore", APP_GITIGNORE.to_owned()),
        (DEFINITION, CONSUMER_DEFINITION.to_owned()),
    ] {
        let path = dir.join(path);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let d = dir.display();
    println!(
        "created {d}: Cargo.toml (a workspace on {mailroom_text}), template.yaml, {DEFINITION}, samconfig.toml"
    );
    println!("next:");
    println!("  mailroom new consumer NAME --root {d}");
    println!("  (cd {d} && cargo build --bins && mailroom local up --template template.yaml)");
    println!("  (cd {d} && sam build && sam deploy --guided)");
    Ok(())
}

fn consumer(args: &ConsumerArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    check_name(name)?;
    let id = logical_id(name);
    let crate_ident = name.replace('-', "_");
    let root = &args.root;
    let (manifest_path, template_path) = (root.join("Cargo.toml"), root.join("template.yaml"));
    let manifest = read(&manifest_path)?;
    let template = read(&template_path)?;
    let dir = root.join("functions").join(name);
    if dir.exists() {
        bail!(
            "{} exists already: choose another name (nothing written)",
            dir.display()
        );
    }
    let member = format!("\"functions/{name}\"");
    if manifest.contains(&member) {
        bail!("the workspace already has {member}: choose another name (nothing written)");
    }
    if template.contains(&format!("\n  {id}:")) {
        bail!("template.yaml already has a resource {id}: choose another name (nothing written)");
    }
    if !root.join(DEFINITION).exists() {
        bail!(
            "{} is missing: the consumer definition the block nests (copy it from Mailroom's repository; nothing written)",
            root.join(DEFINITION).display()
        );
    }
    let manifest = with_member(&manifest, &member)?;
    let options = options(&template, &args.filters, args.raw)?;
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__CRATE__", &crate_ident)
            .replace("__ID__", &id)
            .replace("__OPTIONS__\n", &options)
    };
    // Mailroom's own template has the monitor and the demo's topology; an application of
    // its own (`mailroom new app`) runs with `local up --template`.
    let mailroom_template = template.contains("\n  TaskMonitorFunction:");
    let template = with_block(&template, &fill(BLOCK))?;

    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    for (path, text) in [
        ("Cargo.toml", CARGO),
        ("src/main.rs", MAIN),
        ("src/lib.rs", LIB),
        ("tests/handler.rs", HANDLER_TEST),
    ] {
        let path = dir.join(path);
        std::fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(&manifest_path, manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    std::fs::write(&template_path, template)
        .with_context(|| format!("writing {}", template_path.display()))?;

    let admits = if args.filters.is_empty() {
        "every event".to_owned()
    } else {
        format!("events with {}", args.filters.join(" or "))
    };
    println!(
        "created functions/{name}: the handler in src/lib.rs, the wiring in src/main.rs, tests/handler.rs"
    );
    println!("added it to the workspace (Cargo.toml)");
    println!(
        "added {id} to template.yaml: {DEFINITION} with its queue, DLQ, subscription ({admits}{}), function and alarms",
        if args.raw { ", raw delivery" } else { "" }
    );
    if mailroom_template {
        println!(
            "the task monitor and dlq-replay find it on the events topic by its queue's tag: nothing else to edit"
        );
    }
    println!("next:");
    println!("  cargo test -p {name}");
    if mailroom_template {
        println!("  cargo build --bins && mailroom local demo");
    } else {
        println!("  cargo build --bins && mailroom local up --template template.yaml");
    }
    println!("  sam build && sam deploy");
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}: run this in the project's root (or give --root)",
            path.display()
        )
    })
}

/// Lowercase letters, digits and single hyphens; a letter first, no hyphen last; at most 40
/// characters, so `STACK-NAME-dlq` stays within SQS's 80.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "`{name}` is not a consumer name: use lowercase letters, digits and single hyphens, starting with a letter, at most 40 characters (like audit-log); nothing written"
        );
    }
    Ok(())
}

/// `audit-log` → `AuditLog`.
fn logical_id(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The block's optional parameter lines: the application's shared settings when its template
/// has them, the filter policy, raw delivery.
fn options(template: &str, filters: &[String], raw: bool) -> anyhow::Result<String> {
    let mut lines = String::new();
    for shared in ["MaxReceiveCount", "LogLevel"] {
        if template.contains(&format!("\n  {shared}:\n")) {
            lines.push_str(&format!("        {shared}: !Ref {shared}\n"));
        }
    }
    if let Some(policy) = filter_policy(filters)? {
        lines.push_str(&format!(
            "        FilterPolicy: '{}'\n",
            policy.replace('\'', "''")
        ));
    }
    if raw {
        lines.push_str("        RawDelivery: \"true\"\n");
    }
    lines.push('\n');
    Ok(lines)
}

/// `KEY=VALUE` pairs as an SNS filter policy (on message attributes), or none.
fn filter_policy(filters: &[String]) -> anyhow::Result<Option<String>> {
    let mut policy: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in filters {
        let Some((key, value)) = f.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            bail!("--filter `{f}`: expected KEY=VALUE, like kind=order.placed (nothing written)");
        };
        policy.entry(key.trim()).or_default().push(value.trim());
    }
    if policy.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_string(&policy)?))
}

/// `manifest` with `member` in the workspace's `members` (and `default-members`, when the
/// manifest has them).
fn with_member(manifest: &str, member: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(manifest.len() + 2 * member.len());
    let mut added = false;
    for line in manifest.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        if (key == "members" || key == "default-members") && line.trim_end().ends_with(']') {
            let open = line.trim_end().trim_end_matches(']').trim_end();
            let separator = if open.ends_with('[') { "" } else { ", " };
            out.push_str(&format!("{open}{separator}{member}]\n"));
            added |= key == "members";
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !added {
        bail!(
            "Cargo.toml has no one-line `members = [...]` in [workspace] to add {member} to (nothing written)"
        );
    }
    Ok(out)
}

/// `template` with `block` before the ledger's section, or before `Outputs:`.
fn with_block(template: &str, block: &str) -> anyhow::Result<String> {
    let at = template
        .find(SECTION)
        .or_else(|| template.find("\nOutputs:").map(|i| i + 1))
        .context("template.yaml has neither the ledger's section nor `Outputs:` to add the consumer before (nothing written)")?;
    Ok(format!("{}{block}{}", &template[..at], &template[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_logical_ids() {
        for good in ["audit-log", "billing", "a1", "x-2-y"] {
            check_name(good).expect(good);
        }
        for bad in [
            "",
            "Audit",
            "audit_log",
            "-audit",
            "audit-",
            "a--b",
            "1audit",
            "audit log",
            &"a".repeat(41),
        ] {
            let e = check_name(bad).expect_err(bad).to_string();
            assert!(e.contains("nothing written"), "{e}");
        }
        assert_eq!(logical_id("audit-log"), "AuditLog");
        assert_eq!(logical_id("x-2-y"), "X2Y");
    }

    #[test]
    fn filters_and_raw_delivery_become_the_blocks_parameters() {
        assert_eq!(filter_policy(&[]).expect("none"), None);
        let filters = [
            "kind=order.placed".into(),
            "kind=order.paid".into(),
            "tenant=o'brien".into(),
        ];
        let shared = "Parameters:\n  MaxReceiveCount:\n    Type: Number\n";
        assert_eq!(
            options(shared, &filters, true).expect("options"),
            "        MaxReceiveCount: !Ref MaxReceiveCount\n        FilterPolicy: '{\"kind\":[\"order.placed\",\"order.paid\"],\"tenant\":[\"o''brien\"]}'\n        RawDelivery: \"true\"\n\n"
        );
        assert_eq!(options("", &[], false).expect("none"), "\n");
        assert!(filter_policy(&["kind".into()]).is_err());
        assert!(filter_policy(&["=x".into()]).is_err());
    }

    #[test]
    fn the_member_is_added_to_both_lists() {
        let manifest = "[workspace]\nmembers = [\".\", \"cli\"]\ndefault-members = [\".\"]\nresolver = \"3\"\n";
        let out = with_member(manifest, "\"functions/a\"").expect("added");
        assert_eq!(
            out,
            "[workspace]\nmembers = [\".\", \"cli\", \"functions/a\"]\ndefault-members = [\".\", \"functions/a\"]\nresolver = \"3\"\n"
        );
        assert!(with_member("[package]\nname = \"x\"\n", "\"functions/a\"").is_err());
    }
}
