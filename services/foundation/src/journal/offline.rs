//! Verifying an auditor's export without the database (`tenant-admin journal verify --file`):
//! anyone holding the export and the checkpoint public key — given to them separately, never
//! read from the file — recomputes the whole chain and checks every signed checkpoint, exactly
//! as the online verification does. The file is read twice (once for the checkpoints, which
//! come last, once for the entries), so only the hashes the checkpoints name are kept in
//! memory, whatever the journal's size. A redacted entry (another tenant's, in a commune
//! auditor's export) is checked by its number and links only.

use std::io::BufRead;

use serde_json::Value;
use time::OffsetDateTime;

use super::{Anchor, ChainCheck, Checkpoint, CheckpointPublicKey, Entry, Verification};

/// What the offline verification found, with what the file says of itself.
#[derive(Debug, Clone)]
pub struct FileVerification {
    pub verification: Verification,
    /// The journal the export is of (`dep_33`, `security_journal`).
    pub schema: String,
    /// Entries after the newest checkpoint: chained, but no signature covers them yet.
    pub unsealed_tail: u64,
    /// The newest checkpoint's time.
    pub newest_checkpoint: Option<OffsetDateTime>,
    /// Entries given redacted (another tenant's): their links were checked, not their content.
    pub redacted: u64,
}

fn hex_field(v: &Value, field: &str, line: usize) -> anyhow::Result<Vec<u8>> {
    v[field]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| {
            anyhow::anyhow!("ligne {line} : champ « {field} » illisible (hexadécimal attendu)")
        })
}

fn time_field(v: &Value, field: &str, line: usize) -> anyhow::Result<OffsetDateTime> {
    v[field]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .ok_or_else(|| {
            anyhow::anyhow!("ligne {line} : champ « {field} » illisible (date RFC 3339 attendue)")
        })
}

fn id_field<T: std::str::FromStr>(
    v: &Value,
    field: &str,
    line: usize,
) -> anyhow::Result<Option<T>> {
    match &v[field] {
        Value::Null => Ok(None),
        Value::String(s) => s.parse::<T>().map(Some).map_err(|_| {
            anyhow::anyhow!("ligne {line} : champ « {field} » illisible (identifiant attendu)")
        }),
        _ => anyhow::bail!("ligne {line} : champ « {field} » illisible (identifiant attendu)"),
    }
}

fn entry(v: &Value, line: usize) -> anyhow::Result<Entry> {
    let text = |field: &str| {
        v[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("ligne {line} : champ « {field} » manquant"))
    };
    Ok(Entry {
        seq: v["seq"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("ligne {line} : champ « seq » illisible"))?,
        at: time_field(v, "at", line)?,
        kind: text("kind")?,
        structure_id: id_field(v, "structure_id", line)?,
        professional_id: id_field(v, "professional_id", line)?,
        usager_id: id_field(v, "usager_id", line)?,
        mandate_id: id_field(v, "mandate_id", line)?,

        details: text("details")?,
        prev_hash: hex_field(v, "prev_hash", line)?,
        hash: hex_field(v, "hash", line)?,
    })
}

fn checkpoint(v: &Value, line: usize) -> anyhow::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: v["seq"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("ligne {line} : champ « seq » illisible"))?,
        hash: hex_field(v, "hash", line)?,
        at: time_field(v, "at", line)?,
        key_id: v["key_id"].as_str().unwrap_or_default().to_owned(),
        signature: hex_field(v, "signature", line)?,
    })
}

/// Lines of the file as JSON, numbered from 1; blank lines skipped.
fn lines(reader: impl BufRead) -> impl Iterator<Item = anyhow::Result<(usize, Value)>> {
    reader.lines().enumerate().filter_map(|(n, line)| {
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(anyhow::anyhow!("lecture impossible : {e}"))),
        };
        if line.trim().is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(&line)
                .map(|v| (n + 1, v))
                .map_err(|_| anyhow::anyhow!("ligne {} illisible (JSON attendu)", n + 1)),
        )
    })
}

