//! The test bed's moto applies the ledger's UpdateItem expressions directly instead of
//! through moto's tree validators (`_fast_updates` in `moto_server.py`), parses each condition
//! once per shape (`_cached_conditions`), writes item answers as JSON directly
//! (`_plain_json_results`), and hands anything else to moto's own code. The same conversation
//! against that server and against moto's own code must leave the same items and give the same
//! answers and errors: every write the ledger makes, in the orders a task meets them, its reads,
//! the expressions the fast path must refuse (undefined placeholders, reserved words, key
//! attributes, an attribute named twice, types that do not fit an index, arithmetic on a
//! string, a missing operand, placeholders defined and not used), and conditions of every kind, the same ones again with other
//! values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use mailroom_lambda::clock::ManualClock;
use mailroom_lambda::ledger::{Acceptance, Ledger};
use mailroom_local::{self as local, Moto};

use crate::helpers::{endpoint, unique};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn sorted(item: &std::collections::HashMap<String, AttributeValue>) -> String {
    format!("{:?}", item.iter().collect::<BTreeMap<_, _>>())
}

/// One raw UpdateItem on `t/c`: its answer (the attributes it returned) or its error.
async fn update(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    expression: &str,
    names: &[(&str, &str)],
    values: &[(&str, AttributeValue)],
    condition: Option<&str>,
) -> String {
    let mut call = db
        .update_item()
        .table_name(table)
        .key("pk", s("t"))
        .key("sk", s("c"))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_owned))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (k, v) in names {
        call = call.expression_attribute_names(*k, *v);
    }
    for (k, v) in values {
        call = call.expression_attribute_values(*k, v.clone());
    }
    match call.send().await {
        Ok(out) => format!(
            "{expression}: ok {}",
            sorted(&out.attributes.unwrap_or_default())
        ),
        Err(e) => {
            let old = match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    c.item.as_ref().map(sorted).unwrap_or_default()
                }
                _ => String::new(),
            };
            format!(
                "{expression}: {} {} {old}",
                e.code().unwrap_or("no code"),
                e.message().unwrap_or("no message")
            )
        }
    }
}

