//! `mailroom local`'s event source mappings through the Lambda SDK, as the task monitor
//! pauses and resumes them: the pollers read the state the API writes.

use std::sync::Arc;

use mailroom_local::lambda_api::{LambdaApi, Mappings};
use mailroom_ops::monitor::{EventSources, LambdaMappings};

fn client(url: &str) -> aws_sdk_lambda::Client {
    let aws = mailroom_lambda::aws::emulator(url, "us-east-1");
    aws_sdk_lambda::Client::new(&aws)
}

#[tokio::test]
async fn the_monitor_pauses_and_resumes_a_functions_mappings_through_the_lambda_api() {
    // GIVEN two functions' mappings served by the local Lambda API
    let mappings = Arc::new(Mappings::default());
    let notifier = mappings.add(
        "Notifier/Function",
        "arn:aws:sqs:us-east-1:123456789012:app-notifier",
        10,
    );
    let other = mappings.add(
        "Example/Function",
        "arn:aws:sqs:us-east-1:123456789012:app-example",
        10,
    );
    let api = LambdaApi::serve(mappings.clone()).await.expect("serves");
    let sdk = client(api.url());
    let sources = LambdaMappings::new(sdk.clone());

    // WHEN the monitor pauses the notifier's, and asks again
    let changed = sources
        .set_enabled("Notifier/Function", false)
        .await
        .expect("paused");
    let again = sources
        .set_enabled("Notifier/Function", false)
        .await
        .expect("paused again");

    // THEN only its mapping is disabled, once, and the SDK reads it back as Disabled
    assert_eq!((changed, again), (1, 0));
    assert!(!notifier.is_enabled());
    assert!(other.is_enabled());
    let listed = sdk
        .list_event_source_mappings()
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:Notifier/Function")
        .send()
        .await
        .expect("list");
    let states: Vec<_> = listed
        .event_source_mappings()
        .iter()
        .map(|m| m.state().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(states, ["Disabled"]);

    // WHEN it resumes them
    sources
        .set_enabled("Notifier/Function", true)
        .await
        .expect("resumed");
    // THEN the pollers may take batches again
    assert!(notifier.is_enabled());

    // AND an unknown mapping is the Lambda API's ResourceNotFoundException, not a 500
    let e = sdk
        .get_event_source_mapping()
        .uuid("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .expect_err("unknown");
    assert!(
        e.as_service_error()
            .is_some_and(aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingError::is_resource_not_found_exception),
        "{e:?}"
    );
}
