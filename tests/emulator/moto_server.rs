//! The test bed's moto serves HTTP/1.1 connections that stay open (`moto_server.py`,
//! `_keep_alive_server`), where moto's own server closes every connection after one answer.
//! Read from the wire: several requests on one TCP connection, each answered in full, with a
//! chunked body and a body the application never reads among them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use mailroom_local::Moto;

const LIST_QUEUES: &str = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\
    X-Amz-Target: AmazonSQS.ListQueues\r\nContent-Type: application/x-amz-json-1.0\r\n\
    Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
    SignedHeaders=host, Signature=0\r\n";

/// One answer: its status line, its headers (names in lower case) and its body.
fn answer(reader: &mut BufReader<TcpStream>) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header");
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("a length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    (status.trim_end().to_owned(), headers, body)
}

fn closes(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"))
}

fn services(moto: &Moto) -> TcpStream {
    let url = moto.upstreams().services().to_owned();
    TcpStream::connect(url.trim_start_matches("http://")).expect("connect")
}

#[test]
fn one_connection_carries_many_requests_each_answered_whole() {
    let moto = Moto::start(&Moto::venv(Path::new(env!("CARGO_MANIFEST_DIR")))).expect("moto");
    let stream = services(&moto);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);

    // A plain body, a chunked one, a body the application never reads (a GET of moto's own
    // API), and a plain one again: each answered, the connection open after each.
    let requests = [
        format!("{LIST_QUEUES}Content-Length: 2\r\n\r\n{{}}"),
        format!("{LIST_QUEUES}Transfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n1\r\n}}\r\n0\r\n\r\n"),
        "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
        format!("{LIST_QUEUES}Content-Length: 2\r\n\r\n{{}}"),
    ];
    for (i, request) in requests.iter().enumerate() {
        writer.write_all(request.as_bytes()).expect("send");
        let (status, headers, body) = answer(&mut reader);
        assert_eq!(
            status,
            "HTTP/1.1 200 OK",
            "request {i}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !closes(&headers),
            "request {i} closed the connection: {headers:?}"
        );
        if i != 2 {
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert!(json.is_object(), "request {i}: {json}");
        }
    }

    // `Connection: close` is honoured.
    writer
        .write_all(
            format!("{LIST_QUEUES}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}").as_bytes(),
        )
        .expect("send");
    let (status, headers, _) = answer(&mut reader);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closes(&headers));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("closed");
    assert!(rest.is_empty());
}

#[test]
fn moto_s_own_server_closes_every_connection() {
    // The difference the keep-alive server makes, seen on the same wire.
    let moto = Moto::start_with_env(
        &Moto::venv(Path::new(env!("CARGO_MANIFEST_DIR"))),
        &[("MAILROOM_MOTO_STOCK_SERVER", "1")],
    )
    .expect("moto with its own server");
    let stream = services(&moto);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    writer
        .write_all(format!("{LIST_QUEUES}Content-Length: 2\r\n\r\n{{}}").as_bytes())
        .expect("send");
    let (status, headers, _) = answer(&mut reader);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(closes(&headers), "{headers:?}");
}

#[tokio::test]
async fn a_reset_forgets_every_service_s_state_and_the_next_requests_start_afresh() {
    // GIVEN an emulator of its own with a queue, a topic and a table (moto keeps each
    // service's state per account; the test bed finds an account's without moto's lock)
    let moto = Moto::start(&Moto::venv(Path::new(env!("CARGO_MANIFEST_DIR")))).expect("moto");
    let config = mailroom_local::emulator_config(moto.endpoint()).await;
    let bed = mailroom_local::testbed::TestBed {
        sqs: aws_sdk_sqs::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
    };
    let queues = || async {
        bed.sqs
            .list_queues()
            .send()
            .await
            .expect("ListQueues")
            .queue_urls()
            .len()
    };
    bed.queue("before-reset", &[]).await;
    bed.topic("before-reset").await;
    let _ledger = bed
        .ledger(std::sync::Arc::new(mailroom_lambda::clock::SystemClock))
        .await;
    assert_eq!(queues().await, 1);

    // WHEN moto's reset is called on the one endpoint
    let reset = reqwest::Client::new()
        .post(format!("{}/moto-api/reset", moto.endpoint()))
        .send()
        .await
        .expect("reset");
    assert!(reset.status().is_success(), "{reset:?}");

    // THEN every service is empty (an independent list of each)
    assert_eq!(queues().await, 0);
    let topics = bed.sns.list_topics().send().await.expect("ListTopics");
    assert!(topics.topics().is_empty(), "{topics:?}");
    let tables = bed.dynamodb.list_tables().send().await.expect("ListTables");
    assert!(tables.table_names().is_empty(), "{tables:?}");

    // AND the services are made again on their next use
    bed.queue("after-reset", &[]).await;
    bed.topic("after-reset").await;
    assert_eq!(queues().await, 1);
}
