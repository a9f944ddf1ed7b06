//! The test bed's moto answers a DynamoDB Query from the partition (base table) or from the
//! index's partition (GSI), not by reading every item (`moto_server.py`). The same
//! conversation against that server and against moto's own code must give the same answers:
//! sparse index membership, partition moves, removals, deletes, paging, order, conditional
//! and batch writes, and transactions.

use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use mailroom_local::{self as local, Moto};

use crate::helpers::{endpoint, unique};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// `pk/sk` of each item, in the order the query returned them.
fn keys(items: &[std::collections::HashMap<String, AttributeValue>]) -> String {
    items
        .iter()
        .map(|i| match (i.get("pk"), i.get("sk")) {
            (Some(AttributeValue::S(p)), Some(AttributeValue::S(k))) => format!("{p}/{k}"),
            _ => "?".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn shard(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    shard: &str,
    forward: bool,
    limit: Option<i32>,
) -> String {
    let mut pages = Vec::new();
    let mut start = None;
    loop {
        let out = db
            .query()
            .table_name(table)
            .index_name(mailroom_lambda::ledger::OPEN_INDEX)
            .key_condition_expression("open_shard = :s AND opened_at <= :t")
            .expression_attribute_values(":s", s(shard))
            .expression_attribute_values(":t", n(1_000))
            .scan_index_forward(forward)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Query on the index");
        pages.push(keys(out.items()));
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    format!("{shard}: {}", pages.join(" | "))
}

async fn partition(db: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> String {
    let out = db
        .query()
        .table_name(table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s(pk))
        .send()
        .await
        .expect("Query");
    format!("{pk}: {}", keys(out.items()))
}

async fn conversation(endpoint: &str) -> Vec<String> {
    let db = aws_sdk_dynamodb::Client::new(&local::emulator_config(endpoint).await);
    let table = unique("gsi");
    local::create_table(&db, &table).await.expect("table");
    let mut seen = Vec::new();
    // 30 pairs; every fifth has no open_shard (not in the sparse index).
    for i in 0..30u64 {
        let mut put = db
            .put_item()
            .table_name(&table)
            .item("pk", s(&format!("t{}", i / 3)))
            .item("sk", s(&format!("c{}", i % 3)))
            .item("opened_at", n(i));
        if i % 5 != 0 {
            put = put.item("open_shard", s(&format!("open#{}", i % 4)));
        }
        put.send().await.expect("PutItem");
    }
    // A first query builds the index; the writes after it must keep it.
    seen.push(shard(&db, &table, "open#1", true, None).await);
    seen.push(shard(&db, &table, "open#2", true, Some(2)).await);
    seen.push(shard(&db, &table, "open#3", false, None).await);
    seen.push(partition(&db, &table, "t4").await);
    seen.push(partition(&db, &table, "nobody").await);
    // Leaves the index: REMOVE of the index key.
    db.update_item()
        .table_name(&table)
        .key("pk", s("t0"))
        .key("sk", s("c1"))
        .update_expression("REMOVE open_shard")
        .send()
        .await
        .expect("UpdateItem remove");
    // Moves between index partitions.
    db.update_item()
        .table_name(&table)
        .key("pk", s("t0"))
        .key("sk", s("c2"))
        .update_expression("SET open_shard = :s")
        .expression_attribute_values(":s", s("open#1"))
        .send()
        .await
        .expect("UpdateItem move");
    // Joins the index: the pair that had no shard.
    db.update_item()
        .table_name(&table)
        .key("pk", s("t1"))
        .key("sk", s("c2"))
        .update_expression("SET open_shard = :s")
        .expression_attribute_values(":s", s("open#3"))
        .send()
        .await
        .expect("UpdateItem join");
    db.delete_item()
        .table_name(&table)
        .key("pk", s("t1"))
        .key("sk", s("c0"))
        .send()
        .await
        .expect("DeleteItem");
    // A conditional write that fails changes nothing.
    let refused = db
        .put_item()
        .table_name(&table)
        .item("pk", s("t2"))
        .item("sk", s("c0"))
        .item("opened_at", n(99))
        .item("open_shard", s("open#0"))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    seen.push(format!("conditional put refused: {}", refused.is_err()));
    let batch = ["b0", "b1", "b2"].map(|pk| {
        WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .item("pk", s(pk))
                    .item("sk", s("c0"))
                    .item("opened_at", n(500))
                    .item("open_shard", s("open#0"))
                    .build()
                    .expect("put request"),
            )
            .build()
    });
    db.batch_write_item()
        .request_items(&table, batch.to_vec())
        .send()
        .await
        .expect("BatchWriteItem");
    db.transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&table)
                        .key("pk", s("t3"))
                        .key("sk", s("c1"))
                        .update_expression("SET open_shard = :s")
                        .expression_attribute_values(":s", s("open#0"))
                        .build()
                        .expect("update"),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&table)
                        .item("pk", s("x"))
                        .item("sk", s("c0"))
                        .item("opened_at", n(7))
                        .item("open_shard", s("open#2"))
                        .build()
                        .expect("put"),
                )
                .build(),
        )
        .send()
        .await
        .expect("TransactWriteItems");
    for name in ["open#0", "open#1", "open#2", "open#3"] {
        seen.push(shard(&db, &table, name, true, None).await);
    }
    seen.push(partition(&db, &table, "t1").await);
    seen
}

#[tokio::test]
async fn the_test_beds_dynamodb_queries_answer_as_motos_own_code_does() {
    // Issue 12, point 13: moto answers a GSI query by reading every item of the table.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stock = Moto::start_with_env(&Moto::venv(root), &[("MAILROOM_MOTO_STOCK_DYNAMODB", "1")])
        .expect("moto with its own DynamoDB query code");

    let indexed = conversation(endpoint()).await;
    let own = conversation(stock.endpoint()).await;

    assert_eq!(
        indexed, own,
        "the test bed's DynamoDB differs from moto's own"
    );
    // And the conversation went as expected, so the two did not agree by both failing.
    assert_eq!(
        indexed,
        vec![
            "open#1: t0/c1 t3/c0 t4/c1 t5/c2 t7/c0 t9/c2",
            "open#2: t0/c2 t2/c0 | t4/c2 t6/c0 | t7/c1 t8/c2",
            "open#3: t9/c0 t7/c2 t6/c1 t3/c2 t2/c1 t1/c0",
            "t4: t4/c0 t4/c1 t4/c2",
            "nobody: ",
            "conditional put refused: true",
            "open#0: t1/c1 t2/c2 t3/c1 t4/c0 t5/c1 t8/c0 t9/c1 b0/c0 b1/c0 b2/c0",
            "open#1: t0/c2 t3/c0 t4/c1 t5/c2 t7/c0 t9/c2",
            "open#2: t2/c0 x/c0 t4/c2 t6/c0 t7/c1 t8/c2",
            "open#3: t1/c2 t2/c1 t3/c2 t6/c1 t7/c2 t9/c0",
            "t1: t1/c1 t1/c2",
        ]
    );
}
