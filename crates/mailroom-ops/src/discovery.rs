//! Which consumers this application has, learned from the events topic rather than from lists
//! kept by hand: every SQS subscription of the topic whose queue carries the
//! [`CONSUMER_TAG`] is a consumer, with the subscription's filter policy and raw-delivery
//! setting and the queue's dead-letter queue (its `RedrivePolicy`).
//!
//! The task monitor registers, sweeps and alarms what it finds here, and dlq-replay allows and
//! marks it, so a consumer added to the template is watched and replayable with no edit to
//! either. A queue without the tag (the monitor's own, an audit tap) is not a consumer.
//! Everything found is on the topic this application publishes to: nothing else is touched.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::config::{ConfigError, Env};
use mailroom_lambda::sqs::{QueueUrl, SqsError};

/// The queue tag naming the consumer (its ledger name, `MAILROOM_CONSUMER`).
pub const CONSUMER_TAG: &str = "mailroom:consumer";

/// One consumer, as its subscription and queue describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name in the ledger (the queue's [`CONSUMER_TAG`]).
    pub name: String,
    /// Its queue.
    pub queue: QueueUrl,
    /// Its dead-letter queue, when the queue has a redrive policy.
    pub dlq: Option<QueueUrl>,
    /// The subscription's filter policy (JSON), when it has one.
    pub filter_policy: Option<String>,
    /// Whether the filter policy applies to the message body (`FilterPolicyScope:
    /// MessageBody`) rather than its attributes.
    pub filters_body: bool,
    /// Whether the subscription delivers raw messages (no SNS envelope).
    pub raw: bool,
}

/// Discovery failed; the caller keeps what it found last.
#[derive(Debug, thiserror::Error)]
#[error("discovering the consumers of {topic}: {source}")]
pub struct DiscoveryError {
    topic: String,
    #[source]
    source: SqsError,
}

impl DiscoveryError {
    fn new(topic: &str, source: SqsError) -> Self {
        Self {
            topic: topic.to_owned(),
            source,
        }
    }
}

/// The consumers of `topic_arn`, in subscription order.
///
/// # Errors
/// When SNS or SQS does not answer, or a consumer's queue cannot be read.
pub async fn discover(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
) -> Result<Vec<Consumer>, DiscoveryError> {
    let fail = |e: SqsError| DiscoveryError::new(topic_arn, e);
    let mut subscriptions = Vec::new();
    let mut next = None;
    loop {
        let page = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| fail(SqsError::from_sdk("ListSubscriptionsByTopic", &e)))?;
        subscriptions.extend(page.subscriptions.unwrap_or_default());
        next = page.next_token;
        if next.is_none() {
            break;
        }
    }
    let mut consumers = Vec::new();
    for subscription in subscriptions {
        let (Some("sqs"), Some(queue_arn), Some(arn)) = (
            subscription.protocol.as_deref(),
            subscription.endpoint.as_deref(),
            subscription.subscription_arn.as_deref(),
        ) else {
            continue;
        };
        let queue = queue_url(sqs, queue_arn).await.map_err(fail)?;
        let tags = sqs
            .list_queue_tags()
            .queue_url(queue.as_str())
            .send()
            .await
            .map_err(|e| fail(SqsError::from_sdk("ListQueueTags", &e)))?
            .tags
            .unwrap_or_default();
        let Some(name) = tags.get(CONSUMER_TAG).filter(|n| !n.is_empty()) else {
            continue;
        };
        let attributes = sns
            .get_subscription_attributes()
            .subscription_arn(arn)
            .send()
            .await
            .map_err(|e| fail(SqsError::from_sdk("GetSubscriptionAttributes", &e)))?
            .attributes
            .unwrap_or_default();
        let redrive = sqs
            .get_queue_attributes()
            .queue_url(queue.as_str())
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| fail(SqsError::from_sdk("GetQueueAttributes", &e)))?
            .attributes
            .unwrap_or_default()
            .remove(&QueueAttributeName::RedrivePolicy);
        let dlq_arn = redrive
            .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned));
        let dlq = match dlq_arn {
            Some(arn) => Some(queue_url(sqs, &arn).await.map_err(fail)?),
            None => None,
        };
        consumers.push(Consumer {
            name: name.clone(),
            queue,
            dlq,
            filter_policy: attributes
                .get("FilterPolicy")
                .filter(|p| !p.trim().is_empty())
                .cloned(),
            filters_body: attributes
                .get("FilterPolicyScope")
                .is_some_and(|s| s == "MessageBody"),
            raw: attributes
                .get("RawMessageDelivery")
                .is_some_and(|r| r.eq_ignore_ascii_case("true")),
        });
    }
    Ok(consumers)
}

/// A queue's URL from its ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
async fn queue_url(sqs: &aws_sdk_sqs::Client, arn: &str) -> Result<QueueUrl, SqsError> {
    let mut parts = arn.rsplitn(3, ':');
    let (name, account) = (parts.next().unwrap_or_default(), parts.next());
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(account.map(str::to_owned))
        .send()
        .await
        .map_err(|e| SqsError::from_sdk("GetQueueUrl", &e))?
        .queue_url
        .unwrap_or_default();
    url.parse().map_err(|e: String| SqsError::Permanent {
        operation: "GetQueueUrl",
        message: format!("{arn}: {e}"),
    })
}

/// Discovery on a schedule: what was found is kept for `ttl` (`MAILROOM_DISCOVERY_TTL_SECS`,
/// default 300), and kept past it while the topic cannot be read.
#[derive(Debug)]
pub struct Discovery {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    topic_arn: String,
    ttl: Duration,
    found: Option<(Instant, Vec<Consumer>)>,
}

impl Discovery {
    /// Discovery on `MAILROOM_EVENTS_TOPIC_ARN`; `None` when it is not set (explicit lists
    /// only).
    ///
    /// # Errors
    /// When `MAILROOM_DISCOVERY_TTL_SECS` does not parse.
    pub fn from_env(
        env: &Env<'_>,
        sns: aws_sdk_sns::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Result<Option<Self>, ConfigError> {
        let ttl = env.positive("MAILROOM_DISCOVERY_TTL_SECS")?.unwrap_or(300);
        Ok(env
            .string("MAILROOM_EVENTS_TOPIC_ARN")
            .map(|topic_arn| Self {
                sns,
                sqs,
                topic_arn,
                ttl: Duration::from_secs(ttl),
                found: None,
            }))
    }

    /// The consumers, discovered again when what was found is older than the TTL.
    ///
    /// # Errors
    /// When discovery fails and nothing was found before.
    pub async fn consumers(&mut self) -> Result<&[Consumer], DiscoveryError> {
        let fresh = self
            .found
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < self.ttl);
        if !fresh {
            match discover(&self.sns, &self.sqs, &self.topic_arn).await {
                Ok(found) => self.found = Some((Instant::now(), found)),
                Err(e) if self.found.is_some() => {
                    tracing::warn!(error = %e, "keeping the consumers found last");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.found.as_ref().map_or(&[][..], |(_, c)| c.as_slice()))
    }
}
