//! The built notifier binary under AWS's Runtime Interface Emulator (the one `sam local invoke`
//! runs, from the aws-sam-cli wheel in the project venv), fed an `events/` file over HTTP.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Receiver;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `aws-lambda-rie-x86_64` inside the venv's samcli package.
fn rie() -> PathBuf {
    let lib = mailroom::local::Moto::venv(&workspace()).join("lib");
    std::fs::read_dir(&lib)
        .expect("the venv exists: run scripts/setup.sh")
        .filter_map(Result::ok)
        .map(|d| {
            d.path()
                .join("site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
        })
        .find(|p| p.exists())
        .expect("aws-sam-cli is in the venv: run scripts/setup.sh")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn the_notifier_binary_reports_exactly_the_failed_record_through_the_runtime_api() {
    // GIVEN a receiver that fails order o-1002 only, and the notifier binary under the RIE
    let rx = Receiver::start().await;
    let (api, runtime) = (free_port(), free_port());
    let _rie = tokio::process::Command::new(rie())
        .arg("--runtime-interface-emulator-address")
        .arg(format!("127.0.0.1:{api}"))
        .arg("--runtime-api-address")
        .arg(format!("127.0.0.1:{runtime}"))
        .arg(env!("CARGO_BIN_EXE_notifier"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        // Nothing here may reach AWS: point the SDK at a closed local port.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("MAILROOM_BACKOFF", "off")
        .env("NOTIFIER_WEBHOOK_URL", rx.url("/flaky"))
        .env("NOTIFIER_CALLBACK_FIELD", "")
        .env("NOTIFIER_SIGNING_SECRET", "whsec_runtime")
        .env("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the RIE starts");
    let event = std::fs::read(workspace().join("events/sqs-sns-envelope.json")).expect("fixture");
    let expected_failure =
        serde_json::from_slice::<Value>(&event).expect("json")["Records"][1]["messageId"].clone();

    // WHEN the event is invoked the way `sam local invoke` does
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{api}/2015-03-31/functions/function/invocations");
    let started = Instant::now();
    let response = loop {
        match client.post(&url).body(event.clone()).send().await {
            Ok(r) => break r,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                assert!(e.is_connect(), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the RIE never answered: {e}"),
        }
    };

    // THEN the partial batch response names only o-1002's record, and all three were delivered
    let body: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("a JSON response");
    assert_eq!(
        body["batchItemFailures"],
        serde_json::json!([{ "itemIdentifier": expected_failure }]),
        "{body}"
    );
    assert_eq!(rx.deliveries().len(), 3);
}
