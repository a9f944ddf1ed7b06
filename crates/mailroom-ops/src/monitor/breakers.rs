//! Circuit breakers in the sweep: one alert per episode through the alert state machine
//! (OPEN is critical, HALF_OPEN a warning, CLOSED resolves it), and the consumer's event
//! source mappings paused while a breaker is open for long, resumed for its probe.
//!
//! The engine moves the breakers ([`mailroom_lambda::ledger::Breaker`]); the monitor looks at
//! them each sweep. A breaker that opened and closed between two sweeps still raises its
//! alarm and its resolution: its `opens` count moved.

use std::collections::{BTreeMap, HashMap};

use mailroom_lambda::ledger::{Breaker, BreakerState};
use mailroom_lambda::telemetry::{Emf, Unit};
use serde::{Deserialize, Serialize};

use super::alert::Level;
use super::ports::{AlertSink, DlqReader, TaskStore};
use super::sweep::{Condition, to_json};
use super::{Monitor, MonitorError, STATE_PARTITION, SweepReport};

/// What the monitor remembers of a breaker between sweeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    opens: u64,
}

/// What the monitor remembers of a function's event source mappings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Mappings {
    paused: bool,
}

fn level(state: BreakerState) -> Level {
    match state {
        BreakerState::Open => Level::Critical,
        BreakerState::HalfOpen => Level::Warning,
        BreakerState::Closed => Level::Ok,
    }
}

fn condition(b: &Breaker, state: BreakerState) -> Condition {
    let route = format!("{} -> {}", b.consumer, b.dependency);
    let summary = match state {
        BreakerState::Open => format!(
            "circuit OPEN: {route}: {}",
            b.last_error.as_deref().unwrap_or("no error recorded")
        ),
        BreakerState::HalfOpen => format!("circuit HALF_OPEN: {route}, probing"),
        BreakerState::Closed => format!("circuit CLOSED: {route}"),
    };
    let mut details = serde_json::to_value(b).unwrap_or_default();
    details["state"] = serde_json::Value::String(state.as_str().to_owned());
    Condition {
        key: format!("breaker:{}/{}", b.consumer, b.dependency),
        level: level(state),
        summary,
        details,
    }
}

