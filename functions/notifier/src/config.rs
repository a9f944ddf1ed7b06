//! The notifier's configuration, read once at cold start.

use std::time::Duration;

use mailroom_lambda::config::{ConfigError, Env};

/// How a delivery's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"id", "kind", "subject", "published_at", "event"}`.
    Json,
    /// A Slack-compatible incoming-webhook body: `{"text": …}`.
    Slack,
}

/// Where the signing secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An SSM Parameter Store parameter (SecureString), by name.
    Parameter(String),
    /// A Secrets Manager secret, by ARN or name.
    Secret(String),
    /// The value itself, for local runs.
    Plain(String),
}

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The default endpoint (`NOTIFIER_WEBHOOK_URL`); events without a callback go here.
    pub webhook_url: Option<reqwest::Url>,
    /// Body format (`NOTIFIER_FORMAT`: `json` or `slack`).
    pub format: Format,
    /// JSON pointer to a per-event callback URL (`NOTIFIER_CALLBACK_FIELD`, default
    /// `/callback_url`; empty to disable). A callback replaces the default endpoint.
    pub callback_field: Option<String>,
    /// The signing secret (`NOTIFIER_SIGNING_SECRET_PARAMETER`, `NOTIFIER_SIGNING_SECRET_ARN`,
    /// or `NOTIFIER_SIGNING_SECRET` for local runs).
    pub secret: SecretSource,
    /// Whole-request timeout (`NOTIFIER_TIMEOUT_MS`, default 5000).
    pub timeout: Duration,
    /// Connect timeout (`NOTIFIER_CONNECT_TIMEOUT_MS`, default 2000).
    pub connect_timeout: Duration,
    /// Allow http and private addresses (`NOTIFIER_ALLOW_PRIVATE_DESTINATIONS=true`). For
    /// local runs and tests only: it turns the SSRF guard off.
    pub allow_private: bool,
}

impl Config {
    /// Reads the configuration.
    ///
    /// # Errors
    /// When a variable does not parse, or no signing secret is configured.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let webhook_url = env.parsed("NOTIFIER_WEBHOOK_URL", "an http(s) URL")?;
        let format = match env.choice("NOTIFIER_FORMAT", &["json", "slack"])? {
            Some("slack") => Format::Slack,
            _ => Format::Json,
        };
        // Empty has a meaning of its own here: callbacks off.
        let callback_field = match env.raw("NOTIFIER_CALLBACK_FIELD") {
            None => Some("/callback_url".to_owned()),
            Some(f) if f.trim().is_empty() => None,
            Some(f) if f.starts_with('/') => Some(f),
            Some(f) => {
                return Err(ConfigError::invalid(
                    "NOTIFIER_CALLBACK_FIELD",
                    f,
                    "a JSON pointer (/field), or empty to switch callbacks off",
                    None,
                ));
            }
        };
        let secret = if let Some(p) = env.string("NOTIFIER_SIGNING_SECRET_PARAMETER") {
            SecretSource::Parameter(p)
        } else if let Some(a) = env.string("NOTIFIER_SIGNING_SECRET_ARN") {
            SecretSource::Secret(a)
        } else if let Some(v) = env.string("NOTIFIER_SIGNING_SECRET") {
            SecretSource::Plain(v)
        } else {
            return Err(ConfigError::missing(
                "NOTIFIER_SIGNING_SECRET_PARAMETER",
                "an SSM parameter name; or set NOTIFIER_SIGNING_SECRET_ARN, or NOTIFIER_SIGNING_SECRET for local runs",
            ));
        };
        Ok(Self {
            webhook_url,
            format,
            callback_field,
            secret,
            timeout: env
                .millis("NOTIFIER_TIMEOUT_MS")?
                .unwrap_or(Duration::from_millis(5_000)),
            connect_timeout: env
                .millis("NOTIFIER_CONNECT_TIMEOUT_MS")?
                .unwrap_or(Duration::from_millis(2_000)),
            allow_private: env
                .flag("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS")?
                .unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_and_overrides() {
        let c = from(&[("NOTIFIER_SIGNING_SECRET", "s")]).expect("valid");
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.callback_field.as_deref(), Some("/callback_url"));
        assert!(!c.allow_private);
        let c = from(&[
            ("NOTIFIER_SIGNING_SECRET_PARAMETER", "/mailroom/secret"),
            ("NOTIFIER_FORMAT", "slack"),
            ("NOTIFIER_CALLBACK_FIELD", ""),
            ("NOTIFIER_WEBHOOK_URL", "https://hooks.example.com/x"),
        ])
        .expect("valid");
        assert_eq!(c.secret, SecretSource::Parameter("/mailroom/secret".into()));
        assert_eq!(c.format, Format::Slack);
        assert_eq!(c.callback_field, None, "empty disables callbacks");
    }

    #[test]
    fn a_missing_secret_or_bad_value_stops_the_cold_start() {
        assert!(from(&[]).is_err());
        assert!(from(&[("NOTIFIER_SIGNING_SECRET", "s"), ("NOTIFIER_FORMAT", "xml")]).is_err());
        assert!(
            from(&[
                ("NOTIFIER_SIGNING_SECRET", "s"),
                ("NOTIFIER_CALLBACK_FIELD", "cb")
            ])
            .is_err()
        );
        assert!(
            from(&[
                ("NOTIFIER_SIGNING_SECRET", "s"),
                ("NOTIFIER_WEBHOOK_URL", "not a url")
            ])
            .is_err()
        );
    }
}
