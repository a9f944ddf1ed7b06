//! The AWS emulator (moto server) as child processes on 127.0.0.1: one for DynamoDB, one for
//! the rest, behind one endpoint ([`router`]).

mod router;

use crate::proxy::Upstreams;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts moto and exits when its parent's pipe closes, so no emulator outlives its owner.
const LAUNCHER: &str = include_str!("moto_server.py");

/// A running emulator. It stops when this value is dropped, or when the process that started
/// it exits, whichever comes first.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    upstreams: Upstreams,
    // Dropped first: nothing is routed to a stopped server.
    _router: Option<router::Router>,
    children: Vec<Child>,
}

impl Moto {
    /// The project's venv: `MAILROOM_VENV`, else `.venv` under `root`.
    pub fn venv(root: &Path) -> PathBuf {
        mailroom_lambda::Env::process()
            .string("MAILROOM_VENV")
            .map_or_else(|| root.join(".venv"), PathBuf::from)
    }

    /// Starts moto from `venv` on a free port of 127.0.0.1 and waits until it answers.
    ///
    /// # Errors
    /// When the venv has no Python, the process cannot start, or moto does not answer in 30 s.
    pub fn start(venv: &Path) -> io::Result<Self> {
        Self::start_with_env(venv, &[])
    }

    /// [`Moto::start`] with extra environment for the server, such as
    /// `MAILROOM_MOTO_STOCK_SQS=1` for moto's own SQS code (see `moto_server.py`).
    ///
    /// # Errors
    /// As [`Moto::start`].
    pub fn start_with_env(venv: &Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let python = venv.join("bin").join("python");
        if !python.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: run `scripts/setup.sh` to create the venv with moto",
                    python.display()
                ),
            ));
        }
        // `MAILROOM_MOTO_ONE_PROCESS=1`: moto as it comes, every service in one process.
        let one = mailroom_lambda::Env::process()
            .flag("MAILROOM_MOTO_ONE_PROCESS")
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?
            .unwrap_or(false);
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..if one { 1 } else { 2 } {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            children.push(spawn(&python, port, env)?);
            ports.push(port);
        }
        let started = Instant::now();
        for (child, port) in children.iter_mut().zip(&ports) {
            if let Err(e) = ready(child, *port, started) {
                for c in &mut children {
                    let _ = c.kill();
                }
                return Err(e);
            }
        }
        let url = |port: &u16| format!("http://127.0.0.1:{port}");
        if let [services, dynamodb] = &ports[..] {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let endpoint = format!("http://{}", listener.local_addr()?);
            let upstreams = Upstreams::split(url(services), url(dynamodb));
            let router = router::Router::start(listener, upstreams.clone())?;
            return Ok(Self {
                endpoint,
                upstreams,
                _router: Some(router),
                children,
            });
        }
        Ok(Self {
            endpoint: url(&ports[0]),
            upstreams: Upstreams::single(&url(&ports[0])),
            _router: None,
            children,
        })
    }

    /// The endpoint URL to give the SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The processes behind [`Moto::endpoint`], for a proxy that routes by itself (one hop
    /// instead of two).
    pub fn upstreams(&self) -> Upstreams {
        self.upstreams.clone()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(python: &Path, port: u16, env: &[(&str, &str)]) -> io::Result<Child> {
    Command::new(python)
        .arg("-c")
        .arg(LAUNCHER)
        .arg(port.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(crate::reaper::group()?)
        .spawn()
}

/// Waits until the server on `port` answers, 30 s from `started` at most.
fn ready(child: &mut Child, port: u16, started: Instant) -> io::Result<()> {
    while !answers(port) {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("moto exited at start: {status}")));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("moto did not answer on 127.0.0.1:{port} within 30 s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let req = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut head = [0u8; 12];
    s.write_all(req.as_bytes()).is_ok()
        && s.read_exact(&mut head).is_ok()
        && head == *b"HTTP/1.1 200"
}
