//! The subset of SNS subscription filter policies the monitor evaluates, on message
//! attributes, to know which consumers a published task is expected to reach.
//!
//! Supported: exact strings and numbers, `prefix`, `suffix`, `anything-but` (values or a
//! prefix), `exists`. A policy using anything else is refused at cold start: guessing would
//! register tasks for consumers that never see them (false alerts) or miss some (silence).

use serde_json::Value;

use mailroom_lambda::message::Message;

/// One condition on one attribute; an attribute matches if any of its conditions does.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Exact(String),
    Number(f64),
    Prefix(String),
    Suffix(String),
    AnythingBut(Vec<String>),
    AnythingButPrefix(String),
    Exists(bool),
}

/// A parsed filter policy (`FilterPolicyScope: MessageAttributes`). Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterPolicy(Vec<(String, Vec<Rule>)>);

impl FilterPolicy {
    /// Parses a policy from its JSON.
    ///
    /// # Errors
    /// When the policy is not an object of arrays, or uses an operator outside the subset.
    pub fn parse(policy: &Value) -> Result<Self, String> {
        let Value::Object(map) = policy else {
            return Err("a filter policy is a JSON object".into());
        };
        let mut out = Vec::with_capacity(map.len());
        for (attribute, conditions) in map {
            let Value::Array(conditions) = conditions else {
                return Err(format!("`{attribute}`: expected an array of conditions"));
            };
            let rules = conditions
                .iter()
                .map(|c| rule(c).map_err(|e| format!("`{attribute}`: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            out.push((attribute.clone(), rules));
        }
        Ok(Self(out))
    }

    /// Whether a message with these attributes passes the policy.
    pub fn matches<T>(&self, message: &Message<T>) -> bool {
        self.0.iter().all(|(name, rules)| {
            let value = message.attribute(name).and_then(|a| a.as_str());
            rules.iter().any(|r| r.matches(value))
        })
    }
}

fn rule(condition: &Value) -> Result<Rule, String> {
    match condition {
        Value::String(s) => Ok(Rule::Exact(s.clone())),
        Value::Number(n) => n
            .as_f64()
            .map(Rule::Number)
            .ok_or_else(|| format!("number {n} out of range")),
        Value::Object(op) if op.len() == 1 => {
            let (name, arg) = op.iter().next().ok_or("empty operator")?;
            match (name.as_str(), arg) {
                ("prefix", Value::String(p)) => Ok(Rule::Prefix(p.clone())),
                ("suffix", Value::String(p)) => Ok(Rule::Suffix(p.clone())),
                ("exists", Value::Bool(b)) => Ok(Rule::Exists(*b)),
                ("anything-but", Value::String(v)) => Ok(Rule::AnythingBut(vec![v.clone()])),
                ("anything-but", Value::Array(vs)) => vs
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(format!("anything-but: unsupported value {other}")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Rule::AnythingBut),
                ("anything-but", Value::Object(inner)) => match inner.get("prefix") {
                    Some(Value::String(p)) if inner.len() == 1 => {
                        Ok(Rule::AnythingButPrefix(p.clone()))
                    }
                    _ => Err(format!("unsupported anything-but form {arg}")),
                },
                _ => Err(format!("unsupported operator {condition}")),
            }
        }
        other => Err(format!("unsupported condition {other}")),
    }
}

impl Rule {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Self::Exact(e), Some(v)) => e == v,
            (Self::Number(n), Some(v)) => v.parse::<f64>().is_ok_and(|x| (x - n).abs() < 1e-9),
            (Self::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Self::Suffix(p), Some(v)) => v.ends_with(p.as_str()),
            (Self::AnythingBut(vs), Some(v)) => !vs.iter().any(|x| x == v),
            (Self::AnythingButPrefix(p), Some(v)) => !v.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::{SqsMessage, SqsMessageAttribute};
    use mailroom_lambda::message::TaskIdSource;
    use serde_json::json;

    fn message(attrs: &[(&str, &str)]) -> Message<()> {
        let mut record = SqsMessage::default();
        record.message_id = Some("m".into());
        record.body = Some("{}".into());
        for (k, v) in attrs {
            let mut a = SqsMessageAttribute::default();
            a.data_type = Some("String".into());
            a.string_value = Some((*v).into());
            record.message_attributes.insert((*k).into(), a);
        }
        Message::metadata(record, &TaskIdSource::default())
    }

    #[test]
    fn each_supported_operator_matches_as_sns_does() {
        let p = FilterPolicy::parse(&json!({
            "kind": ["order.placed", {"prefix": "refund."}],
            "region": [{"anything-but": ["eu", "uk"]}],
            "priority": [{"exists": false}, 1]
        }))
        .expect("parses");
        assert!(p.matches(&message(&[("kind", "order.placed"), ("region", "us")])));
        assert!(p.matches(&message(&[
            ("kind", "refund.issued"),
            ("region", "us"),
            ("priority", "1")
        ])));
        assert!(!p.matches(&message(&[("kind", "order.placed"), ("region", "eu")])));
        assert!(!p.matches(&message(&[("kind", "order.shipped"), ("region", "us")])));
        assert!(
            !p.matches(&message(&[("region", "us")])),
            "a missing attribute fails"
        );
        assert!(!p.matches(&message(&[
            ("kind", "order.placed"),
            ("region", "us"),
            ("priority", "2")
        ])));
        assert!(FilterPolicy::default().matches(&message(&[])));
    }

    #[test]
    fn an_unsupported_operator_is_refused_with_its_attribute() {
        let e = FilterPolicy::parse(&json!({"amount": [{"numeric": [">", 10]}]}))
            .expect_err("numeric ranges are outside the subset");
        assert!(e.contains("`amount`"), "{e}");
        assert!(FilterPolicy::parse(&json!(["kind"])).is_err());
    }
}
