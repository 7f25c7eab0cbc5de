//! Checkpoints: ECDSA P-256 signatures over the chain's last entry, and what an auditor keeps
//! of them (`Anchor`) to find a chain rewritten with its checkpoints.

use super::*;

/// The key sealing checkpoints (from `security.journal_signing_key`, 32 bytes base64).
#[derive(Clone)]
pub struct CheckpointKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl CheckpointKey {
    pub fn from_base64(secret: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(secret.trim())?;
        let signing = SigningKey::from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("clé de scellement du journal invalide"))?;
        Ok(CheckpointKey { signing })
    }

    pub fn public(&self) -> CheckpointPublicKey {
        CheckpointPublicKey(*self.signing.verifying_key())
    }

    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// An ECDSA P-256 signature of `message` (64 bytes, r ‖ s).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing.sign(message);
        signature.to_bytes().to_vec()
    }
}

/// What an auditor holds to check checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointPublicKey(VerifyingKey);

impl CheckpointPublicKey {
    /// SEC1 uncompressed point, hex (as exported for auditors).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_sec1_bytes())
    }

    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(s.trim())?;
        Ok(CheckpointPublicKey(
            VerifyingKey::from_sec1_bytes(&bytes)
                .map_err(|_| anyhow::anyhow!("clé publique invalide"))?,
        ))
    }

    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.to_sec1_bytes())[..8])
    }
}

pub(crate) fn checkpoint_message(
    schema: &str,
    seq: i64,
    hash: &[u8],
    at: OffsetDateTime,
) -> Vec<u8> {
    format!(
        "aidants-connect journal checkpoint\n{schema}\n{seq}\n{}\n{}",
        hex::encode(hash),
        at.unix_timestamp_nanos() / 1_000
    )
    .into_bytes()
}

/// An unchanged chain is signed again after this long, so that verification can demand a
/// recent checkpoint (`Anchor::max_age`, 24 hours by default) of a quiet territory too.
pub const RESIGN_AFTER: time::Duration = time::Duration::hours(6);

/// Signs a checkpoint on the chain's last entry (sequence 0 and a zero hash for an empty
/// chain) if the chain grew since the last checkpoint or that one is older than
/// [`RESIGN_AFTER`]. Returns the sequence number signed.
pub async fn checkpoint(
    tx: &mut TenantTx,
    key: &CheckpointKey,
) -> Result<Option<i64>, sqlx::Error> {
    let schema = tx.departement().schema_name();
    let conn: &mut PgConnection = tx;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('aidants-connect:journal:' || current_schema()))",
    )
    .execute(&mut *conn)
    .await?;
    let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, hash FROM journal WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let previous: Option<(i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT seq, at FROM journal_checkpoints ORDER BY seq DESC, at DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seq, hash, at)) = next_checkpoint(last, previous) else {
        return Ok(None);
    };
    let signature: Signature = key
        .signing
        .sign(&checkpoint_message(&schema, seq, &hash, at));
    sqlx::query(
        "INSERT INTO journal_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(&hash)
    .bind(at)
    .bind(key.key_id())
    .bind(signature.to_bytes().as_slice())
    .execute(&mut *conn)
    .await?;
    Ok(Some(seq))
}

/// What a new checkpoint should seal (sequence, hash, time), if one is due.
pub(crate) fn next_checkpoint(
    last: Option<(i64, Vec<u8>)>,
    previous: Option<(i64, OffsetDateTime)>,
) -> Option<(i64, Vec<u8>, OffsetDateTime)> {
    let (seq, hash) = last.unwrap_or((0, vec![0u8; 32]));
    let now = super::stamp();
    match previous {
        Some((sealed, at)) if sealed >= seq && now - at < RESIGN_AFTER => None,
        _ => Some((seq, hash, now)),
    }
}

/// A checkpoint the auditor kept: from an export (with its signature) or read out by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorPoint {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: OffsetDateTime,
    pub signature: Option<Vec<u8>>,
}

/// What verification trusts besides the database: the auditor's checkpoints, each of which
/// must still be in the journal, and the age past which the newest checkpoint is too old.
#[derive(Debug, Clone, Default)]
pub struct Anchor {
    pub points: Vec<AnchorPoint>,
    pub max_age: Option<time::Duration>,
}

impl Anchor {
    /// The checkpoints of an export (`tenant-admin journal export`) of the journal `name`
    /// (`dep_33`, or `security_journal`).
    pub fn from_export(text: &str, name: &str) -> anyhow::Result<Vec<AnchorPoint>> {
        let mut points = Vec::new();
        let mut header = None;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value = serde_json::from_str(line).map_err(|_| {
                anyhow::anyhow!("ligne {} de l'export illisible (JSON attendu)", n + 1)
            })?;
            match v["type"].as_str() {
                Some("header") => header = v["schema"].as_str().map(str::to_owned),
                Some("checkpoint") => {
                    let bad =
                        || anyhow::anyhow!("point de scellement illisible à la ligne {}", n + 1);
                    let at = v["at"].as_str().ok_or_else(bad)?;
                    points.push(AnchorPoint {
                        seq: v["seq"].as_i64().ok_or_else(bad)?,
                        hash: hex::decode(v["hash"].as_str().ok_or_else(bad)?)
                            .map_err(|_| bad())?,
                        at: OffsetDateTime::parse(
                            at,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .map_err(|_| bad())?,
                        signature: Some(
                            hex::decode(v["signature"].as_str().ok_or_else(bad)?)
                                .map_err(|_| bad())?,
                        ),
                    });
                }
                _ => {}
            }
        }
        match header {
            Some(h) if h == name => {}
            Some(h) => anyhow::bail!("cet export est celui du journal {h}, pas de {name}"),
            None => anyhow::bail!(
                "export sans en-tête : est-ce bien un fichier de « journal export » ?"
            ),
        }
        anyhow::ensure!(
            !points.is_empty(),
            "l'export ne contient aucun point de scellement"
        );
        Ok(points)
    }
}

