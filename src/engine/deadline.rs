//! The invocation's deadline, from Lambda's context, on tokio's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the invocation must be finished by.
///
/// On tokio's clock, so tests run deadlines on paused time instead of waiting for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<tokio::time::Instant>);

/// A deadline further in the past than this at the start of an invocation cannot be real
/// (cargo-lambda 1.9's emulator sends a duration where the Runtime API defines an epoch time).
const IMPLAUSIBLY_PAST: Duration = Duration::from_secs(24 * 3600);

impl Deadline {
    /// No deadline (tests, local runs).
    pub fn none() -> Self {
        Self(None)
    }

    /// A deadline at `at`.
    pub fn at(at: tokio::time::Instant) -> Self {
        Self(Some(at))
    }

    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        Self(Some(tokio::time::Instant::now() + d))
    }

    /// The deadline Lambda gives the invocation. A zero deadline (a context built by hand)
    /// means none, and so does one that cannot be real: a deadline long past when the
    /// invocation starts is logged once and treated as unknown, so leases fall back to
    /// `MAILROOM_LEASE_SECS` instead of every record failing as "deadline too close".
    pub fn from_context(ctx: &lambda_runtime::Context) -> Self {
        Self::from_epoch_ms(ctx.deadline, SystemTime::now())
    }

    pub(crate) fn from_epoch_ms(deadline_ms: u64, now: SystemTime) -> Self {
        if deadline_ms == 0 {
            return Self::none();
        }
        let at = UNIX_EPOCH + Duration::from_millis(deadline_ms);
        match at.duration_since(now) {
            Ok(left) => Self::after(left),
            Err(past) if past.duration() > IMPLAUSIBLY_PAST => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        deadline_ms,
                        "the invocation's deadline is long past, so it cannot be real (an emulator sending a duration?); running without one"
                    );
                });
                Self::none()
            }
            Err(_) => Self::after(Duration::ZERO),
        }
    }

    /// The instant itself, when there is one.
    pub(crate) fn instant(self) -> Option<tokio::time::Instant> {
        self.0
    }

    pub(crate) fn remaining(self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
    }
}
