//! The one configuration reader: typed getters over the environment, read once at cold start.
//!
//! Every function, the CLI and the libraries read their settings through [`Env`]; nothing
//! else reads `std::env`. A variable that is set but does not parse is a [`ConfigError`]
//! naming the variable, its value and the form expected, so a cold start fails fast with a
//! message that says what to fix, rather than running on a silent default. A variable set to
//! an empty string counts as unset, as CloudFormation leaves optional parameters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// A configuration variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The variable.
    pub variable: String,
    /// Its value, when it was set.
    pub value: Option<String>,
    /// The form expected.
    pub expected: String,
    /// What the parser said, when it said something.
    pub problem: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value:?}: expected {}", self.variable, self.expected)?,
            None => write!(
                f,
                "{} is not set: expected {}",
                self.variable, self.expected
            )?,
        }
        match &self.problem {
            Some(problem) => write!(f, " ({problem})"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// `variable`, set to `value`, is not `expected`.
    pub fn invalid(
        variable: &str,
        value: impl Into<String>,
        expected: impl Into<String>,
        problem: Option<String>,
    ) -> Self {
        Self {
            variable: variable.to_owned(),
            value: Some(value.into()),
            expected: expected.into(),
            problem,
        }
    }

    /// `variable` is required and not set.
    pub fn missing(variable: &str, expected: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            value: None,
            expected: expected.into(),
            problem: None,
        }
    }
}

impl From<ConfigError> for lambda_runtime::Diagnostic {
    fn from(e: ConfigError) -> Self {
        Self {
            error_type: "Mailroom.Config".to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// The consumer's own settings: a JSON object of strings, each read as a variable of that
/// name unless the variable is set itself. The consumer definition (`templates/consumer.yaml`)
/// passes a consumer's settings this way, since a nested template's environment cannot take
/// a map from its parent.
pub const SETTINGS: &str = "MAILROOM_SETTINGS";

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;

/// Typed getters over a source of variables: the process environment, or a map in tests.
pub struct Env<'a> {
    get: Lookup<'a>,
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            get: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// Exactly these variables, for tests.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self {
            get: Box::new(move |k| map.get(k).cloned()),
        }
    }
}

