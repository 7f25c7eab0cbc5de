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
    /// For a check of the chain's second part: its first entry's number and previous hash,
    /// taken as given, to be matched with the end of the first part ([`ChainCheck::followed_by`]).
    from_middle: bool,
    start: Option<(i64, Vec<u8>)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: [0; 32],
            expected: 1,
            checked: 0,
            broken: None,
            buf: Vec::with_capacity(512),
            from_middle: false,
            start: None,
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

    /// A check of the chain from entry `seq` on, its first entry's previous hash taken as given.
    fn from_entry(seq: i64) -> Self {
        ChainCheck {
            expected: seq,
            from_middle: true,
            ..ChainCheck::default()
        }
    }

    /// This check (of the chain's first part) followed by `next` (of the part after it, made
    /// with [`ChainCheck::from_entry`]): what one check reading both in order would have found.
    fn followed_by(self, next: ChainCheck) -> ChainCheck {
        if self.broken.is_some() {
            return self;
        }
        let Some((seq, prev)) = next.start.as_ref() else {
            return self;
        };
        let problem = if *seq != self.expected {
            Some(format!(
                "entrée n° {} attendue, n° {seq} trouvée (entrée supprimée, insérée ou déplacée)",
                self.expected
            ))
        } else if prev[..] != self.prev {
            Some(format!(
                "l'entrée n° {seq} ne suit pas la précédente (chaînage rompu)"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return ChainCheck {
                broken: Some((self.expected.min(*seq), p)),
                ..self
            };
        }
        ChainCheck {
            checked: self.checked + next.checked,
            ..next
        }
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
        if self.from_middle && self.start.is_none() {
            // Where this part starts: how it links to the part before is checked when the two
            // are put together; a previous hash of the wrong size links to nothing.
            self.start = Some((e.seq, prev_hash.to_vec()));
            match <[u8; 32]>::try_from(prev_hash) {
                Ok(prev) => self.prev = prev,
                Err(_) => {
                    self.broken = Some((
                        e.seq,
                        format!(
                            "l'entrée n° {} ne suit pas la précédente (chaînage rompu)",
                            e.seq
                        ),
                    ));
                    return false;
                }
            }
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

/// PostgreSQL's epoch (2000-01-01) in microseconds after the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A row of [`read_part`]'s copy: what the entry's hash covers, its previous hash and its hash.
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

/// Reads the sealed entries matching `condition` in chain order, as one binary copy, and checks
/// each from the bytes that arrived; returns the check and the hashes of the entries `wanted`
/// (those the checkpoints name). The copy is always read to its end: a connection left in the
/// middle of one is unusable.
async fn read_part(
    conn: &mut PgConnection,
    condition: &str,
    mut check: ChainCheck,
    wanted: &std::collections::HashSet<i64>,
    counted: &impl Fn(),
) -> Result<(ChainCheck, std::collections::HashMap<i64, Vec<u8>>), sqlx::Error> {
    use futures::TryStreamExt;
    let mut hashes_at = std::collections::HashMap::new();
    let statement = format!(
        "COPY (SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id,
                      details, prev_hash, hash
               FROM journal WHERE {condition} ORDER BY seq)
         TO STDOUT (FORMAT binary)"
    );
    let mut copy = conn.copy_out_raw(&statement).await?;
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
                counted();
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
    match unreadable {
        Some(e) => Err(sqlx::Error::Protocol(format!("lecture du journal : {e}"))),
        None => Ok((check, hashes_at)),
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
    progress: impl FnMut(u64),
) -> Result<Verification, sqlx::Error> {
    verify_split(tx, public, anchor, progress, SPLIT_FROM).await
}

/// From this many sealed entries on, the chain is read in two halves over two connections of
/// the territory and both are checked at once: the database's copy of the rows is what bounds
/// a verification, and two server processes share it (`load-tests`, « journal verification »).
const SPLIT_FROM: i64 = 20_000;

/// [`verify_reporting`], reading the chain in two halves from `split_from` sealed entries on
/// (tests give 2, so that every chain they tamper with is read in two halves too).
#[doc(hidden)]
pub async fn verify_split(
    tx: &mut TenantTx,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
    progress: impl FnMut(u64),
    split_from: i64,
) -> Result<Verification, sqlx::Error> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    let schema = tx.departement().schema_name();
    let checkpoints: Vec<Checkpoint> = sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM journal_checkpoints ORDER BY seq, at",
    )
    .fetch_all(&mut **tx)
    .await?;
    let wanted: std::collections::HashSet<i64> = checkpoints.iter().map(|c| c.seq).collect();
    let (pending, last): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE seq IS NULL), max(seq) FROM journal")
            .fetch_one(&mut **tx)
            .await?;
    let pending = pending as u64;
    // Both halves count into one total (the caller's future stays `Send`).
    let total = AtomicU64::new(0);
    let progress = Mutex::new(progress);
    let counted = || {
        let n = total.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(10_000)
            && let Ok(mut progress) = progress.lock()
        {
            (*progress)(n);
        }
    };
    let other = match last {
        Some(last) if last >= split_from.max(2) => {
            tx.another_connection(std::time::Duration::from_millis(500))
                .await
        }
        _ => None,
    };
    let (check, hashes_at) = match (other, last) {
        (Some(mut other), Some(last)) => {
            // Sealed entries never change: the second connection's own snapshot sees the
            // same entries up to `last` as this transaction.
            let middle = last / 2;
            let first = format!("seq <= {middle}");
            let second = format!("seq > {middle} AND seq <= {last}");
            let (a, b) = futures::join!(
                read_part(tx, &first, ChainCheck::default(), &wanted, &counted),
                read_part(
                    &mut other,
                    &second,
                    ChainCheck::from_entry(middle + 1),
                    &wanted,
                    &counted
                ),
            );
            let ((first, mut hashes_at), (second, more)) = (a?, b?);
            hashes_at.extend(more);
            (first.followed_by(second), hashes_at)
        }
        _ => {
            read_part(
                tx,
                "seq IS NOT NULL",
                ChainCheck::default(),
                &wanted,
                &counted,
            )
            .await?
        }
    };
    let mut progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
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
