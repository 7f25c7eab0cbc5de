//! Rollout waves (product.md §3): the national team groups départements into waves, each with a
//! planned opening date, and opens them in turn. A département in no wave, or in a wave not
//! opened yet, is not open: its requests are accepted as "waiting" and enter review when its
//! wave opens (issuers told). Opening records the wave in the platform schema first, then
//! releases each territory's waiting requests; the job `release_waiting_requests` releases
//! whatever a failure, an unserved territory or a submission racing the opening left behind.

use foundation::web::{PageError, PageResult};
use std::time::Duration;

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::ProfessionalId;
use foundation::jobs::{Job, TerritoryFailures};
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::requests::form::FieldErrors;
use crate::views::{THEME, nav};

/// A wave with its départements.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Wave {
    pub id: Uuid,
    pub name: String,
    pub opens_on: Date,
    pub opened_at: Option<OffsetDateTime>,
    pub departements: Vec<String>,
}

impl Wave {
    pub fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }

    /// "Gironde (33), Landes (40)".
    pub fn departement_names(&self) -> String {
        self.departements
            .iter()
            .map(|c| match DepartementCode::parse(c) {
                Ok(d) => format!("{} ({})", d.name(), d.as_str()),
                Err(_) => c.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn opens_on_text(&self) -> String {
        paris::day(self.opens_on)
    }

    pub fn state(&self) -> String {
        match self.opened_at {
            Some(at) => format!("Ouverte le {}", paris::date_time(at)),
            None => format!("Prévue le {}", paris::day(self.opens_on)),
        }
    }
}

/// Whether the département's wave is open.
pub async fn is_open(pool: &PgPool, departement: DepartementCode) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.rollout_wave_departements d
                        JOIN platform.rollout_waves w ON w.id = d.wave_id
                        WHERE d.departement_code = $1 AND w.opened_at IS NOT NULL)",
    )
    .bind(departement.as_str())
    .fetch_one(pool)
    .await
}

