//! The test bed's moto serves SNS's Publish and PublishBatch without moto's request parser and
//! XML serializer (`_fast_publish` in `moto_server.py`), with moto's own handler and backend.
//! The same conversation against it and against moto's own code
//! (`MAILROOM_MOTO_STOCK_SNS=1`) must give the same answers and errors and deliver the same
//! messages: plain publishes, String and Number attributes, subjects, batches, the refusals
//! (no such topic, a bad attribute type, a number that is not one, an empty value, a message
//! over the limit, duplicate or too many batch entries), and what the fast path hands to moto
//! (binary attributes, FIFO topics, whose answers carry sequence numbers).

use std::path::Path;

use aws_sdk_sns::error::ProvideErrorMetadata;
use aws_sdk_sns::primitives::Blob;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use mailroom_local::testbed::TestBed;
use mailroom_local::{self as local, Moto};

use crate::helpers::{endpoint, unique};

fn string(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("attribute")
}

fn typed(data_type: &str, v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(v)
        .build()
        .expect("attribute")
}

fn entry(id: &str, message: &str) -> PublishBatchRequestEntry {
    PublishBatchRequestEntry::builder()
        .id(id)
        .message(message)
        .build()
        .expect("entry")
}

fn error<E: ProvideErrorMetadata>(e: &E) -> String {
    format!(
        "{} {}",
        e.code().unwrap_or("no code"),
        e.message().unwrap_or("no message")
    )
}

async fn conversation(endpoint: &str) -> Vec<String> {
    let config = local::emulator_config(endpoint).await;
    // The test bed's helpers, on whichever emulator this conversation talks to.
    let bed = TestBed {
        sqs: aws_sdk_sqs::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
    };
    let (sns, sqs) = (&bed.sns, &bed.sqs);
    let topic = bed.topic("fast-publish").await;
    let fifo = sns
        .create_topic()
        .name(format!("{}.fifo", unique("fast-publish")))
        .attributes("FifoTopic", "true")
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn
        .expect("arn");
    // moto's SQS cannot answer a receive of a message with a binary attribute (it hashes the
    // attribute's text), so the binary publish goes to a topic no queue is subscribed to.
    let unheard = bed.topic("fast-publish").await;
    let queue = bed.queue(&unique("fast-publish"), &[]).await;
    bed.subscribe(&topic, &queue, true).await;

    let mut seen = Vec::new();
    let publishes = [
        sns.publish().topic_arn(&topic).message("plain"),
        sns.publish()
            .topic_arn(&topic)
            .message("with attributes")
            .message_attributes("kind", string("order.placed"))
            .message_attributes("amount", typed("Number", "12.5"))
            .message_attributes("tenant", typed("String.tenant", "acme")),
        sns.publish()
            .topic_arn(&topic)
            .message("with a subject")
            .subject("hello"),
        sns.publish()
            .topic_arn(&unheard)
            .message("binary")
            .message_attributes(
                "bytes",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![0, 1, 2]))
                    .build()
                    .expect("attribute"),
            ),
        sns.publish()
            .topic_arn(format!("{topic}-none"))
            .message("nowhere"),
        sns.publish()
            .topic_arn(&topic)
            .message("bad type")
            .message_attributes("x", typed("Text", "y")),
        sns.publish()
            .topic_arn(&topic)
            .message("bad number")
            .message_attributes("x", typed("Number", "many")),
        sns.publish()
            .topic_arn(&topic)
            .message("empty value")
            .message_attributes("x", string("")),
        sns.publish().topic_arn(&topic).message("x".repeat(262_145)),
        sns.publish()
            .topic_arn(&fifo)
            .message("fifo")
            .message_group_id("g")
            .message_deduplication_id("d"),
        sns.publish()
            .topic_arn(&fifo)
            .message("fifo without a group"),
    ];
    for (i, call) in publishes.into_iter().enumerate() {
        seen.push(match call.send().await {
            Ok(out) => format!(
                "publish {i}: id {} sequence {}",
                out.message_id.is_some(),
                out.sequence_number.is_some()
            ),
            Err(e) => format!("publish {i}: {}", error(&e)),
        });
    }

    let with_attribute = PublishBatchRequestEntry::builder()
        .id("b")
        .message("batch with attributes")
        .message_attributes("kind", string("order.placed"))
        .message_attributes("n", typed("Number", "3"))
        .build()
        .expect("entry");
    let batches = [
        vec![
            entry("a", "batch one"),
            with_attribute,
            entry("c", "batch three"),
        ],
        vec![entry("same", "one"), entry("same", "two")],
        (0..11).map(|i| entry(&i.to_string(), "many")).collect(),
    ];
    for (i, entries) in batches.into_iter().enumerate() {
        let answer = sns
            .publish_batch()
            .topic_arn(&topic)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await;
        seen.push(match answer {
            Ok(out) => format!(
                "batch {i}: ok {:?} failed {:?}",
                out.successful()
                    .iter()
                    .map(|s| (s.id.clone(), s.message_id.is_some()))
                    .collect::<Vec<_>>(),
                out.failed()
                    .iter()
                    .map(|f| (f.id.clone(), f.code.clone()))
                    .collect::<Vec<_>>()
            ),
            Err(e) => format!("batch {i}: {}", error(&e)),
        });
    }
    let fifo_batch = sns
        .publish_batch()
        .topic_arn(&fifo)
        .publish_batch_request_entries(
            PublishBatchRequestEntry::builder()
                .id("f")
                .message("fifo batch")
                .message_group_id("g")
                .message_deduplication_id("fd")
                .build()
                .expect("entry"),
        )
        .send()
        .await
        .map(|out| {
            out.successful()
                .iter()
                .map(|s| (s.id.clone(), s.sequence_number.is_some()))
                .collect::<Vec<_>>()
        })
        .map_err(|e| error(&e));
    seen.push(format!("fifo batch: {fifo_batch:?}"));

    // What the queue received: bodies and attributes, in body order (six messages; a
    // receive may come back empty while they are there).
    let mut delivered = Vec::new();
    for _ in 0..20 {
        if delivered.len() >= 6 {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(queue.url.as_str())
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in out.messages() {
            let mut attributes: Vec<String> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    format!(
                        "{k}={}:{:?}:{:?}",
                        v.data_type(),
                        v.string_value(),
                        v.binary_value()
                    )
                })
                .collect();
            attributes.sort();
            delivered.push(format!(
                "delivered {}: {attributes:?}",
                m.body().unwrap_or_default()
            ));
        }
    }
    delivered.sort();
    seen.extend(delivered);
    seen
}

