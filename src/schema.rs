//! Event payload contracts: one JSON Schema per event kind, in `schemas/<kind>.json`.
//!
//! The schemas are generated from the consumers' Rust types (`schemars`; the example consumer's
//! `tests/schema.rs` keeps `schemas/order.placed.json` in step with `OrderPlaced`). Producers
//! validate against them before publishing ([`crate::publish::Publisher::with_schemas`]), so a
//! payload no consumer can decode is refused at the door with the schema's own error paths,
//! not dead-lettered later.

use std::collections::BTreeMap;
use std::path::Path;

/// The schemas of a directory, by event kind.
#[derive(Debug, Default)]
pub struct Schemas {
    by_kind: BTreeMap<String, Schema>,
}

/// One kind's schema: the document as written, and its compiled validator.
#[derive(Debug)]
struct Schema {
    document: serde_json::Value,
    validator: jsonschema::Validator,
}

/// Why a schema directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file or directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A file is not a valid JSON Schema.
    #[error("{path} is not a valid JSON Schema: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One way a payload breaks its schema: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The JSON pointer into the payload (`/amount_cents`; empty for the whole payload).
    pub path: String,
    /// What the schema says is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

impl Schemas {
    /// Loads every `<kind>.json` in `dir`.
    ///
    /// # Errors
    /// When the directory or a file cannot be read, or a file is not a valid JSON Schema.
    pub fn load(dir: &Path) -> Result<Self, SchemaError> {
        let read = |path: &Path, e: &dyn std::fmt::Display| SchemaError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut documents = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read(dir, &e))? {
            let path = entry.map_err(|e| read(dir, &e))?.path();
            let (Some(kind), Some("json")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|e| read(&path, &e))?;
            documents.push((kind.to_owned(), text));
        }
        let borrowed: Vec<(&str, &str)> = documents
            .iter()
            .map(|(k, t)| (k.as_str(), t.as_str()))
            .collect();
        Self::from_documents(&borrowed).map_err(|e| match e {
            SchemaError::Invalid { path, message } => SchemaError::Invalid {
                path: dir.join(path).display().to_string(),
                message,
            },
            other @ SchemaError::Read { .. } => other,
        })
    }

    /// Schemas given as `(kind, JSON text)` pairs (a function embeds them at build time).
    ///
    /// # Errors
    /// When a text is not JSON or not a valid JSON Schema.
    pub fn from_documents(documents: &[(&str, &str)]) -> Result<Self, SchemaError> {
        let mut by_kind = BTreeMap::new();
        for (kind, text) in documents {
            let invalid = |message: String| SchemaError::Invalid {
                path: format!("{kind}.json"),
                message,
            };
            let schema: serde_json::Value =
                serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
            let validator =
                jsonschema::validator_for(&schema).map_err(|e| invalid(e.to_string()))?;
            by_kind.insert(
                (*kind).to_owned(),
                Schema {
                    document: schema,
                    validator,
                },
            );
        }
        Ok(Self { by_kind })
    }

    /// The kinds with a schema.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.by_kind.keys().map(String::as_str)
    }

    /// Whether `kind` has a schema.
    pub fn knows(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// `kind`'s schema as written (for an API description), when it has one.
    pub fn document(&self, kind: &str) -> Option<&serde_json::Value> {
        self.by_kind.get(kind).map(|s| &s.document)
    }

    /// Checks `payload` against `kind`'s schema: `None` when there is no schema for the kind,
    /// else every violation (empty when it is valid).
    pub fn check(&self, kind: &str, payload: &serde_json::Value) -> Option<Vec<Violation>> {
        let schema = self.by_kind.get(kind)?;
        Some(
            schema
                .validator
                .iter_errors(payload)
                .map(|e| Violation {
                    path: e.instance_path().to_string(),
                    message: e.to_string(),
                })
                .collect(),
        )
    }
}
