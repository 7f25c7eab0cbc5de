//! Physical TOTP cards: import by the national team (CSV of serial numbers and base32 seeds,
//! with a line-by-line report), link to an aidant by a référent (validated by the code the card
//! displays), unlink with a reason, unlock, and the explicit two-code re-synchronisation of a
//! drifting clock.

use serde_json::json;
use sqlx::PgConnection;
use time::OffsetDateTime;
use totp_rs::Secret;
use uuid::Uuid;

use crate::ids::ProfessionalId;

use super::factors::{FactorError, drifted};
use super::journal::{self, SecurityEvent};
use super::secrets::SeedCipher;
use super::totp;

/// Card clocks may drift up to this many steps (an hour for 60-second cards) before a
/// re-synchronisation no longer finds them.
pub const MAX_DRIFT_STEPS: i64 = 60;

/// Seed ciphertext, nonce, key version, step, and whether the card is in use.
type CardRow = (Vec<u8>, Vec<u8>, i32, i32, bool, bool);
/// Factor id, seed ciphertext, nonce, key version, step, last used step, bound to the row.
type ResyncRow = (Uuid, Vec<u8>, Vec<u8>, i32, i32, i64, bool);

/// One line of an import report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReport {
    pub line: usize,
    pub serial: String,
    pub outcome: Result<(), String>,
}

/// Parses `serial,seed[,step]` lines (a header line and blank lines are skipped).
fn parse_line(line: &str) -> Result<(String, Vec<u8>, i32), String> {
    let fields: Vec<&str> = line.split([',', ';']).map(str::trim).collect();
    let (serial, seed) = match fields.as_slice() {
        [serial, seed] | [serial, seed, _] => (*serial, *seed),
        _ => {
            return Err(
                "2 ou 3 colonnes attendues : numéro de série, clé (base32), pas en secondes".into(),
            );
        }
    };
    if !(4..=32).contains(&serial.len())
        || !serial
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err("numéro de série invalide (4 à 32 lettres, chiffres ou tirets)".into());
    }
    let seed = Secret::try_from_base32(seed.replace(' ', "").to_uppercase())
        .map(|s| s.as_bytes().to_vec())
        .map_err(|_| "clé illisible : base32 attendu (lettres A à Z, chiffres 2 à 7)".to_owned())?;
    if seed.len() < 10 {
        return Err("clé trop courte (80 bits au moins)".into());
    }
    let step = match fields.get(2) {
        None | Some(&"") | Some(&"60") => 60,
        Some(&"30") => 30,
        Some(_) => return Err("pas invalide : 30 ou 60 secondes".into()),
    };
    Ok((serial.to_owned(), seed, step))
}

/// Imports every valid line; each line gets its own outcome, and a bad line stops nothing.
pub async fn import(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    csv: &str,
    importer: Option<ProfessionalId>,
) -> Result<Vec<LineReport>, sqlx::Error> {
    let mut report = Vec::new();
    for (index, raw) in csv.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || (index == 0 && line.to_lowercase().starts_with("serial")) {
            continue;
        }
        let serial = line
            .split([',', ';'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let outcome = match parse_line(line) {
            Err(e) => Err(e),
            Ok((serial, seed, step)) => {
                let (ciphertext, nonce) = cipher.encrypt_for(&seed, serial.as_bytes());
                let inserted = sqlx::query(
                    "INSERT INTO platform.totp_cards (serial, seed_ciphertext, seed_nonce, key_version, step_seconds, imported_by, aad_bound)
                     VALUES ($1, $2, $3, $4, $5, $6, true) ON CONFLICT (serial) DO NOTHING",
                )
                .bind(&serial)
                .bind(ciphertext)
                .bind(nonce)
                .bind(cipher.version())
                .bind(step)
                .bind(importer)
                .execute(&mut *conn)
                .await?;
                if inserted.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err("carte déjà importée".into())
                }
            }
        };
        report.push(LineReport {
            line: index + 1,
            serial,
            outcome,
        });
    }
    Ok(report)
}