async fn conversation(endpoint: &str) -> Vec<String> {
    let db = aws_sdk_dynamodb::Client::new(&local::emulator_config(endpoint).await);
    let table = unique("updates");
    local::create_table(&db, &table).await.expect("table");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let ledger = Ledger::new(db.clone(), &table).with_clock(clock.clone());
    let mut seen = Vec::new();
    let mut say = |what: &str, result: String| seen.push(format!("{what}: {result}"));

    // The ledger's writes, as a task meets them.
    say(
        "register",
        format!("{:?}", ledger.register("t1", "c1", Some(5)).await),
    );
    say(
        "register again",
        format!("{:?}", ledger.register("t1", "c1", None).await),
    );
    say(
        "acquire a",
        format!(
            "{:?}",
            ledger
                .acquire("t1", "c1", "a", 1_700_000_060_000, None)
                .await
        ),
    );
    say(
        "acquire b, held",
        format!(
            "{:?}",
            ledger
                .acquire("t1", "c1", "b", 1_700_000_060_000, None)
                .await
        ),
    );
    say(
        "acquire a again",
        format!(
            "{:?}",
            ledger
                .acquire("t1", "c1", "a", 1_700_000_060_000, None)
                .await
        ),
    );
    say(
        "fail a",
        format!("{:?}", ledger.fail("t1", "c1", "a", "HTTP 503").await),
    );
    clock.advance(Duration::from_secs(90));
    say(
        "acquire b",
        format!(
            "{:?}",
            ledger
                .acquire("t1", "c1", "b", 1_700_000_200_000, Some(7))
                .await
        ),
    );
    say("succeed", format!("{:?}", ledger.succeed("t1", "c1").await));
    say(
        "acquire after success",
        format!(
            "{:?}",
            ledger
                .acquire("t1", "c1", "c", 1_700_000_300_000, None)
                .await
        ),
    );
    say(
        "acquire new",
        format!(
            "{:?}",
            ledger
                .acquire("t2", "c1", "a", 1_700_000_300_000, None)
                .await
        ),
    );
    say(
        "dead letter",
        format!(
            "{:?}",
            ledger.dead_letter("t2", "c1", "poison", Some("a")).await
        ),
    );
    say(
        "replayed",
        format!("{:?}", ledger.replayed("t2", "c1").await),
    );
    say(
        "park",
        format!("{:?}", ledger.park("t3", "c1", "no handler").await),
    );
    let acceptance = Acceptance {
        task_id: "t4".into(),
        kind: "order.placed".into(),
        tenant: Some("acme".into()),
        callback_url: Some("http://127.0.0.1:9/cb".into()),
        body_sha256: "ab".repeat(32),
        accepted_at_ms: 1_700_000_000_000,
        callback_done: false,
    };
    say("accept", format!("{:?}", ledger.accept(&acceptance).await));
    say(
        "accept again",
        format!("{:?}", ledger.accept(&acceptance).await),
    );
    let other = Acceptance {
        body_sha256: "cd".repeat(32),
        ..acceptance.clone()
    };
    say(
        "accept other body",
        format!("{:?}", ledger.accept(&other).await),
    );
    say(
        "callback",
        format!("{:?}", ledger.callback_sent("t4", "SUCCEEDED").await),
    );
    say(
        "callback again",
        format!("{:?}", ledger.callback_sent("t4", "FAILED").await),
    );

    // Reads, whose answers moto writes as JSON itself or through its serializer.
    say("get", format!("{:?}", ledger.get("t1", "c1").await));
    say("get nothing", format!("{:?}", ledger.get("t9", "c1").await));
    say("task", format!("{:?}", ledger.task("t1").await));
    say("task nothing", format!("{:?}", ledger.task("t9").await));
    say("story", format!("{:?}", ledger.story("t4").await));

    // Simple expressions the fast path applies, and the ones it must leave to moto.
    let v = || (":v", s("x"));
    let one = || (":one", n(1));
    for (expression, names, values, condition) in [
        (
            "SET a = if_not_exists(a, :zero) + :one",
            vec![],
            vec![(":zero", n(0)), one()],
            None,
        ),
        (
            "SET a = if_not_exists(a, :zero) + :one",
            vec![],
            vec![(":zero", n(0)), one()],
            None,
        ),
        (
            "set b = a, #c = :v remove d",
            vec![("#c", "c")],
            vec![v()],
            None,
        ),
        (
            "SET b = :v",
            vec![],
            vec![v()],
            Some("attribute_not_exists(pk)"),
        ),
        ("SET #nope = :v", vec![], vec![v()], None),
        ("SET a = :missing", vec![], vec![v()], None),
        ("SET status = :v", vec![], vec![v()], None),
        ("SET sk = :v", vec![], vec![v()], None),
        ("REMOVE pk", vec![], vec![], None),
        ("SET e = :v, e = :v", vec![], vec![v()], None),
        ("SET e = :v REMOVE e", vec![], vec![v()], None),
        ("SET open_shard = :one", vec![], vec![one()], None),
        ("SET opened_at = :v", vec![], vec![v()], None),
        (
            "SET open_shard = :empty",
            vec![],
            vec![(":empty", s(""))],
            None,
        ),
        ("SET a = :v + :one", vec![], vec![v(), one()], None),
        ("SET a = nothing + :one", vec![], vec![one()], None),
        ("SET a = b + :one", vec![], vec![one()], None),
        ("SET a = a + :one, f = :v", vec![], vec![one(), v()], None),
        ("SET a = :one SET b = :v", vec![], vec![one(), v()], None),
        ("ADD a :one", vec![], vec![one()], None),
        // An expression seen before (its placeholders listed once), now with a name and a
        // value it does not use, then with none of its own.
        (
            "set b = a, #c = :v remove d",
            vec![("#c", "c"), ("#unused", "u")],
            vec![v()],
            None,
        ),
        (
            "set b = a, #c = :v remove d",
            vec![("#c", "c")],
            vec![v(), one()],
            None,
        ),
        ("set b = a, #c = :v remove d", vec![], vec![], None),
    ] {
        seen.push(update(&db, &table, expression, &names, &values, condition).await);
    }

    // Conditions: moto's parser reads each shape once and later requests reuse its tree with
    // their own values, so the same condition with other values must give other answers.
    // Each runs on the item `t/c` with `a` = 2 and `b` = "x".
    let zero = || (":zero", n(0));
    let two = || (":two", n(2));
    seen.push(
        update(
            &db,
            &table,
            "SET a = :two, b = :v",
            &[],
            &[v(), two()],
            None,
        )
        .await,
    );
    for (condition, values) in [
        ("attribute_exists(pk)", vec![v()]),
        ("attribute_not_exists(pk)", vec![v()]),
        ("a = :two", vec![v(), two()]),
        ("a = :two", vec![v(), (":two", n(3))]),
        ("a <> :two", vec![v(), two()]),
        ("a <> :two", vec![v(), (":two", n(3))]),
        ("a < :two", vec![v(), two()]),
        ("a <= :two", vec![v(), two()]),
        ("a >= :two AND b = :v", vec![v(), two()]),
        ("a >= :two AND b = :v", vec![(":v", s("y")), two()]),
        ("nothing <> :two", vec![v(), two()]),
        ("nothing < :two", vec![v(), two()]),
        ("a = :v", vec![v()]),
        ("NOT a = :two", vec![v(), two()]),
        (
            "(a = :zero OR b = :v) AND attribute_exists(sk)",
            vec![v(), zero()],
        ),
        ("a BETWEEN :zero AND :two", vec![v(), zero(), two()]),
        ("a IN (:zero, :two)", vec![v(), zero(), two()]),
        ("begins_with(b, :v)", vec![v()]),
        ("size(b) > :zero", vec![v(), zero()]),
        ("((a = :two))", vec![v(), two()]),
        ("#undefined = :v", vec![v()]),
        ("a = :missing", vec![v()]),
        ("a = :two", vec![v(), two(), zero()]),
        ("status = :v", vec![v()]),
        (
            "a = :flag",
            vec![v(), (":flag", AttributeValue::Bool(true))],
        ),
    ] {
        let line = update(
            &db,
            &table,
            "SET touched = :v",
            &[],
            &values,
            Some(condition),
        )
        .await;
        seen.push(format!("if {condition} {values:?}: {line}"));
    }

    // The item as the conditions left it, read back with its consumed capacity.
    let got = db
        .get_item()
        .table_name(&table)
        .key("pk", s("t"))
        .key("sk", s("c"))
        .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
        .send()
        .await
        .map(|o| {
            let units = o.consumed_capacity.and_then(|c| c.capacity_units);
            (o.item.as_ref().map(sorted), units)
        });
    seen.push(format!("raw get: {got:?}"));

    let mut items: Vec<String> = db
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("Scan")
        .items()
        .iter()
        .map(sorted)
        .collect();
    items.sort();
    seen.extend(items);
    seen
}

