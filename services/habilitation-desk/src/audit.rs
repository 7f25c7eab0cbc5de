//! The auditor's space (`/audit`): a tenant's data-protection officer or an inspector (role
//! `auditor` in `tenant:<id>`, read-only) browses the territory's journal — filtered by kind,
//! structure and period, newest first — runs the verification of the whole chain in the
//! background and follows its progress, and downloads the export that `tenant-admin journal
//! verify --file` checks offline.
//!
//! A commune tenant's auditor reads only the entries of the commune's structures; in their
//! export every other entry is redacted (its links kept, so the chain still verifies). People
//! helped appear only by pseudonymous ids; professionals by name (the auditor checks who acted).

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::session::Professional;
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Anchor, CheckpointKey};
use foundation::paris;
use foundation::tenancy::Territory;
use foundation::web::{NavItem, Theme, html, html_status};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::Action;
use secrecy::ExposeSecret;
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::territory_space::{Tenant, held_or_refused, scoped, structures};
use crate::views::{THEME, nav};

/// Entries per page.
const PAGE: i64 = 50;

/// The structures whose entries the auditor reads: the commune's (`Some`), or every entry of
/// the département for a council (`None`).
async fn visible(
    context: &Territory,
    tenant: &Tenant,
) -> PageResult<(Option<Vec<StructureId>>, Vec<(StructureId, String)>)> {
    let rows = structures(context, tenant.id).await?;
    let names: Vec<(StructureId, String)> = rows.iter().map(|s| (s.id, s.name.clone())).collect();
    Ok(match tenant.commune_code {
        Some(_) => (Some(rows.iter().map(|s| s.id).collect()), names),
        None => (None, names),
    })
}

#[derive(Template)]
#[template(path = "audit_home.html")]
struct HomePage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    tenants: Vec<Tenant>,
}

