//! The intake against the emulator: the ledger table, the topic and a queue subscribed to it
//! are real; what reached the queue and the ledger is read back from the emulator itself.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use intake::{Intake, Request, Response};
use mailroom_lambda::clock::SystemClock;
use mailroom_lambda::ledger::Ledger;
use mailroom_lambda::publish::Publisher;
use mailroom_local::faults::{FaultKind, FaultPlan, FaultyEndpoint};
use mailroom_local::testbed::{Queue, TestBed, endpoint, unique};
use serde_json::{Value, json};

struct Bed {
    bed: TestBed,
    ledger: Ledger,
    topic: String,
    queue: Queue,
}

async fn bed() -> Bed {
    let bed = TestBed::new().await;
    let ledger = bed.ledger(Arc::new(SystemClock)).await;
    let topic = bed.topic("intake").await;
    let queue = bed.queue(&unique("intake"), &[]).await;
    bed.subscribe(&topic, &queue, true).await;
    Bed {
        bed,
        ledger,
        topic,
        queue,
    }
}

impl Bed {
    fn intake_with(&self, publisher: Publisher) -> Intake {
        let schemas = Arc::new(intake::embedded_schemas().expect("schemas"));
        Intake::new(
            self.ledger.clone(),
            publisher.with_schemas(schemas.clone()),
            schemas,
        )
    }

    fn intake(&self) -> Intake {
        self.intake_with(Publisher::new(self.bed.sns.clone(), &self.topic))
    }

