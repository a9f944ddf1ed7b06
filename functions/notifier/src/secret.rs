//! Resolving the signing secret once, at cold start.

use crate::config::SecretSource;

/// The secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the signing secret from {source_name}: {message}")]
pub struct SecretError {
    source_name: String,
    message: String,
}

/// Reads the secret from SSM Parameter Store, Secrets Manager (through SSM's
/// `/aws/reference/secretsmanager/` path), or the environment.
///
/// # Errors
/// When the parameter or secret cannot be read or is empty.
pub async fn resolve(
    source: &SecretSource,
    aws: &mailroom_lambda::aws::SdkConfig,
) -> Result<Vec<u8>, SecretError> {
    let fail = |source_name: &str, message: String| SecretError {
        source_name: source_name.to_owned(),
        message,
    };
    // Secrets Manager secrets are read through SSM's reference path, so one SDK serves both.
    let parameter = match source {
        SecretSource::Plain(v) => {
            return non_empty(Some(v.clone()))
                .ok_or_else(|| fail("NOTIFIER_SIGNING_SECRET", "the value is empty".into()));
        }
        SecretSource::Parameter(name) => name.clone(),
        SecretSource::Secret(id) => format!("/aws/reference/secretsmanager/{id}"),
    };
    let value = aws_sdk_ssm::Client::new(aws)
        .get_parameter()
        .name(&parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| fail(&parameter, mailroom_lambda::error::describe(&e)))?
        .parameter
        .and_then(|p| p.value);
    non_empty(value).ok_or_else(|| fail(&parameter, "the value is empty".into()))
}

fn non_empty(value: Option<String>) -> Option<Vec<u8>> {
    value.filter(|v| !v.is_empty()).map(String::into_bytes)
}