/// `GET /audit`: the tenants whose journal the professional audits.
#[handler]
pub async fn home(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let tenants = held_or_refused(&platform, &me, Action::JournalRead).await?;
    html(&HomePage {
        theme: THEME,
        nav: nav("/audit"),
        tenants,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    structure: String,
    #[serde(default)]
    du: String,
    #[serde(default)]
    au: String,
    avant: Option<i64>,
}

/// The filters, checked: kind, structure, from (inclusive), to (inclusive), or the French
/// errors.
type Checked = (
    Option<String>,
    Option<StructureId>,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

/// `AAAA-MM-JJ`.
fn parse_day(text: &str) -> Option<Date> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if !(1900..=2200).contains(&year) {
        return None;
    }
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

fn check(
    f: &Filters,
    kinds: &[String],
    structures: &[(StructureId, String)],
) -> Result<Checked, Vec<&'static str>> {
    let mut errors = Vec::new();
    let kind = match f.kind.trim() {
        "" => None,
        k if kinds.iter().any(|x| x == k) => Some(k.to_owned()),
        _ => {
            errors.push("Ce type d'événement n'existe pas dans ce journal.");
            None
        }
    };
    let structure = match f.structure.trim() {
        "" => None,
        s => match s
            .parse::<StructureId>()
            .ok()
            .filter(|id| structures.iter().any(|x| x.0 == *id))
        {
            Some(id) => Some(id),
            None => {
                errors.push("Cette structure n'est pas de votre collectivité.");
                None
            }
        },
    };
    let day = |text: &str, what: &'static str, errors: &mut Vec<&'static str>| match text.trim() {
        "" => None,
        t => match parse_day(t) {
            Some(d) => Some(d),
            None => {
                errors.push(what);
                None
            }
        },
    };
    let from = day(
        &f.du,
        "La date de début s'écrit AAAA-MM-JJ, par exemple 2026-11-01.",
        &mut errors,
    );
    let to = day(
        &f.au,
        "La date de fin s'écrit AAAA-MM-JJ, par exemple 2026-11-30.",
        &mut errors,
    );
    if let (Some(a), Some(b)) = (from, to) {
        if a > b {
            errors.push("La période commence après sa fin : inversez les deux dates.");
        } else if (b - a).whole_days() > 3_660 {
            errors.push("La période ne peut dépasser dix ans.");
        }
    }
    let start = |d: Date| {
        paris::local(OffsetDateTime::now_utc())
            .replace_date(d)
            .replace_time(time::Time::MIDNIGHT)
    };
    if errors.is_empty() {
        Ok((
            kind,
            structure,
            from.map(start),
            to.map(|d| start(d) + time::Duration::days(1)),
        ))
    } else {
        Err(errors)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    at: OffsetDateTime,
    kind: String,
    structure_id: Option<StructureId>,
    professional_id: Option<ProfessionalId>,
    usager_id: Option<UsagerId>,
    mandate_id: Option<MandateId>,
    details: String,
}

pub struct Line {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub structure: String,
    pub professional: String,
    pub usager: String,
    pub mandate: String,
    pub details: String,
}

/// A pseudonymous id as the auditor reads it: the first 8 characters (the UUID's first
/// group, hyphenated or not).
fn short(id: Option<impl std::fmt::Display>, prefix: &str) -> String {
    id.map(|u| format!("{prefix}{}", &u.to_string()[..8]))
        .unwrap_or_else(|| "—".to_owned())
}

pub struct VerificationView {
    pub id: String,
    pub started: String,
    pub running: bool,
    pub intact: Option<bool>,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "audit_journal.html")]
struct JournalPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    tenant: Tenant,
    redacting: bool,
    kinds: Vec<(String, String)>,
    structures: Vec<(String, String)>,
    filters: Filters,
    errors: Vec<&'a str>,
    lines: Vec<Line>,
    next: Option<String>,
    can_verify: bool,
    can_export: bool,
    last: Option<VerificationView>,
}

#[derive(sqlx::FromRow)]
struct VerificationRow {
    id: Uuid,
    started_at: OffsetDateTime,
    total: i64,
    checked: i64,
    finished_at: Option<OffsetDateTime>,
    intact: Option<bool>,
    outcome: Option<String>,
}

impl VerificationRow {
    fn view(&self) -> VerificationView {
        VerificationView {
            id: self.id.to_string(),
            started: paris::date_time(self.started_at),
            running: self.finished_at.is_none(),
            intact: self.intact,
            outcome: self.outcome.clone().unwrap_or_default(),
        }
    }
}

/// The kinds of event the territory's journal holds, for the filter's list and its check. A
/// plain `SELECT DISTINCT kind` reads every entry of the journal (PostgreSQL 15 has no skip
/// scan) at each page view; this walks `journal_kind_at` from one kind to the next, one index
/// probe per kind, however long the journal.
pub const KINDS_SQL: &str = "WITH RECURSIVE k(kind) AS (
       (SELECT kind FROM journal ORDER BY kind LIMIT 1)
       UNION ALL
       SELECT (SELECT j.kind FROM journal j WHERE j.kind > k.kind ORDER BY j.kind LIMIT 1)
       FROM k WHERE k.kind IS NOT NULL)
     SELECT kind FROM k WHERE kind IS NOT NULL";

/// What one page of the journal shows: the filters checked, the auditor's scope applied.
pub struct Selection {
    pub kind: Option<String>,
    /// The structures whose entries are read (a structure filter, or a commune's scope);
    /// `None`: every entry.
    pub structures: Option<Vec<StructureId>>,
    /// From (inclusive) and to (exclusive).
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// The page ends before this entry (`avant`, the previous page's last `seq`).
    pub before: Option<i64>,
}

impl Selection {
    /// The statement, its parameters always bound in this order: `$1` kind (`text`), `$2`
    /// structures (`uuid[]`), `$3` from and `$4` to (`timestamptz`), `$5` before (`bigint`),
    /// `$6` the number of rows (`bigint`); the absent ones are null.
    ///
    /// Entries come newest first, by time then number. A filter left out never switches
    /// itself off with `$1 IS NULL OR …`, which read the journal from its newest entry until a
    /// page was kept: each statement reads about a page of an index (département migration
    /// 0033). Structures are walked one by one (a commune has few), each at most a page, then
    /// merged; a period bounds the time walked (to infinity when absent), and so does the
    /// next page's start.
    pub fn sql(&self) -> &'static str {
        PAGE_SQL[usize::from(self.structures.is_some()) * 4
            + usize::from(self.kind.is_some()) * 2
            + usize::from(self.before.is_some())]
    }
}

