//! The aidant's charter and activation (product.md §4.5–4.6).
//!
//! The charter is versioned text (`platform.charter_versions`; the newest published is
//! current). When a trainer records an aidant as present, a single-use link (7 days, SHA-256
//! stored, sealed in the outbox) asks them to accept the current version; its GET shows the text
//! and consumes nothing, its POST records the acceptance (version and time). A professional
//! who holds an aidant role and has not accepted the current version is asked again at their
//! next login (`/compte/charte`).
//!
//! A habilitation file whose training was attended, with a Pix result and the current charter
//! accepted by its address, is activated once (`platform.habilitation_activations`): the
//! account is found or created, the `aidant` role granted in the file's structure, the
//! enrolment link mailed when the person has no second factor yet, and the structure's
//! référents told — in one platform transaction. The territory's copy (file state `active`,
//! journal) follows, and the job `activate_ready_files` completes both steps for files that
//! became ready without a page (a Pix import from the CLI, say).

use foundation::web::PageResult;
use std::time::Duration;

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::secrets::{new_token, token_hash};
use foundation::auth::session::Professional;
use foundation::ids::{ProfessionalId, StructureId};
use foundation::jobs::{Job, TerritoryFailures};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Role;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::accounts;
use crate::views::{MessagePage, THEME, nav, safe_next};

/// How long a charter link stays valid.
pub const LINK_DAYS: i32 = 7;

/// The current charter: (version, text).
pub async fn current(conn: &mut PgConnection) -> Result<(String, String), sqlx::Error> {
    sqlx::query_as(
        "SELECT version, body FROM platform.charter_versions WHERE published_at <= now()
         ORDER BY published_at DESC, version DESC LIMIT 1",
    )
    .fetch_one(&mut *conn)
    .await
}

/// Whether this address accepted the current version.
pub async fn accepted(conn: &mut PgConnection, email: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.charter_acceptances c
                        WHERE c.email = $1 AND c.version = (SELECT version FROM platform.charter_versions
                              WHERE published_at <= now() ORDER BY published_at DESC, version DESC LIMIT 1))",
    )
    .bind(email)
    .fetch_one(&mut *conn)
    .await
}

/// Mails a charter link to the address unless the current version is accepted already (in
/// the caller's platform transaction).
pub async fn send_link(
    conn: &mut PgConnection,
    platform: &Platform,
    email: &str,
) -> Result<bool, sqlx::Error> {
    if accepted(conn, email).await? {
        return Ok(false);
    }
    let (version, _) = current(conn).await?;
    let token = new_token();
    sqlx::query(
        "INSERT INTO platform.charter_links (token_hash, email, version, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(days => $4))",
    )
    .bind(token_hash(&token))
    .bind(email)
    .bind(&version)
    .bind(LINK_DAYS)
    .execute(&mut *conn)
    .await?;
    outbox::enqueue_platform_sealed(
        conn,
        &platform.cipher,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: email.to_owned(),
            template: "charter_link",
            payload: json!({
                "url": format!("{}/charte?jeton={token}", crate::requests::public_url(platform)),
            }),
        },
    )
    .await?;
    Ok(true)
}

async fn record(conn: &mut PgConnection, email: &str, version: &str) -> Result<(), sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO platform.charter_acceptances (email, version) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(email)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if fresh == 1 {
        security::append(
            conn,
            SecurityEvent::CharterAccepted,
            None,
            None,
            json!({ "version": version }),
        )
        .await?;
    }
    Ok(())
}

/// A file ready for activation.
#[derive(sqlx::FromRow)]
struct Ready {
    file_id: Uuid,
    departement_code: String,
    structure_id: StructureId,
    email: String,
    display_name: String,
}

