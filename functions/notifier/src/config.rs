//! The notifier's configuration, read once at cold start.

use std::time::Duration;

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

/// A setting that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl Config {
    /// Reads the configuration from the environment.
    ///
    /// # Errors
    /// When a variable does not parse, or no signing secret is configured.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`.
    ///
    /// # Errors
    /// When a variable does not parse, or no signing secret is configured.
    pub fn from_lookup(raw: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let err = |variable, problem: String| ConfigError { variable, problem };
        // An empty variable counts as unset, except where empty has a meaning of its own.
        let get = |k: &str| raw(k).filter(|v| !v.is_empty());
        let webhook_url = get("NOTIFIER_WEBHOOK_URL")
            .map(|u| {
                u.parse()
                    .map_err(|e| err("NOTIFIER_WEBHOOK_URL", format!("{e}")))
            })
            .transpose()?;
        let format = match get("NOTIFIER_FORMAT").as_deref() {
            None | Some("json") => Format::Json,
            Some("slack") => Format::Slack,
            Some(other) => {
                return Err(err(
                    "NOTIFIER_FORMAT",
                    format!("`{other}` is not `json` or `slack`"),
                ));
            }
        };
        let callback_field = match raw("NOTIFIER_CALLBACK_FIELD") {
            None => Some("/callback_url".to_owned()),
            Some(f) if f.is_empty() => None,
            Some(f) if f.starts_with('/') => Some(f),
            Some(f) => {
                return Err(err(
                    "NOTIFIER_CALLBACK_FIELD",
                    format!("`{f}` is not a JSON pointer (/field)"),
                ));
            }
        };
        let secret = if let Some(p) = get("NOTIFIER_SIGNING_SECRET_PARAMETER") {
            SecretSource::Parameter(p)
        } else if let Some(a) = get("NOTIFIER_SIGNING_SECRET_ARN") {
            SecretSource::Secret(a)
        } else if let Some(v) = get("NOTIFIER_SIGNING_SECRET") {
            SecretSource::Plain(v)
        } else {
            return Err(err(
                "NOTIFIER_SIGNING_SECRET_PARAMETER",
                "no signing secret: set it, NOTIFIER_SIGNING_SECRET_ARN, or NOTIFIER_SIGNING_SECRET for local runs".into(),
            ));
        };
        let ms = |variable: &'static str, default: u64| -> Result<Duration, ConfigError> {
            get(variable).map_or(Ok(Duration::from_millis(default)), |v| {
                v.parse()
                    .map(Duration::from_millis)
                    .map_err(|e| err(variable, format!("{e}")))
            })
        };
        Ok(Self {
            webhook_url,
            format,
            callback_field,
            secret,
            timeout: ms("NOTIFIER_TIMEOUT_MS", 5_000)?,
            connect_timeout: ms("NOTIFIER_CONNECT_TIMEOUT_MS", 2_000)?,
            allow_private: get("NOTIFIER_ALLOW_PRIVATE_DESTINATIONS").is_some_and(|v| v == "true"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
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
