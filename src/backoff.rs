//! Exponential backoff with full jitter, capped below SQS's visibility limit.
//!
//! `delay = random(0 ..= min(cap, base * 2^(receive_count - 1)))`, in whole seconds, as in
//! AWS's "Exponential Backoff And Jitter". Full jitter spreads a burst of failures out
//! instead of retrying them in lock-step.

use std::time::Duration;

/// SQS's limit on a message's visibility timeout, 12 hours.
pub const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The longest delay the engine sets. The 12-hour limit counts from the receive, and an
/// invocation lasts up to 15 minutes, so 12 h − 15 min is always accepted.
pub const MAX_BACKOFF: Duration = Duration::from_secs(12 * 3600 - 15 * 60);

/// An exponential, full-jitter backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    base: Duration,
    cap: Duration,
}

impl BackoffPolicy {
    /// A policy doubling from `base` up to `cap`; `cap` is clamped to [`MAX_BACKOFF`].
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base: base.max(Duration::from_secs(1)),
            cap: cap.min(MAX_BACKOFF),
        }
    }

    /// The upper bound of the delay for the `receive_count`-th delivery, in seconds.
    pub fn ceiling_secs(&self, receive_count: u32) -> u64 {
        let exp = receive_count.saturating_sub(1).min(40);
        self.base
            .as_secs()
            .saturating_mul(1u64 << exp)
            .min(self.cap.as_secs())
    }

    /// A jittered delay for the `receive_count`-th delivery.
    pub fn delay(&self, receive_count: u32, rng: &mut fastrand::Rng) -> Duration {
        Duration::from_secs(rng.u64(0..=self.ceiling_secs(receive_count)))
    }
}

impl Default for BackoffPolicy {
    /// 2 s doubling to a 15-minute cap.
    fn default() -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(900))
    }
}

/// Clamps an explicit delay (say a `Retry-After`) to what SQS accepts, in whole seconds.
pub fn clamp_visibility(delay: Duration) -> u32 {
    let secs = delay
        .as_secs()
        .saturating_add(u64::from(delay.subsec_nanos() > 0));
    u32::try_from(secs.min(MAX_BACKOFF.as_secs())).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_delays_clamp_instead_of_overflowing() {
        // `Failure::retry_after(reason, Duration::MAX)` once overflowed here
        assert_eq!(
            u64::from(clamp_visibility(Duration::MAX)),
            MAX_BACKOFF.as_secs()
        );
        assert_eq!(clamp_visibility(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn ceiling_doubles_per_receive_then_caps() {
        let p = BackoffPolicy::new(Duration::from_secs(2), Duration::from_secs(60));
        let ceilings: Vec<u64> = (1..=7).map(|n| p.ceiling_secs(n)).collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(
            p.ceiling_secs(0),
            2,
            "a missing receive count counts as the first"
        );
        assert_eq!(p.ceiling_secs(u32::MAX), 60, "no overflow on absurd counts");
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling_and_spread_out() {
        let p = BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(900));
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 1..=20 {
            let ceiling = p.ceiling_secs(n);
            let delays: Vec<u64> = (0..200).map(|_| p.delay(n, &mut rng).as_secs()).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "receive {n}");
            if ceiling >= 16 {
                let distinct: std::collections::HashSet<_> = delays.iter().collect();
                assert!(
                    distinct.len() > 8,
                    "full jitter spreads delays at receive {n}"
                );
            }
        }
    }

    #[test]
    fn cap_is_clamped_below_the_twelve_hour_limit() {
        let p = BackoffPolicy::new(Duration::from_secs(60), Duration::from_secs(100_000));
        assert_eq!(p.ceiling_secs(30), MAX_BACKOFF.as_secs());
        assert!(MAX_BACKOFF < SQS_MAX_VISIBILITY);
        assert_eq!(clamp_visibility(Duration::from_secs(999_999)), 42_300);
        assert_eq!(
            clamp_visibility(Duration::from_millis(1_500)),
            2,
            "rounds up"
        );
    }
}