/// Activates the ready files (of one address, or all). Returns how many were activated.
pub async fn activate_ready(platform: &Platform, email: Option<&str>) -> anyhow::Result<u64> {
    let ready: Vec<Ready> = sqlx::query_as(
        "SELECT i.file_id, i.departement_code, i.structure_id, i.email, i.display_name
         FROM platform.habilitation_file_index i
         WHERE ($1::text IS NULL OR i.email = $1)
           AND EXISTS (SELECT 1 FROM platform.training_registrations r WHERE r.file_id = i.file_id AND r.status = 'attended')
           AND EXISTS (SELECT 1 FROM platform.pix_results p WHERE p.file_id = i.file_id)
           AND EXISTS (SELECT 1 FROM platform.charter_acceptances c WHERE c.email = i.email
                       AND c.version = (SELECT version FROM platform.charter_versions WHERE published_at <= now()
                                        ORDER BY published_at DESC, version DESC LIMIT 1))
           AND NOT EXISTS (SELECT 1 FROM platform.habilitation_activations a WHERE a.file_id = i.file_id)
         ORDER BY i.created_at LIMIT 500",
    )
    .bind(email)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut done = 0;
    let mut failures = TerritoryFailures::default();
    for file in ready {
        let Ok(d) = DepartementCode::parse(&file.departement_code) else {
            continue;
        };
        // A territory that fails (its node down, say) holds back no other territory's files;
        // its own wait for the next run.
        if failures.skips(d) {
            continue;
        }
        match activate_file(platform, d, &file).await {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(e) => failures.note(d, &e),
        }
    }
    sync(platform, &mut failures).await?;
    failures.result(done)
}

