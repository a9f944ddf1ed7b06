//! The sweep: open tasks by age, DLQ depths and growth, and one alert per transition.

use std::collections::HashMap;
use std::time::Duration;

use mailroom_lambda::clock::ms;
use mailroom_lambda::ledger::{LedgerError, State};
use mailroom_lambda::sqs::QueueUrl;
use mailroom_lambda::telemetry::{Emf, Unit};
use serde::Serialize;

use super::alert::{AlertState, Level, Notice};
use super::ports::{AlertMessage, AlertSink, DlqReader, TaskStore};
use super::{
    Bucket, DlqRecord, DlqStatus, Monitor, MonitorError, OpenTask, STATE_PARTITION, SentAlert,
    SweepReport,
};

/// One alert's condition as a sweep found it.
pub(super) struct Condition {
    /// `dlq:<name>`, `stuck-tasks` or `breaker:<consumer>/<dependency>`.
    pub(super) key: String,
    /// How bad it is now.
    pub(super) level: Level,
    /// One line, for the subject.
    pub(super) summary: String,
    /// What the alert's body carries.
    pub(super) details: serde_json::Value,
}

impl<S: TaskStore, D: DlqReader, A: AlertSink> Monitor<S, D, A> {
    /// Open pairs per bucket at the ledger clock's now.
    ///
    /// # Errors
    /// When the ledger does not answer.
    pub async fn buckets(&self) -> Result<Vec<Bucket>, LedgerError> {
        let now = self.store.now_ms();
        let first = self.config.thresholds.first().copied().unwrap_or_default();
        let open = self
            .store
            .open_before(now.saturating_sub(ms(first)))
            .await?;
        let names = self.config.bucket_names();
        let mut buckets: Vec<Bucket> = names
            .iter()
            .map(|name| Bucket {
                name: name.clone(),
                tasks: Vec::new(),
            })
            .collect();
        for entry in open {
            let age = Duration::from_millis(now.saturating_sub(entry.opened_at_ms));
            if let Some(i) = self.config.bucket_of(age) {
                buckets[i].tasks.push(OpenTask {
                    open_for_secs: age.as_secs(),
                    bucket: names[i].clone(),
                    entry,
                });
            }
        }
        Ok(buckets)
    }

    /// Every watched DLQ now, with growth against the last sweep's record.
    ///
    /// # Errors
    /// When SQS or the ledger does not answer.
    pub async fn dlqs(&self) -> Result<Vec<DlqStatus>, MonitorError> {
        let docs = self.store.documents(STATE_PARTITION).await?;
        let mut out = Vec::with_capacity(self.config.dlqs.len());
        for url in &self.config.dlqs {
            let last = dlq_record(&docs, url);
            let depth = self.dlqs.depth(url).await?;
            out.push(DlqStatus {
                name: url.name().to_owned(),
                url: url.to_string(),
                depth,
                growth: signed(depth) - signed(last.depth),
                samples: last.samples,
            });
        }
        Ok(out)
    }

