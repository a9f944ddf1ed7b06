//! The circuit breaker's policy: when a dependency counts as down, and for how long its
//! records are held.
//!
//! A consumer's transient failures ([`crate::Failure::retry`]) count against a dependency:
//! the one the failure names ([`crate::Failure::on`], the notifier names the destination
//! host), else the consumer itself. Each execution environment keeps a window per dependency;
//! it trips on `failures` consecutive transient failures, or when at least `ratio_percent` of
//! the last `window` outcomes failed. A tripped breaker opens in the ledger
//! ([`crate::ledger::Breaker`]), shared by every environment of the consumer: records are
//! held (not run, their visibility set to the rest of the cool-down) until it ends; then one
//! environment claims the half-open probe and runs one record. Success closes the breaker; a
//! transient failure opens it again for twice the cool-down, up to `max_cooldown`.
//!
//! Back-pressure: a failure that names its dependency and says when to come back
//! ([`crate::Failure::retry_after`], from an HTTP `Retry-After` on a 429 or 503) opens the
//! dependency's breaker at once for that long, so every record bound for it waits, not only
//! the one that was told.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::config::{ConfigError, Env};

/// When a breaker trips and how long it stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive transient failures that trip it (`MAILROOM_BREAKER_FAILURES`, default 5).
    pub failures: u32,
    /// The failure percentage over the window that trips it (`MAILROOM_BREAKER_RATIO_PERCENT`,
    /// default 50).
    pub ratio_percent: u32,
    /// The outcomes the ratio is taken over (`MAILROOM_BREAKER_WINDOW`, default 20).
    pub window: u32,
    /// The first cool-down (`MAILROOM_BREAKER_COOLDOWN_SECS`, default 30).
    pub cooldown: Duration,
    /// The longest cool-down, after failed probes (`MAILROOM_BREAKER_MAX_COOLDOWN_SECS`,
    /// default 600).
    pub max_cooldown: Duration,
    /// How long a reading of all-closed breakers is trusted (`MAILROOM_BREAKER_REFRESH_MS`,
    /// default 60000): batches within it run without reading them again, unless the
    /// environment saw a transient failure since, which makes the next batch read them. An
    /// environment whose records keep succeeding has no reason to hold them; one that meets
    /// the down dependency sees its own failure, then the open breaker.
    pub refresh: Duration,
    /// The Lambda function running the consumer (`AWS_LAMBDA_FUNCTION_NAME`), written on the
    /// breaker so the task monitor can pause its event source mappings.
    pub function: Option<String>,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 5,
            ratio_percent: 50,
            window: 20,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
            refresh: Duration::from_secs(60),
            function: None,
        }
    }
}

impl BreakerPolicy {
    /// The policy when `MAILROOM_BREAKER=on`; `None` when it is unset or `off`.
    ///
    /// # Errors
    /// When a variable is set but does not parse.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>, ConfigError> {
        if env.choice("MAILROOM_BREAKER", &["on", "off"])? != Some("on") {
            return Ok(None);
        }
        let d = Self::default();
        let count = |name| -> Result<Option<u32>, ConfigError> {
            Ok(env
                .positive(name)?
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
        };
        let cooldown = env
            .positive("MAILROOM_BREAKER_COOLDOWN_SECS")?
            .map_or(d.cooldown, Duration::from_secs);
        Ok(Some(Self {
            failures: count("MAILROOM_BREAKER_FAILURES")?.unwrap_or(d.failures),
            ratio_percent: count("MAILROOM_BREAKER_RATIO_PERCENT")?
                .unwrap_or(d.ratio_percent)
                .min(100),
            window: count("MAILROOM_BREAKER_WINDOW")?.unwrap_or(d.window),
            cooldown,
            max_cooldown: env
                .positive("MAILROOM_BREAKER_MAX_COOLDOWN_SECS")?
                .map_or(d.max_cooldown, Duration::from_secs)
                .max(cooldown),
            refresh: env
                .millis("MAILROOM_BREAKER_REFRESH_MS")?
                .unwrap_or(d.refresh),
            function: env.string("AWS_LAMBDA_FUNCTION_NAME"),
        }))
    }

    /// The cool-down after a failed probe: twice the last, capped.
    pub fn next_cooldown(&self, last: Duration) -> Duration {
        (last * 2).clamp(self.cooldown, self.max_cooldown)
    }
}