/// Activates one ready file of `d`'s: whether it was activated here (not withdrawn, its
/// structure active, not activated meanwhile by another run).
async fn activate_file(
    platform: &Platform,
    d: DepartementCode,
    file: &Ready,
) -> anyhow::Result<bool> {
    // A withdrawn file, or one of a deactivated structure, opens nothing. The territory's part
    // is bounded (a territory that hangs is noted like one that fails); the platform's is not:
    // a platform that hangs holds every territory alike, until the run's own bound.
    let reading = async {
        let tenant = platform.tenancy.unguarded(d).await?;
        let mut dep = tenant.begin().await?;
        let open: Option<(String, bool, String)> = sqlx::query_as(
            "SELECT f.state, s.active, s.name FROM habilitation_files f JOIN structures s ON s.id = f.structure_id
             WHERE f.id = $1",
        )
        .bind(file.file_id)
        .fetch_optional(&mut *dep)
        .await?;
        dep.rollback().await?;
        Ok(open)
    };
    let open = foundation::jobs::bounded(platform, d, reading).await?;
    let Some((state, active, structure_name)) = open else {
        return Ok(false);
    };
    if state == "withdrawn" || !active {
        return Ok(false);
    }
    let mut tx = platform.platform_pool().begin().await?;
    let existing: Option<ProfessionalId> =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
            .bind(&file.email)
            .fetch_optional(&mut *tx)
            .await?;
    let professional = match existing {
        Some(id) => id,
        None => accounts::create_professional(&mut tx, &file.email, &file.display_name)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let claimed = sqlx::query(
        "INSERT INTO platform.habilitation_activations (file_id, professional_id) VALUES ($1, $2)
         ON CONFLICT (file_id) DO NOTHING",
    )
    .bind(file.file_id)
    .bind(professional)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(false);
    }
    accounts::grant_role(
        &mut tx,
        professional,
        Role::Aidant,
        file.structure_id.domain(),
        Some(d.as_str()),
    )
    .await?;
    let has_factor: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.second_factors
                        WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL)",
    )
    .bind(professional)
    .fetch_one(&mut *tx)
    .await?;
    let public = crate::requests::public_url(platform);
    if has_factor {
        outbox::enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: file.email.clone(),
                template: "habilitation_opened",
                payload: json!({
                    "structure": structure_name,
                    "next": "Connectez-vous avec votre compte habituel, puis choisissez cette structure dans votre espace.",
                    "url": format!("{public}/connexion"),
                }),
            },
        )
        .await?;
    } else {
        accounts::send_enrolment_link(&mut tx, &platform.cipher, professional, &public).await?;
    }
    let referents: Vec<String> = sqlx::query_scalar(
        "SELECT p.email FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.role = 'referent' AND a.domain = $1 AND p.active",
    )
    .bind(file.structure_id.domain().to_string())
    .fetch_all(&mut *tx)
    .await?;
    for to in referents {
        outbox::enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: to,
                template: "aidant_habilitated",
                payload: json!({ "name": file.display_name, "structure": structure_name }),
            },
        )
        .await?;
    }
    security::append(
        &mut tx,
        SecurityEvent::AidantActivated,
        Some(professional),
        None,
        json!({ "file": file.file_id, "structure": file.structure_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Writes the territory's copy of activations not written yet (file state, journal).
async fn sync(platform: &Platform, failures: &mut TerritoryFailures) -> anyhow::Result<()> {
    let pending: Vec<(Uuid, ProfessionalId, String, StructureId)> = sqlx::query_as(
        "SELECT a.file_id, a.professional_id, i.departement_code, i.structure_id
         FROM platform.habilitation_activations a JOIN platform.habilitation_file_index i ON i.file_id = a.file_id
         WHERE a.synced_at IS NULL LIMIT 500",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    for (file, professional, code, structure) in pending {
        let Ok(d) = DepartementCode::parse(&code) else {
            continue;
        };
        if failures.skips(d) {
            continue;
        }
        if let Err(e) = sync_file(platform, d, file, professional, structure).await {
            failures.note(d, &e);
        }
    }
    Ok(())
}

/// Writes one activation's territory copy, then marks it written.
async fn sync_file(
    platform: &Platform,
    d: DepartementCode,
    file: Uuid,
    professional: ProfessionalId,
    structure: StructureId,
) -> anyhow::Result<()> {
    let copying = async {
        let tenant = platform.tenancy.unguarded(d).await?;
        let mut dep = tenant.begin().await?;
        let changed = sqlx::query(
            "UPDATE habilitation_files SET state = 'active', professional_id = $2
         WHERE id = $1 AND state <> 'active'",
        )
        .bind(file)
        .bind(professional)
        .execute(&mut *dep)
        .await?
        .rows_affected();
        if changed == 1 {
            journal::append(
                &mut dep,
                NewEntry::new(Event::AidantActivated)
                    .structure(structure)
                    .professional(professional)
                    .details(json!({ "file": file })),
            )
            .await?;
        }
        dep.commit().await?;
        Ok(())
    };
    foundation::jobs::bounded(platform, d, copying).await?;
    sqlx::query(
        "UPDATE platform.habilitation_activations SET synced_at = now() WHERE file_id = $1",
    )
    .bind(file)
    .execute(platform.platform_pool())
    .await?;
    Ok(())
}

/// The job: activates files that became ready, and completes the territory's copies.
pub fn job() -> Job {
    Job::new(
        "activate_ready_files",
        Duration::from_secs(60),
        |platform: Platform| async move { activate_ready(&platform, None).await },
    )
}

// ---------------------------------------------------------------------------------------------
// Pages.

#[derive(Template)]
#[template(path = "charter.html")]
struct CharterPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    version: String,
    lines: Vec<String>,
    action: &'a str,
    token: String,
    next: String,
    renewed: bool,
}

#[derive(Deserialize)]
pub struct LinkQuery {
    jeton: Option<String>,
}

fn invalid_link() -> PageResult<Response> {
    crate::views::message_page(
        StatusCode::BAD_REQUEST,
        "/charte",
        "Ce lien n'est plus valable",
        vec![
            "Ce lien d'acceptation de la charte a déjà servi, a expiré (il vaut 7 jours) ou est incomplet.",
            "Demandez au référent de votre structure de vous renvoyer un lien, ou acceptez la charte à votre prochaine connexion.",
        ],
        None,
    )
}

/// `GET /charte?jeton=…`: the charter; consumes nothing.
#[handler]
pub async fn link_page(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<LinkQuery>,
) -> PageResult<Response> {
    let Some(token) = q.jeton.filter(|t| !t.is_empty() && t.len() < 200) else {
        return invalid_link();
    };
    let mut conn = platform.platform_pool().acquire().await?;
    let body: Option<(String, String)> = sqlx::query_as(
        "SELECT v.version, v.body FROM platform.charter_links l JOIN platform.charter_versions v ON v.version = l.version
         WHERE l.token_hash = $1 AND l.consumed_at IS NULL AND l.expires_at > now()",
    )
    .bind(token_hash(&token))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((version, body)) = body else {
        return invalid_link();
    };
    html(&CharterPage {
        theme: THEME,
        nav: nav("/charte"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        version,
        lines: body.lines().map(str::to_owned).collect(),
        action: "/charte",
        token,
        next: String::new(),
        renewed: false,
    })
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    jeton: String,
    #[serde(default)]
    suite: String,
}

/// `POST /charte`: records the acceptance, then activates what became ready.
#[handler]
pub async fn accept_link(
    platform: Data<&Platform>,
    Form(f): Form<AcceptForm>,
) -> PageResult<Response> {
    if f.jeton.is_empty() || f.jeton.len() >= 200 {
        return invalid_link();
    }
    let mut tx = platform.platform_pool().begin().await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "UPDATE platform.charter_links SET consumed_at = now()
         WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now() RETURNING email, version",
    )
    .bind(token_hash(&f.jeton))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((email, version)) = row else {
        return invalid_link();
    };
    record(&mut tx, &email, &version).await?;
    tx.commit().await?;
    let opened = activate_ready(&platform, Some(&email))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "activation deferred to the job");
            0
        });
    html(&MessagePage {
        theme: THEME,
        nav: nav("/charte"),
        heading: "Charte acceptée",
        paragraphs: if opened > 0 {
            vec![
                "Merci : votre acceptation de la charte est enregistrée.",
                "Votre formation et votre certification Pix étant validées, votre habilitation est ouverte : vérifiez votre messagerie pour activer votre compte (ou vous connecter, si vous en avez déjà un).",
            ]
        } else {
            vec![
                "Merci : votre acceptation de la charte est enregistrée.",
                "Votre habilitation s'ouvrira dès que votre formation et votre certification Pix seront enregistrées ; vous serez prévenu par e-mail.",
            ]
        },
        link: None,
    })
}

