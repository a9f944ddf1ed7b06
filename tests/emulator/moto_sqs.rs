//! The test bed's moto runs SQS without moto's per-message queue scans (`moto_server.py`). The
//! same conversation with SQS against that server and against moto's own code must give the
//! same answers: counts of visible, in-flight and delayed messages, content-based
//! deduplication, receipt handles old and new, deletes of valid, repeated and unknown handles.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use mailroom_local::{self as local, Moto};

use crate::helpers::{endpoint, unique};

/// What a client can observe of one run of the conversation, with ids replaced by bodies.
type Transcript = Vec<String>;

async fn counts(sqs: &aws_sdk_sqs::Client, queue: &str) -> String {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    let get = |name: QueueAttributeName| attrs.get(&name).cloned().unwrap_or_default();
    format!(
        "visible={} in_flight={} delayed={}",
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    )
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    n: i32,
    hide: i32,
) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(n)
        .visibility_timeout(hide)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.body.unwrap_or_default(),
                m.receipt_handle.unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    got
}

async fn delete_batch(sqs: &aws_sdk_sqs::Client, queue: &str, handles: &[(&str, &str)]) -> String {
    let mut req = sqs.delete_message_batch().queue_url(queue);
    for (id, handle) in handles {
        req = req.entries(
            DeleteMessageBatchRequestEntry::builder()
                .id(*id)
                .receipt_handle(*handle)
                .build()
                .expect("entry"),
        );
    }
    let out = req.send().await.expect("DeleteMessageBatch");
    let mut ok: Vec<&str> = out
        .successful()
        .iter()
        .map(aws_sdk_sqs::types::DeleteMessageBatchResultEntry::id)
        .collect();
    ok.sort_unstable();
    let mut failed: Vec<String> = out
        .failed()
        .iter()
        .map(|f| format!("{}:{}", f.id(), f.code()))
        .collect();
    failed.sort();
    format!("deleted {ok:?} failed {failed:?}")
}

async fn conversation(endpoint: &str) -> Transcript {
    let config = local::emulator_config(endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut seen = Transcript::new();

    let queue = sqs
        .create_queue()
        .queue_name(unique("fidelity"))
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("url");
    for (body, delay) in [("a", 0), ("b", 0), ("c", 0), ("d", 0), ("late", 600)] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .expect("SendMessage");
    }
    seen.push(counts(&sqs, &queue).await);

    // Receive everything visible, hidden for 10 minutes; nothing is left to receive.
    let first = receive(&sqs, &queue, 10, 600).await;
    seen.push(format!(
        "received {:?}",
        first.iter().map(|m| &m.0).collect::<Vec<_>>()
    ));
    seen.push(format!(
        "then {}",
        receive(&sqs, &queue, 10, 600).await.len()
    ));
    seen.push(counts(&sqs, &queue).await);

    let handle = |body: &str| {
        first
            .iter()
            .find(|m| m.0 == body)
            .map(|m| m.1.clone())
            .expect("received")
    };
    // One delete, then a batch: that handle again, a valid one, an unknown one.
    sqs.delete_message()
        .queue_url(&queue)
        .receipt_handle(handle("a"))
        .send()
        .await
        .expect("DeleteMessage");
    let (a, b) = (handle("a"), handle("b"));
    seen.push(
        delete_batch(
            &sqs,
            &queue,
            &[("again", &a), ("valid", &b), ("unknown", "not-a-handle")],
        )
        .await,
    );
    let unknown = sqs
        .delete_message()
        .queue_url(&queue)
        .receipt_handle("not-a-handle")
        .send()
        .await;
    seen.push(format!(
        "single unknown: {}",
        unknown
            .err()
            .and_then(|e| e.into_service_error().meta().code().map(str::to_owned))
            .unwrap_or_else(|| "accepted".into())
    ));
    seen.push(counts(&sqs, &queue).await);

    // "c" is released and received again. moto deletes it with its old handle (SQS may accept
    // the call and keep the message); what matters here is that both servers agree.
    let old_c = handle("c");
    sqs.change_message_visibility()
        .queue_url(&queue)
        .receipt_handle(&old_c)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ChangeMessageVisibility");
    let again = receive(&sqs, &queue, 10, 600).await;
    seen.push(format!(
        "received again {:?}",
        again.iter().map(|m| &m.0).collect::<Vec<_>>()
    ));
    seen.push(delete_batch(&sqs, &queue, &[("old-handle", &old_c)]).await);
    seen.push(counts(&sqs, &queue).await);

    // FIFO with content-based deduplication: a repeated body within the window is dropped.
    let fifo = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique("fidelity")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .expect("CreateQueue fifo")
        .queue_url
        .expect("url");
    for body in ["x", "y", "x"] {
        sqs.send_message()
            .queue_url(&fifo)
            .message_body(body)
            .message_group_id("g")
            .send()
            .await
            .expect("SendMessage fifo");
    }
    seen.push(format!("fifo {}", counts(&sqs, &fifo).await));
    let mut bodies = BTreeMap::new();
    for (body, _) in receive(&sqs, &fifo, 10, 600).await {
        *bodies.entry(body).or_insert(0) += 1;
    }
    seen.push(format!("fifo received {bodies:?}"));
    seen
}

