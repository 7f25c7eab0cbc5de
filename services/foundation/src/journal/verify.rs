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
    /// The hashed encoding of the entry being checked (one allocation for the whole chain).
    buf: Vec<u8>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: [0; 32],
            expected: 1,
            checked: 0,
            broken: None,
            buf: Vec::with_capacity(512),
        }
    }
}

impl ChainCheck {
    /// Checks one entry; returns false once the chain is broken.
    pub fn push(&mut self, e: &Entry) -> bool {
        let ids = [
            e.structure_id.map(|s| s.as_uuid().into_bytes()),
            e.professional_id.map(|p| p.as_uuid().into_bytes()),
            e.usager_id.map(|u| u.as_uuid().into_bytes()),
            e.mandate_id.map(|m| m.as_uuid().into_bytes()),
        ];
        let fields = EntryFields {
            seq: e.seq,
            at_micros: unix_micros(e.at),
            kind: e.kind.as_bytes(),
            ids: ids.each_ref().map(|id| id.as_ref().map(|b| &b[..])),
            details: e.details.as_bytes(),
        };
        self.push_fields(&fields, &e.prev_hash, &e.hash)
    }

    /// Checks one entry given as the fields its hash covers, its previous hash and its hash.
    pub(crate) fn push_fields(
        &mut self,
        e: &EntryFields<'_>,
        prev_hash: &[u8],
        hash: &[u8],
    ) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let problem = if e.seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected, e.seq
            ))
        } else if prev_hash != self.prev {
            Some(format!(
                "l'entrée n° {} ne suit pas la précédente (chaînage rompu)",
                e.seq
            ))
        } else {
            (e.hash(&self.prev, &mut self.buf)[..] != *hash)
                .then(|| format!("le contenu de l'entrée n° {} a été modifié", e.seq))
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected.min(e.seq), p));
            return false;
        }
        self.prev.copy_from_slice(hash);
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

/// The sealed entries, in chain order, as a binary copy ([`sealed_entry`] reads a row).
const SEALED_ENTRIES: &str = "COPY (SELECT seq, at, kind, structure_id, professional_id, usager_id,
                                         mandate_id, details, prev_hash, hash
                                  FROM journal WHERE seq IS NOT NULL ORDER BY seq)
                            TO STDOUT (FORMAT binary)";

/// PostgreSQL's epoch (2000-01-01) in microseconds after the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A row of [`SEALED_ENTRIES`]: what the entry's hash covers, its previous hash and its hash.
#[allow(clippy::type_complexity)]
fn sealed_entry<'a>(
    row: &super::rows::Fields<'a, 10>,
) -> Result<(EntryFields<'a>, &'a [u8], &'a [u8]), String> {
    let int8 = |field: Option<&[u8]>, name: &str| {
        field
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| format!("champ « {name} » illisible"))
    };
    let present =
        |field: Option<&'a [u8]>, name: &str| field.ok_or_else(|| format!("champ « {name} » vide"));
    let seq = int8(row[0], "seq")?;
    let at = int8(row[1], "at")?;
    Ok((
        EntryFields {
            seq,
            at_micros: at.saturating_add(PG_EPOCH_MICROS),
            kind: present(row[2], "kind")?,
            ids: [row[3], row[4], row[5], row[6]],
            details: present(row[7], "details")?,
        },
        present(row[8], "prev_hash")?,
        present(row[9], "hash")?,
    ))
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
    // The whole chain in one binary copy, each row checked from the bytes that arrived. The
    // copy is always read to its end (a connection left in the middle of one is unusable).
    let mut copy = conn.copy_out_raw(SEALED_ENTRIES).await?;
    let mut rows = super::rows::BinaryRows::<10>::default();
    let mut unreadable = None;
    while let Some(chunk) = copy.try_next().await? {
        if unreadable.is_some() {
            continue;
        }
        let read = rows.feed(&chunk, |row| {
            if check.broken.is_some() {
                return Ok(());
            }
            let (fields, prev_hash, hash) = sealed_entry(row)?;
            if check.push_fields(&fields, prev_hash, hash) {
                if wanted.contains(&fields.seq) {
                    hashes_at.insert(fields.seq, hash.to_vec());
                }
                if check.checked.is_multiple_of(10_000) {
                    progress(check.checked);
                }
            }
            Ok(())
        });
        if let Err(e) = read {
            unreadable = Some(e);
        }
    }
    drop(copy);
    if unreadable.is_none() && !rows.complete() {
        unreadable = Some("copie interrompue".into());
    }
    if let Some(e) = unreadable {
        return Err(sqlx::Error::Protocol(format!("lecture du journal : {e}")));
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
    fn an_entrys_time_is_hashed_in_microseconds_rounded_toward_zero() {
        for (seconds, nanos) in [
            (0, 0),
            (1_700_000_000, 123_456_000),
            (1_700_000_000, 999_999_999),
            (4_102_444_800, 1_999),
            (-1, 999),
            (-86_400, 500_000_000),
        ] {
            let at = OffsetDateTime::from_unix_timestamp(seconds)
                .and_then(|t| t.replace_nanosecond(nanos))
                .expect("date valide");
            let expected = (at.unix_timestamp_nanos() / 1_000) as i64;
            assert_eq!(unix_micros(at), expected, "{seconds} s + {nanos} ns");
        }
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
