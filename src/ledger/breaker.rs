//! Circuit breakers' shared state: one item per (consumer, dependency) under the partition
//! [`BREAKER_PARTITION`], moved only by conditional writes, so every execution environment of
//! a consumer sees one breaker and exactly one of them runs the half-open probe.
//!
//! ```text
//! CLOSED ──trip──▶ OPEN ──cool-down over, probe claimed──▶ HALF_OPEN ──probe ok──▶ CLOSED
//!                   ▲                                           │
//!                   └────────── probe failed (cool-down ×2) ────┘
//! ```
//!
//! `opens` counts the CLOSED → OPEN transitions, so a reader that looks now and then (the
//! task monitor's sweep) knows an episode happened even when it opened and closed between two
//! looks.

use super::item::{Item, n, number, s, string, written};
use super::{Ledger, LedgerError};

/// The partition of the ledger table that holds the breakers.
pub const BREAKER_PARTITION: &str = "#breaker";

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Records run.
    Closed,
    /// Records are held until the cool-down ends.
    Open,
    /// One probe runs; the rest are held.
    HalfOpen,
}

impl BreakerState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CLOSED" => Self::Closed,
            "OPEN" => Self::Open,
            "HALF_OPEN" => Self::HalfOpen,
            _ => return None,
        })
    }
}

/// One breaker as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Breaker {
    /// The consumer whose records it holds.
    pub consumer: String,
    /// What failed: a host, a partner API, or the consumer itself.
    pub dependency: String,
    /// The Lambda function that runs the consumer, when known (its event source mappings are
    /// paused while the breaker is open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Where it stands.
    pub state: BreakerState,
    /// While open: when the cool-down ends, in ms since the epoch.
    pub open_until_ms: u64,
    /// The current cool-down.
    pub cooldown_ms: u64,
    /// While half-open: until when the probe's claim holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_until_ms: Option<u64>,
    /// Who runs the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prober: Option<String>,
    /// How many times it has opened from closed.
    pub opens: u64,
    /// When it last opened from closed, in ms since the epoch.
    pub opened_at_ms: u64,
    /// The failure that opened it, or the probe's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last transition, in ms since the epoch.
    pub updated_at_ms: u64,
}

impl Breaker {
    /// Whether a probe may be claimed at `now_ms`: open with its cool-down over, or half-open
    /// with a probe whose claim ran out (its invocation died).
    pub fn probe_due(&self, now_ms: u64) -> bool {
        match self.state {
            BreakerState::Open => self.open_until_ms <= now_ms,
            BreakerState::HalfOpen => self.probe_until_ms.unwrap_or(0) <= now_ms,
            BreakerState::Closed => false,
        }
    }
}

fn sort_key(consumer: &str, dependency: &str) -> String {
    format!("{consumer}#{dependency}")
}

fn breaker(item: &Item) -> Result<Breaker, LedgerError> {
    let field = |name: &str| {
        string(item, name)
            .ok_or_else(|| LedgerError::corrupt("Query", format!("breaker item without {name}")))
    };
    let state = field("state")?;
    Ok(Breaker {
        consumer: field("consumer")?,
        dependency: field("dependency")?,
        function: string(item, "function"),
        state: BreakerState::parse(&state).ok_or_else(|| {
            LedgerError::corrupt("Query", format!("breaker in unknown state {state}"))
        })?,
        open_until_ms: number(item, "open_until").unwrap_or(0),
        cooldown_ms: number(item, "cooldown").unwrap_or(0),
        probe_until_ms: number(item, "probe_until"),
        prober: string(item, "prober"),
        opens: number(item, "opens").unwrap_or(0),
        opened_at_ms: number(item, "opened_at").unwrap_or(0),
        last_error: string(item, "last_error"),
        updated_at_ms: number(item, "updated_at").unwrap_or(0),
    })
}

/// Errors are cut to this many characters on the item: it stays under one write unit.
const ERROR_CHARS: usize = 300;

fn short(error: &str) -> String {
    error.chars().take(ERROR_CHARS).collect()
}

