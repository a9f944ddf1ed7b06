//! The task monitor: no stuck or dead-lettered work goes unnoticed.
//!
//! * **Registration**: the monitor's own queue on the events topic hands it every publish; it
//!   registers the task once per consumer expected to handle it (by the consumers' filter
//!   policies). Registration only creates, so a consumer that finished first keeps its state.
//! * **Sweep** (on a schedule): open task/consumer pairs older than the first threshold come
//!   from the ledger's sparse index and are bucketed (by default over 5, 10 and 45 minutes);
//!   each DLQ's depth is read and compared with the last sweep's, kept in the ledger table.
//!   Alerts go to the alerts topic through the [`alert`] state machine: on transitions,
//!   never once per sweep.
//! * **Status**: one task's state per consumer, the buckets, the DLQs ([`status`]).
//!
//! A sweep's cost follows the number of open pairs and DLQs, never the table's size.

pub mod alert;
mod breakers;
mod config;
mod documents;
#[cfg(any(test, feature = "test-util"))]
mod fake;
pub mod filter;
pub mod ports;
mod register;
mod report;
pub mod status;
mod sweep;

use mailroom_lambda::ledger::{Ledger, LedgerError};
use mailroom_lambda::sqs::SqsError;

pub use config::MonitorConfig;
#[cfg(any(test, feature = "test-util"))]
pub use fake::{FakeAlerts, FakeDlqs, FakeEventSources, FakeStore};
pub use ports::{
    AlertMessage, AlertSink, DlqReader, EventSources, LambdaMappings, SnsAlerts, SqsDlqs, TaskStore,
};
pub use report::{
    Bucket, DeadLetterSample, DlqRecord, DlqStatus, OpenTask, SentAlert, SweepReport,
};

/// The partition of the ledger table that holds the monitor's own state.
pub const STATE_PARTITION: &str = "#monitor";

/// A monitor call failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The ledger did not answer.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// SQS did not answer about a DLQ.
    #[error("DLQ {queue}: {source}")]
    Sqs {
        /// The queue.
        queue: String,
        /// The SQS failure.
        #[source]
        source: SqsError,
    },
}

impl MonitorError {
    /// Whether the next sweep may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Ledger(e) => e.is_retryable(),
            Self::Sqs { source, .. } => source.is_retryable(),
        }
    }
}

/// The task monitor, over its three ports: the ledger, the DLQs, and where alerts go.
#[derive(Debug, Clone)]
pub struct Monitor<S = Ledger, D = SqsDlqs, A = SnsAlerts> {
    config: MonitorConfig,
    store: S,
    dlqs: D,
    alerts: A,
    /// Pauses and resumes consumers' event source mappings for their circuit breakers;
    /// none: the breakers still hold records, and the mappings are left alone.
    event_sources: Option<std::sync::Arc<dyn EventSources>>,
}

impl Monitor {
    /// A monitor over `ledger`, reading DLQs with `sqs` and alerting through `sns` to the
    /// configured alerts topic.
    pub fn new(
        config: MonitorConfig,
        ledger: Ledger,
        sqs: aws_sdk_sqs::Client,
        sns: aws_sdk_sns::Client,
    ) -> Self {
        let alerts = SnsAlerts::new(sns, config.alerts_topic.clone());
        Self::with_ports(config, ledger, SqsDlqs::new(sqs), alerts)
    }
}

impl<D, A> Monitor<Ledger, D, A> {
    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.store
    }
}

impl<S, D, A> Monitor<S, D, A> {
    /// A monitor over any implementation of its ports (fakes, in unit tests).
    pub fn with_ports(config: MonitorConfig, store: S, dlqs: D, alerts: A) -> Self {
        Self {
            config,
            store,
            dlqs,
            alerts,
            event_sources: None,
        }
    }

    /// The same monitor, pausing consumers' event source mappings through `sources` while
    /// their circuit breakers are open.
    #[must_use]
    pub fn with_event_sources(mut self, sources: impl EventSources + 'static) -> Self {
        self.event_sources = Some(std::sync::Arc::new(sources));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Replaces the configuration: with what discovery found, for instance.
    pub fn set_config(&mut self, config: MonitorConfig) {
        self.config = config;
    }
}