/// The conditions of a page of the journal: `$kind` the kind's or nothing, `$before` the
/// next page's or nothing.
macro_rules! journal_conditions_sql {
    ($kind:expr, $before:expr) => {
        concat!(
            "seq IS NOT NULL",
            $kind,
            " AND at >= coalesce($3, '-infinity'::timestamptz)",
            " AND at < coalesce($4, 'infinity'::timestamptz)",
            $before
        )
    };
}

/// The next page's condition: the entry `$5` gives the time, and an index bounds both columns
/// at once.
macro_rules! before_sql {
    () => {
        " AND (at, seq) < ((SELECT b.at FROM journal b WHERE b.seq = $5), $5)"
    };
}

/// A page of the journal: every entry, or the structures' (`$2`) walked one by one.
macro_rules! journal_page_sql {
    (all $kind:expr, $before:expr) => {
        concat!(
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details",
            " FROM journal WHERE ",
            journal_conditions_sql!($kind, $before),
            " ORDER BY at DESC, seq DESC LIMIT $6"
        )
    };
    (structures $kind:expr, $before:expr) => {
        concat!(
            "SELECT j.* FROM unnest($2::uuid[]) AS s(id) CROSS JOIN LATERAL (",
            "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details",
            " FROM journal WHERE structure_id = s.id AND ",
            journal_conditions_sql!($kind, $before),
            " ORDER BY at DESC, seq DESC LIMIT $6) AS j",
            " ORDER BY j.at DESC, j.seq DESC LIMIT $6"
        )
    };
}

/// By structures or not, then by kind or not, then the first page or a next one.
const PAGE_SQL: [&str; 8] = [
    journal_page_sql!(all "", ""),
    journal_page_sql!(all "", before_sql!()),
    journal_page_sql!(all " AND kind = $1", ""),
    journal_page_sql!(all " AND kind = $1", before_sql!()),
    journal_page_sql!(structures "", ""),
    journal_page_sql!(structures "", before_sql!()),
    journal_page_sql!(structures " AND kind = $1", ""),
    journal_page_sql!(structures " AND kind = $1", before_sql!()),
];

/// `GET /audit/collectivites/:id/journal`.
#[handler]
pub async fn journal_page(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::JournalRead).await?;
    let (scope, names) = visible(&context, &tenant).await?;
    let redacting = scope.is_some();
    // Custom plans: a generic plan for a kind, made for no kind in particular, walks the whole
    // journal by time for a rare one (`Selection::sql`).
    let mut tx = context.begin_custom_plans().await?;
    let kinds: Vec<String> = sqlx::query_scalar(KINDS_SQL).fetch_all(&mut *tx).await?;
    let (lines, next, errors) = match check(&f, &kinds, &names) {
        Err(errors) => (Vec::new(), None, errors),
        Ok((kind, structure, from, to)) => {
            let selection = Selection {
                kind,
                structures: structure.map(|s| vec![s]).or(scope),
                from,
                to,
                before: f.avant,
            };
            let rows: Vec<Row> = sqlx::query_as(selection.sql())
                .bind(selection.kind)
                .bind(selection.structures)
                .bind(selection.from)
                .bind(selection.to)
                .bind(selection.before)
                .bind(PAGE + 1)
                .fetch_all(&mut *tx)
                .await?;
            let people: Vec<ProfessionalId> =
                rows.iter().filter_map(|r| r.professional_id).collect();
            let named: Vec<(ProfessionalId, String)> = sqlx::query_as(
                "SELECT id, display_name FROM platform.professionals WHERE id = ANY($1)",
            )
            .bind(&people)
            .fetch_all(platform.platform_pool())
            .await?;
            let more = rows.len() as i64 > PAGE;
            let lines: Vec<Line> = rows
                .into_iter()
                .take(PAGE as usize)
                .map(|r| Line {
                    seq: r.seq,
                    at: paris::date_time(r.at),
                    kind: journal::kind_label(&r.kind)
                        .map(str::to_owned)
                        .unwrap_or_else(|| r.kind.clone()),
                    structure: r
                        .structure_id
                        .and_then(|s| names.iter().find(|n| n.0 == s).map(|n| n.1.clone()))
                        .unwrap_or_else(|| short(r.structure_id, "S-")),
                    professional: r
                        .professional_id
                        .and_then(|p| named.iter().find(|n| n.0 == p).map(|n| n.1.clone()))
                        .unwrap_or_else(|| short(r.professional_id, "P-")),
                    usager: short(r.usager_id, "U-"),
                    mandate: short(r.mandate_id, "M-"),
                    details: r.details,
                })
                .collect();
            let next = more.then(|| {
                let last = lines.last().map(|l| l.seq).unwrap_or_default();
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("type", &f.kind)
                    .append_pair("structure", &f.structure)
                    .append_pair("du", &f.du)
                    .append_pair("au", &f.au)
                    .append_pair("avant", &last.to_string())
                    .finish();
                format!("/audit/collectivites/{}/journal?{query}", tenant.id)
            });
            (lines, next, Vec::new())
        }
    };
    tx.commit().await?;
    let last: Option<VerificationRow> = sqlx::query_as(
        "SELECT id, started_at, total, checked, finished_at, intact, outcome FROM platform.journal_verifications
         WHERE tenant_id = $1 ORDER BY started_at DESC LIMIT 1",
    )
    .bind(tenant.id)
    .fetch_optional(platform.platform_pool())
    .await?;
    let domain = tenant.id.domain();
    let status = (!errors.is_empty()).then_some(StatusCode::BAD_REQUEST);
    html_status(
        &JournalPage {
            theme: THEME,
            nav: nav("/audit"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            redacting,
            kinds: kinds
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        journal::kind_label(k).unwrap_or(k.as_str()).to_owned(),
                    )
                })
                .collect(),
            structures: names
                .iter()
                .map(|(id, name)| (id.to_string(), name.clone()))
                .collect(),
            filters: f,
            errors,
            lines,
            next,
            can_verify: platform
                .guard
                .allows(me.id.as_uuid(), &domain, Action::JournalVerify)
                .await,
            can_export: platform
                .guard
                .allows(me.id.as_uuid(), &domain, Action::JournalExport)
                .await,
            last: last.map(|l| l.view()),
            tenant,
        },
        status,
    )
}