impl Ledger {
    /// The breakers of `consumer`, or every breaker when `None`, read consistently.
    ///
    /// # Errors
    /// When DynamoDB does not answer or an item is malformed.
    pub async fn breakers(&self, consumer: Option<&str>) -> Result<Vec<Breaker>, LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .expression_attribute_values(":pk", s(BREAKER_PARTITION));
        query = match consumer {
            Some(c) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(format!("{c}#"))),
            None => query.key_condition_expression("pk = :pk"),
        };
        super::reads::all_items(query)
            .await?
            .iter()
            .map(breaker)
            .collect()
    }

    fn breaker_update(
        &self,
        consumer: &str,
        dependency: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.update(BREAKER_PARTITION, &sort_key(consumer, dependency))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
    }

    /// Opens the breaker if it is closed (or new), for `cooldown_ms`. Returns whether this
    /// call opened it: `false` when another environment did first.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn open_breaker(
        &self,
        consumer: &str,
        dependency: &str,
        function: Option<&str>,
        cooldown_ms: u64,
        error: &str,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let mut expression = String::from(
            "SET #state = :open, consumer = :consumer, dependency = :dependency, \
             open_until = :until, cooldown = :cooldown, last_error = :error, \
             opens = if_not_exists(opens, :zero) + :one, opened_at = :now, updated_at = :now, \
             expires_at = :ttl",
        );
        if function.is_some() {
            expression.push_str(", #function = :function");
        }
        expression.push_str(" REMOVE probe_until, prober");
        let mut update = self
            .breaker_update(consumer, dependency)
            .update_expression(expression)
            .condition_expression("attribute_not_exists(pk) OR #state = :closed")
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":closed", s(BreakerState::Closed.as_str()))
            .expression_attribute_values(":consumer", s(consumer))
            .expression_attribute_values(":dependency", s(dependency))
            .expression_attribute_values(":until", n(now + cooldown_ms))
            .expression_attribute_values(":cooldown", n(cooldown_ms))
            .expression_attribute_values(":error", s(short(error)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", self.expires_at(now));
        if let Some(f) = function {
            update = update
                .expression_attribute_names("#function", "function")
                .expression_attribute_values(":function", s(f));
        }
        written(update.send().await)
    }

    /// Claims the half-open probe for `prober` until `probe_until_ms`: only one environment
    /// wins, and only once the cool-down is over (or the last probe's claim ran out).
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn claim_probe(
        &self,
        consumer: &str,
        dependency: &str,
        prober: &str,
        probe_until_ms: u64,
    ) -> Result<bool, LedgerError> {
        let update = self
            .breaker_update(consumer, dependency)
            .update_expression(
                "SET #state = :half, prober = :prober, probe_until = :probe_until, updated_at = :now",
            )
            .condition_expression(
                "(#state = :open AND open_until <= :now) OR (#state = :half AND probe_until <= :now)",
            )
            .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
            .expression_attribute_values(":half", s(BreakerState::HalfOpen.as_str()))
            .expression_attribute_values(":prober", s(prober))
            .expression_attribute_values(":probe_until", n(probe_until_ms));
        written(update.send().await)
    }

    /// The probe's verdict: closes the breaker (`reopen_ms` `None`) or opens it again for
    /// `reopen_ms`. Only the probe's claimant moves it.
    ///
    /// # Errors
    /// When DynamoDB does not answer.
    pub async fn settle_probe(
        &self,
        consumer: &str,
        dependency: &str,
        prober: &str,
        reopen_ms: Option<(u64, &str)>,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_ms();
        let update = self
            .breaker_update(consumer, dependency)
            .condition_expression("#state = :half AND prober = :prober")
            .expression_attribute_values(":half", s(BreakerState::HalfOpen.as_str()))
            .expression_attribute_values(":prober", s(prober));
        let update = match reopen_ms {
            None => update
                .update_expression(
                    "SET #state = :closed, updated_at = :now REMOVE probe_until, prober",
                )
                .expression_attribute_values(":closed", s(BreakerState::Closed.as_str())),
            Some((cooldown, error)) => update
                .update_expression(
                    "SET #state = :open, open_until = :until, cooldown = :cooldown, \
                     last_error = :error, updated_at = :now REMOVE probe_until, prober",
                )
                .expression_attribute_values(":open", s(BreakerState::Open.as_str()))
                .expression_attribute_values(":until", n(now + cooldown))
                .expression_attribute_values(":cooldown", n(cooldown))
                .expression_attribute_values(":error", s(short(error))),
        };
        written(update.send().await)
    }
}
