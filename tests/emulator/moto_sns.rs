//! The test bed's moto signs SNS deliveries with one certificate per subscription, as SNS signs
//! with a long-lived certificate, instead of building a new certificate for every message
//! (`moto_server.py`, `_lean_server`). The envelopes a queue receives must have the same shape
//! as moto's own, each message its own signature.

use std::collections::BTreeSet;
use std::path::Path;

use mailroom_local::{self as local, Moto};
use serde_json::Value;

use crate::helpers::{endpoint, unique};

/// The envelopes of three messages published to a topic with an enveloped SQS subscription.
async fn envelopes(endpoint: &str) -> Vec<Value> {
    let config = local::emulator_config(endpoint).await;
    let (sqs, sns) = (
        aws_sdk_sqs::Client::new(&config),
        aws_sdk_sns::Client::new(&config),
    );
    let topic = sns
        .create_topic()
        .name(unique("signed"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("arn");
    let (queue, arn) = local::create_queue(&sqs, &unique("signed"), &[])
        .await
        .expect("queue");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn.as_str())
        .send()
        .await
        .expect("Subscribe");
    for i in 0..3 {
        sns.publish()
            .topic_arn(&topic)
            .message(format!("m-{i}"))
            .send()
            .await
            .expect("Publish");
    }
    let mut out = Vec::new();
    while out.len() < 3 {
        let got = sqs
            .receive_message()
            .queue_url(queue.as_str())
            .max_number_of_messages(10)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().unwrap_or_default()).expect("an envelope"));
        }
    }
    out.sort_by_key(|e: &Value| e["Message"].as_str().unwrap_or_default().to_owned());
    out
}

fn shape(envelopes: &[Value]) -> Vec<BTreeSet<String>> {
    envelopes
        .iter()
        .map(|e| {
            e.as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn sns_envelopes_keep_moto_s_shape_with_one_signing_certificate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stock = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_STOCK_SERVER", "1")])
        .expect("moto with its own SNS code");

    let lean = envelopes(endpoint()).await;
    let own = envelopes(stock.endpoint()).await;

    assert_eq!(shape(&lean), shape(&own));
    let messages: Vec<&str> = lean.iter().filter_map(|e| e["Message"].as_str()).collect();
    assert_eq!(messages, ["m-0", "m-1", "m-2"]);
    let certificates: BTreeSet<&str> = lean
        .iter()
        .filter_map(|e| e["SigningCertURL"].as_str())
        .collect();
    assert_eq!(
        certificates.len(),
        1,
        "one certificate for the subscription"
    );
    let signatures: BTreeSet<&str> = lean
        .iter()
        .filter_map(|e| e["Signature"].as_str())
        .collect();
    assert_eq!(signatures.len(), 3, "each message signed on its own");
    assert!(
        lean.iter()
            .all(|e| e["Type"] == "Notification" && e["SignatureVersion"] == "2")
    );
}
