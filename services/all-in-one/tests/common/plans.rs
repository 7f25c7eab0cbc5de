//! Reading `EXPLAIN (FORMAT JSON)` plans in tests that guard a statement's cost.
//!
//! On Citus the coordinator's plan is a `Custom Scan` whose tasks carry the plan each worker
//! ran (`Distributed Query` → `Job` → `Tasks` → `Remote Plan`): the walk goes into them, and
//! gives a worker's shard (`usagers_102008`) the name of its table, so that a test checks the
//! plan that reads the rows on both layouts.

use serde_json::Value;

/// One node of a plan.
#[derive(Debug)]
pub struct PlanNode {
    pub kind: String,
    /// The table it reads, or empty.
    pub relation: String,
    /// The rows it returned over all its loops (`EXPLAIN ANALYZE` only; 0 otherwise).
    pub rows: f64,
    /// The rows it read and threw away over all its loops: removed by its filter, its index
    /// recheck or its join filter (`EXPLAIN ANALYZE` only). `rows + removed` is what it read.
    pub removed: f64,
    /// An index-only scan's visits to the table, for rows whose page is not known visible to
    /// all (`EXPLAIN ANALYZE` only).
    pub heap_fetches: f64,
}

/// Every node of a plan (`plan[0]["Plan"]` of the JSON `EXPLAIN` gives), depth first.
pub fn nodes(plan: &Value) -> Vec<PlanNode> {
    let mut out = Vec::new();
    walk(plan, false, &mut out);
    out
}

/// A shard's table name without its shard number.
fn table(shard: &str) -> String {
    match shard.rsplit_once('_') {
        Some((table, number))
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            table.to_owned()
        }
        _ => shard.to_owned(),
    }
}

fn walk(plan: &Value, remote: bool, out: &mut Vec<PlanNode>) {
    let text = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let relation = text("Relation Name");
    let number = |k: &str| plan.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    out.push(PlanNode {
        kind: text("Node Type"),
        relation: if remote { table(&relation) } else { relation },
        rows: number("Actual Rows") * number("Actual Loops"),
        removed: (number("Rows Removed by Filter")
            + number("Rows Removed by Index Recheck")
            + number("Rows Removed by Join Filter"))
            * number("Actual Loops"),
        heap_fetches: number("Heap Fetches"),
    });
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(child, remote, out);
    }
    let tasks = plan
        .pointer("/Distributed Query/Job/Tasks")
        .and_then(Value::as_array);
    for task in tasks.into_iter().flatten() {
        // A list of plans, each `[{"Plan": …}]`. Citus gives a prepared statement's worker plan
        // under `EXPLAIN ANALYZE` as text inside the JSON, which no JSON parser reads: such a
        // plan fails the test before it gets here.
        let remote_plans = task.get("Remote Plan").and_then(Value::as_array);
        for one in remote_plans.into_iter().flatten() {
            let root = one.pointer("/0/Plan");
            assert!(root.is_some(), "plan de nœud illisible : {task}");
            walk(root.expect("plan"), true, out);
        }
    }
}

/// Runs `statement` under `EXPLAIN (ANALYZE, FORMAT JSON)` and counts the rows its plan read
/// from `relation` (kept plus thrown away, over all loops); with the plan, for messages.
pub async fn read(conn: &mut sqlx::PgConnection, statement: &str, relation: &str) -> (f64, Value) {
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
    )))
    .fetch_one(conn)
    .await
    .expect("explain");
    let read = nodes(&plan[0]["Plan"])
        .iter()
        .filter(|n| n.relation == relation)
        .map(|n| n.rows + n.removed)
        .sum();
    (read, plan)
}