#[tokio::test]
async fn the_test_beds_publishes_answer_and_deliver_as_moto_s_own_code_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stock = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_STOCK_SNS", "1")])
        .expect("moto with its own SNS code");

    let fast = conversation(endpoint()).await;
    let own = conversation(stock.endpoint()).await;
    for (a, b) in fast.iter().zip(&own) {
        assert_eq!(a, b, "the test bed's SNS differs from moto's own");
    }
    assert_eq!(fast.len(), own.len(), "{fast:#?}\n{own:#?}");
    // And the conversation went as planned, so the two did not agree by both failing.
    let line = |prefix: &str| {
        fast.iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {fast:#?}"))
            .clone()
    };
    assert_eq!(line("publish 0:"), "publish 0: id true sequence false");
    assert_eq!(line("publish 1:"), "publish 1: id true sequence false");
    assert!(line("publish 4:").contains("NotFound"), "{fast:#?}");
    assert!(
        line("publish 6:").contains("ParameterValueInvalid"),
        "{fast:#?}"
    );
    assert_eq!(line("publish 9:"), "publish 9: id true sequence false");
    assert!(
        line("batch 0:").contains(r#"(Some("c"), true)"#),
        "{fast:#?}"
    );
    assert!(
        line("batch 1:").contains("BatchEntryIdsNotDistinct"),
        "{fast:#?}"
    );
    assert!(
        line("batch 2:").contains("TooManyEntriesInBatchRequest"),
        "{fast:#?}"
    );
    assert!(
        line("delivered with attributes:").contains(r#"amount=Number:Some(\"12.5\")"#),
        "{fast:#?}"
    );
    assert!(
        line("delivered batch with attributes:").contains(r#"n=Number:Some(\"3\")"#),
        "{fast:#?}"
    );
    let delivered = fast.iter().filter(|l| l.starts_with("delivered")).count();
    assert_eq!(delivered, 6, "{fast:#?}");
}