/// `2 j`, `24 h`, `90 min`, `30 s`.
fn age_text(d: time::Duration) -> String {
    let s = d.whole_seconds();
    match s {
        s if s % 86_400 == 0 && s > 86_400 => format!("{} j", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Checks the stored checkpoints against the chain (`hashes_at`: the hash of each entry a
/// checkpoint names), their signatures, the auditor's anchor and the newest one's age.
/// Returns the first problem: the entry it concerns, if one, and what is wrong.
pub(crate) fn check_checkpoints(
    name: &str,
    checkpoints: &[Checkpoint],
    hashes_at: &std::collections::HashMap<i64, Vec<u8>>,
    public: Option<&CheckpointPublicKey>,
    anchor: &Anchor,
) -> (u64, Option<(Option<i64>, String)>) {
    let signed = |seq: i64, hash: &[u8], at: OffsetDateTime, signature: &[u8]| match public {
        Some(key) => Signature::from_slice(signature).is_ok_and(|sig| {
            key.0
                .verify(&checkpoint_message(name, seq, hash, at), &sig)
                .is_ok()
        }),
        None => true,
    };
    let mut checked = 0;
    for c in checkpoints {
        let problem = match hashes_at.get(&c.seq) {
            None if c.seq == 0 && c.hash == [0u8; 32] => None,
            None => Some(format!(
                "le point de scellement n° {} désigne une entrée absente (fin du journal supprimée)",
                c.seq
            )),
            Some(h) if h[..] != c.hash[..] => Some(format!(
                "le point de scellement n° {} ne correspond pas à l'entrée",
                c.seq
            )),
            Some(_) => (!signed(c.seq, &c.hash, c.at, &c.signature)).then(|| {
                format!(
                    "la signature du point de scellement n° {} est invalide",
                    c.seq
                )
            }),
        };
        if let Some(problem) = problem {
            return (checked, Some((Some(c.seq), problem)));
        }
        checked += 1;
    }
    for p in &anchor.points {
        if p.signature
            .as_deref()
            .is_some_and(|sig| !signed(p.seq, &p.hash, p.at, sig))
        {
            return (
                checked,
                Some((
                    None,
                    format!(
                        "le point de scellement n° {} de l'auditeur n'est pas signé par cette clé",
                        p.seq
                    ),
                )),
            );
        }
        let kept = checkpoints
            .iter()
            .any(|c| c.seq == p.seq && c.hash == p.hash && c.at == p.at);
        if !kept {
            return (
                checked,
                Some((
                    Some(p.seq),
                    format!(
                        "le point de scellement n° {} du {} remis à l'auditeur n'est plus dans le journal (points supprimés ou chaîne réécrite)",
                        p.seq,
                        crate::paris::date_time(p.at)
                    ),
                )),
            );
        }
    }
    if let Some(max_age) = anchor.max_age {
        let newest = checkpoints.iter().map(|c| c.at).max();
        let fresh = newest.is_some_and(|at| OffsetDateTime::now_utc() - at <= max_age);
        if !fresh {
            let age = age_text(max_age);
            return (
                checked,
                Some((
                    None,
                    match newest {
                        Some(at) => format!(
                            "aucun point de scellement depuis plus de {age} (le dernier date du {}) : le journal n'est plus scellé",
                            crate::paris::date_time(at)
                        ),
                        None => format!(
                            "aucun point de scellement : rien ne garantit ce journal (il en faut un de moins de {age})"
                        ),
                    },
                )),
            );
        }
    }
    (checked, None)
}

/// A stored checkpoint.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Checkpoint {
    pub seq: i64,
    #[serde(serialize_with = "hex_bytes")]
    pub hash: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub key_id: String,
    #[serde(serialize_with = "hex_bytes")]
    pub signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer, Verifier};

    #[test]
    fn a_checkpoint_signature_verifies_only_with_its_key_and_message() {
        let key = CheckpointKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
            .expect("key");
        let at = OffsetDateTime::UNIX_EPOCH;
        let sig: Signature = key
            .signing
            .sign(&checkpoint_message("dep_33", 4, &[7; 32], at));
        let public = CheckpointPublicKey::from_hex(&key.public().to_hex()).expect("hex");
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_33", 4, &[7; 32], at), &sig)
                .is_ok()
        );
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_33", 5, &[7; 32], at), &sig)
                .is_err()
        );
        assert!(
            public
                .0
                .verify(&checkpoint_message("dep_34", 4, &[7; 32], at), &sig)
                .is_err()
        );
    }
}