#[tokio::test]
async fn the_test_beds_updates_answer_as_motos_own_code_does() {
    // Issue 12, point 13: moto's tree validators were 46% of the emulator's time.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stock = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_STOCK_DYNAMODB", "1")])
        .expect("moto with its own DynamoDB code");

    let fast = conversation(endpoint()).await;
    let own = conversation(stock.endpoint()).await;
    for (a, b) in fast.iter().zip(&own) {
        assert_eq!(a, b, "the test bed's DynamoDB differs from moto's own");
    }
    assert_eq!(fast.len(), own.len());
    // And the conversation went as a ledger's does, so the two did not agree by both failing.
    let line = |prefix: &str| {
        fast.iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {fast:#?}"))
            .clone()
    };
    assert_eq!(line("register:"), "register: Ok(true)");
    assert_eq!(line("register again:"), "register again: Ok(false)");
    assert!(
        line("acquire b, held:").contains("Err") || line("acquire b, held:").contains("Held"),
        "{fast:#?}"
    );
    assert_eq!(line("succeed:"), "succeed: Ok(())");
    assert_eq!(line("accept:"), "accept: Ok(New)");
    assert_eq!(
        line("accept other body:"),
        "accept other body: Ok(Conflict)"
    );
    assert!(
        line("SET status = :v:").contains("ValidationException"),
        "{fast:#?}"
    );
    assert!(
        line("SET sk = :v:").contains("ValidationException"),
        "{fast:#?}"
    );
    assert!(
        line("SET b = :v:").contains("ConditionalCheckFailedException"),
        "{fast:#?}"
    );
    assert!(
        fast.iter().any(|l| l.contains("\"a\": N(\"2\")")),
        "{fast:#?}"
    );
    // The reused trees took each request's own values.
    let verdicts: Vec<bool> = fast
        .iter()
        .filter(|l| l.starts_with("if a = :two [") || l.starts_with("if a <> :two ["))
        .map(|l| l.contains(": ok "))
        .collect();
    assert_eq!(verdicts, [true, false, false, true, false], "{fast:#?}");
    assert!(line("get:").contains("Some(Entry"), "{fast:#?}");
    assert!(line("story:").contains("accepted: Some"), "{fast:#?}");
}