#[tokio::test]
async fn the_test_beds_sqs_answers_as_motos_own_code_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stock = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_STOCK_SQS", "1")])
        .expect("moto with its own SQS code");

    let fast = conversation(endpoint()).await;
    let own = conversation(stock.endpoint()).await;

    assert_eq!(fast, own, "the test bed's SQS differs from moto's own");
    // And the conversation went as expected, so the two did not agree by both failing.
    assert_eq!(
        fast,
        vec![
            "visible=4 in_flight=0 delayed=1",
            r#"received ["a", "b", "c", "d"]"#,
            "then 0",
            "visible=0 in_flight=4 delayed=1",
            r#"deleted ["again", "valid"] failed ["unknown:ReceiptHandleIsInvalid"]"#,
            "single unknown: ReceiptHandleIsInvalid",
            "visible=0 in_flight=2 delayed=1",
            r#"received again ["c"]"#,
            r#"deleted ["old-handle"] failed []"#,
            "visible=0 in_flight=1 delayed=1",
            "fifo visible=2 in_flight=0 delayed=0",
            r#"fifo received {"x": 1, "y": 1}"#,
        ]
    );
}

/// The answers to sends SQS refuses: characters outside XML's set in a body or an attribute,
/// and a message whose body plus attributes exceeds the queue's MaximumMessageSize.
async fn hostile_sends(endpoint: &str) -> Vec<String> {
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
    let sqs = aws_sdk_sqs::Client::new(&local::emulator_config(endpoint).await);
    let (queue, _) = local::create_queue(
        &sqs,
        &unique("strict"),
        &[(QueueAttributeName::MaximumMessageSize, "1024".into())],
    )
    .await
    .expect("queue");
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("attribute")
    };
    let answer = |r: Result<String, String>| r.unwrap_or_else(|code| format!("refused {code}"));
    let mut seen = Vec::new();
    let send = |body: String, attribute: Option<String>| {
        let mut req = sqs
            .send_message()
            .queue_url(queue.as_str())
            .message_body(body);
        if let Some(v) = attribute {
            req = req.message_attributes("reason", attr(&v));
        }
        async move {
            req.send()
                .await
                .map(|_| "accepted".to_owned())
                .map_err(|e| e.code().unwrap_or("?").to_owned())
        }
    };
    seen.push(answer(send("nul \0 in the body".into(), None).await));
    seen.push(answer(
        send("ok".into(), Some("refused \0 \u{FFFE} end".into())).await,
    ));
    seen.push(answer(
        send(
            "ok".into(),
            Some("all \u{D7FF}\u{E000}\u{10FFFF} fine".into()),
        )
        .await,
    ));
    // 1,000 bytes of body fit in 1,024; with a 30-byte attribute the message does not.
    seen.push(answer(send("x".repeat(1000), None).await));
    seen.push(answer(send("x".repeat(1000), Some("y".repeat(30))).await));
    // Characters count as their UTF-8 bytes: 400 × 'é' is 800 bytes, 600 × 'é' 1,200.
    seen.push(answer(send("é".repeat(400), None).await));
    seen.push(answer(send("é".repeat(600), None).await));
    let batch = sqs
        .send_message_batch()
        .queue_url(queue.as_str())
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("good")
                .message_body("fine")
                .build()
                .expect("entry"),
        )
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("bad")
                .message_body("bad \u{FFFF}")
                .build()
                .expect("entry"),
        )
        .send()
        .await;
    seen.push(match batch {
        Ok(out) => format!(
            "batch sent {:?} failed {:?}",
            out.successful()
                .iter()
                .map(aws_sdk_sqs::types::SendMessageBatchResultEntry::id)
                .collect::<Vec<_>>(),
            out.failed()
                .iter()
                .map(|f| format!("{}:{}:{}", f.id(), f.code(), f.sender_fault()))
                .collect::<Vec<_>>()
        ),
        Err(e) => format!("batch refused {}", e.code().unwrap_or("?")),
    });
    seen
}

