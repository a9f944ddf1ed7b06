//! What a run costs at AWS list prices, per event, beside a Powertools-style design of the
//! same work and the bare pipeline.
//!
//! DynamoDB is measured: the proxy in front of the emulator counts every item write (billed
//! whether its condition holds or not) and the read units of every read (see
//! [`mailroom_local::faults::Capacity`]), and a scan of the ledger after the run gives the
//! items' sizes (a write costs one unit per KB of the item). Lambda's duration is measured
//! too: the time of every invocation, locally (where the emulator answers more slowly than
//! AWS, so it errs high). SQS and Lambda requests are modelled at steady state instead of
//! counted, since a local poller's empty receives are not what a busy queue costs: full
//! batches of ten, so per event and subscribed queue 0.1 `ReceiveMessage`, 0.1
//! `DeleteMessageBatch` and 0.1 invocation. SNS bills each published message.
//!
//! The Powertools-style design is the same two consumers with a batch processor and
//! Powertools' idempotency (one conditional put before a record runs, one update after: two
//! write units per record and consumer) and no task monitor; the bare pipeline is SNS, SQS
//! and the two consumers' Lambda time with no ledger at all.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// When the prices below were AWS's list prices (us-east-1).
pub(super) const PRICES_AS_OF: &str = "us-east-1 list prices, 2026-12-01";
/// DynamoDB on-demand, per write request unit ($0.625 per million since November 2024).
const DYNAMODB_WRITE_UNIT: f64 = 0.625e-6;
/// DynamoDB on-demand, per read request unit ($0.125 per million).
const DYNAMODB_READ_UNIT: f64 = 0.125e-6;
/// SQS standard, per request ($0.40 per million).
const SQS_REQUEST: f64 = 0.40e-6;
/// SNS standard, per published message of up to 64 KB ($0.50 per million); deliveries to
/// SQS are free.
const SNS_MESSAGE: f64 = 0.50e-6;
/// Lambda, per request ($0.20 per million).
const LAMBDA_REQUEST: f64 = 0.20e-6;
/// Lambda on arm64, per GB-second.
const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
/// The template's `MemorySize` (256 MB).
const MEMORY_GB: f64 = 0.25;
/// Records per invocation and per SQS request at steady state.
const BATCH: f64 = 10.0;

/// What the run measured.
#[derive(Debug, Clone, Default)]
pub(super) struct Measured {
    /// Events published.
    pub(super) events: u64,
    /// DynamoDB item writes and read units (the proxy's count).
    pub(super) item_writes: u64,
    pub(super) read_units: f64,
    /// DynamoDB requests.
    pub(super) dynamodb_requests: u64,
    /// The ledger's items' sizes in bytes, by DynamoDB's rules.
    pub(super) item_sizes: Vec<u64>,
    /// Milliseconds of Lambda time, by function: the consumers' and the rest.
    pub(super) consumer_ms: u64,
    pub(super) other_ms: u64,
    /// Queues subscribed to the events topic (the consumers' and the monitor's).
    pub(super) consumer_queues: u64,
    pub(super) monitor_queues: u64,
}

/// Per event, and per million events in dollars.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub(super) struct Cost {
    pub(super) prices: &'static str,
    pub(super) write_units_per_event: f64,
    pub(super) read_units_per_event: f64,
    pub(super) dynamodb_requests_per_event: f64,
    pub(super) largest_ledger_item_bytes: u64,
    /// Mailroom's dollars per million events, by part.
    pub(super) mailroom_by_part: BTreeMap<&'static str, f64>,
    pub(super) mailroom: f64,
    pub(super) powertools_style: f64,
    pub(super) bare_pipeline: f64,
}

