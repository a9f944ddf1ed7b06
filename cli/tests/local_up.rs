//! `mailroom local up` as a user runs it, and ends it: the real binary starts its own emulator
//! and every function under the Runtime Interface Emulator; the test then ends it with a signal
//! and reads `/proc` itself to see what is left. The function binaries must be built
//! (`scripts/test.sh` builds them first).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// (parent pid, state) of every process, from `/proc/PID/stat`.
fn processes() -> BTreeMap<u32, (u32, char)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.insert(pid, (ppid, state));
    }
    out
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, (ppid, state)) in &all {
            if *ppid == parent && *state != 'Z' && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Those of `pids` still running (a zombie has let go of everything but its entry).
fn alive(pids: &BTreeSet<u32>) -> BTreeSet<u32> {
    let all = processes();
    pids.iter()
        .copied()
        .filter(|p| all.get(p).is_some_and(|(_, state)| *state != 'Z'))
        .collect()
}

/// `mailroom local up`, started from the project root; returns once it says it is up, with
/// what it printed so far.
fn local_up(stack: &str) -> (Child, Vec<String>) {
    let root = mailroom_local::workspace_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(["local", "up", "--speed", "60", "--stack", stack])
        .arg("--log-dir")
        .arg(root.join("target/local-logs").join(stack))
        .current_dir(root)
        .env_remove("MAILROOM_ENDPOINT_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailroom runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let started = Instant::now();
    // Up once the environment block is printed (it follows the topology).
    while !lines
        .iter()
        .any(|l: &String| l.contains("AWS_REGION=") || l.contains("AWS_DEFAULT_REGION="))
    {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("`mailroom local up` did not come up ({e}): {lines:#?}"),
        }
    }
    (child, lines)
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Ends `mailroom local up` with `name` and checks that every process it started is gone.
fn nothing_outlives(name: &str, stack: &str) -> Vec<String> {
    // GIVEN `mailroom local up`, with the emulator and every function's emulator instance
    // under it
    let (mut child, lines) = local_up(stack);
    let pid = child.id();
    let started = descendants(pid);
    assert!(
        started.len() >= 8,
        "expected moto, the watchdog and one RIE plus bootstrap per function instance: {started:?}"
    );

    // WHEN the signal ends it
    signal(pid, name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "still running 30 s after SIG{name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // THEN none of them is left (the watchdog gives them a second after SIGTERM)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = alive(&started);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after SIG{name} these outlived `mailroom local up`: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lines
}

#[test]
fn sigterm_leaves_no_emulator_or_function_running() {
    // Issue 12, point 3: on 6b129e9 SIGTERM or SIGHUP left 7 to 10 processes under PID 1.
    let lines = nothing_outlives("TERM", "up-sigterm");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mailroom local: the pipeline is up")),
        "{lines:#?}"
    );
}

#[test]
fn sigkill_leaves_no_emulator_or_function_running() {
    // Issue 12, point 3: SIGKILL runs none of the process's code; the watchdog still ends
    // every child.
    nothing_outlives("KILL", "up-sigkill");
}

#[test]
fn the_printed_environment_block_points_boto3_at_the_emulator() {
    // Issue 12, point 2: `mailroom local up` prints the environment that lets the AWS CLI
    // and boto3 talk to the emulator too.
    // GIVEN `mailroom local up` and the block it printed
    let (mut child, lines) = local_up("up-env");
    let vars: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        vars.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL"),
        "{lines:#?}"
    );

    // WHEN boto3 runs with only that block (no profile, no config file, no other AWS variable)
    let venv = mailroom_local::Moto::venv(mailroom_local::workspace_root());
    let out = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(
            "import boto3; urls = boto3.client('sqs').list_queues().get('QueueUrls', []); \
             print('\\n'.join(urls))",
        )
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .envs(vars)
        .output()
        .expect("python runs");

    // AND the intake lines it printed, run as written by a shell, accept an order and show it
    let printed = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line: {lines:#?}"))
            .to_owned()
    };
    let sh = |command: &str| {
        let out = Command::new("sh")
            .args(["-c", command])
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let posted = sh(&printed("or through the intake: "));
    let followed = sh(&printed("and follow it: "));
    let described = sh(&printed("its API (OpenAPI 3.1): "));
    signal(child.id(), "TERM");
    let _ = child.wait();
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    assert!(posted.contains(r#""task_id":"o-1""#), "{posted}");
    let task: serde_json::Value = serde_json::from_str(&followed).expect("the task's status");
    assert_eq!(task["task_id"], "o-1");
    assert_eq!(task["accepted"]["kind"], "order.placed");
    let api: serde_json::Value = serde_json::from_str(&described).expect("the OpenAPI document");
    let intake = printed("its API (OpenAPI 3.1): curl ")
        .trim_end_matches("/openapi.json")
        .to_owned();
    assert_eq!(api["servers"][0]["url"], intake.as_str(), "{described}");
    assert!(
        api["paths"]["/events/order.placed"]["post"].is_object(),
        "{described}"
    );

    // THEN it lists the pipeline's queues from the emulator
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("up-env-"), "{stdout}");
}
