//! FranceConnect's return (`/mandats/franceconnect/retour`): the draft is found by the hash of
//! its state, for this session and structure; the identity FranceConnect vouches for is kept in
//! the draft, and the browser goes through FranceConnect's logout, whose return
//! (`/mandats/franceconnect/deconnexion`) leads to the recap. FranceConnect's errors are said in
//! French; nothing from the query is echoed but a known code.

use foundation::auth::secrets;
use foundation::tenancy::TenantTx;
use foundation::web::PageResult;
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{Response, handler};
use serde::Deserialize;
use uuid::Uuid;

use crate::franceconnect::Identity;
use crate::mandates::MandateError;
use crate::scope::Scope;
use crate::web::{Shared, notice, see_other};

/// Where every failed identification lets the aidant start again.
const RESTART: Option<(&str, &str)> =
    Some(("/mandats/nouveau", "Recommencer la création du mandat"));

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// French wording of FranceConnect's OIDC errors (nothing from the query is echoed but a
/// known code).
fn fc_error_text(error: &str) -> &'static str {
    match error {
        "access_denied" => {
            "La personne a annulé l'identification ou refusé de transmettre ses informations."
        }
        "login_required" | "interaction_required" | "consent_required" => {
            "La personne doit se connecter à nouveau avec FranceConnect."
        }
        "invalid_request" | "invalid_scope" | "unauthorized_client" => {
            "FranceConnect a refusé la demande de la plateforme."
        }
        "server_error" | "temporarily_unavailable" => {
            "FranceConnect a rencontré un problème temporaire."
        }
        _ => "FranceConnect a signalé une erreur.",
    }
}

/// The page for an error FranceConnect returned instead of a code.
fn fc_returned_error(error: &str, has_description: bool) -> PageResult<Response> {
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    tracing::info!(error = %code, has_description, "franceconnect returned an error");
    notice(
        StatusCode::BAD_REQUEST,
        "L'identification FranceConnect n'a pas abouti",
        vec![
            fc_error_text(&code).to_owned(),
            format!("Code d'erreur FranceConnect : {code}. Aucun mandat n'a été créé."),
        ],
        RESTART,
    )
}

/// A draft waiting for its identity.
#[derive(sqlx::FromRow)]
struct WaitingDraft {
    id: Uuid,
    nonce: String,
}

/// The draft this return belongs to (its state, this session and structure, not identified,
/// not completed, not expired), locked until the identity is written.
async fn waiting_draft(
    tx: &mut TenantTx,
    scope: &Scope,
    state: &str,
) -> Result<Option<WaitingDraft>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, nonce FROM mandate_drafts
         WHERE state_hash = $1 AND session_hash = $2 AND structure_id = $3
           AND identity IS NULL AND completed_at IS NULL AND expires_at > now()
         FOR UPDATE",
    )
    .bind(secrets::token_hash(state))
    .bind(&scope.me.session_hash)
    .bind(scope.structure.id)
    .fetch_optional(&mut **tx)
    .await
}

fn unknown_return() -> PageResult<Response> {
    notice(
        StatusCode::BAD_REQUEST,
        "Identification FranceConnect non reconnue",
        vec![
            "Ce retour de FranceConnect ne correspond à aucune création de mandat en cours dans votre session (déjà utilisé, expiré ou ouvert dans un autre navigateur).".into(),
            "Aucun mandat n'a été créé.".into(),
        ],
        RESTART,
    )
}

#[handler]
pub async fn fc_callback(
    shared: Data<&Shared>,
    scope: Scope,
    Query(q): Query<CallbackQuery>,
) -> PageResult<Response> {
    if let Some(error) = q.error.as_deref() {
        return fc_returned_error(error, q.error_description.is_some());
    }
    let (Some(code), Some(state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Retour de FranceConnect incomplet",
            vec!["Le retour de FranceConnect ne contient pas les informations attendues. Aucun mandat n'a été créé.".into()],
            RESTART,
        );
    };
    let mut tx = scope.tenant.begin().await?;
    let draft = waiting_draft(&mut tx, &scope, state).await?;
    let Some(WaitingDraft { id: draft, nonce }) = draft else {
        return unknown_return();
    };
    let (identity, id_token) = match shared.fc.identify(code, &nonce).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "franceconnect identification refused");
            return notice(
                StatusCode::BAD_GATEWAY,
                "L'identification FranceConnect n'a pas abouti",
                vec![e.to_string()],
                RESTART,
            );
        }
    };
    let logout_state = secrets::new_token();
    keep_identity(&mut tx, draft, &identity, &logout_state).await?;
    tx.commit().await?;
    match shared.fc.logout_url(&id_token, &logout_state).await {
        Ok(url) => Ok(see_other(url)),
        // The identity is captured; without FranceConnect's logout the recap still follows.
        Err(_) => Ok(see_other(format!("/mandats/preparation/{draft}"))),
    }
}

/// Writes the identity into the draft, with the hash of the state FranceConnect's logout will
/// bring back.
async fn keep_identity(
    tx: &mut TenantTx,
    draft: Uuid,
    identity: &Identity,
    logout_state: &str,
) -> Result<(), sqlx::Error> {
    let logout_hash = secrets::token_hash(logout_state);
    sqlx::query("UPDATE mandate_drafts SET identity = $2, logout_state_hash = $3 WHERE id = $1")
        .bind(draft)
        .bind(sqlx::types::Json(identity))
        .bind(&logout_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    state: Option<String>,
}

#[handler]
pub async fn fc_logged_out(scope: Scope, Query(q): Query<LogoutQuery>) -> PageResult<Response> {
    let state = q.state.unwrap_or_default();
    let mut tx = scope.tenant.begin().await?;
    let draft: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM mandate_drafts WHERE logout_state_hash = $1 AND session_hash = $2 AND expires_at > now()",
    )
    .bind(secrets::token_hash(&state))
    .bind(&scope.me.session_hash)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match draft {
        Some(id) => Ok(see_other(format!("/mandats/preparation/{id}"))),
        None => notice(
            StatusCode::BAD_REQUEST,
            "Création de mandat introuvable",
            vec![MandateError::DraftUnavailable.to_string()],
            Some(("/mandats/nouveau", "Nouveau mandat")),
        ),
    }
}
