//! The auditor's export (JSON lines), whole or redacted to the structures an auditor may read.

use super::*;

/// Writes the auditor's export: one JSON object per line — a header (schema, public key), then
/// every entry, then every checkpoint — and journals the export itself.
pub async fn export(
    tx: &mut TenantTx,
    public: &CheckpointPublicKey,
    by: Option<ProfessionalId>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    export_for(tx, public, by, None, out).await
}

/// [`export`] for an auditor who may read only some structures' entries (a commune tenant's
/// auditor): every other entry is written redacted — its number, previous hash and hash only,
/// `"redacted": true` — so that the chain still verifies from end to end (the links of the
/// redacted entries, the content of the others, every signed checkpoint) and nothing of
/// another tenant is read.
pub async fn export_for(
    tx: &mut TenantTx,
    public: &CheckpointPublicKey,
    by: Option<ProfessionalId>,
    visible: Option<&std::collections::HashSet<StructureId>>,

    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let schema = tx.departement().schema_name();
    let mut lines = 0;
    let mut redacted = 0u64;
    writeln!(
        out,
        "{}",
        json!({ "type": "header", "schema": schema, "checkpoint_public_key": public.to_hex(),
                "key_id": public.key_id(), "hash": "sha256, fields length-prefixed (see docs/JOURNAL.md)" })
    )?;
    {
        let conn: &mut PgConnection = tx;
        let mut rows = sqlx::query_as::<_, Entry>(
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash
             FROM journal WHERE seq IS NOT NULL ORDER BY seq",
        )
        .fetch(&mut *conn);
        while let Some(e) = rows.try_next().await? {
            let shown = visible.is_none_or(|v| e.structure_id.is_some_and(|s| v.contains(&s)));
            let v = if shown {
                let mut v = serde_json::to_value(&e)?;
                v["type"] = json!("entry");
                v
            } else {
                redacted += 1;
                json!({ "type": "entry", "seq": e.seq, "prev_hash": hex::encode(&e.prev_hash),
                        "hash": hex::encode(&e.hash), "redacted": true })
            };
            writeln!(out, "{v}")?;
            lines += 1;
        }
    }
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM journal_checkpoints ORDER BY seq, at",
    )
    .fetch_all(&mut **tx)
    .await?;
    for c in checkpoints {
        let mut v = serde_json::to_value(&c)?;
        v["type"] = json!("checkpoint");
        writeln!(out, "{v}")?;
    }
    let mut entry = NewEntry::new(Event::JournalExported)
        .details(json!({ "entries": lines, "redacted": redacted }));
    entry.professional = by;
    append(tx, entry).await?;
    Ok(lines)
}
