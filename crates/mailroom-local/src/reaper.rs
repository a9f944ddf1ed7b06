//! No child outlives the process that started it, whatever ends that process.
//!
//! Ctrl-C runs the pipeline's clean shutdown, but SIGTERM, SIGHUP or SIGKILL end the process
//! before any of its code runs, and the emulator and function processes it started would live
//! on under PID 1, holding their ports. So every such child joins one process group whose
//! leader is a small watchdog shell. The watchdog reads a pipe whose only writer is this
//! process; the kernel closes it when this process ends, for any reason, SIGKILL included. The
//! watchdog then sends SIGTERM to the whole group, and SIGKILL a second later. No `unsafe`, no
//! `pre_exec`: the group is set with the standard library's `process_group`.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The watchdog: ignore the signals a terminal or a service manager sends, wait for the pipe
/// to close, then end the group (itself last: `kill -KILL 0` includes it).
const WATCHDOG: &str = "trap '' TERM HUP INT; read _ignored; kill -TERM 0 2>/dev/null; \
                        sleep 1; kill -KILL 0";

#[derive(Debug)]
struct Watchdog {
    group: i32,
    // Held, never written: this process's end closes it.
    _pipe: ChildStdin,
    child: Child,
}

static WATCHDOG_PROCESS: OnceLock<Mutex<Option<Watchdog>>> = OnceLock::new();

fn start() -> std::io::Result<Watchdog> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("the watchdog has no stdin"))?;
    let group = i32::try_from(child.id()).map_err(std::io::Error::other)?;
    Ok(Watchdog {
        group,
        _pipe: pipe,
        child,
    })
}

/// The process group every child of this process should join, starting its watchdog on first
/// use (and again if the watchdog was killed).
///
/// # Errors
/// When `sh` cannot be started.
pub fn group() -> std::io::Result<i32> {
    let cell = WATCHDOG_PROCESS.get_or_init(|| Mutex::new(None));
    let mut slot = cell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(w) = slot.as_mut()
        && matches!(w.child.try_wait(), Ok(None))
    {
        return Ok(w.group);
    }
    let w = start()?;
    let group = w.group;
    *slot = Some(w);
    Ok(group)
}
