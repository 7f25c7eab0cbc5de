//! `/mesures/:id/decision`: a measure's court decision (PDF, PNG or JPEG, at most 10 MB),
//! stored in the vault (encrypted with the tenant's key, kept for the mandate archive period)
//! and shown through a short-lived link. Sending another file replaces it (the previous stays
//! in the store until its retention ends, as the journal refers to it). A file that is not a
//! PDF or an image, or too large, comes back with a French error and nothing is written.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::{csrf, guard};
use foundation::ids::MandateId;
use foundation::journal::{self, Event, NewEntry};
use foundation::web::{NavItem, PageError, PageResult, Theme};
use poem::web::{Data, Multipart, Path};
use poem::{Body, FromRequest, Request, Response, handler};
use policies::Action;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::judicial::guardian_service;
use super::{Shared, THEME, form_answer, nav, parse_id, see_other};
use crate::judicial::{fr_date, kind_label};
use crate::scope::{Scope, VerifiedScope};

/// The largest decision accepted.
pub const MAX_DECISION_BYTES: usize = 10 * 1024 * 1024;

/// What the bytes are, by their first bytes: `Some` for a PDF, PNG or JPEG.
pub fn decision_format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("PDF")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("JPEG")
    } else {
        None
    }
}

#[derive(Template)]
#[template(path = "measure_decision.html")]
struct DecisionPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    id: MandateId,
    case_number: String,
    person: String,
    kind: String,
    ends: String,
    link: Option<String>,
    done: bool,
    error: Option<String>,
}

type Row = (Option<String>, String, String, String, Option<Uuid>);

async fn measure(scope: &Scope, id: MandateId) -> PageResult<Row> {
    let mut tx = scope.tenant.begin().await?;
    let row: Option<Row> = sqlx::query_as(
        "SELECT j.case_number, u.family_name || ' ' || u.given_name, j.kind, j.ends::text,
                j.decision_document_id
         FROM judicial_measures j JOIN mandates m ON m.id = j.mandate_id
         JOIN usagers u ON u.id = m.usager_id
         WHERE j.mandate_id = $1 AND j.structure_id = $2",
    )
    .bind(id)
    .bind(scope.structure.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.ok_or_else(PageError::not_found)
}

async fn page(
    req: &Request,
    platform: &Platform,
    shared: &Shared,
    scope: &Scope,
    id: MandateId,
    done: bool,
    error: Option<String>,
) -> PageResult<Response> {
    let (case_number, person, kind, ends, document) = measure(scope, id).await?;
    let now = OffsetDateTime::now_utc();
    let departement = scope.tenant.departement();
    let failed = error.is_some();
    form_answer(
        &DecisionPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            id,
            case_number: case_number.unwrap_or_else(|| "—".into()),
            person,
            kind: kind_label(&kind).to_owned(),
            ends: fr_date(&ends),
            link: document.map(|d| {
                shared
                    .documents
                    .link(departement.as_str(), d, Duration::minutes(10), now)
            }),
            done,
            error,
        },
        failed,
    )
}

/// `GET /mesures/:id/decision`.
#[handler]
pub async fn show(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    scope: Scope,
    Path(id): Path<String>,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateList).await?;
    let id: MandateId = parse_id(&id)?;
    let done = req.uri().query().is_some_and(|q| q.contains("envoyee=1"));
    page(req, &platform, &shared, &scope, id, done, None).await
}

/// `POST /mesures/:id/decision` (multipart: `csrf`, `decision`).
#[handler]
pub async fn upload(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    VerifiedScope(scope): VerifiedScope,
    Path(id): Path<String>,
    body: Body,
) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::MandateCreate).await?;
    // Another structure's measure is not found, whatever this structure is.
    let id: MandateId = parse_id(&id)?;
    measure(&scope, id).await?;
    if let Err(answer) = guardian_service(&scope)? {
        return Ok(answer);
    }
    let again = |error: &str| {
        let error = Some(error.to_owned());
        page(req, &platform, &shared, &scope, id, false, error)
    };
    let Ok(mut multipart) = Multipart::from_request(req, &mut poem::RequestBody::new(body)).await
    else {
        return again("Envoyez le document avec le formulaire ci-dessous.").await;
    };
    let mut file: Option<Vec<u8>> = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("decision") {
            file = field.bytes().await.ok();
        }
    }
    let bytes = match file {
        Some(b) if !b.is_empty() => b,
        _ => return again("Choisissez le fichier de la décision.").await,
    };
    if bytes.len() > MAX_DECISION_BYTES {
        return again(
            "Le fichier dépasse 10 Mo : numérisez la décision en qualité plus légère ou en PDF.",
        )
        .await;
    }
    let Some(format) = decision_format(&bytes) else {
        return again("Le fichier n'est ni un PDF ni une image (PNG ou JPEG) : envoyez la décision dans l'un de ces formats.").await;
    };
    let stored = match shared
        .documents
        .store(
            &platform,
            &scope.tenant,
            scope.structure.tenant_id,
            "court_decision",
            &bytes,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "court decision not stored");
            return again("Le stockage des documents est momentanément indisponible : réessayez dans quelques minutes.").await;
        }
    };
    let attached = async {
        let mut tx = scope.tenant.begin().await?;
        let usager: Option<foundation::ids::UsagerId> = sqlx::query_scalar(
            "UPDATE judicial_measures j SET decision_document_id = $3 FROM mandates m
             WHERE j.mandate_id = $1 AND j.structure_id = $2 AND m.id = j.mandate_id
             RETURNING m.usager_id",
        )
        .bind(id)
        .bind(scope.structure.id)
        .bind(stored.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(usager) = usager else {
            return Ok(false);
        };
        shared
            .documents
            .record(&mut tx, &stored, "court_decision")
            .await?;
        journal::append(
            &mut tx,
            NewEntry::new(Event::JudicialDecisionAttached)
                .structure(scope.structure.id)
                .professional(scope.me.id)
                .usager(usager)
                .mandate(id)
                .details(json!({
                    "document": stored.id,
                    "format": format,
                    "sha256": hex::encode(Sha256::digest(&bytes)),
                })),
        )
        .await?;
        tx.commit().await?;
        Ok::<bool, sqlx::Error>(true)
    }
    .await;
    match attached {
        Ok(true) => Ok(see_other(format!("/mesures/{id}/decision?envoyee=1"))),
        Ok(false) => {
            shared.documents.discard(&stored).await;
            Err(PageError::not_found())
        }
        Err(e) => {
            shared.documents.discard(&stored).await;
            Err(e.into())
        }
    }
}