impl<S: TaskStore, D: DlqReader, A: AlertSink> Monitor<S, D, A> {
    /// The breakers' alerts, metrics and event source mappings, for one sweep.
    pub(super) async fn sweep_breakers(
        &self,
        docs: &mut HashMap<String, String>,
        (now, cooldown): (u64, u64),
        report: &mut SweepReport,
    ) -> Result<(), MonitorError> {
        let breakers = self.store.breakers().await?;
        // Per function: whether any of its breakers wants its mappings paused.
        let mut pause: BTreeMap<String, bool> = BTreeMap::new();
        for b in &breakers {
            let seen_key = format!("breaker#{}#{}", b.consumer, b.dependency);
            let seen: Seen = docs
                .get(&seen_key)
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            if b.opens > seen.opens && b.state != BreakerState::Open {
                // It opened since the last sweep and is already past OPEN: say it opened.
                self.evaluate(
                    docs,
                    condition(b, BreakerState::Open),
                    (now, cooldown),
                    report,
                )
                .await?;
            }
            self.evaluate(docs, condition(b, b.state), (now, cooldown), report)
                .await?;
            if b.opens != seen.opens {
                let doc = to_json(&Seen { opens: b.opens });
                self.store
                    .put_document(STATE_PARTITION, &seen_key, doc.clone())
                    .await?;
                docs.insert(seen_key, doc);
            }
            if let Some(function) = &b.function {
                // Paused only for a cool-down long enough to be worth it: the mapping
                // resumes at a sweep, so a short one would be stretched to the sweep period.
                let long = b.state == BreakerState::Open
                    && b.open_until_ms
                        >= now.saturating_add(mailroom_lambda::clock::ms(self.config.pause_after));
                *pause.entry(function.clone()).or_default() |= long;
            }
            let dims = [
                ("Consumer", b.consumer.as_str()),
                ("Dependency", b.dependency.as_str()),
            ];
            let state = match b.state {
                BreakerState::Closed => 0.0,
                BreakerState::HalfOpen => 1.0,
                BreakerState::Open => 2.0,
            };
            Emf::new(&self.config.namespace, &dims)
                .metric("BreakerState", Unit::Count, state)
                .emit(&self.config.metrics);
        }
        if let Some(sources) = &self.event_sources {
            // A function paused before whose breakers are gone (expired) resumes too.
            for key in docs.keys() {
                if let Some(function) = key.strip_prefix("mappings#") {
                    pause.entry(function.to_owned()).or_default();
                }
            }
            for (function, paused) in pause {
                let key = format!("mappings#{function}");
                let before: Mappings = docs
                    .get(&key)
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                let mut now_paused = before.paused;
                if before.paused != paused {
                    match sources.set_enabled(&function, !paused).await {
                        Ok(changed) => {
                            if paused {
                                tracing::warn!(%function, changed, "event source mappings paused: a circuit breaker is open");
                            } else {
                                tracing::warn!(%function, changed, "event source mappings resumed");
                            }
                            let doc = to_json(&Mappings { paused });
                            self.store
                                .put_document(STATE_PARTITION, &key, doc.clone())
                                .await?;
                            docs.insert(key, doc);
                            now_paused = paused;
                        }
                        Err(e) => {
                            // Tried again at the next sweep; the engine holds records
                            // meanwhile.
                            tracing::error!(%function, error = %e, "event source mappings not changed");
                            report.failed_alerts.push(format!("mappings:{function}"));
                        }
                    }
                }
                if now_paused {
                    report.paused.push(function);
                }
            }
        }
        report.breakers = breakers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mailroom_lambda::telemetry::MetricsSink;

    use super::*;
    use crate::monitor::alert::Notice;
    use crate::monitor::{FakeAlerts, FakeDlqs, FakeEventSources, FakeStore, MonitorConfig};

    const NOW: u64 = 1_800_000_000_000;

    fn breaker(state: BreakerState, opens: u64, open_until_ms: u64) -> Breaker {
        Breaker {
            consumer: "notifier".into(),
            dependency: "hooks.example".into(),
            function: Some("app-notifier".into()),
            state,
            open_until_ms,
            cooldown_ms: 600_000,
            probe_until_ms: None,
            prober: None,
            opens,
            opened_at_ms: NOW,
            last_error: Some("HTTP 503 from hooks.example".into()),
            updated_at_ms: NOW,
        }
    }

    fn bed() -> (
        Monitor<FakeStore, FakeDlqs, FakeAlerts>,
        FakeStore,
        FakeAlerts,
        FakeEventSources,
    ) {
        let config = MonitorConfig {
            metrics: MetricsSink::capture().0,
            ..MonitorConfig::default()
        };
        let (store, alerts, sources) = (
            FakeStore::new(NOW),
            FakeAlerts::new(),
            FakeEventSources::new(),
        );
        let monitor = Monitor::with_ports(config, store.clone(), FakeDlqs::new(), alerts.clone())
            .with_event_sources(sources.clone());
        (monitor, store, alerts, sources)
    }

    fn sent(alerts: &FakeAlerts) -> Vec<(Notice, String)> {
        alerts
            .sent()
            .into_iter()
            .map(|a| (a.notice, a.subject))
            .collect()
    }

    #[tokio::test]
    async fn an_outage_raises_one_alarm_pauses_the_mappings_and_resolves_once() {
        // GIVEN a breaker open for ten minutes
        let (monitor, store, alerts, sources) = bed();
        store.set_breaker(breaker(BreakerState::Open, 1, NOW + 600_000));

        // WHEN sweeps see it open, open again, half-open, open after a failed probe, closed
        let first = monitor.sweep().await.expect("sweep");
        monitor.sweep().await.expect("sweep");
        store.advance(Duration::from_secs(601));
        store.set_breaker(breaker(BreakerState::HalfOpen, 1, NOW + 600_000));
        monitor.sweep().await.expect("sweep");
        store.set_breaker(breaker(BreakerState::Open, 1, NOW + 1_800_000));
        monitor.sweep().await.expect("sweep");
        store.set_breaker(breaker(BreakerState::Closed, 1, NOW + 1_800_000));
        let last = monitor.sweep().await.expect("sweep");

        // THEN one ALARM naming the dependency and the error, one RESOLVED; the mappings were
        // paused while it was open for long, resumed for the probe, and resumed at the end
        let notices = sent(&alerts);
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(notices[0].0, Notice::Alarm);
        assert!(
            notices[0]
                .1
                .contains("circuit OPEN: notifier -> hooks.example: HTTP 503"),
            "{}",
            notices[0].1
        );
        assert_eq!(notices[1].0, Notice::Resolved);
        assert!(notices[1].1.contains("circuit CLOSED"), "{}", notices[1].1);
        assert_eq!(
            sources.calls(),
            [
                ("app-notifier".to_owned(), false),
                ("app-notifier".to_owned(), true),
                ("app-notifier".to_owned(), false),
                ("app-notifier".to_owned(), true),
            ]
        );
        assert_eq!(first.paused, ["app-notifier"]);
        assert!(last.paused.is_empty());
        assert_eq!(last.breakers.len(), 1);
    }

    #[tokio::test]
    async fn an_episode_between_two_sweeps_still_alarms_and_resolves() {
        // GIVEN a breaker that opened and closed again since the last sweep
        let (monitor, store, alerts, sources) = bed();
        store.set_breaker(breaker(BreakerState::Closed, 1, NOW - 1_000));

        // WHEN the monitor sweeps twice
        monitor.sweep().await.expect("sweep");
        monitor.sweep().await.expect("sweep");

        // THEN it said it opened and that it closed, once each; a short episode never
        // paused the mappings
        let notices: Vec<Notice> = sent(&alerts).into_iter().map(|(n, _)| n).collect();
        assert_eq!(notices, [Notice::Alarm, Notice::Resolved]);
        assert!(sources.calls().is_empty());
    }

    #[tokio::test]
    async fn a_short_cool_down_is_not_worth_a_pause() {
        // GIVEN a breaker open for 20 s (a Retry-After), below the 60 s pause threshold
        let (monitor, store, alerts, sources) = bed();
        store.set_breaker(breaker(BreakerState::Open, 1, NOW + 20_000));

        // WHEN the monitor sweeps
        let report = monitor.sweep().await.expect("sweep");

        // THEN it alarms, and leaves the mappings running
        assert_eq!(sent(&alerts).len(), 1);
        assert!(sources.calls().is_empty());
        assert!(report.paused.is_empty());
    }
}