impl<'a> Env<'a> {
    /// Variables from `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String> + Send + Sync + 'a) -> Self {
        Self { get: Box::new(get) }
    }

    /// The value exactly as set, empty included, for the few settings where empty means
    /// something of its own.
    pub fn raw(&self, variable: &str) -> Option<String> {
        self.lookup(variable)
    }

    /// A variable as set, else as the consumer's settings ([`SETTINGS`]) give it.
    fn lookup(&self, variable: &str) -> Option<String> {
        (self.get)(variable).or_else(|| {
            let settings = (self.get)(SETTINGS)?;
            match serde_json::from_str::<serde_json::Value>(&settings)
                .ok()?
                .get(variable)?
            {
                serde_json::Value::String(s) => Some(s.clone()),
                other if other.is_number() || other.is_boolean() => Some(other.to_string()),
                _ => None,
            }
        })
    }

    /// Checks that [`SETTINGS`], when set, is a JSON object of strings (numbers and booleans
    /// are read as their text), so a typo in a template fails the cold start, not one lookup.
    ///
    /// # Errors
    /// When it is set and is anything else.
    pub fn check_settings(&self) -> Result<(), ConfigError> {
        let Some(text) = (self.get)(SETTINGS).filter(|t| !t.trim().is_empty()) else {
            return Ok(());
        };
        let expected = "a JSON object of strings, such as {\"NOTIFIER_FORMAT\": \"json\"}";
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => match map
                .iter()
                .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
            {
                None => Ok(()),
                Some((k, _)) => Err(ConfigError::invalid(
                    SETTINGS,
                    text.clone(),
                    expected,
                    Some(format!("`{k}` is not a string")),
                )),
            },
            Ok(_) => Err(ConfigError::invalid(SETTINGS, text.clone(), expected, None)),
            Err(e) => Err(ConfigError::invalid(
                SETTINGS,
                text.clone(),
                expected,
                Some(e.to_string()),
            )),
        }
    }

    /// The value, trimmed; `None` when unset or empty.
    pub fn string(&self, variable: &str) -> Option<String> {
        self.lookup(variable)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value, which must be set.
    ///
    /// # Errors
    /// When it is unset or empty.
    pub fn required(&self, variable: &str, expected: &str) -> Result<String, ConfigError> {
        self.string(variable)
            .ok_or_else(|| ConfigError::missing(variable, expected))
    }

    /// A comma-separated list, each item trimmed, empty items dropped; empty when unset.
    pub fn list(&self, variable: &str) -> Vec<String> {
        self.string(variable)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value parsed by `T::from_str`; `expected` names the form in the error.
    ///
    /// # Errors
    /// When it is set and does not parse.
    pub fn parsed<T>(&self, variable: &str, expected: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.string(variable)
            .map(|value| {
                value.parse::<T>().map_err(|e| {
                    ConfigError::invalid(variable, value.as_str(), expected, Some(e.to_string()))
                })
            })
            .transpose()
    }

    /// A whole number.
    ///
    /// # Errors
    /// When it is set and is not a whole number.
    pub fn number(&self, variable: &str) -> Result<Option<u64>, ConfigError> {
        self.parsed(variable, "a whole number")
    }

    /// A whole number of at least 1.
    ///
    /// # Errors
    /// When it is set and is not a whole number of at least 1.
    pub fn positive(&self, variable: &str) -> Result<Option<u64>, ConfigError> {
        match self.number(variable)? {
            Some(0) => Err(ConfigError::invalid(
                variable,
                "0",
                "a whole number of at least 1",
                None,
            )),
            n => Ok(n),
        }
    }

    /// A whole number of seconds.
    ///
    /// # Errors
    /// When it is set and is not a whole number.
    pub fn seconds(&self, variable: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(variable)?.map(Duration::from_secs))
    }

    /// A whole number of milliseconds.
    ///
    /// # Errors
    /// When it is set and is not a whole number.
    pub fn millis(&self, variable: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(variable)?.map(Duration::from_millis))
    }

    /// A duration with a unit: `90s`, `5m`, `2h`, `1d` (a bare number is seconds).
    ///
    /// # Errors
    /// When it is set and is not such a duration.
    pub fn duration(&self, variable: &str) -> Result<Option<Duration>, ConfigError> {
        self.string(variable)
            .map(|value| {
                parse_duration(&value).ok_or_else(|| {
                    ConfigError::invalid(
                        variable,
                        value.as_str(),
                        "a duration like 90s, 5m or 2h",
                        None,
                    )
                })
            })
            .transpose()
    }

    /// A comma-separated list of durations (`5m,10m,45m`).
    ///
    /// # Errors
    /// When an item is not a duration.
    pub fn durations(&self, variable: &str) -> Result<Option<Vec<Duration>>, ConfigError> {
        let Some(value) = self.string(variable) else {
            return Ok(None);
        };
        value
            .split(',')
            .map(|item| {
                parse_duration(item.trim()).ok_or_else(|| {
                    ConfigError::invalid(
                        variable,
                        value.as_str(),
                        "durations like 5m,10m,45m",
                        Some(format!("{:?} is not a duration", item.trim())),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `true` or `false` (also `1`/`0`, `on`/`off`, `yes`/`no`, any case).
    ///
    /// # Errors
    /// When it is set and is none of those.
    pub fn flag(&self, variable: &str) -> Result<Option<bool>, ConfigError> {
        self.string(variable)
            .map(|value| match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => Ok(true),
                "false" | "0" | "off" | "no" => Ok(false),
                _ => Err(ConfigError::invalid(
                    variable,
                    value.as_str(),
                    "true or false",
                    None,
                )),
            })
            .transpose()
    }

    /// One of `choices`, exactly.
    ///
    /// # Errors
    /// When it is set and is none of them.
    pub fn choice(
        &self,
        variable: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        self.string(variable)
            .map(|value| {
                choices
                    .iter()
                    .copied()
                    .find(|c| *c == value)
                    .ok_or_else(|| {
                        let expected = choices
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(" or ");
                        ConfigError::invalid(variable, value.as_str(), expected, None)
                    })
            })
            .transpose()
    }

    /// An `http` or `https` URL.
    ///
    /// # Errors
    /// When it is set and is not such a URL.
    pub fn url(&self, variable: &str) -> Result<Option<String>, ConfigError> {
        self.string(variable)
            .map(|value| {
                let rest = value
                    .strip_prefix("https://")
                    .or_else(|| value.strip_prefix("http://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(value),
                    _ => Err(ConfigError::invalid(
                        variable,
                        value.as_str(),
                        "an http:// or https:// URL",
                        None,
                    )),
                }
            })
            .transpose()
    }

    /// A JSON document, deserialised into `T`; `expected` names its shape in the error.
    ///
    /// # Errors
    /// When it is set and is not such a document.
    pub fn json<T: DeserializeOwned>(
        &self,
        variable: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.string(variable)
            .map(|value| {
                serde_json::from_str(&value).map_err(|e| {
                    ConfigError::invalid(variable, value.as_str(), expected, Some(e.to_string()))
                })
            })
            .transpose()
    }
}

/// `90s`, `5m`, `2h`, `1d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_as_variables_and_a_variable_set_itself_wins() {
        let env = Env::from_pairs(&[
            (
                SETTINGS,
                r#"{"NOTIFIER_FORMAT": "slack", "A": "from settings", "N": 3, "NESTED": {"x": 1}}"#,
            ),
            ("A", "set itself"),
        ]);
        assert_eq!(env.string("NOTIFIER_FORMAT").as_deref(), Some("slack"));
        assert_eq!(env.string("A").as_deref(), Some("set itself"));
        assert_eq!(env.number("N"), Ok(Some(3)));
        assert_eq!(env.string("NESTED"), None);
        assert_eq!(env.string("ABSENT"), None);
        assert!(env.check_settings().is_err(), "a nested object is refused");
        assert_eq!(
            Env::from_pairs(&[(SETTINGS, "{}")]).check_settings(),
            Ok(())
        );
        assert_eq!(Env::from_pairs(&[]).check_settings(), Ok(()));
        let bad = Env::from_pairs(&[(SETTINGS, "{not json")]).check_settings();
        let message = bad.expect_err("refused").to_string();
        assert!(
            message.starts_with("MAILROOM_SETTINGS=\"{not json\": expected a JSON object"),
            "{message}"
        );
        assert!(
            Env::from_pairs(&[(SETTINGS, "[1]")])
                .check_settings()
                .is_err()
        );
    }

    #[test]
    fn unset_and_empty_are_the_same_and_values_are_trimmed() {
        let env = Env::from_pairs(&[("A", "  x "), ("EMPTY", "  ")]);
        assert_eq!(env.string("A").as_deref(), Some("x"));
        assert_eq!(env.string("EMPTY"), None);
        assert_eq!(env.string("UNSET"), None);
        assert_eq!(env.list("A"), ["x"]);
        assert!(env.list("UNSET").is_empty());
    }

    #[test]
    fn every_error_names_the_variable_its_value_and_the_form_expected() {
        let env = Env::from_pairs(&[
            ("N", "many"),
            ("Z", "0"),
            ("D", "5 fortnights"),
            ("F", "maybe"),
            ("C", "yolo"),
            ("U", "ftp://x"),
            ("J", "{"),
        ]);
        let n = env.number("N").expect_err("not a number").to_string();
        assert!(
            n.starts_with("N=\"many\": expected a whole number ("),
            "{n}"
        );
        let z = env.positive("Z").expect_err("zero").to_string();
        assert_eq!(z, "Z=\"0\": expected a whole number of at least 1");
        assert!(
            env.duration("D")
                .expect_err("unit")
                .to_string()
                .contains("5m")
        );
        assert!(
            env.flag("F")
                .expect_err("flag")
                .to_string()
                .contains("true or false")
        );
        let c = env
            .choice("C", &["skip-group", "stop-batch"])
            .expect_err("choice");
        assert_eq!(
            c.to_string(),
            "C=\"yolo\": expected `skip-group` or `stop-batch`"
        );
        assert!(env.url("U").is_err());
        assert!(env.json::<serde_json::Value>("J", "a JSON object").is_err());
        let missing = env
            .required("T", "the ledger table's name")
            .expect_err("missing");
        assert_eq!(
            missing.to_string(),
            "T is not set: expected the ledger table's name"
        );
    }

    #[test]
    fn typed_getters_parse_their_forms() {
        let env = Env::from_pairs(&[
            ("N", "42"),
            ("D", "5m"),
            ("L", "5m, 10m,45m"),
            ("F", "Off"),
            ("U", "https://example.com/hook"),
            ("J", r#"{"a":1}"#),
        ]);
        assert_eq!(env.number("N"), Ok(Some(42)));
        assert_eq!(env.seconds("N"), Ok(Some(Duration::from_secs(42))));
        assert_eq!(env.millis("N"), Ok(Some(Duration::from_millis(42))));
        assert_eq!(env.duration("D"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(
            env.durations("L"),
            Ok(Some(vec![
                Duration::from_secs(300),
                Duration::from_secs(600),
                Duration::from_secs(2700)
            ]))
        );
        assert_eq!(env.flag("F"), Ok(Some(false)));
        assert_eq!(
            env.url("U").ok().flatten().as_deref(),
            Some("https://example.com/hook")
        );
        let j: Option<serde_json::Value> = env.json("J", "an object").expect("json");
        assert_eq!(j, Some(serde_json::json!({"a": 1})));
    }
}
