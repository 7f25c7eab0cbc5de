//! The national security journal (platform schema): append-only for the application role, and
//! hash-chained. Appends are serialised by a transaction-level advisory lock, so concurrent
//! writers never fork the chain. Personal data is referenced by ids only.

use crate::ids::ProfessionalId;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;

/// What happened (stable words, used in exports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    LoginLinkSent,
    LoginFailed,
    LoginSucceeded,
    Logout,
    FactorEnrolled,
    FactorFailed,
    FactorBlocked,
    FactorLocked,
    FactorRevoked,
    StructureSwitched,
    ActivityRechecked,
    ProfessionalDeactivated,
    RateLimited,
    ReviewDelegated,
    ReviewDelegationWithdrawn,
    WaveCreated,
    WaveOpened,
    HabilitationWithdrawn,
    StructureDeactivated,
    TrainingSessionCreated,
    TrainingRegistered,
    TrainingWaitlisted,
    TrainingCancelled,
    AttendanceRecorded,
    TrainerAdded,
    PixImported,
    CharterAccepted,
    AidantActivated,
    RegistryExported,
    AidantMoved,
    ReferentAppointed,
    TerritoryAdminDelegated,
}

impl SecurityEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityEvent::LoginLinkSent => "login_link_sent",
            SecurityEvent::LoginFailed => "login_failed",
            SecurityEvent::LoginSucceeded => "login_succeeded",
            SecurityEvent::Logout => "logout",
            SecurityEvent::FactorEnrolled => "factor_enrolled",
            SecurityEvent::FactorFailed => "factor_failed",
            SecurityEvent::FactorBlocked => "factor_blocked",
            SecurityEvent::FactorLocked => "factor_locked",
            SecurityEvent::FactorRevoked => "factor_revoked",
            SecurityEvent::StructureSwitched => "structure_switched",
            SecurityEvent::ActivityRechecked => "activity_rechecked",
            SecurityEvent::ProfessionalDeactivated => "professional_deactivated",
            SecurityEvent::RateLimited => "rate_limited",
            SecurityEvent::ReviewDelegated => "review_delegated",
            SecurityEvent::ReviewDelegationWithdrawn => "review_delegation_withdrawn",
            SecurityEvent::WaveCreated => "wave_created",
            SecurityEvent::WaveOpened => "wave_opened",
            SecurityEvent::HabilitationWithdrawn => "habilitation_withdrawn",
            SecurityEvent::StructureDeactivated => "structure_deactivated",
            SecurityEvent::TrainingSessionCreated => "training_session_created",
            SecurityEvent::TrainingRegistered => "training_registered",
            SecurityEvent::TrainingWaitlisted => "training_waitlisted",
            SecurityEvent::TrainingCancelled => "training_cancelled",
            SecurityEvent::AttendanceRecorded => "attendance_recorded",
            SecurityEvent::TrainerAdded => "trainer_added",
            SecurityEvent::PixImported => "pix_imported",
            SecurityEvent::CharterAccepted => "charter_accepted",
            SecurityEvent::AidantActivated => "aidant_activated",
            SecurityEvent::RegistryExported => "registry_exported",
            SecurityEvent::AidantMoved => "aidant_moved",
            SecurityEvent::ReferentAppointed => "referent_appointed",
            SecurityEvent::TerritoryAdminDelegated => "territory_admin_delegated",
        }
    }
}

pub fn entry_hash(
    prev: &[u8],
    seq: i64,
    at: OffsetDateTime,
    kind: &str,
    professional: Option<ProfessionalId>,
    actor: Option<ProfessionalId>,
    details: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.unix_timestamp_nanos().to_be_bytes());
    for part in [
        kind.as_bytes(),
        professional
            .map(|u| *u.as_uuid().as_bytes())
            .unwrap_or_default()
            .as_slice(),
        actor
            .map(|u| *u.as_uuid().as_bytes())
            .unwrap_or_default()
            .as_slice(),
        details.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().to_vec()
}

