//! The one test bed every test binary shares: the AWS emulator started once per binary, SDK
//! clients on it, unique names, and the function binaries under the Runtime Interface
//! Emulator.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use aws_sdk_sqs::types::QueueAttributeName;

use crate::proxy::Upstreams;
use crate::{EventSource, Moto, REGION};
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::sqs::{QueueArn, QueueUrl};

/// The emulator's endpoint: `MAILROOM_TEST_ENDPOINT` if set, else a moto server started once
/// for this test binary (it exits with the binary).
pub fn endpoint() -> &'static str {
    &emulator().0
}

/// The endpoint, and the processes behind it (the endpoint itself when it is not ours).
fn emulator() -> &'static (String, Upstreams) {
    static EMULATOR: OnceLock<(String, Upstreams)> = OnceLock::new();
    static MOTO: OnceLock<Moto> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        if let Some(endpoint) = mailroom_lambda::Env::process().string("MAILROOM_TEST_ENDPOINT") {
            let upstreams = Upstreams::single(&endpoint);
            return (endpoint, upstreams);
        }
        let moto = MOTO.get_or_init(|| {
            Moto::start(&Moto::venv(crate::workspace_root()))
                .expect("moto starts from the project venv: run scripts/setup.sh")
        });
        (moto.endpoint().to_owned(), moto.upstreams())
    })
}

/// A unique name per call, so parallel tests never share a queue.
pub fn unique(stem: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{stem}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// SDK clients on the shared emulator.
#[derive(Debug, Clone)]
pub struct TestBed {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

#[derive(Debug, Clone)]
/// A queue the test bed created.
pub struct Queue {
    /// Its URL.
    pub url: QueueUrl,
    /// Its ARN.
    pub arn: QueueArn,
}

impl TestBed {
    /// Clients on the shared emulator, starting it on first use. Each client calls its
    /// service's moto process directly, as an SDK calls each service's own endpoint in AWS;
    /// the one endpoint's router, which the functions use, is a hop these clients do not need.
    pub async fn new() -> Self {
        let upstreams = &emulator().1;
        let services = crate::emulator_config(upstreams.services()).await;
        let dynamodb = crate::emulator_config(upstreams.dynamodb()).await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&services),
            sns: aws_sdk_sns::Client::new(&services),
            dynamodb: aws_sdk_dynamodb::Client::new(&dynamodb),
        }
    }

    /// Publishes `body` to `topic` with the String attribute `kind`; returns the message id.
    pub async fn publish_kind(&self, topic: &str, body: &str, kind: &str) -> String {
        self.sns
            .publish()
            .topic_arn(topic)
            .message(body)
            .message_attributes(
                "kind",
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(kind)
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("Publish")
            .message_id
            .expect("id")
    }

    /// A new SNS topic; returns its ARN.
    pub async fn topic(&self, stem: &str) -> String {
        self.sns
            .create_topic()
            .name(unique(stem))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("arn")
    }

    /// Subscribes `queue` to `topic`, raw or enveloped. (moto does not check queue policies.)
    pub async fn subscribe(&self, topic: &str, queue: &Queue, raw: bool) {
        self.sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue.arn.as_str())
            .attributes("RawMessageDelivery", raw.to_string())
            .send()
            .await
            .expect("Subscribe");
    }

    /// A fresh ledger table, as template.yaml declares it, on `clock`.
    pub async fn ledger(&self, clock: Arc<dyn mailroom_lambda::clock::Clock>) -> Ledger {
        let table = unique("ledger");
        crate::create_table(&self.dynamodb, &table)
            .await
            .expect("table created");
        Ledger::new(self.dynamodb.clone(), table).with_clock(clock)
    }

    /// Creates a queue with the given attributes.
    pub async fn queue(&self, name: &str, attributes: &[(QueueAttributeName, String)]) -> Queue {
        let (url, arn) = crate::create_queue(&self.sqs, name, attributes)
            .await
            .expect("queue created");
        Queue { url, arn }
    }

    /// A source queue and its DLQ, with a RedrivePolicy.
    pub async fn queue_with_dlq(
        &self,
        stem: &str,
        max_receive: u32,
        visibility_secs: u32,
    ) -> (Queue, Queue) {
        let fifo = stem.ends_with(".fifo");
        let base = stem.trim_end_matches(".fifo");
        let suffix = if fifo { ".fifo" } else { "" };
        let mut attrs = Vec::new();
        if fifo {
            attrs.push((QueueAttributeName::FifoQueue, "true".to_owned()));
        }
        let dlq = self
            .queue(
                &format!("{}{suffix}", unique(&format!("{base}-dlq"))),
                &attrs,
            )
            .await;
        attrs.push((
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        ));
        attrs.push((
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq.arn.as_str(), "maxReceiveCount": max_receive}).to_string(),
        ));
        let source = self
            .queue(&format!("{}{suffix}", unique(base)), &attrs)
            .await;
        (source, dlq)
    }

    /// Lambda's event source mapping over `queue`.
    pub fn event_source(&self, queue: &Queue) -> EventSource {
        EventSource::new(
            self.sqs.clone(),
            queue.url.clone(),
            queue.arn.clone(),
            REGION,
        )
    }

    /// (visible, in flight) message counts.
    pub async fn depth(&self, queue: &Queue) -> (u64, u64) {
        mailroom_ops::sqs::queue_depth(&self.sqs, &queue.url)
            .await
            .expect("GetQueueAttributes")
    }

    /// Receives everything visible now (up to `max`), with all attributes, without deleting.
    pub async fn drain_visible(
        &self,
        queue: &Queue,
        max: usize,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(queue.url.as_str())
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .visibility_timeout(60)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default();
            if got.is_empty() || out.len() >= max {
                return out;
            }
            out.extend(got);
        }
    }

    /// Sends a plain message with string attributes; returns its message id.
    pub async fn send(&self, queue: &Queue, body: &str, attrs: &[(&str, &str)]) -> String {
        let mut req = self
            .sqs
            .send_message()
            .queue_url(queue.url.as_str())
            .message_body(body);
        for (k, v) in attrs {
            req = req.message_attributes(
                *k,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*v)
                    .build()
                    .expect("attribute"),
            );
        }
        req.send()
            .await
            .expect("SendMessage")
            .message_id
            .expect("id")
    }
}

