//! Resolving the signing secret once, at cold start.

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::config::SecretSource;

/// The secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the signing secret from {source_name}: {message}")]
pub struct SecretError {
    source_name: String,
    message: String,
}

/// Reads the secret from SSM Parameter Store, Secrets Manager, or the environment.
///
/// # Errors
/// When the parameter or secret cannot be read or is empty.
pub async fn resolve(
    source: &SecretSource,
    aws: &aws_config::SdkConfig,
) -> Result<Vec<u8>, SecretError> {
    let fail = |source_name: &str, message: String| SecretError {
        source_name: source_name.to_owned(),
        message,
    };
    let value = match source {
        SecretSource::Plain(v) => Some(v.clone()),
        SecretSource::Parameter(name) => aws_sdk_ssm::Client::new(aws)
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                fail(
                    &format!("SSM parameter {name}"),
                    DisplayErrorContext(e).to_string(),
                )
            })?
            .parameter
            .and_then(|p| p.value),
        SecretSource::Secret(id) => {
            aws_sdk_secretsmanager::Client::new(aws)
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| fail(&format!("secret {id}"), DisplayErrorContext(e).to_string()))?
                .secret_string
        }
    };
    value
        .filter(|v| !v.is_empty())
        .map(String::into_bytes)
        .ok_or_else(|| fail("the configured source", "the value is empty".into()))
}
