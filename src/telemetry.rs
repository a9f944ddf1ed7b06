//! Logs and metrics: structured tracing output and CloudWatch Embedded Metric Format lines.
//!
//! Metrics are EMF JSON lines on stdout, which CloudWatch Logs turns into metrics
//! asynchronously: no CloudWatch API call on the hot path, no extra IAM permission.

use std::io::Write;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global tracing subscriber, honouring Lambda's advanced logging controls.
///
/// The level comes from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `INFO`. The format is
/// JSON unless `AWS_LAMBDA_LOG_FORMAT` is `Text`. Calling it twice is harmless.
pub fn init(env: &crate::config::Env<'_>) {
    let level = env
        .string("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| env.string("RUST_LOG"))
        .unwrap_or_else(|| "info".to_owned())
        .to_lowercase();
    // `Targets` reads `info` or `mailroom=debug,info` without pulling in a regex engine.
    let filter: Targets = level
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let text = env
        .string("AWS_LAMBDA_LOG_FORMAT")
        .is_some_and(|f| f.eq_ignore_ascii_case("text"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _already_set = if text {
        registry.with(fmt.without_time()).try_init()
    } else {
        registry
            .with(
                fmt.json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    };
}

/// Where EMF lines go.
#[derive(Debug, Clone, Default)]
pub enum MetricsSink {
    /// Standard output, where Lambda's log agent picks EMF up.
    #[default]
    Stdout,
    /// Serialised, then dropped (benchmarks: the work is measured, the write is not).
    Discard,
    /// Kept in memory, parsed back (tests; feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    Capture(Arc<Mutex<Vec<Value>>>),
}

impl MetricsSink {
    /// A capturing sink and a handle to read what it captured (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    pub fn capture() -> (Self, Arc<Mutex<Vec<Value>>>) {
        let store = Arc::new(Mutex::new(Vec::new()));
        (Self::Capture(store.clone()), store)
    }

    fn write(&self, doc: &Emf<'_>) {
        // A lost metric line must never fail a batch, so errors here are dropped on purpose.
        let Ok(mut line) = serde_json::to_vec(doc) else {
            return;
        };
        match self {
            Self::Stdout => {
                line.push(b'\n');
                let _ignored = std::io::stdout().lock().write_all(&line);
            }
            Self::Discard => drop(line),
            #[cfg(any(test, feature = "test-util"))]
            Self::Capture(store) => {
                if let Ok(v) = serde_json::from_slice(&line) {
                    store.lock().unwrap_or_else(PoisonError::into_inner).push(v);
                }
            }
        }
    }
}

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: a namespace, one dimension set and metric values.
///
/// Serialised straight from this struct: no intermediate JSON tree on the hot path.
#[derive(Debug)]
pub struct Emf<'a> {
    namespace: &'a str,
    dimensions: &'a [(&'a str, &'a str)],
    metrics: Vec<(&'static str, Unit, f64)>,
    properties: Vec<(String, Value)>,
    directive: Option<&'a RawValue>,
}

impl<'a> Emf<'a> {
    /// A document in `namespace` with one dimension set.
    pub fn new(namespace: &'a str, dimensions: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            namespace,
            dimensions,
            metrics: Vec::with_capacity(10),
            properties: Vec::new(),
            directive: None,
        }
    }

    /// The `CloudWatchMetrics` directive (namespace, dimension keys, metric names and units)
    /// as JSON. It depends only on which metrics are set, so callers that emit the same set
    /// every time serialise it once and pass it to [`Emf::with_directive`].
    ///
    /// # Errors
    /// Never in practice: the directive is plain strings.
    pub fn directive(&self) -> Result<Box<RawValue>, serde_json::Error> {
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let metrics: Vec<MetricDef<'_>> = self
            .metrics
            .iter()
            .map(|(name, unit, _)| MetricDef {
                name,
                unit: unit.as_str(),
            })
            .collect();
        serde_json::value::to_raw_value(&[MetricDirective {
            namespace: self.namespace,
            dimensions: [dims],
            metrics,
        }])
    }

    /// Uses a directive from [`Emf::directive`] for a document with the same metric set.
    #[must_use]
    pub fn with_directive(mut self, directive: &'a RawValue) -> Self {
        self.directive = Some(directive);
        self
    }

    /// Adds a metric value.
    #[must_use]
    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.metrics.push((name, unit, value));
        self
    }

    /// Adds a searchable property that is not a metric (ids, for example).
    #[must_use]
    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.properties.push((key.to_owned(), value.into()));
        self
    }

    /// Writes the document to `sink`.
    pub fn emit(&self, sink: &MetricsSink) {
        sink.write(self);
    }
}

impl Serialize for Emf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Aws<'a>(&'a Emf<'a>);
        impl Serialize for Aws<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let millis = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("Timestamp", &millis)?;
                match self.0.directive {
                    Some(raw) => m.serialize_entry("CloudWatchMetrics", raw)?,
                    None => {
                        let raw = self.0.directive().map_err(serde::ser::Error::custom)?;
                        m.serialize_entry("CloudWatchMetrics", &raw)?;
                    }
                }
                m.end()
            }
        }
        let len = 1 + self.dimensions.len() + self.metrics.len() + self.properties.len();
        let mut m = s.serialize_map(Some(len))?;
        m.serialize_entry("_aws", &Aws(self))?;
        for (k, v) in self.dimensions {
            m.serialize_entry(k, v)?;
        }
        for (name, _, value) in &self.metrics {
            m.serialize_entry(name, value)?;
        }
        for (k, v) in &self.properties {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'a> {
    namespace: &'a str,
    dimensions: [Vec<&'a str>; 1],
    metrics: Vec<MetricDef<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDef<'a> {
    name: &'a str,
    unit: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emf_document_declares_every_metric_and_dimension() {
        // GIVEN a document with two metrics
        let (sink, store) = MetricsSink::capture();
        Emf::new("Mailroom", &[("Consumer", "orders")])
            .metric("Records", Unit::Count, 3.0)
            .metric("BatchDuration", Unit::Milliseconds, 12.5)
            .property("RequestId", "r-1")
            .emit(&sink);

        // THEN it is valid EMF: directives name each metric and the dimension keys exist at top level
        let docs = store.lock().expect("not poisoned");
        let doc = &docs[0];
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Mailroom");
        assert_eq!(directive["Dimensions"], json!([["Consumer"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "BatchDuration", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["Consumer"], "orders");
        assert_eq!(doc["Records"], 3.0);
        assert_eq!(doc["RequestId"], "r-1");
        assert!(doc["_aws"]["Timestamp"].as_u64().is_some_and(|t| t > 0));
    }

    #[test]
    fn a_cached_directive_gives_the_same_document() {
        let dims = [("Consumer", "orders")];
        let build = || Emf::new("Mailroom", &dims).metric("Records", Unit::Count, 2.0);
        let directive = build().directive().expect("serialises");
        let (sink, store) = MetricsSink::capture();
        build().emit(&sink);
        build().with_directive(&directive).emit(&sink);
        let docs = store.lock().expect("not poisoned");
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"],
            docs[1]["_aws"]["CloudWatchMetrics"]
        );
        assert_eq!(docs[1]["Records"], 2.0);
    }
}