/// Links a card to a professional, once the code it displays checks out. The factor in use
/// before (an app or another card) is revoked.
pub async fn link(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,
    serial: &str,
    code: &str,
    actor: ProfessionalId,

    now: OffsetDateTime,
) -> Result<(), FactorError> {
    let db = |_| FactorError::NoFactor;
    let card: Option<CardRow> = sqlx::query_as(
        "SELECT c.seed_ciphertext, c.seed_nonce, c.key_version, c.step_seconds,
                EXISTS (SELECT 1 FROM platform.second_factors f WHERE f.card_serial = c.serial AND f.revoked_at IS NULL),
                c.aad_bound
         FROM platform.totp_cards c WHERE c.serial = $1 FOR UPDATE",
    )
    .bind(serial.trim())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let (ciphertext, nonce, version, step, in_use, bound) = card.ok_or(FactorError::NoFactor)?;
    if in_use {
        return Err(FactorError::Locked);
    }
    let serial = serial.trim();
    let seed = cipher
        .decrypt_for(
            &ciphertext,
            &nonce,
            version,
            bound.then_some(serial.as_bytes()),
        )
        .map_err(|_| FactorError::Cipher)?;
    let used = totp::verify(&seed, step as u64, code, now.unix_timestamp() as u64, 0)
        .map_err(|_| FactorError::Wrong)?;
    sqlx::query(
        "UPDATE platform.second_factors SET revoked_at = now(), revoked_reason = 'remplacé par une carte'
         WHERE professional_id = $1 AND revoked_at IS NULL",
    )
    .bind(professional)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let factor = Uuid::now_v7();
    let (ciphertext, nonce) = cipher.encrypt_for(&seed, factor.as_bytes());
    sqlx::query(
        "INSERT INTO platform.second_factors
             (id, professional_id, kind, card_serial, seed_ciphertext, seed_nonce, key_version, step_seconds,
              confirmed_at, last_used_step, aad_bound)
         VALUES ($1, $2, 'card', $3, $4, $5, $6, $7, now(), $8, true)",
    )
    .bind(factor)
    .bind(professional)
    .bind(serial.trim())
    .bind(ciphertext)
    .bind(nonce)
    .bind(cipher.version())
    .bind(step)
    .bind(used)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    journal::append(
        conn,
        SecurityEvent::FactorEnrolled,
        Some(professional),
        Some(actor),
        json!({ "factor": factor, "kind": "card", "serial": serial.trim() }),
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Unlinks the professional's card, with a reason; the card can then be linked again.
pub async fn unlink(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    reason: &str,
    actor: ProfessionalId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE platform.second_factors SET revoked_at = now(), revoked_reason = $2
         WHERE professional_id = $1 AND kind = 'card' AND revoked_at IS NULL",
    )
    .bind(professional)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        journal::append(
            conn,
            SecurityEvent::FactorRevoked,
            Some(professional),
            Some(actor),
            json!({ "kind": "card", "reason": reason }),
        )
        .await?;
    }
    Ok(done.rows_affected() > 0)
}

/// Clears failures, delays and the lock of the professional's factor.
pub async fn unlock(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    actor: ProfessionalId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE platform.second_factors SET failures = 0, blocked_until = NULL, locked = false
         WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL",
    )
    .bind(professional)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        journal::append(
            conn,
            SecurityEvent::FactorRevoked,
            Some(professional),
            Some(actor),
            json!({ "action": "unlock" }),
        )
        .await?;
    }
    Ok(done.rows_affected() > 0)
}

/// Re-synchronises a drifting device from two consecutive codes: the first pair of
/// consecutive steps within `MAX_DRIFT_STEPS` that produce them sets the new drift. A single
/// code never moves the window.
pub async fn resync(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,
    first: &str,
    second: &str,
    actor: ProfessionalId,

    now: OffsetDateTime,
) -> Result<i32, FactorError> {
    let db = |_| FactorError::NoFactor;
    let row: Option<ResyncRow> = sqlx::query_as(
        "SELECT id, seed_ciphertext, seed_nonce, key_version, step_seconds, last_used_step, aad_bound
         FROM platform.second_factors
         WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL FOR UPDATE",
    )
    .bind(professional)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let (factor, ciphertext, nonce, version, step, last_used, bound) =
        row.ok_or(FactorError::NoFactor)?;
    let seed = super::factors::open_seed(cipher, factor, &ciphertext, &nonce, version, bound)
        .map_err(|_| FactorError::Cipher)?;
    let server_step = drifted(now, step, 0) as i64 / i64::from(step);
    let (first, second) = (first.trim(), second.trim());
    let found = (-MAX_DRIFT_STEPS..=MAX_DRIFT_STEPS)
        .map(|offset| server_step + offset)
        .find(|&s| {
            s >= 0
                && totp::code_at(&seed, step as u64, (s * i64::from(step)) as u64) == first
                && totp::code_at(&seed, step as u64, ((s + 1) * i64::from(step)) as u64) == second
        });
    let Some(s) = found else {
        return Err(FactorError::Wrong);
    };
    if s < last_used {
        return Err(FactorError::Replayed);
    }
    let drift = (s + 1 - server_step) as i32;
    sqlx::query(
        "UPDATE platform.second_factors SET drift_steps = $2, last_used_step = $3, failures = 0, blocked_until = NULL
         WHERE id = $1",
    )
    .bind(factor)
    .bind(drift)
    .bind(s + 1)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    journal::append(
        conn,
        SecurityEvent::FactorEnrolled,
        Some(professional),
        Some(actor),
        json!({ "factor": factor, "resync_drift_steps": drift }),
    )
    .await
    .map_err(db)?;
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_or_explained() {
        let (serial, seed, step) =
            parse_line("CARD-0001, GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("ligne valide");
        assert_eq!(
            (serial.as_str(), seed.as_slice(), step),
            ("CARD-0001", b"12345678901234567890".as_slice(), 60)
        );
        assert_eq!(
            parse_line("CARD-0002;GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ;30").map(|(_, _, s)| s),
            Ok(30)
        );
        for (line, expected) in [
            ("CARD-0003", "colonnes"),
            ("X,GEZDGNBVGY3TQOJQ", "numéro de série"),
            ("CARD-0004,not base32!", "base32"),
            ("CARD-0005,GEZDGNBV", "trop courte"),
            (
                "CARD-0006,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,45",
                "pas invalide",
            ),
        ] {
            let err = parse_line(line).expect_err(line);
            assert!(err.contains(expected), "{line}: {err}");
        }
    }
}