/// A read of rollout waves, as one static string: the columns and joins, then `$tail`.
macro_rules! waves_sql {

    ($tail:literal) => {

        concat!("SELECT w.id, w.name, w.opens_on, w.opened_at,
        COALESCE(array_agg(d.departement_code ORDER BY d.departement_code) FILTER (WHERE d.departement_code IS NOT NULL), '{}') AS departements
     FROM platform.rollout_waves w LEFT JOIN platform.rollout_wave_departements d ON d.wave_id = w.id", " ", $tail)

    };

}

/// Every wave, in opening order.
pub async fn list(pool: &PgPool) -> Result<Vec<Wave>, sqlx::Error> {
    sqlx::query_as(waves_sql!("GROUP BY w.id ORDER BY w.opens_on, w.name"))
        .fetch_all(pool)
        .await
}

/// The wave of a département, if it is in one.
pub async fn wave_of(
    pool: &PgPool,
    departement: DepartementCode,
) -> Result<Option<Wave>, sqlx::Error> {
    sqlx::query_as(waves_sql!("WHERE w.id = (SELECT wave_id FROM platform.rollout_wave_departements WHERE departement_code = $1)
         GROUP BY w.id"))
    .bind(departement.as_str())
    .fetch_optional(pool)
    .await
}

/// A new wave as typed.
#[derive(Debug, Default, Deserialize)]
pub struct WaveForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub opens_on: String,
    #[serde(default)]
    pub departements: String,
}

/// Creates a wave; every error on its field, nothing written unless all is valid.
pub async fn create(
    pool: &PgPool,
    form: &WaveForm,
    by: ProfessionalId,
) -> Result<Uuid, Result<FieldErrors, sqlx::Error>> {
    let mut e = FieldErrors::default();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        e.add("name", "Donnez un nom à la vague (100 caractères au plus), par exemple « Vague 3 — printemps 2027 ».");
    }
    let opens_on = Date::parse(
        form.opens_on.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    );
    if opens_on.is_err() {
        e.add(
            "opens_on",
            "Indiquez la date d'ouverture prévue au format jj/mm/aaaa.",
        );
    }
    let mut codes = Vec::new();
    let mut unknown = Vec::new();
    for token in form
        .departements
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        match DepartementCode::parse(token) {
            Ok(d) if !codes.contains(&d.as_str()) => codes.push(d.as_str()),
            Ok(_) => {}
            Err(_) => unknown.push(token.to_owned()),
        }
    }
    if !unknown.is_empty() {
        e.add(
            "departements",
            format!(
                "Codes de département inconnus : {}. Utilisez les codes INSEE (01…95, 2A, 2B, 971…976).",
                unknown.join(", ")
            ),
        );
    } else if codes.is_empty() {
        e.add(
            "departements",
            "Indiquez au moins un département (codes INSEE séparés par des virgules).",
        );
    }
    let taken: Vec<(String, String)> = sqlx::query_as(
        "SELECT d.departement_code, w.name FROM platform.rollout_wave_departements d
         JOIN platform.rollout_waves w ON w.id = d.wave_id WHERE d.departement_code = ANY($1) ORDER BY 1",
    )
    .bind(&codes)
    .fetch_all(pool)
    .await
    .map_err(Err)?;
    if !taken.is_empty() {
        e.add(
            "departements",
            format!(
                "Déjà dans une vague : {}.",
                taken
                    .iter()
                    .map(|(c, w)| format!("{c} ({w})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM platform.rollout_waves WHERE name = $1)")
            .bind(name)
            .fetch_one(pool)
            .await
            .map_err(Err)?;
    if exists {
        e.add("name", "Une vague porte déjà ce nom.");
    }
    let Ok(opens_on) = opens_on else {
        return Err(Ok(e));
    };
    if !e.is_empty() {
        return Err(Ok(e));
    }
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await.map_err(Err)?;
    sqlx::query(
        "INSERT INTO platform.rollout_waves (id, name, opens_on, created_by) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(name)
    .bind(opens_on)
    .bind(by)
    .execute(&mut *tx)
    .await
    .map_err(Err)?;
    let inserted = sqlx::query(
        "INSERT INTO platform.rollout_wave_departements (departement_code, wave_id)
         SELECT unnest($1::text[]), $2 ON CONFLICT (departement_code) DO NOTHING",
    )
    .bind(&codes)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(Err)?
    .rows_affected();
    if inserted as usize != codes.len() {
        // Another wave took one of them meanwhile: nothing is kept.
        tx.rollback().await.map_err(Err)?;
        let mut e = FieldErrors::default();
        e.add(
            "departements",
            "Un de ces départements vient d'être placé dans une autre vague ; rechargez la page.",
        );
        return Err(Ok(e));
    }
    security::append(
        &mut tx,
        SecurityEvent::WaveCreated,
        None,
        Some(by),
        json!({ "wave": id, "departements": codes }),
    )
    .await
    .map_err(Err)?;
    tx.commit().await.map_err(Err)?;
    Ok(id)
}

/// Opens a wave (once) and releases its territories' waiting requests. Returns how many were
/// released now, or `None` when the wave was already open or does not exist.
pub async fn open(
    platform: &Platform,
    wave: Uuid,
    by: ProfessionalId,
) -> Result<Option<usize>, sqlx::Error> {
    let mut tx = platform.platform_pool().begin().await?;
    let departements: Option<Vec<String>> = sqlx::query_scalar(
        "UPDATE platform.rollout_waves SET opened_at = now(), opened_by = $2
         WHERE id = $1 AND opened_at IS NULL
         RETURNING (SELECT COALESCE(array_agg(departement_code), '{}') FROM platform.rollout_wave_departements WHERE wave_id = $1)",
    )
    .bind(wave)
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(departements) = departements else {
        return Ok(None);
    };
    security::append(
        &mut tx,
        SecurityEvent::WaveOpened,
        None,
        Some(by),
        json!({ "wave": wave, "departements": departements }),
    )
    .await?;
    tx.commit().await?;
    let mut failed = TerritoryFailures::default();
    let released = release(platform, &departements, &mut failed).await;
    if let Err(e) = failed.result(released as u64) {
        tracing::warn!(error = %e, "wave opening: release deferred to the job");
    }
    Ok(Some(released))
}

/// Releases the waiting requests of these territories; those that fail are noted in `failed`
/// and their requests left to the job's next run.
async fn release(
    platform: &Platform,
    departements: &[String],
    failed: &mut TerritoryFailures,
) -> usize {
    let mut released = 0;
    for code in departements {
        let Ok(d) = DepartementCode::parse(code) else {
            continue;
        };
        if failed.skips(d) {
            continue;
        }
        let releasing = async { Ok(crate::requests::release_waiting(platform, d).await?) };
        match foundation::jobs::bounded(platform, d, releasing).await {
            Ok(n) => released += n,
            Err(e) => failed.note(d, &e),
        }
    }
    released
}

/// The job: releases waiting requests of every open territory.
pub fn release_job() -> Job {
    Job::new(
        "release_waiting_requests",
        Duration::from_secs(300),
        |platform: Platform| async move {
            let open: Vec<String> = sqlx::query_scalar(
                "SELECT d.departement_code FROM platform.rollout_wave_departements d
                 JOIN platform.rollout_waves w ON w.id = d.wave_id WHERE w.opened_at IS NOT NULL",
            )
            .fetch_all(platform.platform_pool())
            .await?;
            let served: Vec<String> = platform
                .tenancy
                .served()
                .iter()
                .map(|d| d.as_str().to_owned())
                .collect();
            let open: Vec<String> = open.into_iter().filter(|c| served.contains(c)).collect();
            let mut failed = TerritoryFailures::default();
            let released = release(&platform, &open, &mut failed).await;
            failed.result(released as u64)
        },
    )
}

#[derive(Template)]
#[template(path = "national_waves.html")]
struct WavesPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    waves: Vec<Wave>,
    form: WaveForm,
    errors: FieldErrors,
    flash: Option<&'a str>,
}

fn page(
    req: &Request,
    platform: &Platform,
    waves: Vec<Wave>,
    form: WaveForm,
    errors: FieldErrors,
    flash: Option<&str>,
) -> PageResult<Response> {
    html(&WavesPage {
        theme: THEME,
        nav: nav("/national/vagues"),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        waves,
        form,
        errors,
        flash,
    })
}

#[derive(Deserialize)]
pub struct FlashQuery {
    message: Option<String>,
}

/// `GET /national/vagues`.
#[handler]
pub async fn waves_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::WaveOpen).await?;
    let waves = list(platform.platform_pool()).await?;
    let flash = match q.message.as_deref() {
        Some("creee") => Some("La vague est enregistrée."),
        Some("ouverte") => Some(
            "La vague est ouverte : les demandes en attente de ses départements entrent en examen et leurs demandeurs sont prévenus.",
        ),
        Some("deja-ouverte") => Some("Cette vague était déjà ouverte."),
        _ => None,
    };
    page(
        req,
        &platform,
        waves,
        WaveForm::default(),
        FieldErrors::default(),
        flash,
    )
}

/// `POST /national/vagues`: creates a wave.
#[handler]
pub async fn create_wave(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<WaveForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::WaveOpen).await?;
    match create(platform.platform_pool(), &f, me.id).await {
        Ok(_) => Ok(Redirect::see_other("/national/vagues?message=creee").into_response()),
        Err(Ok(errors)) => {
            let waves = list(platform.platform_pool()).await?;
            let mut resp = page(req, &platform, waves, f, errors, None)?;
            resp.set_status(StatusCode::BAD_REQUEST);
            Ok(resp)
        }
        Err(Err(e)) => Err(PageError::from(e)),
    }
}

#[derive(Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    vague: String,
}

/// `POST /national/vagues/ouvrir`: opens a wave.
#[handler]
pub async fn open_wave(
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<OpenForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::WaveOpen).await?;
    let id = Uuid::parse_str(f.vague.trim())
        .map_err(|_| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM platform.rollout_waves WHERE id = $1)")
            .bind(id)
            .fetch_one(platform.platform_pool())
            .await?;
    if !exists {
        return Err(PageError::not_found());
    }
    let message = match open(&platform, id, me.id).await? {
        Some(_) => "ouverte",
        None => "deja-ouverte",
    };
    Ok(Redirect::see_other(format!("/national/vagues?message={message}")).into_response())
}