fn checkpoint_public(platform: &Platform) -> PageResult<journal::CheckpointPublicKey> {
    CheckpointKey::from_base64(
        platform
            .settings
            .security
            .journal_signing_key
            .expose_secret(),
    )
    .map(|k| k.public())
    .map_err(PageError::unavailable)
}

/// `POST /audit/collectivites/:id/verification`: starts verifying the whole chain of the
/// territory in the background (one at a time per tenant); the page follows it.
#[handler]
pub async fn start_verification(
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::JournalVerify).await?;
    let public = checkpoint_public(&platform)?;
    let running: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM platform.journal_verifications WHERE tenant_id = $1 AND finished_at IS NULL
           AND started_at > now() - interval '1 hour'",
    )
    .bind(tenant.id)
    .fetch_optional(platform.platform_pool())
    .await?;
    if let Some(running) = running {
        return Ok(Redirect::see_other(format!(
            "/audit/collectivites/{}/verification/{running}",
            tenant.id
        ))
        .into_response());
    }
    let mut tx = context.begin().await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM journal WHERE seq IS NOT NULL")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let verification = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.journal_verifications (id, tenant_id, departement_code, requested_by, total)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(verification)
    .bind(tenant.id)
    .bind(context.departement().as_str())
    .bind(me.id)
    .bind(total)
    .execute(platform.platform_pool())
    .await?;
    let pool = platform.platform_pool().clone();
    tokio::spawn(async move {
        let outcome = run_verification(&context, &public, &pool, verification).await;
        let (intact, text) = match outcome {
            Ok(v) if v.intact() => (
                true,
                format!(
                    "Journal intact : {} entrées et {} point(s) de scellement signés vérifiés.",
                    v.checked, v.checkpoints_checked
                ),
            ),
            Ok(v) => (
                false,
                match v.first_broken {
                    Some(seq) => format!(
                        "Journal altéré à partir de l'entrée n° {seq} : {}.",
                        v.problem.unwrap_or_default()
                    ),
                    None => format!("Journal refusé : {}.", v.problem.unwrap_or_default()),
                },
            ),
            Err(e) => {
                tracing::error!(error = %e, "audit: verification failed to run");
                (
                    false,
                    "La vérification n'a pas pu aller à son terme (base indisponible) : relancez-la."
                        .to_owned(),
                )
            }
        };
        if let Err(e) = sqlx::query(
            "UPDATE platform.journal_verifications SET finished_at = now(), intact = $2, outcome = $3 WHERE id = $1",
        )
        .bind(verification)
        .bind(intact)
        .bind(text)
        .execute(&pool)
        .await
        {
            tracing::error!(error = %e, "audit: verification outcome not recorded");
        }
    });
    Ok(Redirect::see_other(format!(
        "/audit/collectivites/{}/verification/{verification}",
        tenant.id
    ))
    .into_response())
}

