//! Creating what template.yaml declares, for local runs and tests: queues and the ledger
//! table. Production creates them with CloudFormation; nothing here ships in a function.

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_lambda::error::describe;
use mailroom_lambda::sqs::{QueueArn, QueueUrl};

/// A resource the emulator would not create.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct ProvisionError {
    /// The API operation.
    pub operation: &'static str,
    /// What went wrong, with the SDK's whole context.
    pub message: String,
}

impl ProvisionError {
    /// An error for `operation` with `message`.
    pub fn new(operation: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            operation,
            message: message.to_string(),
        }
    }
}

/// Creates a queue with `attributes` and returns its URL and ARN.
///
/// # Errors
/// When a call fails or the emulator returns no URL or ARN.
pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<(QueueUrl, QueueArn), ProvisionError> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    let out = req
        .send()
        .await
        .map_err(|e| ProvisionError::new("CreateQueue", describe(&e)))?;
    let url: QueueUrl = out
        .queue_url()
        .ok_or_else(|| ProvisionError::new("CreateQueue", "no QueueUrl"))?
        .parse()
        .map_err(|e| ProvisionError::new("CreateQueue", e))?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(url.as_str())
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ProvisionError::new("GetQueueAttributes", describe(&e)))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| ProvisionError::new("GetQueueAttributes", "no QueueArn"))?
        .parse()
        .map_err(|e| ProvisionError::new("GetQueueAttributes", e))?;
    Ok((url, arn))
}

/// Creates the ledger table as template.yaml declares it: `pk`/`sk`, the sparse
/// `open-by-time` index, on-demand billing and TTL on `expires_at`. For local runs and tests.
///
/// # Errors
/// When a call fails (an existing table is not an error).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ProvisionError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let attr = |name: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .map_err(|e| ProvisionError::new("CreateTable", e.to_string()))
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .map_err(|e| ProvisionError::new("CreateTable", e.to_string()))
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(mailroom_lambda::ledger::OPEN_INDEX)
        .key_schema(key("open_shard", KeyType::Hash)?)
        .key_schema(key("opened_at", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| ProvisionError::new("CreateTable", e.to_string()))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("open_shard", ScalarAttributeType::S)?)
        .attribute_definitions(attr("opened_at", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(index)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(aws_sdk_dynamodb::operation::create_table::CreateTableError::is_resource_in_use_exception) =>
        {
            return Ok(());
        }
        Err(e) => return Err(ProvisionError::new("CreateTable", describe(&e))),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(|e| ProvisionError::new("UpdateTimeToLive", e.to_string()))?,
        )
        .send()
        .await
        .map(drop)
        .map_err(|e| ProvisionError::new("UpdateTimeToLive", describe(&e)))
}
