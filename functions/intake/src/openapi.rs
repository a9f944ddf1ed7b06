//! `GET /openapi.json`: the intake's API as an OpenAPI 3.1 document, built from the schemas the
//! binary embeds, so each event kind's request body is its own JSON Schema (2020-12, which
//! OpenAPI 3.1 takes as is) and a new kind is described by the next build with no code change.
//! Producers generate clients from it or read it, as Powertools' event handler serves its own.
//!
//! The answers' schemas are written here; the intake's tests validate real answers against
//! them, so the document cannot drift from what the intake sends.

use mailroom_lambda::schema::Schemas;
use serde_json::{Map, Value, json};

/// An idempotency key or tenant: 1 to 200 visible ASCII characters without `/ : # %`
/// (as `optional_token` checks).
const TOKEN_PATTERN: &str = r#"^[!"$&-.0-9;-~]{1,200}$"#;

/// The OpenAPI document of an intake serving `schemas` at `base_url`, refusing bodies over
/// `max_bytes`, remembering an idempotency key for `key_days` after its task's last write.
pub fn document(schemas: &Schemas, base_url: &str, max_bytes: usize, key_days: u64) -> Value {
    let mut paths = Map::new();
    let mut components = Map::new();
    for kind in schemas.kinds() {
        let Some(schema) = schemas.document(kind) else {
            continue;
        };
        let name = component_name(kind);
        components.insert(name.clone(), schema.clone());
        paths.insert(
            format!("/events/{kind}"),
            post_event(kind, &name, max_bytes, key_days),
        );
    }
    components.insert("Accepted".into(), accepted_schema());
    components.insert("Error".into(), error_schema());
    components.insert("ValidationError".into(), validation_error_schema());
    components.insert("TaskStatus".into(), task_status_schema());
    paths.insert(
        "/tasks/{id}".into(),
        json!({
            "get": {
                "operationId": "getTask",
                "summary": "Where a task stands, per consumer",
                "parameters": [{
                    "name": "id", "in": "path", "required": true,
                    "description": "The task id from the 202 (`tenant:key` percent-encoded as `tenant%3Akey`).",
                    "schema": { "type": "string" }
                }],
                "responses": {
                    "200": json_response("The task and each consumer's state", "#/components/schemas/TaskStatus"),
                    "404": json_response("UNKNOWN: the ledger has never seen this id", "#/components/schemas/TaskStatus"),
                    "502": json_response("The ledger could not be read", "#/components/schemas/Error")
                }
            }
        }),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": { "200": { "description": "The intake's OpenAPI 3.1 document", "content": { "application/json": {} } } }
            }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Mailroom intake",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Hand an event to Mailroom and get an answer at once: `POST /events/{kind}` validates it against its kind's schema, records the task and publishes it; `GET /tasks/{id}` says where it stands.",
        },
        "servers": [{ "url": base_url }],
        "security": [{ "sigv4": [] }],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey", "name": "Authorization", "in": "header",
                    "description": "The Function URL's AWS_IAM auth: requests signed with SigV4 for the `lambda` service, by a principal with lambda:InvokeFunctionUrl.",
                    "x-amazon-apigateway-authtype": "awsSigv4"
                }
            }
        }
    })
}

/// A kind's component: `event.<kind>`, apart from the answers' names whatever the kind is
/// called. OpenAPI component names are `[a-zA-Z0-9._-]+`; other characters become `_`.
fn component_name(kind: &str) -> String {
    let name: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("event.{name}")
}