    /// What reached the queue: (task_id attribute, body).
    async fn arrived(&self) -> Vec<(String, String)> {
        self.bed
            .drain_visible(&self.queue, 50)
            .await
            .iter()
            .map(|m| {
                let task = m
                    .message_attributes()
                    .and_then(|a| a.get("task_id"))
                    .and_then(|v| v.string_value())
                    .unwrap_or_default()
                    .to_owned();
                (task, m.body().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// The intake's record of `task`, read from the table directly.
    async fn marker(
        &self,
        task: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.bed
            .dynamodb
            .get_item()
            .table_name(self.ledger.table())
            .key("pk", AttributeValue::S(task.into()))
            .key("sk", AttributeValue::S("#task".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }
}

fn post(kind: &str, body: &str, headers: &[(&str, &str)]) -> Request {
    let mut request = Request {
        method: "POST".into(),
        path: format!("/events/{kind}"),
        body: body.as_bytes().to_vec(),
        base_url: "https://intake.example".into(),
        ..Request::default()
    };
    request.headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        request.headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
    }
    request
}

fn get(path: &str) -> Request {
    Request {
        method: "GET".into(),
        path: path.into(),
        base_url: "https://intake.example".into(),
        ..Request::default()
    }
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

const ORDER: &str = r#"{"order_id":"o-1","amount_cents":1500}"#;

#[tokio::test]
async fn a_post_is_accepted_at_once_and_the_same_key_again_is_the_same_task() {
    // GIVEN the intake on the emulator
    let b = bed().await;
    let intake = b.intake();
    let headers = [
        ("idempotency-key", "order-1"),
        ("mailroom-tenant", "acme"),
        ("mailroom-callback-url", "https://hooks.example.com/done"),
    ];

    // WHEN an order is posted with an idempotency key
    let first = intake.handle(&post("order.placed", ORDER, &headers)).await;

    // THEN 202 names the task and where to follow it, the event reached the queue once with
    // that task id, and the ledger holds the task as ACCEPTED and published
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["task_id"], "acme:order-1");
    let status_url = "https://intake.example/tasks/acme%3Aorder-1";
    assert_eq!(first.body["status_url"], status_url);
    assert_eq!(header(&first, "location"), Some(status_url));
    assert!(header(&first, "retry-after").is_some());
    assert_eq!(
        b.arrived().await,
        vec![("acme:order-1".to_owned(), ORDER.to_owned())]
    );
    let marker = b.marker("acme:order-1").await.expect("the task's record");
    assert_eq!(marker["state"], AttributeValue::S("ACCEPTED".into()));
    assert_eq!(marker["tenant"], AttributeValue::S("acme".into()));
    assert_eq!(
        marker["callback_url"],
        AttributeValue::S("https://hooks.example.com/done".into())
    );

    // WHEN the same request comes again (a producer's retry) before any consumer has it
    let again = intake.handle(&post("order.placed", ORDER, &headers)).await;

    // THEN the same task, published again under the same task id (its first attempt might
    // not have reached SNS; consumers key on the task id, so a copy is the same task)
    assert_eq!(again.status, 202);
    assert_eq!(again.body["task_id"], "acme:order-1");
    assert_eq!(
        b.arrived().await,
        vec![("acme:order-1".to_owned(), ORDER.to_owned())]
    );

    // WHEN the key comes with another body
    let other = intake
        .handle(&post(
            "order.placed",
            r#"{"order_id":"o-2","amount_cents":1}"#,
            &headers,
        ))
        .await;

    // THEN 409, and nothing published
    assert_eq!(other.status, 409, "{}", other.body);
    assert!(b.arrived().await.is_empty());

    // AND GET /tasks/{id} says ACCEPTED, with what was accepted
    let status = intake.handle(&get("/tasks/acme%3Aorder-1")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["status"], "ACCEPTED");
    assert_eq!(status.body["accepted"]["kind"], "order.placed");

    // WHEN a consumer has the task and the request comes once more
    b.ledger
        .succeed("acme:order-1", "billing")
        .await
        .expect("a consumer's record");
    let late = intake.handle(&post("order.placed", ORDER, &headers)).await;

    // THEN the same task, and nothing published
    assert_eq!(late.status, 202);
    assert_eq!(late.body["task_id"], "acme:order-1");
    assert!(
        b.arrived().await.is_empty(),
        "not published once a consumer has it"
    );
}

#[tokio::test]
async fn bad_input_gets_a_precise_4xx_and_nothing_is_published() {
    // GIVEN the intake with a 1,000-byte limit
    let b = bed().await;
    let intake = b.intake_with(Publisher::new(b.bed.sns.clone(), &b.topic).with_max_bytes(1000));
    let mut wrong_type = post("order.placed", ORDER, &[]);
    wrong_type
        .headers
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    let big = format!(
        r#"{{"order_id":"o-1","amount_cents":1,"pad":"{}"}}"#,
        "x".repeat(2000)
    );
    let cases: Vec<(Request, u16, &str)> = vec![
        (
            post(
                "order.placed",
                r#"{"order_id":"o-1","amount_cents":0}"#,
                &[],
            ),
            400,
            "/amount_cents",
        ),
        (
            post("order.placed", r#"{"order_id":7}"#, &[]),
            400,
            "/order_id",
        ),
        (
            post("order.shipped", ORDER, &[]),
            404,
            "no event kind `order.shipped`",
        ),
        (post("order.placed", &big, &[]), 413, "limit of 1000 bytes"),
        (post("order.placed", "not json", &[]), 415, "not JSON"),
        (wrong_type, 415, "text/plain"),
        (
            post("order.placed", ORDER, &[("idempotency-key", "a/b")]),
            400,
            "idempotency-key",
        ),
        (
            post(
                "order.placed",
                ORDER,
                &[("mailroom-callback-url", "ftp://x")],
            ),
            400,
            "callback",
        ),
        (get("/events/order.placed"), 405, "not allowed"),
        (get("/nowhere"), 404, "no route"),
    ];

    // WHEN each is sent
    for (request, status, says) in cases {
        let r = intake.handle(&request).await;

        // THEN it gets its own 4xx, saying why
        assert_eq!(
            r.status, status,
            "{} {}: {}",
            request.method, request.path, r.body
        );
        assert!(r.body.to_string().contains(says), "{says}: {}", r.body);
    }

    // AND nothing reached the queue or the ledger
    assert!(b.arrived().await.is_empty());
    let items = b
        .bed
        .dynamodb
        .scan()
        .table_name(b.ledger.table())
        .send()
        .await
        .expect("Scan");
    assert_eq!(items.count(), 0);
}

#[tokio::test]
async fn an_id_never_seen_is_unknown_and_a_finished_task_is_succeeded() {
    let b = bed().await;
    let intake = b.intake();

    // An id the ledger never saw: 404, UNKNOWN, never a silent "pending"
    let unknown = intake.handle(&get("/tasks/never-seen")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["status"], "UNKNOWN");

    // A task accepted, then done by its consumer
    let accepted = intake
        .handle(&post("order.placed", ORDER, &[("idempotency-key", "k-9")]))
        .await;
    assert_eq!(accepted.status, 202);
    b.ledger
        .acquire("k-9", "billing", "owner", u64::MAX / 2, None)
        .await
        .expect("lease");
    let running = intake.handle(&get("/tasks/k-9")).await;
    assert_eq!(running.body["status"], "RUNNING");
    b.ledger.succeed("k-9", "billing").await.expect("succeed");
    let done = intake.handle(&get("/tasks/k-9")).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["status"], "SUCCEEDED");
    assert_eq!(
        done.body["consumers"],
        json!([done.body["consumers"][0].clone()])
    );
    assert_eq!(done.body["consumers"][0]["consumer"], "billing");
}

#[tokio::test]
async fn when_sns_is_down_the_answer_is_503_and_a_retry_with_the_key_publishes_once() {
    // GIVEN SNS unreachable (every connection reset before the call)
    let b = bed().await;
    let proxy = FaultyEndpoint::start(
        endpoint(),
        FaultPlan::only(FaultKind::ResetBefore, u64::MAX),
        5,
    )
    .await
    .expect("proxy");
    let sns = aws_sdk_sns::Client::new(&mailroom_local::emulator_config(proxy.endpoint()).await);
    let intake =
        b.intake_with(Publisher::new(sns, &b.topic).with_retries(2, Duration::from_millis(10)));
    let request = post("order.placed", ORDER, &[("idempotency-key", "k-503")]);

    // WHEN an order is posted
    let down = intake.handle(&request).await;

    // THEN 503 with Retry-After, not a 500; the task is recorded, not published
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(header(&down, "retry-after").is_some());
    let marker = b.marker("k-503").await.expect("recorded before publishing");
    assert_eq!(marker["state"], AttributeValue::S("ACCEPTED".into()));
    assert!(b.arrived().await.is_empty());

    // WHEN SNS is back and the producer retries with the same key
    proxy.arm(FaultPlan::mix(0.0));
    let up = intake.handle(&request).await;

    // THEN the same task, published once
    assert_eq!(up.status, 202, "{}", up.body);
    assert_eq!(up.body["task_id"], "k-503");
    assert_eq!(b.arrived().await.len(), 1);
    let _: Value = up.body;
}

#[tokio::test]
async fn while_the_backlog_is_older_than_the_objective_new_work_gets_429_with_retry_after() {
    // GIVEN a task registered two minutes ago and not picked up by its consumer, and an
    // intake whose backlog objective is one minute
    let b = bed().await;
    let now = mailroom_lambda::clock::Clock::now_ms(&SystemClock);
    b.ledger
        .register("waiting", "billing", Some(now - 120_000))
        .await
        .expect("registered");
    let intake = b.intake().with_backpressure(Duration::from_secs(60));

    // WHEN an order is posted
    let refused = intake
        .handle(&post("order.placed", ORDER, &[("idempotency-key", "bp-1")]))
        .await;

    // THEN 429 with a Retry-After, and nothing is recorded or published
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait: u64 = header(&refused, "retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((55..=60).contains(&wait), "{wait}");
    assert!(b.marker("bp-1").await.is_none());
    assert!(b.arrived().await.is_empty());

    // WHEN the consumer has picked the old task up (a fresh intake: no cached reading)
    b.ledger
        .acquire("waiting", "billing", "owner", now + 60_000, None)
        .await
        .expect("lease");
    let intake = b.intake().with_backpressure(Duration::from_secs(60));
    let accepted = intake
        .handle(&post("order.placed", ORDER, &[("idempotency-key", "bp-1")]))
        .await;

    // THEN the same request is accepted
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(b.arrived().await.len(), 1);
}

#[tokio::test]
async fn the_202s_retry_after_is_the_age_of_the_consumers_backlog() {
    // GIVEN a task registered 20 s ago and not yet picked up by its consumer
    let b = bed().await;
    let now = mailroom_lambda::clock::Clock::now_ms(&SystemClock);
    b.ledger
        .register("queued", "billing", Some(now - 20_000))
        .await
        .expect("registered");

    // WHEN an order is posted (no back-pressure objective: it is accepted)
    let accepted = b
        .intake()
        .handle(&post("order.placed", ORDER, &[("idempotency-key", "ra-1")]))
        .await;

    // THEN 202, and Retry-After says to look at its status when the backlog has cleared
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let wait: u64 = header(&accepted, "retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((19..=22).contains(&wait), "{wait}");

    // AND with nothing waiting, one second
    b.ledger
        .acquire("queued", "billing", "owner", now + 60_000, None)
        .await
        .expect("lease");
    let fresh = b
        .intake()
        .handle(&post("order.placed", ORDER, &[("idempotency-key", "ra-2")]))
        .await;
    assert_eq!(header(&fresh, "retry-after"), Some("1"));
}

/// A validator for one of the OpenAPI document's component schemas.
fn component(doc: &Value, name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&doc["components"]["schemas"][name])
        .unwrap_or_else(|e| panic!("component {name} is a schema: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} {instance} breaks its documented schema: {errors:?}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_describes_what_the_intake_answers() {
    // GIVEN an intake on the emulator
    let b = bed().await;
    let intake = b.intake();

    // WHEN a client asks for its description
    let answer = intake.handle(&get("/openapi.json")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let doc = answer.body;

    // THEN an OpenAPI validator independent of ours (openapi-spec-validator) accepts it
    let file = std::env::temp_dir().join(format!("{}.json", unique("openapi")));
    std::fs::write(&file, doc.to_string()).expect("written");
    let python = mailroom_local::Moto::venv(mailroom_local::workspace_root())
        .join("bin")
        .join("python");
    let out = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("the venv's python (scripts/setup.sh)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "https://intake.example");

    // AND every schema in schemas/, read from disk, is a kind's request body as written
    let dir = mailroom_local::workspace_root().join("schemas");
    let mut kinds = 0;
    for entry in std::fs::read_dir(&dir).expect("schemas/") {
        let path = entry.expect("entry").path();
        let kind = path.file_stem().and_then(|s| s.to_str()).expect("name");
        let on_disk: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let component = format!("event.{kind}");
        assert_eq!(doc["components"]["schemas"][&component], on_disk, "{kind}");
        let body = &doc["paths"][format!("/events/{kind}")]["post"]["requestBody"];
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{component}")
        );
        kinds += 1;
    }
    assert!(kinds > 0);

    // AND the intake's real answers match the schemas the document gives them
    let accepted = intake
        .handle(&post(
            "order.placed",
            ORDER,
            &[("idempotency-key", "api-1")],
        ))
        .await;
    assert_eq!(accepted.status, 202);
    assert_valid(&component(&doc, "Accepted"), &accepted.body, "the 202");
    let invalid = intake
        .handle(&post("order.placed", r#"{"order_id":""}"#, &[]))
        .await;
    assert_eq!(invalid.status, 400);
    assert_valid(
        &component(&doc, "ValidationError"),
        &invalid.body,
        "the 400",
    );
    let conflict = intake
        .handle(&post(
            "order.placed",
            r#"{"order_id":"o-2","amount_cents":1}"#,
            &[("idempotency-key", "api-1")],
        ))
        .await;
    assert_eq!(conflict.status, 409);
    assert_valid(&component(&doc, "Error"), &conflict.body, "the 409");
    let status = component(&doc, "TaskStatus");
    let known = intake.handle(&get("/tasks/api-1")).await;
    assert_eq!(known.status, 200);
    assert_valid(&status, &known.body, "a task's status");
    let unknown = intake.handle(&get("/tasks/never-seen")).await;
    assert_eq!(unknown.status, 404);
    assert_valid(&status, &unknown.body, "an unknown task");

    // AND the documented Idempotency-Key says how long the ledger keeps it, and its pattern
    // agrees with what the intake takes
    let key = &doc["paths"]["/events/order.placed"]["post"]["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    let days = b.ledger.retention().as_secs() / 86_400;
    assert!(
        key["description"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("Remembered for {days} days"))),
        "{key}"
    );
    let pattern = jsonschema::validator_for(&key["schema"]).expect("a schema");
    let long = "k".repeat(200);
    let too_long = "k".repeat(201);
    let keys = [
        "plain-1",
        "a/b",
        "a:b",
        "a#b",
        "a%b",
        "a b",
        "!\"$&'()*+,-.;<=>?@[\\]^_`{|}~",
        &long,
        &too_long,
    ];
    for (i, key) in keys.iter().enumerate() {
        let answer = intake
            .handle(&post(
                "order.placed",
                &format!(r#"{{"order_id":"p-{i}","amount_cents":1}}"#),
                &[("idempotency-key", key)],
            ))
            .await;
        assert_eq!(
            pattern.is_valid(&json!(key)),
            answer.status == 202,
            "key {key:?}: the intake answered {} {}",
            answer.status,
            answer.body
        );
    }
}
