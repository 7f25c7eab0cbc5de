//! Verification of a territory's chain and checkpoints against the database.

use super::*;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose hash was recomputed and matched, before the first problem.
    pub checked: u64,
    pub checkpoints_checked: u64,
    /// The first entry (sequence number) where the chain breaks, if any.
    pub first_broken: Option<i64>,
    /// What is wrong, in French, if anything.
    pub problem: Option<String>,
    /// Committed entries not chained yet (the sealer chains them within moments).
    pub pending: u64,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.first_broken.is_none() && self.problem.is_none()
    }
}

/// Incremental chain check: feed entries in order.
#[derive(Debug)]
pub struct ChainCheck {
    pub(super) prev: [u8; 32],
    pub(super) expected: i64,
    pub(super) checked: u64,
    pub(super) broken: Option<(i64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: [0; 32],
            expected: 1,
            checked: 0,
            broken: None,
        }
    }
}

impl ChainCheck {
    /// Checks one entry; returns false once the chain is broken.
    pub fn push(&mut self, e: &Entry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if e.seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected, e.seq
            ))
        } else if e.prev_hash != self.prev {
            Some(format!(
                "l'entrée n° {} ne suit pas la précédente (chaînage rompu)",
                e.seq
            ))
        } else {
            let recomputed = entry_hash(
                &self.prev,
                e.seq,
                e.at,
                &e.kind,
                e.structure_id,
                e.professional_id,
                e.usager_id,
                e.mandate_id,
                &e.details,
            );
            (recomputed[..] != e.hash[..])
                .then(|| format!("le contenu de l'entrée n° {} a été modifié", e.seq))
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected.min(e.seq), p));
            return false;
        }
        self.prev.copy_from_slice(&e.hash);
        self.expected += 1;
        self.checked += 1;
        true
    }

    /// Checks a redacted entry: its number and its link to the previous one; its hash is taken
    /// as given (the checkpoints and the entries after it still vouch for it).
    pub fn push_redacted(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8]) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {seq} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected
            ))
        } else if prev_hash != self.prev || hash.len() != 32 {
            Some(format!(
                "l'entrée n° {seq} ne suit pas la précédente (chaînage rompu)"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected.min(seq), p));
            return false;
        }
        self.prev.copy_from_slice(hash);
        self.expected += 1;
        self.checked += 1;
        true
    }

    pub fn checked(&self) -> u64 {
        self.checked
    }
}

/// Verifies the territory's whole chain, then every checkpoint: its signature with `public`,
/// and that it seals the entry it names (a checkpoint past the last entry means the tail was
/// cut); then that the auditor's checkpoints are all still there and the newest checkpoint is
/// recent enough (`anchor`).
pub async fn verify(
    tx: &mut TenantTx,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
) -> Result<Verification, sqlx::Error> {
    verify_reporting(tx, public, anchor, |_| {}).await
}

/// [`verify`], telling `progress` the number of entries checked every 10,000 (an auditor's
/// page shows it).
pub async fn verify_reporting(
    tx: &mut TenantTx,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
    mut progress: impl FnMut(u64),
) -> Result<Verification, sqlx::Error> {
    use futures::TryStreamExt;
    let schema = tx.departement().schema_name();
    let conn: &mut PgConnection = tx;
    let mut check = ChainCheck::default();
    let mut hashes_at: std::collections::HashMap<i64, Vec<u8>> = Default::default();
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM journal_checkpoints ORDER BY seq, at",
    )
    .fetch_all(&mut *conn)
    .await?;
    let wanted: std::collections::HashSet<i64> = checkpoints.iter().map(|c| c.seq).collect();
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE seq IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    let pending = pending as u64;
    {
        let mut rows = sqlx::query_as::<_, Entry>(
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash
             FROM journal WHERE seq IS NOT NULL ORDER BY seq",
        )
        .fetch(&mut *conn);
        while let Some(e) = rows.try_next().await? {
            if !check.push(&e) {
                break;
            }
            if wanted.contains(&e.seq) {
                hashes_at.insert(e.seq, e.hash.clone());
            }
            if check.checked.is_multiple_of(10_000) {
                progress(check.checked);
            }
        }
    }
    progress(check.checked);
    if let Some((seq, problem)) = check.broken {
        return Ok(Verification {
            checked: check.checked,
            checkpoints_checked: 0,
            first_broken: Some(seq),
            problem: Some(problem),
            pending,
        });
    }
    let (checkpoints_checked, problem) =
        check_checkpoints(&schema, &checkpoints, &hashes_at, public, anchor);
    Ok(match problem {
        Some((seq, problem)) => Verification {
            checked: check.checked,
            checkpoints_checked,
            first_broken: seq.map(|s| s.min(check.expected)),
            problem: Some(problem),
            pending,
        },
        None => Verification {
            checked: check.checked,
            checkpoints_checked,
            first_broken: None,
            problem: None,
            pending,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = vec![0u8; 32];
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        (1..=n)
            .map(|seq| {
                let details = format!("{{\"n\":{seq}}}");
                let hash = entry_hash(
                    &prev,
                    seq,
                    at,
                    "mandate_created",
                    None,
                    None,
                    None,
                    None,
                    &details,
                );
                let e = Entry {
                    seq,
                    at,
                    kind: "mandate_created".into(),
                    structure_id: None,
                    professional_id: None,
                    usager_id: None,
                    mandate_id: None,
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.to_vec(),
                };
                prev = hash.to_vec();
                e
            })
            .collect()
    }

    fn first_broken(entries: &[Entry]) -> Option<i64> {
        let mut c = ChainCheck::default();
        for e in entries {
            if !c.push(e) {
                return c.broken.map(|b| b.0);
            }
        }
        None
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_found() {
        let good = chain(10);
        assert_eq!(first_broken(&good), None);
        let mut edited = good.clone();
        edited[4].details = "{\"n\":99}".into();
        assert_eq!(first_broken(&edited), Some(5));
        let mut deleted = good.clone();
        deleted.remove(6);
        assert_eq!(first_broken(&deleted), Some(7));
        let mut reordered = good.clone();
        reordered.swap(2, 3);
        assert_eq!(first_broken(&reordered), Some(3));
        let mut inserted = good.clone();
        let mut extra = good[5].clone();
        extra.details = "{}".into();
        inserted.insert(5, extra);
        assert_eq!(first_broken(&inserted), Some(6));
    }
}
