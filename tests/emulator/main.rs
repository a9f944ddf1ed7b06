//! Integration tests against the AWS emulator (moto server on 127.0.0.1): one binary, shared
//! helpers, as in zero2prod's `tests/api`.

mod backoff;
mod breaker;
mod discovery;
mod fair_queues;
mod fanout;
mod helpers;
mod ledger;
mod mappings;
mod monitor;
mod moto_dynamodb;
mod moto_publish;
mod moto_server;
mod moto_sns;
mod moto_sqs;
mod moto_updates;
mod poison;
mod poller;
mod publish;
mod redrive;
mod replay;
mod sdk_config;
mod template;

/// The payload the tests publish.
#[derive(Debug, serde::Deserialize, serde::Serialize, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    pub(crate) order_id: String,
    pub(crate) amount_cents: u64,
}

pub(crate) fn order_json(id: &str, amount: u64) -> String {
    serde_json::to_string(&Order {
        order_id: id.to_owned(),
        amount_cents: amount,
    })
    .expect("serialises")
}

/// The order ids of received messages, in the order received.
pub(crate) fn order_ids(messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Order>(m.body().expect("body"))
                .expect("an order")
                .order_id
        })
        .collect()
}
