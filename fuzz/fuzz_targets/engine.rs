//! The batch engine over arbitrary Lambda events, with the in-memory queue fake: whatever the
//! event holds (hostile timestamps, receive counts, attributes, bodies, records that are not
//! records) and whatever the handler answers (success, retry, retry after any delay, poison),
//! `process_json` never panics, and every record it reports failed is one of the event's own.
//!
//! The first byte picks the handler's answer, the next eight a delay; the rest is the event.
#![no_main]

use std::collections::HashSet;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailroom_lambda::sqs::FakeQueues;
use mailroom_lambda::{Deadline, Engine, EngineConfig, Failure, Message};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let mode = data[0];
    let delay = Duration::from_millis(u64::from_le_bytes(data[1..9].try_into().unwrap_or_default()));
    let Ok(json) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    let ids: HashSet<String> = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("Records").cloned())
        .and_then(|r| r.as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("messageId").and_then(|m| m.as_str()).map(str::to_owned))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let queues = FakeQueues::new();
        let engine = Engine::new(
            EngineConfig {
                metrics: mailroom_lambda::telemetry::MetricsSink::capture().0,
                jitter_seed: Some(7),
                ..EngineConfig::default()
            },
            queues.clone(),
        );
        let answer = move |_m: Message<serde_json::Value>| async move {
            match mode % 4 {
                0 => Ok(()),
                1 => Err(Failure::retry("fuzz")),
                2 => Err(Failure::retry_after("fuzz", delay)),
                _ => Err(Failure::poison("fuzz \0 \u{FFFE}")),
            }
        };
        if let Ok(report) = engine.process_json(json, Deadline::none(), answer).await {
            for failure in &report.response.batch_item_failures {
                assert!(
                    ids.contains(&failure.item_identifier),
                    "reported {} failed, which the event does not hold",
                    failure.item_identifier
                );
            }
            assert!(queues.sent().len() <= report.records.len());
        }
    });
});