    /// One sweep: buckets, DLQ depths, alerts on transitions, metrics.
    ///
    /// # Errors
    /// When the ledger or SQS does not answer; nothing is half-written that a retry would
    /// get wrong (alert state is saved only after its message went out).
    pub async fn sweep(&self) -> Result<SweepReport, MonitorError> {
        let now = self.store.now_ms();
        let cooldown = ms(self.config.cooldown);
        let mut docs = self.store.documents(STATE_PARTITION).await?;
        let buckets = self.buckets().await?;
        let mut report = SweepReport {
            at_ms: now,
            buckets: buckets
                .iter()
                .map(|b| (b.name.clone(), b.tasks.len()))
                .collect(),
            stuck: 0,
            dlqs: Vec::new(),
            alerts: Vec::new(),
            failed_alerts: Vec::new(),
            breakers: Vec::new(),
            paused: Vec::new(),
        };

        // Stuck tasks: past the last threshold and not in a DLQ (the DLQ alert covers those).
        let last = buckets.last();
        let stuck: Vec<&OpenTask> = last
            .map(|b| {
                b.tasks
                    .iter()
                    .filter(|t| t.entry.state != State::DeadLettered)
                    .collect()
            })
            .unwrap_or_default();
        report.stuck = stuck.len();
        let level = if stuck.is_empty() {
            Level::Ok
        } else {
            Level::Critical
        };
        let threshold = last.map_or_else(String::new, |b| b.name.clone());
        let summary = if stuck.is_empty() {
            format!("no tasks open {threshold}")
        } else {
            format!("{} task/consumer pairs open {threshold}", stuck.len())
        };
        let details = serde_json::json!({
            "count": stuck.len(),
            "bucket": threshold,
            "samples": stuck.iter().take(self.config.samples).collect::<Vec<_>>(),
        });
        let condition = Condition {
            key: "stuck-tasks".to_owned(),
            level,
            summary,
            details,
        };
        self.evaluate(&mut docs, condition, (now, cooldown), &mut report)
            .await?;

        // DLQs: depth and growth against the last sweep.
        for url in &self.config.dlqs {
            let mut record = dlq_record(&docs, url);
            let depth = self.dlqs.depth(url).await?;
            let growth = signed(depth) - signed(record.depth);
            if depth == 0 {
                record.samples.clear();
            } else if depth != record.depth || record.samples.is_empty() {
                record.samples = self.dlqs.peek(url, self.config.samples).await?;
            }
            let name = url.name().to_owned();
            let level = match depth {
                0 => Level::Ok,
                d if d >= self.config.dlq_critical_depth => Level::Critical,
                _ => Level::Warning,
            };
            let summary = if depth == 0 {
                format!("DLQ {name} is empty")
            } else {
                format!("{depth} messages in DLQ {name} ({growth:+} since the last sweep)")
            };
            let details = serde_json::json!({
                "queue": name,
                "queue_url": url.as_str(),
                "depth": depth,
                "growth": growth,
                "samples": record.samples,
            });
            let condition = Condition {
                key: format!("dlq:{name}"),
                level,
                summary,
                details,
            };
            self.evaluate(&mut docs, condition, (now, cooldown), &mut report)
                .await?;
            if depth != record.depth || record.swept_at_ms == 0 {
                record.depth = depth;
                record.swept_at_ms = now;
                self.store
                    .put_document(STATE_PARTITION, &dlq_key(url), to_json(&record))
                    .await?;
            }
            report.dlqs.push(DlqStatus {
                name,
                url: url.to_string(),
                depth,
                growth,
                samples: record.samples,
            });
        }

        self.sweep_breakers(&mut docs, (now, cooldown), &mut report)
            .await?;

        self.emit(&report);
        tracing::info!(
            buckets = ?report.buckets,
            stuck = report.stuck,
            alerts = report.alerts.len(),
            failed_alerts = report.failed_alerts.len(),
            "sweep done"
        );
        Ok(report)
    }

    /// Steps one alert's state machine, at `now` with `cooldown` (both in ms), and sends what
    /// it says.
    pub(super) async fn evaluate(
        &self,
        docs: &mut HashMap<String, String>,
        condition: Condition,
        (now, cooldown): (u64, u64),
        report: &mut SweepReport,
    ) -> Result<(), MonitorError> {
        let Condition {
            key,
            level,
            summary,
            details,
        } = condition;
        let key = key.as_str();
        let doc_key = format!("alert#{key}");
        let before: AlertState = docs
            .get(&doc_key)
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let (after, notice) = before.step(level, now, cooldown);
        if let Some(notice) = notice {
            let subject = subject(notice, &summary);
            let body = serde_json::json!({
                "source": "mailroom.task-monitor",
                "notice": notice,
                "alert": key,
                "level": level,
                "previous_level": before.level,
                "summary": summary,
                "at_ms": now,
                "details": details,
            });
            let message = AlertMessage {
                key: key.to_owned(),
                notice,
                subject: subject.clone(),
                body,
            };
            match self.alerts.publish(&message).await {
                Ok(()) => report.alerts.push(SentAlert {
                    key: key.to_owned(),
                    notice,
                    level,
                    subject,
                }),
                Err(e) => {
                    // Keep the old state: the next sweep sends it again.
                    tracing::error!(alert = key, error = %e, "alert not published");
                    report.failed_alerts.push(key.to_owned());
                    return Ok(());
                }
            }
        }
        if after != before {
            let doc = to_json(&after);
            self.store
                .put_document(STATE_PARTITION, &doc_key, doc.clone())
                .await?;
            docs.insert(doc_key, doc);
        }
        Ok(())
    }