#[derive(Deserialize)]
pub struct NextQuery {
    suite: Option<String>,
}

/// `GET /compte/charte`: a new version to accept (asked at login).
#[handler]
pub async fn session_page(
    req: &Request,
    platform: Data<&Platform>,
    _me: Professional,
    Query(q): Query<NextQuery>,
) -> PageResult<Response> {
    let mut conn = platform.platform_pool().acquire().await?;
    let (version, body) = current(&mut conn).await?;
    html(&CharterPage {
        theme: THEME,
        nav: nav("/compte"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        version,
        lines: body.lines().map(str::to_owned).collect(),
        action: "/compte/charte",
        token: String::new(),
        next: safe_next(q.suite.as_deref()),
        renewed: true,
    })
}

/// `POST /compte/charte`: the professional accepts the current version.
#[handler]
pub async fn session_accept(
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<AcceptForm>,
) -> PageResult<Response> {
    let mut tx = platform.platform_pool().begin().await?;
    let (version, _) = current(&mut tx).await?;
    record(&mut tx, &me.email, &version).await?;
    tx.commit().await?;
    Ok(Redirect::see_other(safe_next(Some(&f.suite))).into_response())
}

/// Whether a professional holding an aidant role must accept the current charter first: they
/// accepted an earlier version, not this one.
pub async fn must_accept(
    platform: &Platform,
    professional: ProfessionalId,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let mut conn = platform.platform_pool().acquire().await?;
    let aidant: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.role_assignments WHERE professional_id = $1 AND role = 'aidant')",
    )
    .bind(professional)
    .fetch_one(&mut *conn)
    .await?;
    // A new version asks again those who accepted an earlier one.
    let earlier: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.charter_acceptances WHERE email = $1)",
    )
    .bind(email)
    .fetch_one(&mut *conn)
    .await?;
    Ok(aidant && earlier && !accepted(&mut conn, email).await?)
}