/// An SNS notification envelope, as SNS writes it to a queue without raw delivery.
pub fn envelope(sns_message_id: &str, message: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": sns_message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailroom-events",
        "Message": message,
        "Timestamp": "2026-01-01T00:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}

/// A function binary under AWS's Runtime Interface Emulator (the one `sam local invoke` runs,
/// from the aws-sam-cli wheel in the project venv), on two free loopback ports. It stops when
/// dropped.
#[derive(Debug)]
pub struct Rie(crate::runner::FunctionProcess);

impl Rie {
    /// Starts `binary` under the emulator with only `env` (plus `PATH`) in its environment.
    ///
    /// # Panics
    /// When the venv or the emulator is missing (run `scripts/setup.sh`), or it cannot start.
    pub async fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let root = crate::workspace_root();
        let rie = crate::runner::emulator(&crate::Moto::venv(root))
            .expect("the venv has aws-sam-cli: run scripts/setup.sh");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self(
            crate::runner::FunctionProcess::start(&rie, binary, &env, None)
                .await
                .expect("the RIE starts"),
        )
    }

    /// Invokes the function with `event` the way `sam local invoke` does and returns its JSON
    /// answer (a function error's `errorType`/`errorMessage` object included).
    ///
    /// # Panics
    /// When the event is not JSON or the emulator never answers.
    pub async fn invoke(&self, event: &[u8]) -> serde_json::Value {
        let event: serde_json::Value = serde_json::from_slice(event).expect("a JSON event");
        match self.0.invoke(&event).await {
            Ok(v) => v,
            Err(crate::runner::InvokeError::Function {
                error_type,
                message,
            }) => {
                serde_json::json!({ "errorType": error_type, "errorMessage": message })
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A loopback proxy in front of the emulator that answers the first request of each of the
/// first `n` connections with HTTP 500 (a transient server error, as AWS sends one) and passes
/// every other connection through untouched: real HTTP, for testing retries.
#[derive(Debug)]
pub struct FaultProxy {
    endpoint: String,
    failed: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`) failing the first `n` connections.
    ///
    /// # Panics
    /// When no loopback port is free or `upstream` is not a loopback URL.
    pub async fn start(upstream: &str, n: usize) -> Self {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let failed = Arc::new(AtomicUsize::new(0));
        let count = failed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let fail = count
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                        (c < n).then_some(c + 1)
                    })
                    .is_ok();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if fail {
                        // Read the whole request (head and body), then answer 500 and close.
                        let mut request = Vec::new();
                        let mut buf = [0u8; 8192];
                        loop {
                            let Ok(read) = client.read(&mut buf).await else {
                                return;
                            };
                            if read == 0 {
                                return;
                            }
                            request.extend_from_slice(&buf[..read]);
                            if request_complete(&request) {
                                break;
                            }
                        }
                        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected fault"}"#;
                        let response = format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = client.write_all(response.as_bytes()).await;
                        let _ = client.shutdown().await;
                    } else if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            endpoint,
            failed,
            task,
        }
    }

    /// The endpoint URL to give the SDK.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many connections it has failed.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `request` holds a whole HTTP/1.1 request: the head, and `Content-Length` bytes.
fn request_complete(request: &[u8]) -> bool {
    let Some(head_end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= head_end + 4 + length
}
