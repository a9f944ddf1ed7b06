//! The example consumer under the engine, driven by the shared `events/` fixtures.

use example_consumer::handle;
use mailroom_lambda::testing::{FakeQueues, fixture};
use mailroom_lambda::{Deadline, Engine, EngineConfig, Outcome};

fn engine(queues: &FakeQueues) -> Engine<FakeQueues> {
    let config = EngineConfig {
        metrics: mailroom_lambda::telemetry::MetricsSink::Discard,
        ..EngineConfig::default()
    };
    Engine::new(config, queues.clone())
}

#[tokio::test]
async fn valid_orders_succeed_in_both_envelope_forms() {
    for name in ["sqs-sns-envelope.json", "sqs-raw.json", "sqs-fifo.json"] {
        let queues = FakeQueues::new();
        let report = engine(&queues)
            .process(fixture(name), Deadline::none(), handle)
            .await
            .expect("response");
        assert!(report.failed_ids().is_empty(), "{name}");
        assert!(
            report
                .records
                .iter()
                .all(|r| r.outcome == Outcome::Succeeded),
            "{name}"
        );
        assert!(queues.sent().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn zero_amounts_and_bad_bodies_are_dead_lettered_with_reasons() {
    // GIVEN the poison fixture: one good order, a zero amount, a wrong type, and not-JSON
    let queues = FakeQueues::new();

    // WHEN the consumer runs over it
    let report = engine(&queues)
        .process(fixture("sqs-poison.json"), Deadline::none(), handle)
        .await
        .expect("response");

    // THEN nothing is retried and three go to the DLQ with their reasons
    assert!(report.failed_ids().is_empty());
    let reasons: Vec<String> = report
        .records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Poisoned { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 3);
    assert_eq!(reasons[0], "amount_cents must be positive");
    assert!(reasons[1].starts_with("decode:") && reasons[2].starts_with("decode:"));
    assert_eq!(queues.sent().len(), 3);
}
