//! template.yaml provisioned on the emulator: the local pipeline's one source of topology.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_local::Moto;
use mailroom_local::template::{Clients, Template};
use mailroom_ops::monitor::MonitorConfig;

use crate::helpers::{Queue, TestBed, unique};

#[tokio::test]
async fn template_yaml_provisions_the_topology_and_describes_the_functions() {
    // GIVEN template.yaml, decoded with the venv's cfn-lint
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let template = Template::load(&Moto::venv(root), &root.join("template.yaml")).expect("decodes");
    let bed = TestBed::new().await;
    let clients = Clients {
        sqs: bed.sqs.clone(),
        sns: bed.sns.clone(),
        dynamodb: bed.dynamodb.clone(),
    };
    let stack = unique("stack");

    // WHEN it is provisioned with its defaults
    let p = template
        .provision(&clients, &stack, &HashMap::new())
        .await
        .expect("provisions");

    // THEN every queue exists with the template's redrive policy and visibility
    let (notifier_url, notifier_arn) = p.queues["Notifier/Queue"].clone();
    // (a consumer's queues are named STACK-NAME: templates/consumer.yaml)
    assert_eq!(notifier_url.name(), format!("{stack}-notifier"));
    assert_eq!(
        p.outputs["Notifier"]["QueueUrl"],
        notifier_url.as_str(),
        "the nested application's outputs resolve"
    );
    let attrs = bed
        .sqs
        .get_queue_attributes()
        .queue_url(notifier_url.as_str())
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "180");
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).expect("JSON");
    assert_eq!(
        redrive["deadLetterTargetArn"],
        p.queues["Notifier/DLQ"].1.as_str()
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(p.tables["LedgerTable"], format!("{stack}-ledger"));

    // AND the subscriptions fan out with the template's filter policy
    let topic = &p.topics["EventsTopic"];
    for kind in ["order.placed", "order.shipped"] {
        bed.publish_kind(topic, r#"{"order_id":"o-1","amount_cents":100}"#, kind)
            .await;
    }
    let queue = |id: &str| {
        let (url, arn) = p.queues[id].clone();
        Queue { url, arn }
    };
    assert_eq!(
        bed.drain_visible(&queue("Notifier/Queue"), 10).await.len(),
        2
    );
    // The monitor's copies wait out the registration delay (300 s by default), read from
    // the queue itself.
    let monitor = bed
        .sqs
        .get_queue_attributes()
        .queue_url(queue("MonitorQueue").url.as_str())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes");
    let attribute = |name: aws_sdk_sqs::types::QueueAttributeName| {
        monitor
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        attribute(aws_sdk_sqs::types::QueueAttributeName::DelaySeconds),
        "300"
    );
    assert_eq!(
        attribute(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        "2"
    );
    assert!(
        bed.drain_visible(&queue("MonitorQueue"), 10)
            .await
            .is_empty()
    );
    let example = bed.drain_visible(&queue("Example/Queue"), 10).await;
    assert_eq!(
        example.len(),
        1,
        "the example consumer filters on order.placed"
    );

    // AND the functions are described with their binaries, resolved environments and sources
    let f = |id: &str| {
        p.functions
            .iter()
            .find(|f| f.logical_id == id)
            .unwrap_or_else(|| panic!("{id}"))
    };
    let mut ids: Vec<&str> = p.functions.iter().map(|f| f.logical_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "DlqReplayFunction",
            "Example/Function",
            "IntakeFunction",
            "Notifier/Function",
            "TaskMonitorFunction"
        ],
        "each function once (a nested output's Ref to a function does not describe it twice)"
    );
    let notifier = f("Notifier/Function");
    assert_eq!(notifier.binary, "notifier");
    assert_eq!(
        notifier.environment["MAILROOM_DLQ_URL"],
        p.queues["Notifier/DLQ"].0.as_str()
    );
    assert_eq!(
        notifier.environment["MAILROOM_LEDGER_TABLE"],
        format!("{stack}-ledger")
    );
    assert_eq!(notifier.queues.len(), 1);
    assert_eq!(notifier.queues[0].arn, notifier_arn);
    assert_eq!(notifier.queues[0].batch_size, 10);
    assert!(notifier.queues[0].report_batch_item_failures);
    assert_eq!(
        notifier.timeout_secs, 30,
        "the consumer definition's default"
    );
    // The notifier's own settings travel as MAILROOM_SETTINGS, read as its variables.
    let notifier_env = notifier.environment.clone();
    let env = mailroom_lambda::Env::from_lookup(move |k| notifier_env.get(k).cloned());
    assert_eq!(env.check_settings(), Ok(()));
    assert_eq!(env.string("NOTIFIER_FORMAT").as_deref(), Some("json"));
    assert_eq!(
        env.string("NOTIFIER_SIGNING_SECRET_PARAMETER").as_deref(),
        Some("/mailroom/notifier/signing-secret")
    );
    assert_eq!(env.string("NOTIFIER_WEBHOOK_URL"), None, "empty by default");
    assert_eq!(f("Example/Function").binary, "example-consumer");
    let monitor = f("TaskMonitorFunction");
    assert_eq!(monitor.schedules, vec!["rate(5 minutes)".to_owned()]);
    assert_eq!(monitor.timeout_secs, 60, "its own Timeout");
    let env = monitor.environment.clone();
    let config = MonitorConfig::from_env(&mailroom_lambda::Env::from_lookup(move |k| {
        env.get(k).cloned()
    }))
    .expect("the monitor's env parses");
    assert!(
        config.consumers.is_empty(),
        "no list kept by hand: the consumers are discovered"
    );
    // AND discovery on the events topic finds the two consumers (not the monitor's queue),
    // with their filter policies and DLQs, as the monitor and the replay will.
    let found = mailroom_ops::discovery::discover(&bed.sns, &bed.sqs, topic)
        .await
        .expect("discovered");
    let mut seen: Vec<(String, Option<String>, Option<String>)> = found
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.dlq.as_ref().map(|q| q.name().to_owned()),
                c.filter_policy.clone(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "example-consumer".to_owned(),
                Some(format!("{stack}-example-consumer-dlq")),
                Some(r#"{"kind": ["order.placed"]}"#.to_owned())
            ),
            (
                "notifier".to_owned(),
                Some(format!("{stack}-notifier-dlq")),
                None
            ),
        ]
    );
    let merged = config.with_discovered(&found);
    assert_eq!(merged.consumers.len(), 2);
    assert_eq!(
        merged.dlqs.len(),
        4,
        "two DLQs, the parking lot, the monitor's DLQ"
    );
    let replay = f("DlqReplayFunction");
    assert_eq!(
        replay.environment["MAILROOM_EVENTS_TOPIC_ARN"],
        topic.as_str()
    );
}
