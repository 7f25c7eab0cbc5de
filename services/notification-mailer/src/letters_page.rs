//! `/courriers`: the structure's batches of letters to print (receipts of usagers with neither
//! e-mail nor mobile phone), newest first, each a 10-minute link to its PDF in the vault, and
//! how many letters wait for the next batch. For the structure's aidants and référents
//! (`letter:print`), in the aidant's space (the mandate service's request scope and
//! navigation).

use askama::Template;
use document_vault_bridge::vault::Vault;
use foundation::app::Platform;
use foundation::auth::guard;
use foundation::auth::scope::Scope;
use foundation::paris::date_time;
use foundation::web::PageResult;
use foundation::web::aidant_navigation as nav;
use foundation::web::{NavItem, STATE, Theme, html};
use poem::web::Data;
use poem::{Response, handler};
use policies::Action;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const THEME: &Theme = &STATE;

#[derive(Template)]
#[template(path = "letters.html")]
struct LettersPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: &'a str,
    pending: i64,
    batches: Vec<LetterBatchRow>,
}

pub struct LetterBatchRow {
    pub created: String,
    pub letters: i32,
    pub link: String,
}

/// A batch as the page lists it.
#[derive(sqlx::FromRow)]
struct StoredBatch {
    created_at: OffsetDateTime,
    letter_count: i32,
    document_id: Uuid,
}

/// The structure's batches of receipts to print and post (usagers with neither e-mail nor
/// mobile phone), newest first, each a short-lived link to its PDF; and how many letters wait for
/// the next batch.
#[handler]
pub async fn letters(
    platform: Data<&Platform>,
    vault: Data<&Vault>,
    scope: Scope,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::LetterPrint).await?;
    let mut tx = scope.tenant.begin().await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE channel = 'letter' AND structure_id = $1
           AND sent_at IS NULL AND sending_started_at IS NULL AND attempts < $2",
    )
    .bind(scope.structure.id)
    .bind(foundation::outbox::MAX_ATTEMPTS)
    .fetch_one(&mut *tx)
    .await?;
    let rows: Vec<StoredBatch> = sqlx::query_as(
        "SELECT created_at, letter_count, document_id FROM letter_batches
         WHERE structure_id = $1 AND created_at > now() - make_interval(days => $2)
         ORDER BY created_at DESC LIMIT 100",
    )
    .bind(scope.structure.id)
    .bind(foundation::outbox::LETTER_BATCH_RETENTION_DAYS as i32)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let now = OffsetDateTime::now_utc();
    let departement = scope.tenant.departement();
    html(&LettersPage {
        theme: THEME,
        nav: nav("/courriers"),
        structure: &scope.structure.name,
        pending,
        batches: rows
            .into_iter()
            .map(|b| LetterBatchRow {
                created: date_time(b.created_at),
                letters: b.letter_count,
                link: vault.link(
                    departement.as_str(),
                    b.document_id,
                    Duration::minutes(10),
                    now,
                ),
            })
            .collect(),
    })
}
