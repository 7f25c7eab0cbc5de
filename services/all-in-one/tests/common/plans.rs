//! Reading `EXPLAIN (FORMAT JSON)` plans in tests that guard a statement's cost.

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
}

/// Every node of a plan (`plan[0]["Plan"]` of the JSON `EXPLAIN` gives), depth first.
pub fn nodes(plan: &Value) -> Vec<PlanNode> {
    let mut out = Vec::new();
    walk(plan, &mut out);
    out
}

fn walk(plan: &Value, out: &mut Vec<PlanNode>) {
    let text = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let number = |k: &str| plan.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    out.push(PlanNode {
        kind: text("Node Type"),
        relation: text("Relation Name"),
        rows: number("Actual Rows") * number("Actual Loops"),
        removed: (number("Rows Removed by Filter")
            + number("Rows Removed by Index Recheck")
            + number("Rows Removed by Join Filter"))
            * number("Actual Loops"),
    });
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk(child, out);
    }
}