/// One environment's recent outcomes per dependency.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    by_dependency: HashMap<String, Window>,
}

#[derive(Debug, Default)]
struct Window {
    consecutive: u32,
    /// `true` for a failure, newest last.
    recent: VecDeque<bool>,
}

impl Windows {
    /// Counts a transient failure against `dependency`; says whether the breaker trips (the
    /// window starts again when it does).
    pub(crate) fn failure(&mut self, dependency: &str, policy: &BreakerPolicy) -> bool {
        let w = self.by_dependency.entry(dependency.to_owned()).or_default();
        w.consecutive += 1;
        w.push(true, policy.window);
        let failed = w.recent.iter().filter(|f| **f).count();
        let full = w.recent.len() >= policy.window as usize;
        let tripped = w.consecutive >= policy.failures
            || (full && failed * 100 >= policy.ratio_percent as usize * w.recent.len());
        if tripped {
            self.by_dependency.remove(dependency);
        }
        tripped
    }

    /// Counts a success: every dependency the consumer reached answered.
    pub(crate) fn success(&mut self, policy: &BreakerPolicy) {
        for w in self.by_dependency.values_mut() {
            w.consecutive = 0;
            w.push(false, policy.window);
        }
    }
}

impl Window {
    fn push(&mut self, failed: bool, window: u32) {
        self.recent.push_back(failed);
        while self.recent.len() > window as usize {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            failures: 3,
            ratio_percent: 50,
            window: 6,
            ..BreakerPolicy::default()
        }
    }

    #[test]
    fn consecutive_failures_trip_and_a_success_resets_the_run() {
        let p = policy();
        let mut w = Windows::default();
        assert!(!w.failure("api", &p));
        assert!(!w.failure("api", &p));
        w.success(&p);
        assert!(!w.failure("api", &p));
        assert!(!w.failure("api", &p));
        assert!(w.failure("api", &p), "third in a row");
        assert!(
            !w.failure("api", &p),
            "the window starts again after a trip"
        );
    }

    #[test]
    fn a_failure_ratio_over_a_full_window_trips() {
        let p = policy();
        let mut w = Windows::default();
        // fail, ok, fail, ok, fail: never three in a row, 3 of 5 (window not full).
        for _ in 0..2 {
            assert!(!w.failure("api", &p));
            w.success(&p);
        }
        assert!(!w.failure("api", &p));
        w.success(&p);
        // Six outcomes, three failed: 50%.
        assert!(w.failure("api", &p), "half of a full window failed");
    }

    #[test]
    fn dependencies_count_apart() {
        let p = policy();
        let mut w = Windows::default();
        assert!(!w.failure("a", &p));
        assert!(!w.failure("b", &p));
        assert!(!w.failure("a", &p));
        assert!(!w.failure("b", &p));
        assert!(w.failure("a", &p));
    }

    #[test]
    fn cool_downs_double_up_to_the_cap() {
        let p = BreakerPolicy {
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(100),
            ..BreakerPolicy::default()
        };
        assert_eq!(
            p.next_cooldown(Duration::from_secs(30)),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.next_cooldown(Duration::from_secs(60)),
            Duration::from_secs(100)
        );
        assert_eq!(p.next_cooldown(Duration::ZERO), Duration::from_secs(30));
    }

    #[test]
    fn off_unless_switched_on_and_bad_values_name_the_variable() {
        assert_eq!(
            BreakerPolicy::from_env(&Env::from_pairs(&[])).ok(),
            Some(None)
        );
        let on = BreakerPolicy::from_env(&Env::from_pairs(&[
            ("MAILROOM_BREAKER", "on"),
            ("MAILROOM_BREAKER_FAILURES", "7"),
            ("MAILROOM_BREAKER_COOLDOWN_SECS", "5"),
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
        ]))
        .expect("parses")
        .expect("on");
        assert_eq!(on.failures, 7);
        assert_eq!(on.cooldown, Duration::from_secs(5));
        assert_eq!(on.function.as_deref(), Some("orders"));
        let e = BreakerPolicy::from_env(&Env::from_pairs(&[
            ("MAILROOM_BREAKER", "on"),
            ("MAILROOM_BREAKER_WINDOW", "lots"),
        ]))
        .expect_err("not a number");
        assert!(e.to_string().contains("MAILROOM_BREAKER_WINDOW"), "{e}");
    }
}
