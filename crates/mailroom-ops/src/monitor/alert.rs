//! The alert state machine: alerts fire on transitions, never once per sweep.
//!
//! * crossing into a worse level than the one last notified sends an `ALARM` at once;
//! * staying bad re-sends a `REMINDER` at most once per cool-down;
//! * getting better but not well says nothing;
//! * clearing sends `RESOLVED`, once.

use serde::{Deserialize, Serialize};

/// How bad a condition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing wrong.
    #[default]
    Ok,
    /// Needs a look.
    Warning,
    /// Needs action.
    Critical,
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Notice {
    /// Newly bad, or worse than last said.
    Alarm,
    /// Still bad, a cool-down after the last message.
    Reminder,
    /// Cleared.
    Resolved,
}

impl Notice {
    /// The word used in subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alarm => "ALARM",
            Self::Reminder => "REMINDER",
            Self::Resolved => "RESOLVED",
        }
    }
}

/// One alert's remembered state, kept in the ledger table between sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertState {
    /// The level at the last sweep.
    pub level: Level,
    /// The level last notified (`Ok` after a resolution).
    pub notified: Level,
    /// When the last message went out, in ms since the epoch.
    pub last_sent_ms: u64,
    /// Since when the level has been what it is.
    pub since_ms: u64,
}

impl AlertState {
    /// The next state for `level` observed at `now_ms`, and the message to send, if any.
    #[must_use]
    pub fn step(self, level: Level, now_ms: u64, cooldown_ms: u64) -> (Self, Option<Notice>) {
        let since_ms = if level == self.level {
            self.since_ms
        } else {
            now_ms
        };
        let mut next = Self {
            level,
            since_ms,
            ..self
        };
        let notice = if level == Level::Ok {
            (self.notified != Level::Ok).then(|| {
                next.notified = Level::Ok;
                next.last_sent_ms = now_ms;
                Notice::Resolved
            })
        } else if level > self.notified {
            next.notified = level;
            next.last_sent_ms = now_ms;
            Some(Notice::Alarm)
        } else if now_ms.saturating_sub(self.last_sent_ms) >= cooldown_ms {
            next.notified = level;
            next.last_sent_ms = now_ms;
            Some(Notice::Reminder)
        } else {
            None
        };
        (next, notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: u64 = 3_600_000;

    fn run(levels: &[(u64, Level)]) -> Vec<Option<Notice>> {
        let mut state = AlertState::default();
        levels
            .iter()
            .map(|&(at, level)| {
                let (next, notice) = state.step(level, at, COOL);
                state = next;
                notice
            })
            .collect()
    }

    #[test]
    fn fires_once_reminds_after_the_cooldown_and_resolves_once() {
        use Level::{Critical, Ok, Warning};
        use Notice::{Alarm, Reminder, Resolved};
        let notices = run(&[
            (0, Ok),
            (1, Warning),         // crosses into warning
            (2, Warning),         // same: quiet
            (3, Critical),        // worse: fires at once, inside the cool-down
            (4, Warning),         // better, not well: quiet
            (5, Critical),        // back to what was said: quiet
            (3 + COOL, Critical), // a cool-down after the last message: reminder
            (4 + COOL, Critical), // quiet
            (5 + COOL, Ok),       // resolved
            (6 + COOL, Ok),       // quiet
            (7 + COOL, Warning),  // a new episode fires again
        ]);
        assert_eq!(
            notices,
            vec![
                None,
                Some(Alarm),
                None,
                Some(Alarm),
                None,
                None,
                Some(Reminder),
                None,
                Some(Resolved),
                None,
                Some(Alarm)
            ]
        );
    }

    #[test]
    fn since_tracks_when_the_level_last_changed() {
        let (s, _) = AlertState::default().step(Level::Warning, 10, COOL);
        let (s, _) = s.step(Level::Warning, 20, COOL);
        assert_eq!(s.since_ms, 10);
        let (s, _) = s.step(Level::Ok, 30, COOL);
        assert_eq!(s.since_ms, 30);
    }
}