fn post_event(kind: &str, component: &str, max_bytes: usize, key_days: u64) -> Value {
    let error = "#/components/schemas/Error";
    let retry_after = json!({
        "Retry-After": { "description": "Seconds to wait", "schema": { "type": "integer", "minimum": 1 } }
    });
    let operation_id: String = kind
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    json!({
        "post": {
            "operationId": format!("post{operation_id}"),
            "summary": format!("Hand over a `{kind}` event"),
            "parameters": [
                header("Idempotency-Key", &format!("The producer's key: the task id (with the tenant, `tenant:key`). The same key with the same body is the same task; with another body, 409. Remembered for {key_days} days after the task's last write, so unique for at least that long. Without one, every request is a new task."), &json!({ "type": "string", "pattern": TOKEN_PATTERN })),
                header("Mailroom-Tenant", "The tenant the event belongs to (fair queues, filter policies).", &json!({ "type": "string", "pattern": TOKEN_PATTERN })),
                header("Mailroom-Callback-Url", "Where one signed completion callback goes (Standard Webhooks) when every consumer has succeeded, or one has dead-lettered or parked it.", &json!({ "type": "string", "format": "uri" })),
                header("traceparent", "W3C trace context, carried to the consumers.", &json!({ "type": "string" }))
            ],
            "requestBody": {
                "required": true,
                "description": format!("The event's payload, at most {max_bytes} bytes with its attributes."),
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{component}") } } }
            },
            "responses": {
                "202": {
                    "description": "Accepted: recorded and published",
                    "headers": {
                        "Location": { "description": "The task's status URL", "schema": { "type": "string", "format": "uri" } },
                        "Retry-After": { "description": "About when to look at the status: the age of the consumers' backlog, 1 to 60 s", "schema": { "type": "integer", "minimum": 1 } }
                    },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } }
                },
                "400": json_response("The payload breaks its schema (each violation by JSON pointer), or a header is invalid", "#/components/schemas/ValidationError"),
                "404": json_response("No such event kind", error),
                "409": json_response("The Idempotency-Key was used with another body", error),
                "413": json_response(&format!("Over {max_bytes} bytes"), error),
                "415": json_response("The body or its Content-Type is not JSON", error),
                "429": { "description": "Back-pressure: the consumers' backlog is older than its objective", "headers": retry_after, "content": { "application/json": { "schema": { "$ref": error } } } },
                "503": { "description": "The ledger or SNS cannot be reached: retry with the same Idempotency-Key", "headers": retry_after, "content": { "application/json": { "schema": { "$ref": error } } } }
            }
        }
    })
}

fn header(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "header", "required": false, "description": description, "schema": schema })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": schema } } } })
}

fn accepted_schema() -> Value {
    json!({
        "type": "object",
        "required": ["task_id", "status", "status_url"],
        "properties": {
            "task_id": { "type": "string" },
            "status": { "const": "ACCEPTED" },
            "status_url": { "type": "string", "format": "uri" }
        }
    })
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": { "type": "string" } }
    })
}

fn validation_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": { "type": "string" },
            "violations": {
                "type": "array",
                "description": "Each violation of the kind's schema: the JSON pointer into the payload (`/` for the whole), a colon, what is wrong",
                "items": { "type": "string", "examples": ["/amount_cents: 0 is less than the minimum of 1"] }
            }
        }
    })
}

fn task_status_schema() -> Value {
    let ms = json!({ "type": "integer", "minimum": 0, "description": "ms since the epoch" });
    json!({
        "type": "object",
        "required": ["task_id", "status", "consumers"],
        "properties": {
            "task_id": { "type": "string" },
            "status": { "enum": ["UNKNOWN", "ACCEPTED", "RUNNING", "FAILED", "DEAD_LETTERED", "PARKED", "SUCCEEDED"] },
            "accepted": {
                "type": "object",
                "description": "What the intake accepted (absent for tasks from other producers)",
                "required": ["task_id", "kind", "accepted_at_ms"],
                "properties": {
                    "task_id": { "type": "string" },
                    "kind": { "type": "string" },
                    "tenant": { "type": "string" },
                    "callback_url": { "type": "string" },
                    "accepted_at_ms": ms
                }
            },
            "consumers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["task_id", "consumer", "state", "attempts", "opened_at_ms", "updated_at_ms"],
                    "properties": {
                        "task_id": { "type": "string" },
                        "consumer": { "type": "string" },
                        "state": { "enum": ["RECEIVED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "DEAD_LETTERED", "REPLAYED", "PARKED"] },
                        "attempts": { "type": "integer", "minimum": 0 },
                        "last_error": { "type": "string" },
                        "opened_at_ms": ms,
                        "updated_at_ms": ms,
                        "lease_until_ms": ms
                    }
                }
            }
        }
    })
}
