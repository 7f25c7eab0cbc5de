//! Reading `EXPLAIN` plans in tests that guard a statement's cost: JSON plans walked node by
//! node, and text plans of `EXPLAIN ANALYZE` counted for the rows read from one table.
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

/// Runs `statement` under a text `EXPLAIN (ANALYZE)` and counts the rows its plan read from
/// `relation` (kept plus thrown away, over all loops); with the plan, for messages. Text
/// rather than JSON: Citus gives a worker's plan of an executed prepared statement as text
/// inside the JSON, which no JSON parser reads; in text, that plan is lines like the others.
pub async fn read(conn: &mut sqlx::PgConnection, statement: &str, relation: &str) -> (f64, String) {
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS OFF) {statement}"
    )))
    .fetch_all(conn)
    .await
    .expect("explain");
    (read_text(&plan, relation), plan.join("\n"))
}

/// The rows the scans of `relation` (or of its shards, `relation_102008`) of a text
/// `EXPLAIN (ANALYZE, COSTS OFF)` read: returned, and removed by their filters, over all their
/// loops.
pub fn read_text(plan: &[String], relation: &str) -> f64 {
    let number = |line: &str, key: &str| -> Option<f64> {
        let at = line.find(key)? + key.len();
        let digits: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        digits.parse().ok()
    };
    let scans = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        line.contains("Scan")
            && words
                .windows(2)
                .any(|w| w[0] == "on" && (w[1] == relation || table(w[1]) == relation))
    };
    let mut read = 0.0;
    let mut loops = None;
    for line in plan.iter().flat_map(|l| l.lines()) {
        if line.contains("(actual") || line.contains("(never executed)") {
            loops = scans(line).then(|| number(line, "loops=").unwrap_or(1.0));
            if let Some(loops) = loops {
                read += number(line, "rows=").unwrap_or(0.0) * loops;
            }
        } else if let Some(loops) = loops {
            for key in [
                "Rows Removed by Filter: ",
                "Rows Removed by Index Recheck: ",
                "Rows Removed by Join Filter: ",
            ] {
                read += number(line, key).unwrap_or(0.0) * loops;
            }
        }
    }
    read
}