#[tokio::test]
async fn the_test_beds_sqs_refuses_what_sqs_refuses_and_moto_accepts() {
    // Issue 12, point 7: SQS refuses characters outside #x9 | #xA | #xD | #x20–#xD7FF |
    // #xE000–#xFFFD | #x10000–#x10FFFF, and messages over MaximumMessageSize counting
    // attributes; moto's own code checks neither, so tests could not see a refused DLQ send.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lax = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_LAX_SQS", "1")])
        .expect("moto with its own validation");

    let strict = hostile_sends(endpoint()).await;
    let own = hostile_sends(lax.endpoint()).await;

    assert_eq!(
        strict,
        vec![
            "refused InvalidMessageContents",
            "refused InvalidParameterValue",
            "accepted",
            "accepted",
            "refused InvalidParameterValue",
            "accepted",
            "refused InvalidParameterValue",
            r#"batch sent ["good"] failed ["bad:InvalidMessageContents:true"]"#,
        ]
    );
    // moto's own code accepts every one (it counts the body's characters, not the message's
    // bytes): what the patch adds is exactly what SQS refuses and moto does not.
    assert_eq!(
        own,
        vec![
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            r#"batch sent ["good", "bad"] failed []"#,
        ]
    );
}

#[tokio::test]
async fn a_delete_never_drops_a_message_sent_at_the_same_time() {
    // Found by `mailroom local demo --events 10000`: one event never reached the notifier.
    // Deleting rebuilt the queue's message list without the lock moto appends under, so a
    // message sent during a delete could vanish. SQS never loses a message.
    // GIVEN a queue already holding 3,000 messages (a long list to rebuild)
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let sqs = aws_sdk_sqs::Client::new(&local::emulator_config(endpoint()).await);
    let (queue, _) = local::create_queue(&sqs, &unique("race"), &[])
        .await
        .expect("queue");
    let send_batch = |sqs: aws_sdk_sqs::Client, queue: String, stem: String| async move {
        let entries = (0..10)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(format!("{stem}-{i}"))
                    .build()
                    .expect("entry")
            })
            .collect::<Vec<_>>();
        let out = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("SendMessageBatch");
        assert!(out.failed().is_empty());
    };
    for b in 0..300 {
        send_batch(sqs.clone(), queue.as_str().to_owned(), format!("old-{b}")).await;
    }

    // WHEN 2,000 more are sent by four senders while four consumers receive and delete
    let mut senders = Vec::new();
    for s in 0..4 {
        let (sqs, queue) = (sqs.clone(), queue.as_str().to_owned());
        senders.push(tokio::spawn(async move {
            for b in 0..50 {
                send_batch(sqs.clone(), queue.clone(), format!("new-{s}-{b}")).await;
            }
        }));
    }
    let received = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let (sqs, queue, received) = (sqs.clone(), queue.as_str().to_owned(), received.clone());
        let sent = sent.clone();
        consumers.push(tokio::spawn(async move {
            let mut empty = 0;
            // Until the senders are done and three receives in a row find nothing.
            while empty < 3 || !sent.load(std::sync::atomic::Ordering::SeqCst) {
                let got = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .visibility_timeout(600)
                    .send()
                    .await
                    .expect("ReceiveMessage");
                if got.messages().is_empty() {
                    empty += 1;
                    continue;
                }
                empty = 0;
                let mut delete = sqs.delete_message_batch().queue_url(&queue);
                for (i, m) in got.messages().iter().enumerate() {
                    received
                        .lock()
                        .expect("lock")
                        .insert(m.body().unwrap_or_default().to_owned());
                    delete = delete.entries(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .expect("entry"),
                    );
                }
                delete.send().await.expect("DeleteMessageBatch");
            }
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    sent.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in consumers {
        c.await.expect("consumer");
    }

    // THEN every one of the 5,000 was received once the queue is empty: none vanished
    let left = counts(&sqs, queue.as_str()).await;
    let received = received.lock().expect("lock").len();
    assert_eq!(
        (received, left.as_str()),
        (5_000, "visible=0 in_flight=0 delayed=0"),
        "messages vanished"
    );
}