/// Appends one event inside the caller's transaction.
pub async fn append(
    conn: &mut PgConnection,
    kind: SecurityEvent,
    professional: Option<ProfessionalId>,
    actor: Option<ProfessionalId>,
    details: Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aidants-connect:security-journal'))")
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM platform.security_journal ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    let at = crate::journal::stamp();
    let details = details.to_string();
    let hash = entry_hash(&prev, seq, at, kind.as_str(), professional, actor, &details);
    sqlx::query(
        "INSERT INTO platform.security_journal (seq, at, kind, professional_id, actor_id, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(at)
    .bind(kind.as_str())
    .bind(professional)
    .bind(actor)
    .bind(&details)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// Outcome of a verification: entries checked, and the first broken one if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    pub first_broken: Option<i64>,
}

type Row = (
    i64,
    OffsetDateTime,
    String,
    Option<ProfessionalId>,
    Option<ProfessionalId>,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// Recomputes the whole chain. After the one-year retention (`security_journal_purge`) the
/// chain starts at an entry that a checkpoint names with its hash: that entry's `prev_hash` is
/// then taken as given (the checkpoint's signature, checked by `verify_anchored`, vouches for
/// the entry's hash, which covers it).
pub async fn verify(conn: &mut PgConnection) -> Result<Verification, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, kind, professional_id, actor_id, details, prev_hash, hash
         FROM platform.security_journal ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut prev = vec![0u8; 32];
    let mut expected_seq = 1;
    if let Some((first, _, _, _, _, _, first_prev, first_hash)) = rows.first()
        && *first > 1
    {
        let anchored: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM platform.security_journal_checkpoints
                            WHERE seq = $1 AND hash = $2)",
        )
        .bind(first)
        .bind(first_hash)
        .fetch_one(&mut *conn)
        .await?;
        if !anchored {
            return Ok(Verification {
                checked: 0,
                first_broken: Some(1),
            });
        }
        prev = first_prev.clone();
        expected_seq = *first;
    }
    let start = expected_seq;
    for (checked, (seq, at, kind, professional, actor, details, prev_hash, hash)) in
        rows.into_iter().enumerate()
    {
        let recomputed = entry_hash(&prev, seq, at, &kind, professional, actor, &details);
        if seq != expected_seq || prev_hash != prev || hash != recomputed {
            return Ok(Verification {
                checked: checked as u64,
                first_broken: Some(seq),
            });
        }
        prev = hash;
        expected_seq += 1;
    }
    Ok(Verification {
        checked: (expected_seq - start) as u64,
        first_broken: None,
    })
}

/// Applies the one-year retention (see the migration `0017_security_journal_retention`);
/// returns the number of entries removed.
pub async fn purge_expired(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT platform.security_journal_purge()")
        .fetch_one(&mut *conn)
        .await
}

/// The name signed into the security journal's checkpoints (a territory's is its schema).
pub const CHECKPOINT_NAME: &str = "security_journal";

/// Signs a checkpoint on the security journal's last entry, as the territories' journals are
/// signed (same key, same rule: when the chain grew or the last one is older than
/// `journal::RESIGN_AFTER`). Serialised with appends by their lock.
pub async fn checkpoint(
    conn: &mut PgConnection,
    key: &crate::journal::CheckpointKey,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aidants-connect:security-journal'))")
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM platform.security_journal ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let previous: Option<(i64, OffsetDateTime)> = sqlx::query_as(
        "SELECT seq, at FROM platform.security_journal_checkpoints ORDER BY seq DESC, at DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seq, hash, at)) = crate::journal::next_checkpoint(last, previous) else {
        return Ok(None);
    };
    let signature = key.sign(&crate::journal::checkpoint_message(
        CHECKPOINT_NAME,
        seq,
        &hash,
        at,
    ));
    sqlx::query(
        "INSERT INTO platform.security_journal_checkpoints (seq, hash, at, key_id, signature)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(seq)
    .bind(&hash)
    .bind(at)
    .bind(key.key_id())
    .bind(&signature)
    .execute(&mut *conn)
    .await?;
    Ok(Some(seq))
}

async fn checkpoints(
    conn: &mut PgConnection,
) -> Result<Vec<crate::journal::Checkpoint>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, hash, at, key_id, signature FROM platform.security_journal_checkpoints
         ORDER BY seq, at",
    )
    .fetch_all(&mut *conn)
    .await
}

