//! `schemas/order.placed.json` is generated from `OrderPlaced`, and every `events/` fixture of
//! that kind is checked against it: the good ones pass, the poison ones fail with their paths.
//!
//! After changing `OrderPlaced`, regenerate the file with
//! `MAILROOM_UPDATE_SCHEMAS=1 cargo test -p example-consumer --test schema`.

use std::path::{Path, PathBuf};

use example_consumer::OrderPlaced;
use mailroom_lambda::schema::Schemas;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_schema_is_the_one_the_consumers_type_generates() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&schemars::schema_for!(OrderPlaced)).expect("serialises")
    );
    let path = root().join("schemas/order.placed.json");
    if std::env::var_os("MAILROOM_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("schema written");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        committed, generated,
        "schemas/order.placed.json is stale: MAILROOM_UPDATE_SCHEMAS=1 cargo test -p example-consumer --test schema"
    );
}

/// Every record of every `events/sqs-*.json` fixture: (file, kind, payload text).
fn fixture_payloads() -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("events"))
        .expect("events/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sqs-"))
        })
        .collect();
    files.sort();
    for file in files {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for r in doc["Records"].as_array().expect("Records") {
            let body = r["body"].as_str().unwrap_or_default();
            let mut kind = r["messageAttributes"]["kind"]["stringValue"]
                .as_str()
                .map(str::to_owned);
            let mut payload = body.to_owned();
            if let Ok(envelope) = serde_json::from_str::<Value>(body)
                && envelope["Type"] == "Notification"
            {
                payload = envelope["Message"].as_str().unwrap_or_default().to_owned();
                if let Some(k) = envelope["MessageAttributes"]["kind"]["Value"].as_str() {
                    kind = Some(k.to_owned());
                }
            }
            out.push((name.clone(), kind, payload));
        }
    }
    out
}

#[test]
fn the_fixtures_match_their_schemas_and_the_poison_ones_do_not() {
    // GIVEN the schemas directory and every SQS fixture
    let schemas = Schemas::load(&root().join("schemas")).expect("schemas load");
    assert!(schemas.knows("order.placed"));
    let mut checked = 0;
    let mut refused = Vec::new();

    // WHEN each order.placed payload is checked
    for (file, kind, payload) in fixture_payloads() {
        if kind.as_deref() != Some("order.placed") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(&payload) else {
            refused.push((file, "not JSON".to_owned()));
            continue;
        };
        let violations = schemas
            .check("order.placed", &value)
            .expect("a schema for the kind");
        checked += 1;
        if !violations.is_empty() {
            let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
            refused.push((file, text.join("; ")));
        }
    }

    // THEN only the poison fixture's three bad records are refused, each with its path
    assert_eq!(
        checked, 18,
        "every JSON order.placed payload of the fixtures"
    );
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused.iter().all(|(f, _)| f == "sqs-poison.json"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|(_, why)| why.starts_with("/amount_cents:")),
        "a zero amount: {refused:?}"
    );
    assert!(
        refused.iter().any(|(_, why)| why.contains("/order_id:")),
        "a number for an id: {refused:?}"
    );
    assert!(
        schemas.check("order.cancelled", &Value::Null).is_none(),
        "no schema, no verdict"
    );
}