/// The model above, over what was measured.
pub(super) fn model(m: &Measured) -> Cost {
    let events = m.events.max(1) as f64;
    // One write unit per started KB of the item written; the ledger's items as they ended.
    let units_per_write = if m.item_sizes.is_empty() {
        1.0
    } else {
        m.item_sizes
            .iter()
            .map(|s| s.div_ceil(1024).max(1))
            .sum::<u64>() as f64
            / m.item_sizes.len() as f64
    };
    let write_units = m.item_writes as f64 * units_per_write / events;
    let read_units = m.read_units / events;
    let per_queue_sqs = 2.0 / BATCH * SQS_REQUEST;
    let per_queue_invocation = LAMBDA_REQUEST / BATCH;
    let gb_second = |ms: u64| ms as f64 / 1000.0 / events * MEMORY_GB * LAMBDA_ARM_GB_SECOND;
    let queues = (m.consumer_queues + m.monitor_queues) as f64;
    let million = |dollars: f64| dollars * 1e6;
    let mut parts = BTreeMap::new();
    parts.insert(
        "dynamodb_writes",
        million(write_units * DYNAMODB_WRITE_UNIT),
    );
    parts.insert("dynamodb_reads", million(read_units * DYNAMODB_READ_UNIT));
    parts.insert("sns", million(SNS_MESSAGE));
    parts.insert("sqs", million(queues * per_queue_sqs));
    parts.insert(
        "lambda",
        million(queues * per_queue_invocation + gb_second(m.consumer_ms + m.other_ms)),
    );
    let consumers = m.consumer_queues as f64;
    let bare = million(
        SNS_MESSAGE + consumers * (per_queue_sqs + per_queue_invocation) + gb_second(m.consumer_ms),
    );
    let powertools = bare + million(2.0 * consumers * DYNAMODB_WRITE_UNIT);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Cost {
        prices: PRICES_AS_OF,
        write_units_per_event: round(write_units),
        read_units_per_event: round(read_units),
        dynamodb_requests_per_event: round(m.dynamodb_requests as f64 / events),
        largest_ledger_item_bytes: m.item_sizes.iter().copied().max().unwrap_or(0),
        mailroom: round(parts.values().sum()),
        mailroom_by_part: parts.into_iter().map(|(k, v)| (k, round(v))).collect(),
        powertools_style: round(powertools),
        bare_pipeline: round(bare),
    }
}

/// An item's size by DynamoDB's rules: each attribute's name plus its value (a string's
/// UTF-8 bytes, a number's significant digits halved plus one, a binary's bytes, one for a
/// boolean or null, three plus one per element for a list or map).
pub(super) fn item_size(item: &std::collections::HashMap<String, AttributeValue>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

fn value_size(v: &AttributeValue) -> u64 {
    match v {
        AttributeValue::S(s) => s.len() as u64,
        AttributeValue::N(n) => {
            let digits = n.chars().filter(char::is_ascii_digit).count() as u64;
            digits.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(items) => items.iter().map(|s| s.len() as u64).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| n.len() as u64 / 2 + 1).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<u64>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() as u64 + value_size(v))
                .sum::<u64>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_prices_what_was_measured_and_the_designs_beside_it() {
        // 1,000 events; 6,000 item writes of items under 1 KB, 500 read units; two consumer
        // queues and the monitor's; 2,000 ms of consumer time, 1,000 ms of the rest.
        let m = Measured {
            events: 1000,
            item_writes: 6000,
            read_units: 500.0,
            dynamodb_requests: 6400,
            item_sizes: vec![300, 700, 1000],
            consumer_ms: 2000,
            other_ms: 1000,
            consumer_queues: 2,
            monitor_queues: 1,
        };
        let c = model(&m);
        assert_eq!(c.write_units_per_event, 6.0);
        assert_eq!(c.read_units_per_event, 0.5);
        assert_eq!(c.dynamodb_requests_per_event, 6.4);
        assert_eq!(c.largest_ledger_item_bytes, 1000);
        // Per million events: writes 6 × $0.625 = $3.75; reads 0.5 × $0.125 = $0.0625;
        // SNS $0.50; SQS 3 queues × 0.2 × $0.40 = $0.24; Lambda 3 × 0.1 × $0.20 = $0.06
        // plus 3 ms × 0.25 GB × $0.0000133334 per GB-s × 1e6 / 1000 = $0.01.
        assert_eq!(c.mailroom_by_part["dynamodb_writes"], 3.75);
        assert_eq!(c.mailroom_by_part["dynamodb_reads"], 0.063);
        assert_eq!(c.mailroom_by_part["sns"], 0.5);
        assert_eq!(c.mailroom_by_part["sqs"], 0.24);
        assert_eq!(c.mailroom_by_part["lambda"], 0.07);
        assert_eq!(c.mailroom, 4.623);
        // Bare: SNS 0.50 + 2 × (0.08 + 0.02) + 2 ms → 0.7067; Powertools-style: + 4 × 0.625.
        assert_eq!(c.bare_pipeline, 0.707);
        assert_eq!(c.powertools_style, 3.207);
    }

    #[test]
    fn a_write_of_an_item_over_a_kilobyte_costs_more_units() {
        let m = Measured {
            events: 10,
            item_writes: 10,
            item_sizes: vec![1025, 500],
            ..Measured::default()
        };
        assert_eq!(model(&m).write_units_per_event, 1.5);
    }

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        let item = std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S("task-1".into())),
            ("n".to_owned(), AttributeValue::N("12345".into())),
            ("ok".to_owned(), AttributeValue::Bool(true)),
        ]);
        // pk: 2 + 6; n: 1 + (5 digits → 3) + 1; ok: 2 + 1.
        assert_eq!(item_size(&item), 8 + 5 + 3);
    }
}