/// Verifies an export with `public`. `open` gives the file from its start (it is read twice);
/// `progress` is told the number of entries checked, every 10,000 and at the end.
pub fn verify_file<R: BufRead>(
    mut open: impl FnMut() -> std::io::Result<R>,
    public: &CheckpointPublicKey,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<FileVerification> {
    // First pass: the header and the checkpoints.
    let mut schema = None;
    let mut checkpoints = Vec::new();
    for item in lines(open()?) {
        let (n, v) = item?;
        match v["type"].as_str() {
            Some("header") => {
                schema = v["schema"].as_str().map(str::to_owned);
            }
            Some("checkpoint") => checkpoints.push(checkpoint(&v, n)?),
            Some("entry") => {}
            _ => anyhow::bail!(
                "ligne {n} : type de ligne inconnu (header, entry ou checkpoint attendu)"
            ),
        }
    }
    let schema = schema.ok_or_else(|| {
        anyhow::anyhow!("export sans en-tête : est-ce bien un fichier de « journal export » ?")
    })?;
    anyhow::ensure!(
        !checkpoints.is_empty(),
        "l'export ne contient aucun point de scellement : rien n'y est signé"
    );
    let wanted: std::collections::HashSet<i64> = checkpoints.iter().map(|c| c.seq).collect();
    // Second pass: the chain.
    let mut check = ChainCheck::default();
    let mut hashes_at = std::collections::HashMap::new();
    let mut last_seq = 0;
    let mut redacted = 0u64;
    for item in lines(open()?) {
        let (n, v) = item?;
        if v["type"].as_str() != Some("entry") {
            continue;
        }
        let (seq, hash, pushed) = if v["redacted"] == Value::Bool(true) {
            let seq = v["seq"]
                .as_i64()
                .ok_or_else(|| anyhow::anyhow!("ligne {n} : champ « seq » illisible"))?;
            let prev = hex_field(&v, "prev_hash", n)?;
            let hash = hex_field(&v, "hash", n)?;
            redacted += 1;
            let pushed = check.push_redacted(seq, &prev, &hash);
            (seq, hash, pushed)
        } else {
            let e = entry(&v, n)?;
            let pushed = check.push(&e);
            (e.seq, e.hash, pushed)
        };
        last_seq = seq;
        if !pushed {
            break;
        }
        if wanted.contains(&seq) {
            hashes_at.insert(seq, hash);
        }
        if check.checked().is_multiple_of(10_000) {
            progress(check.checked());
        }
    }
    progress(check.checked());
    let newest = checkpoints.iter().max_by_key(|c| (c.seq, c.at)).cloned();
    let unsealed_tail = newest
        .as_ref()
        .map_or(0, |c| u64::try_from(last_seq - c.seq).unwrap_or(0));
    let verification = match check.broken.clone() {
        Some((seq, problem)) => Verification {
            checked: check.checked(),
            checkpoints_checked: 0,
            first_broken: Some(seq),
            problem: Some(problem),
            pending: 0,
        },
        None => {
            let (checkpoints_checked, problem) = super::check_checkpoints(
                &schema,
                &checkpoints,
                &hashes_at,
                Some(public),
                &Anchor::default(),
            );
            Verification {
                checked: check.checked(),
                checkpoints_checked,
                first_broken: problem.as_ref().and_then(|p| p.0),
                problem: problem.map(|p| p.1),
                pending: 0,
            }
        }
    };
    Ok(FileVerification {
        verification,
        schema,
        unsealed_tail,
        newest_checkpoint: newest.map(|c| c.at),
        redacted,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{CheckpointKey, checkpoint_message, entry_hash};
    use super::*;

    /// An export of `n` entries sealed at `sealed`, as `journal export` writes it.
    fn export(n: i64, sealed: i64, key: &CheckpointKey) -> Vec<String> {
        export_with(n, sealed, key, "")
    }

    /// The same, with `salt` in every entry's details (another history).
    fn export_with(n: i64, sealed: i64, key: &CheckpointKey, salt: &str) -> Vec<String> {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("date");
        let mut prev = vec![0u8; 32];
        let mut out = vec![serde_json::json!({ "type": "header", "schema": "dep_33" }).to_string()];
        let mut sealed_hash = vec![0u8; 32];
        for seq in 1..=n {
            let details = format!("{{\"n\":{seq}{salt}}}");
            let hash = entry_hash(
                &prev,
                seq,
                at,
                "mandate_used",
                None,
                None,
                None,
                None,
                &details,
            );
            let mut v = serde_json::to_value(Entry {
                seq,
                at,
                kind: "mandate_used".into(),
                structure_id: None,
                professional_id: None,
                usager_id: None,
                mandate_id: None,
                details,
                prev_hash: prev.clone(),
                hash: hash.to_vec(),
            })
            .expect("json");
            v["type"] = serde_json::json!("entry");
            out.push(v.to_string());
            if seq == sealed {
                sealed_hash = hash.to_vec();
            }
            prev = hash.to_vec();
        }
        let signature = key.sign(&checkpoint_message("dep_33", sealed, &sealed_hash, at));
        out.push(
            serde_json::json!({
                "type": "checkpoint", "seq": sealed, "hash": hex::encode(&sealed_hash),
                "at": at.format(&time::format_description::well_known::Rfc3339).expect("date"),
                "key_id": key.key_id(), "signature": hex::encode(signature),
            })
            .to_string(),
        );
        out
    }

    fn verify(lines: &[String], public: &CheckpointPublicKey) -> anyhow::Result<FileVerification> {
        let text = lines.join("\n");
        verify_file(
            || Ok(std::io::Cursor::new(text.clone().into_bytes())),
            public,
            |_| {},
        )
    }

    fn key(byte: u8) -> CheckpointKey {
        use base64::Engine;
        CheckpointKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32]))
            .expect("clé")
    }

    #[test]
    fn a_genuine_export_verifies_and_its_unsealed_tail_is_counted() {
        let k = key(1);
        let found = verify(&export(25, 20, &k), &k.public()).expect("vérification");
        assert!(found.verification.intact(), "{:?}", found.verification);
        assert_eq!(found.verification.checked, 25);
        assert_eq!(found.verification.checkpoints_checked, 1);
        assert_eq!(found.unsealed_tail, 5);
        assert_eq!(found.schema, "dep_33");
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let k = key(1);
        let good = export(12, 12, &k);
        // An entry's content changed (its hash left as it was).
        let mut edited = good.clone();
        edited[4] = edited[4].replace("{\\\"n\\\":4}", "{\\\"n\\\":40}");
        assert_ne!(edited[4], good[4]);
        let v = verify(&edited, &k.public()).expect("lu").verification;
        assert_eq!(v.first_broken, Some(4), "{v:?}");
        // An entry removed.
        let mut removed = good.clone();
        removed.remove(7);
        assert_eq!(
            verify(&removed, &k.public())
                .expect("lu")
                .verification
                .first_broken,
            Some(7)
        );
        // The chain rewritten from an entry on, hashes recomputed: the signature no longer
        // matches what it seals.
        let forged = export_with(12, 12, &key(2), ",\"x\":1");
        let mut rewritten = forged[..forged.len() - 1].to_vec();
        rewritten.push(good[good.len() - 1].clone());
        let v = verify(&rewritten, &k.public()).expect("lu").verification;
        assert!(!v.intact(), "{v:?}");
        // Signed by another key than the auditor's.
        let v = verify(&forged, &k.public()).expect("lu").verification;
        assert!(
            v.problem
                .as_deref()
                .is_some_and(|p| p.contains("signature")),
            "{v:?}"
        );
    }

    #[test]
    fn redacted_entries_keep_the_chain_verifiable_and_a_broken_link_is_still_found() {
        let k = key(1);
        let good = export(10, 10, &k);
        let redact = |line: &str| {
            let v: Value = serde_json::from_str(line).expect("json");
            serde_json::json!({ "type": "entry", "seq": v["seq"], "prev_hash": v["prev_hash"],
                                "hash": v["hash"], "redacted": true })
            .to_string()
        };
        let mut partial = good.clone();
        for i in [2, 3, 7] {
            partial[i] = redact(&partial[i]);
        }
        let found = verify(&partial, &k.public()).expect("lu");
        assert!(found.verification.intact(), "{:?}", found.verification);
        assert_eq!((found.verification.checked, found.redacted), (10, 3));
        // A redacted entry whose hash was swapped: the next entry no longer follows it.
        let mut swapped = partial.clone();
        let mut v: Value = serde_json::from_str(&swapped[3]).expect("json");
        v["hash"] = serde_json::json!(hex::encode([9u8; 32]));
        swapped[3] = v.to_string();
        let v = verify(&swapped, &k.public()).expect("lu").verification;
        assert_eq!(v.first_broken, Some(4), "{v:?}");
    }

    #[test]
    fn a_file_that_is_not_an_export_is_refused_with_its_line() {
        let k = key(1);
        let mut lines = export(3, 3, &k);
        lines.insert(2, "pas du json".into());
        let e = verify(&lines, &k.public()).expect_err("refusé").to_string();
        assert!(e.contains("ligne 3"), "{e}");
        let e = verify(&lines[1..2], &k.public())
            .expect_err("refusé")
            .to_string();
        assert!(e.contains("en-tête"), "{e}");
    }
}