    fn emit(&self, report: &SweepReport) {
        let ns = self.config.namespace.as_str();
        for (name, count) in &report.buckets {
            let dims = [("Bucket", name.as_str())];
            #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            Emf::new(ns, &dims)
                .metric("OpenTasks", Unit::Count, *count as f64)
                .emit(&self.config.metrics);
        }
        for dlq in &report.dlqs {
            let dims = [("Queue", dlq.name.as_str())];
            #[allow(clippy::cast_precision_loss, reason = "depths far below 2^52")]
            Emf::new(ns, &dims)
                .metric("DlqDepth", Unit::Count, dlq.depth as f64)
                .emit(&self.config.metrics);
        }
        let dims = [("Service", "task-monitor")];
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        Emf::new(ns, &dims)
            .metric("AlertsSent", Unit::Count, report.alerts.len() as f64)
            .metric(
                "AlertsFailed",
                Unit::Count,
                report.failed_alerts.len() as f64,
            )
            .metric("StuckTasks", Unit::Count, report.stuck as f64)
            .emit(&self.config.metrics);
    }
}

fn dlq_key(url: &QueueUrl) -> String {
    format!("dlq#{url}")
}

fn dlq_record(docs: &HashMap<String, String>, url: &QueueUrl) -> DlqRecord {
    docs.get(&dlq_key(url))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned())
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An SNS subject: printable ASCII, one line, at most 100 characters.
fn subject(notice: Notice, summary: &str) -> String {
    let text: String = format!("Mailroom {}: {summary}", notice.as_str())
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.len() <= 100 {
        text
    } else {
        format!("{}...", &text[..97])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_short_single_line_ascii() {
        let s = subject(Notice::Alarm, &format!("é\n{}", "x".repeat(200)));
        assert!(s.len() <= 100 && s.is_ascii() && !s.contains('\n'), "{s}");
        assert!(s.starts_with("Mailroom ALARM: ??x"));
    }

    use mailroom_lambda::telemetry::MetricsSink;

    use crate::monitor::{FakeAlerts, FakeDlqs, FakeStore, MonitorConfig};

    const NOW: u64 = 1_800_000_000_000;
    const MINUTE: u64 = 60_000;

    struct Bed {
        monitor: Monitor<FakeStore, FakeDlqs, FakeAlerts>,
        store: FakeStore,
        dlqs: FakeDlqs,
        alerts: FakeAlerts,
        dlq: QueueUrl,
    }

    fn bed() -> Bed {
        let dlq: QueueUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-dlq"
            .parse()
            .expect("url");
        let config = MonitorConfig {
            dlqs: vec![dlq.clone()],
            dlq_critical_depth: 5,
            metrics: MetricsSink::capture().0,
            ..MonitorConfig::default()
        };
        let (store, dlqs, alerts) = (FakeStore::new(NOW), FakeDlqs::new(), FakeAlerts::new());
        Bed {
            monitor: Monitor::with_ports(config, store.clone(), dlqs.clone(), alerts.clone()),
            store,
            dlqs,
            alerts,
            dlq,
        }
    }

    fn notices(alerts: &FakeAlerts) -> Vec<(String, Notice, String)> {
        alerts
            .sent()
            .into_iter()
            .map(|a| {
                (
                    a.key,
                    a.notice,
                    a.body["level"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_dlq_that_fills_and_drains_alarms_once_per_worse_level_and_resolves_once() {
        // GIVEN an empty DLQ watched by the monitor (critical from 5 messages)
        let b = bed();
        let sweep = || async { b.monitor.sweep().await.expect("sweep") };
        assert!(sweep().await.alerts.is_empty(), "an empty DLQ says nothing");

        // WHEN it holds 3, then 3 again, 4, 5 and finally none, one sweep each
        let mut depths_seen = Vec::new();
        for depth in [3, 3, 4, 5, 0] {
            b.dlqs.set(&b.dlq, depth);
            b.store.advance(std::time::Duration::from_secs(300));
            let report = sweep().await;
            depths_seen.push((report.dlqs[0].depth, report.dlqs[0].growth));
        }

        // THEN the alert sink received exactly: ALARM warning, ALARM critical, RESOLVED
        let key = "dlq:orders-dlq".to_owned();
        assert_eq!(
            notices(&b.alerts),
            [
                (key.clone(), Notice::Alarm, "warning".to_owned()),
                (key.clone(), Notice::Alarm, "critical".to_owned()),
                (key, Notice::Resolved, "ok".to_owned()),
            ]
        );
        assert_eq!(depths_seen, [(3, 3), (3, 0), (4, 1), (5, 1), (0, -5)]);
        let first = &b.alerts.sent()[0];
        assert_eq!(first.body["details"]["depth"], 3);
        assert_eq!(
            first.body["details"]["samples"].as_array().map(Vec::len),
            Some(3)
        );
        assert!(
            first
                .subject
                .starts_with("Mailroom ALARM: 3 messages in DLQ orders-dlq"),
            "{}",
            first.subject
        );
    }

    #[tokio::test]
    async fn an_alert_that_fails_to_publish_is_sent_by_the_next_sweep() {
        // GIVEN a DLQ with messages and an alerts topic that refuses the first publish
        let b = bed();
        b.dlqs.set(&b.dlq, 2);
        b.alerts.refuse_next(1);

        // WHEN two sweeps run
        let first = b.monitor.sweep().await.expect("sweep");
        let second = b.monitor.sweep().await.expect("sweep");

        // THEN the first reports the failure and keeps the old state; the second sends it
        assert_eq!(first.failed_alerts, ["dlq:orders-dlq"]);
        assert!(first.alerts.is_empty());
        assert_eq!(second.alerts.len(), 1);
        assert_eq!(notices(&b.alerts).len(), 1, "sent exactly once");
    }

    #[tokio::test]
    async fn pairs_open_past_the_last_threshold_raise_one_stuck_alert_until_they_finish() {
        // GIVEN a pair in progress for 46 minutes, a dead-lettered one for 50 (the DLQ alert's
        // business) and a received one for 6
        let b = bed();
        b.store
            .open("t-stuck", "notifier", State::InProgress, NOW - 46 * MINUTE);
        b.store
            .open("t-dead", "example", State::DeadLettered, NOW - 50 * MINUTE);
        b.store
            .open("t-young", "notifier", State::Received, NOW - 6 * MINUTE);

        // WHEN the monitor sweeps twice, and again after the stuck task succeeded
        let first = b.monitor.sweep().await.expect("sweep");
        let again = b.monitor.sweep().await.expect("sweep");
        b.store.succeed("t-stuck");
        let after = b.monitor.sweep().await.expect("sweep");

        // THEN buckets count every open pair, the stuck alert names the one stuck pair once,
        // and it resolves once the pair is done
        let buckets = |r: &SweepReport| r.buckets.iter().map(|(_, n)| *n).collect::<Vec<_>>();
        assert_eq!(buckets(&first), [1, 0, 2]);
        assert_eq!((first.stuck, after.stuck), (1, 0));
        assert!(again.alerts.is_empty(), "{:?}", again.alerts);
        let sent = b.alerts.sent();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(
            (sent[0].notice, sent[1].notice),
            (Notice::Alarm, Notice::Resolved)
        );
        assert_eq!(sent[0].key, "stuck-tasks");
        assert_eq!(sent[0].body["level"], "critical");
        assert_eq!(sent[0].body["details"]["samples"][0]["task_id"], "t-stuck");
    }
}