/// Recomputes the chain, then checks the signed checkpoints, the auditor's anchor and the
/// newest checkpoint's age, as `journal::verify` does for a territory.
pub async fn verify_anchored(
    conn: &mut PgConnection,
    public: Option<&crate::journal::CheckpointPublicKey>,
    anchor: &crate::journal::Anchor,
) -> Result<crate::journal::Verification, sqlx::Error> {
    let chain = verify(&mut *conn).await?;
    if let Some(seq) = chain.first_broken {
        return Ok(crate::journal::Verification {
            checked: chain.checked,
            checkpoints_checked: 0,
            first_broken: Some(seq),
            problem: Some(format!(
                "l'entrée n° {seq} a été modifiée, supprimée, insérée ou déplacée"
            )),
            pending: 0,
        });
    }
    let checkpoints = checkpoints(&mut *conn).await?;
    let wanted: Vec<i64> = checkpoints.iter().map(|c| c.seq).collect();
    let hashes_at: std::collections::HashMap<i64, Vec<u8>> = sqlx::query_as::<_, (i64, Vec<u8>)>(
        "SELECT seq, hash FROM platform.security_journal WHERE seq = ANY($1)",
    )
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let (checkpoints_checked, problem) = crate::journal::check_checkpoints(
        CHECKPOINT_NAME,
        &checkpoints,
        &hashes_at,
        public,
        anchor,
    );
    let (first_broken, problem) = match problem {
        Some((seq, p)) => (seq.map(|s| s.min(chain.checked as i64 + 1)), Some(p)),
        None => (None, None),
    };
    Ok(crate::journal::Verification {
        checked: chain.checked,
        checkpoints_checked,
        first_broken,
        problem,
        pending: 0,
    })
}

/// The auditor's export of the security journal: a header, every entry, every checkpoint (one
/// JSON object per line, as for a territory).
pub async fn export(
    conn: &mut PgConnection,
    public: &crate::journal::CheckpointPublicKey,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    use serde_json::json;
    writeln!(
        out,
        "{}",
        json!({ "type": "header", "schema": CHECKPOINT_NAME, "checkpoint_public_key": public.to_hex(),
                "key_id": public.key_id(), "hash": "sha256, fields length-prefixed (see auth::journal)" })
    )?;
    let mut lines = 0;
    {
        let mut rows = sqlx::query_as::<_, Row>(
            "SELECT seq, at, kind, professional_id, actor_id, details, prev_hash, hash
             FROM platform.security_journal ORDER BY seq",
        )
        .fetch(&mut *conn);
        while let Some((seq, at, kind, professional, actor, details, prev_hash, hash)) =
            rows.try_next().await?
        {
            let at = at.format(&time::format_description::well_known::Rfc3339)?;
            writeln!(
                out,
                "{}",
                json!({ "type": "entry", "seq": seq, "at": at, "kind": kind,
                        "professional_id": professional, "actor_id": actor, "details": details,
                        "prev_hash": hex::encode(prev_hash), "hash": hex::encode(hash) })
            )?;
            lines += 1;
        }
    }
    for c in checkpoints(&mut *conn).await? {
        let mut v = serde_json::to_value(&c)?;
        v["type"] = json!("checkpoint");
        writeln!(out, "{v}")?;
    }
    Ok(lines)
}