async fn run_verification(
    context: &Territory,
    public: &journal::CheckpointPublicKey,
    pool: &sqlx::PgPool,
    verification: Uuid,
) -> Result<journal::Verification, sqlx::Error> {
    let (sender, mut receiver) = tokio::sync::watch::channel(0u64);
    let reporter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            while receiver.changed().await.is_ok() {
                let checked = *receiver.borrow_and_update();
                let _ = sqlx::query(
                    "UPDATE platform.journal_verifications SET checked = $2 WHERE id = $1",
                )
                .bind(verification)
                .bind(i64::try_from(checked).unwrap_or(i64::MAX))
                .execute(&pool)
                .await;
            }
        })
    };
    let mut tx = context.begin().await?;
    let anchor = Anchor {
        points: Vec::new(),
        max_age: Some(time::Duration::hours(24)),
    };
    let v = journal::verify_reporting(&mut tx, Some(public), &anchor, |n| {
        let _ = sender.send(n);
    })
    .await;
    tx.commit().await?;
    drop(sender);
    let _ = reporter.await;
    v
}

#[derive(Template)]
#[template(path = "audit_verification.html")]
struct VerificationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    tenant: Tenant,
    v: VerificationView,
    total: i64,
    checked: i64,
    percent: i64,
}

/// `GET /audit/collectivites/:id/verification/:verification`.
#[handler]
pub async fn verification_page(
    platform: Data<&Platform>,
    me: Professional,
    Path((id, verification)): Path<(String, String)>,
) -> PageResult<Response> {
    let (tenant, _) = scoped(&platform, &me, &id, Action::JournalVerify).await?;
    let verification = Uuid::parse_str(verification.trim()).map_err(|_| PageError::not_found())?;
    let row: VerificationRow = sqlx::query_as(
        "SELECT id, started_at, total, checked, finished_at, intact, outcome FROM platform.journal_verifications
         WHERE id = $1 AND tenant_id = $2",
    )
    .bind(verification)
    .bind(tenant.id)
    .fetch_optional(platform.platform_pool())
    .await?
    .ok_or_else(PageError::not_found)?;
    let checked = if row.finished_at.is_some() && row.intact == Some(true) {
        row.total
    } else {
        row.checked.min(row.total)
    };
    html(&VerificationPage {
        theme: THEME,
        nav: nav("/audit"),
        v: row.view(),
        total: row.total,
        checked,
        percent: (checked * 100).checked_div(row.total).unwrap_or(100),
        tenant,
    })
}

/// `POST /audit/collectivites/:id/journal/export`: the territory's journal as JSON lines,
/// another tenant's entries redacted for a commune's auditor; journaled.
#[handler]
pub async fn export(
    platform: Data<&Platform>,
    me: Professional,
    Path(id): Path<String>,
) -> PageResult<Response> {
    let (tenant, context) = scoped(&platform, &me, &id, Action::JournalExport).await?;
    let public = checkpoint_public(&platform)?;
    let (scope, _) = visible(&context, &tenant).await?;
    let visible: Option<std::collections::HashSet<StructureId>> =
        scope.map(|s| s.into_iter().collect());

    let mut body: Vec<u8> = Vec::new();
    let mut tx = context.begin().await?;
    journal::export_for(&mut tx, &public, Some(me.id), visible.as_ref(), &mut body)
        .await
        .map_err(PageError::unavailable)?;
    tx.commit().await?;
    let day = paris::today();
    Ok(Response::builder()
        .content_type("application/x-ndjson; charset=utf-8")
        .header(
            "content-disposition",
            format!(
                "attachment; filename=\"journal-{}-{day}.jsonl\"",
                context.departement().schema_name()
            ),
        )
        .body(body))
}
