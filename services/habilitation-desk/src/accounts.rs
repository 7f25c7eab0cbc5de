//! Professional accounts: creation, role grants, enrolment links, deactivation. Until the
//! habilitation flow exists, operators create accounts with `tenant-admin`.

use foundation::auth::journal::{self, SecurityEvent};
use foundation::auth::secrets::{SeedCipher, new_token, token_hash};
use foundation::auth::session;
use foundation::ids::ProfessionalId;
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform_sealed};
use policies::{Domain, Role};
use serde_json::json;
use sqlx::PgConnection;

/// How long an enrolment link stays valid.
pub const ENROLMENT_LINK_HOURS: i64 = 72;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("adresse e-mail invalide « {0} »")]
    InvalidEmail(String),
    #[error("le nom est vide ou dépasse 200 caractères")]
    InvalidName,
    #[error("un compte existe déjà pour cette adresse e-mail")]
    Duplicate,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Lower-cased, trimmed, with one `@` and a dot in the domain.
pub fn normalize_email(input: &str) -> Result<String, AccountError> {
    let email = input.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.contains(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(AccountError::InvalidEmail(input.trim().to_owned()))
    }
}

/// Creates an active professional account.
pub async fn create_professional(
    conn: &mut PgConnection,
    email: &str,
    display_name: &str,
) -> Result<ProfessionalId, AccountError> {
    let email = normalize_email(email)?;
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AccountError::InvalidName);
    }
    let id = ProfessionalId::new_v7();
    let inserted = sqlx::query(
        "INSERT INTO platform.professionals (id, email, display_name) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(&email)
    .bind(name)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(AccountError::Duplicate),
        Err(e) => Err(e.into()),
    }
}

/// Grants a role in a domain (the département is needed for structure domains).
pub async fn grant_role(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    role: Role,
    domain: Domain,
    departement: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO platform.role_assignments (professional_id, role, domain, departement_code)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(professional)
    .bind(role.as_str())
    .bind(domain.to_string())
    .bind(departement)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Mails a single-use enrolment link (second factor), through the outbox.
pub async fn send_enrolment_link(
    conn: &mut PgConnection,
    cipher: &SeedCipher,
    professional: ProfessionalId,
    public_url: &str,
) -> Result<(), sqlx::Error> {
    // Only the newest link works: the ones sent before die now.
    sqlx::query(
        "UPDATE platform.email_links SET expires_at = least(expires_at, now())
         WHERE professional_id = $1 AND purpose = 'enrolment' AND consumed_at IS NULL",
    )
    .bind(professional)
    .execute(&mut *conn)
    .await?;
    let email: String =
        sqlx::query_scalar("SELECT email FROM platform.professionals WHERE id = $1")
            .bind(professional)
            .fetch_one(&mut *conn)
            .await?;
    let token = new_token();
    sqlx::query(
        "INSERT INTO platform.email_links (token_hash, purpose, professional_id, expires_at)
         VALUES ($1, 'enrolment', $2, now() + make_interval(hours => $3))",
    )
    .bind(token_hash(&token))
    .bind(professional)
    .bind(ENROLMENT_LINK_HOURS as i32)
    .execute(&mut *conn)
    .await?;
    let message = OutboxMessage {
        channel: Channel::Email,
        recipient: email,
        template: "enrolment_link",
        payload: json!({ "url": format!("{}/activation?jeton={token}", public_url.trim_end_matches('/')) }),
    };
    enqueue_platform_sealed(conn, cipher, &message).await?;
    Ok(())
}

/// Deactivates a professional: every session ends at once, every service sees it.
pub async fn deactivate(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    actor: Option<ProfessionalId>,

    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE platform.professionals SET active = false, deactivated_at = now(), deactivation_reason = $2 WHERE id = $1",
    )
    .bind(professional)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    let ended = session::end_all(conn, professional, "deactivated").await?;
    journal::append(
        conn,
        SecurityEvent::ProfessionalDeactivated,
        Some(professional),
        actor,
        json!({ "sessions_ended": ended }),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalize_email("  Alice.Aidant@Mairie.FR ").ok().as_deref(),
            Some("alice.aidant@mairie.fr")
        );
        for bad in [
            "",
            "alice",
            "@mairie.fr",
            "alice@",
            "alice@mairie",
            "a b@mairie.fr",
            "a@@mairie.fr",
            "a@.fr",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
