//! `/mandats`: the structure's mandates, newest first, with a name search, state and démarche
//! filters and pages of twenty; and `/mandats/export.csv`, the référent's CSV export of the
//! same mandates (journaled). Expired and ended mandates stay listed one year.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::guard::Authorized;
use foundation::ids::{MandateId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::Territory;
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html};
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{THEME, date, display_name, nav};
use crate::categories::{self, ALL};
use crate::mandates::{self, State};
use crate::scope::Scope;

pub struct Row {
    pub id: String,
    pub usager_id: String,
    pub usager: String,
    pub categories: String,
    pub created: String,
    pub expires: String,
    pub state: State,
    /// A judicial protection measure.
    pub judicial: bool,
}

#[derive(Template)]
#[template(path = "mandates.html")]
struct ListPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    structure: &'a str,
    q: String,
    etat: String,
    categorie: String,
    states: Vec<(&'static str, &'static str)>,
    categories: Vec<(&'static str, &'static str)>,
    rows: Vec<Row>,
    page: i64,
    previous: Option<String>,
    next: Option<String>,
    can_create: bool,
    /// A guardian service records judicial measures.
    guardian: bool,
    can_export: bool,
    csrf: String,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    etat: Option<String>,
    categorie: Option<String>,
    page: Option<i64>,
}

/// The list's filters as accepted: unknown states and démarches are dropped, the search is
/// trimmed to 100 characters and the page kept between 1 and 10,000.
struct Filters {
    q: String,
    etat: String,
    categorie: &'static str,
    page: i64,
}

impl ListQuery {
    fn filters(self) -> Filters {
        Filters {
            q: self
                .q
                .unwrap_or_default()
                .trim()
                .chars()
                .take(100)
                .collect(),
            etat: self
                .etat
                .filter(|e| STATES.iter().any(|(code, _)| code == e))
                .unwrap_or_default(),
            categorie: self
                .categorie
                .and_then(|c| categories::by_code(&c))
                .map(|c| c.code)
                .unwrap_or(""),
            page: self.page.unwrap_or(1).clamp(1, 10_000),
        }
    }
}

pub const PAGE_SIZE: i64 = 20;

const STATES: [(&str, &str); 5] = [
    ("", "Tous (en cours et terminés depuis moins d'un an)"),
    ("en-cours", "En cours"),
    ("bientot", "Expirent dans les 30 jours"),
    ("expires", "Expirés"),
    ("revoques", "Révoqués ou remplacés"),
];

/// A read of [`ListRow`]s as one static string: mandates `m` with their usager `u` and their
/// categories, then the pieces given (literals, or [`visible_sql!`]).
macro_rules! list_rows_sql {
    ($($tail:expr),+ $(,)?) => {
        concat!(
            "SELECT m.id, u.id AS usager_id, u.given_name, u.family_name, u.preferred_username,
                    m.created_at, m.expires_at, m.ended_reason,
                    EXISTS (SELECT 1 FROM judicial_measures j WHERE j.mandate_id = m.id) AS judicial,
                    ARRAY(SELECT a.category FROM authorisations a WHERE a.mandate_id = m.id ORDER BY a.category) AS categories
             FROM mandates m JOIN usagers u ON u.id = m.usager_id ",
            $($tail),+
        )
    };
}
pub(super) use list_rows_sql;

/// Mandates still shown: live, or ended (expired, revoked, replaced) less than a year ago
/// (`least` skips a missing end).
macro_rules! visible_sql {
    () => {
        "least(m.ended_at, m.expires_at) > now() - interval '1 year'"
    };
}
pub(super) use visible_sql;

/// One page of the list: the structure's mandates in `$state` ordered by `$order`, `$2` rows
/// from `$3`, as four statements: with no filter, with the name search (`$4`), with the
/// démarche (`$4`), with both (`$4`, `$5`). A filter is left out of the text rather than
/// disabled by a null parameter: with `$n IS NULL OR …`, the generic plan PostgreSQL may keep for
/// a prepared statement after five executions on a connection scanned every usager of the
/// territory and sorted every mandate of the structure at each request (the soak's lists
/// doubled in 30 minutes); without it, that plan reads the page through the structure's index.
macro_rules! list_page_sql {
    ($state:expr, $order:literal) => {
        [
            list_page_sql!(@one $state, $order, ""),
            list_page_sql!(@one $state, $order, search_sql!(4)),
            list_page_sql!(@one $state, $order, found_sql!(4)),
            list_page_sql!(@one $state, $order, category_sql!(4)),
            list_page_sql!(@one $state, $order, search_sql!(4), category_sql!(5)),
            list_page_sql!(@one $state, $order, found_sql!(4), category_sql!(5)),
        ]
    };
    (@one $state:expr, $order:literal $(, $filter:expr)*) => {
        list_rows_sql!(
            "WHERE m.structure_id = $1 AND ",
            $state,
            $($filter,)*
            " ORDER BY ",
            $order,
            " LIMIT $2 OFFSET $3"
        )
    };
}

/// The name search, parameter `$n`.
macro_rules! search_sql {
    ($n:literal) => {
        concat!(" AND u.search_name LIKE '%' || $", $n, "::text || '%'")
    };
}

/// The name search as the people it found, parameter `$n` (their ids, [`FOUND_SQL`]).
macro_rules! found_sql {
    ($n:literal) => {
        concat!(" AND m.usager_id = ANY($", $n, "::uuid[])")
    };
}

/// The territory's people whose names hold the search (`$1`), through the names' trigram
/// index, up to one more than [`FOUND_MAX`]: few enough, the page then reads only their
/// mandates in the structure. In one statement, with the search as a filter of the mandates'
/// walk, the plan depends on how many names the planner expects the search to keep, and it
/// cannot know without the value: on Citus, where the worker plans the statement for its
/// parameters as they come from the coordinator, a rare name (« dubois marie », 64 people)
/// walked the 100,000 mandates of the largest structure (p99 285 ms at national volume,
/// load-tests/README.md, 2026-12-04).
pub const FOUND_SQL: &str =
    "SELECT id FROM usagers WHERE search_name LIKE '%' || $1::text || '%' LIMIT $2";

/// The territory's people whose names hold `search` ([`FOUND_SQL`]), or `None` when there are
/// more than `max` of them.
pub async fn found_people(
    conn: &mut PgConnection,
    search: &str,
    max: i64,
) -> Result<Option<Vec<UsagerId>>, sqlx::Error> {
    let ids: Vec<UsagerId> = sqlx::query_scalar(FOUND_SQL)
        .bind(search)
        .bind(max + 1)
        .fetch_all(conn)
        .await?;
    Ok(Some(ids).filter(|ids| ids.len() as i64 <= max))
}

/// Above this many people found in the territory, the search stays a filter of the walk of the
/// structure's mandates, which then meets the page's rows soon.
pub const FOUND_MAX: i64 = 2000;

/// The démarche filter, parameter `$n`.
macro_rules! category_sql {
    ($n:literal) => {
        concat!(
            " AND EXISTS (SELECT 1 FROM authorisations a WHERE a.mandate_id = m.id AND a.category = $",
            $n,
            "::text)"
        )
    };
}

/// A mandate as lists show it, read with [`list_rows_sql!`].
#[derive(sqlx::FromRow)]
pub struct ListRow {
    id: MandateId,
    usager_id: UsagerId,
    given_name: String,
    family_name: String,
    preferred_username: Option<String>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    ended_reason: Option<String>,
    judicial: bool,
    categories: Vec<String>,
}

/// How a page of the list filters by name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Search {
    None = 0,
    /// The search itself, as a filter of the walk (`$4`, text).
    Name = 1,
    /// The people it found ([`FOUND_SQL`]: `$4`, their ids).
    Found = 2,
}

/// The statement of one page of the list in `state`, with the filters given: parameters
/// structure, limit, offset, then the search and the démarche when present, in that order.
/// Expiring soonest first, and most recently expired first; otherwise newest first.
pub fn page_sql(state: &str, search: Search, category: bool) -> &'static str {
    let variants = match state {
        "en-cours" => list_page_sql!(
            "m.ended_at IS NULL AND m.expires_at > now()",
            "m.created_at DESC, m.id DESC"
        ),
        "bientot" => list_page_sql!(
            "m.ended_at IS NULL AND m.expires_at > now() AND m.expires_at <= now() + interval '30 days'",
            "m.expires_at, m.id"
        ),
        "expires" => list_page_sql!(
            "m.ended_at IS NULL AND m.expires_at <= now() AND m.expires_at > now() - interval '1 year'",
            "m.expires_at DESC, m.id DESC"
        ),
        "revoques" => list_page_sql!(
            "m.ended_at IS NOT NULL AND m.ended_at > now() - interval '1 year'",
            "m.created_at DESC, m.id DESC"
        ),
        _ => list_page_sql!(visible_sql!(), "m.created_at DESC, m.id DESC"),
    };
    variants[search as usize + 3 * usize::from(category)]
}

/// One page of the mandates of the structure the guard allowed, with the list's filters.
/// Expired and ended mandates stay listed one year.
pub async fn list_page(
    tenant: &Territory,
    allowed: &Authorized,
    search: Option<&str>,
    state: &str,
    category: Option<&str>,
    page: i64,
) -> Result<(Vec<ListRow>, bool), sqlx::Error> {
    let search = search.map(mandates::search_key).filter(|s| !s.is_empty());
    // Each statement its own transaction (`Territory::autocommit`): a person found then given a
    // mandate, or renamed, between the two reads of a search is simply as if searched a moment
    // earlier.
    let mut conn = tenant.autocommit().await?;
    let found = match &search {
        Some(search) => found_people(&mut conn, search, FOUND_MAX).await?,
        None => None,
    };
    let mode = match (&search, &found) {
        (_, Some(_)) => Search::Found,
        (Some(_), None) => Search::Name,
        (None, None) => Search::None,
    };
    let mut query = sqlx::query_as(page_sql(state, mode, category.is_some()))
        .bind(allowed.structure())
        .bind(PAGE_SIZE + 1)
        .bind((page - 1) * PAGE_SIZE);
    if let Some(ids) = found {
        query = query.bind(ids);
    } else if let Some(search) = search {
        query = query.bind(search);
    }
    if let Some(category) = category {
        query = query.bind(category);
    }
    let mut rows: Vec<ListRow> = query.fetch_all(&mut *conn).await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    Ok((rows, more))
}

pub(super) fn to_row(r: ListRow, now: OffsetDateTime) -> Row {
    Row {
        id: r.id.to_string(),
        usager_id: r.usager_id.to_string(),
        usager: display_name(
            &r.given_name,
            &r.family_name,
            r.preferred_username.as_deref(),
        ),
        categories: r
            .categories
            .iter()
            .map(|c| categories::label(c))
            .collect::<Vec<_>>()
            .join(", "),
        created: date(r.created_at),
        expires: date(r.expires_at),
        state: State::of(r.expires_at, r.ended_reason.as_deref(), now),
        judicial: r.judicial,
    }
}

fn list_link(q: &str, etat: &str, categorie: &str, page: i64) -> String {
    let query = serde_urlencoded::to_string([
        ("q", q),
        ("etat", etat),
        ("categorie", categorie),
        ("page", &page.to_string()),
    ])
    .unwrap_or_default();
    format!("/mandats?{query}")
}

#[handler]
pub async fn list(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Query(query): Query<ListQuery>,
) -> PageResult<Response> {
    let allowed = scope.authorize(&platform, Action::MandateList).await?;
    let Filters {
        q,
        etat,
        categorie,
        page,
    } = query.filters();
    let (rows, more) = list_page(
        &scope.tenant,
        &allowed,
        Some(q.as_str()).filter(|q| !q.is_empty()),
        &etat,
        Some(categorie).filter(|c| !c.is_empty()),
        page,
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let domain = scope.structure.id.domain();
    let me = scope.me.id.as_uuid();
    let can_create = platform
        .guard
        .allows(me, &domain, Action::MandateCreate)
        .await;
    let can_export = platform
        .guard
        .allows(me, &domain, Action::MandateExport)
        .await;
    let guardian = scope.structure.guardian_service;

    html(&ListPage {
        theme: THEME,
        nav: nav("/mandats"),
        structure: &scope.structure.name,
        previous: (page > 1).then(|| list_link(&q, &etat, categorie, page - 1)),
        next: more.then(|| list_link(&q, &etat, categorie, page + 1)),
        q,
        etat,
        categorie: categorie.to_owned(),
        states: STATES.to_vec(),
        categories: ALL.iter().map(|c| (c.code, c.label)).collect(),
        rows: rows.into_iter().map(|r| to_row(r, now)).collect(),
        page,
        can_create,
        guardian,
        can_export,
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
    })
}

fn csv_field(s: &str) -> String {
    // Quote every field; neutralise spreadsheet formulas (OWASP's list of leading characters).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The référent's CSV export of the structure's mandates (those a list shows), journaled. A
/// POST (with the CSRF token) so that no link or image elsewhere can make a browser export.
#[handler]
pub async fn export(platform: Data<&Platform>, scope: Scope) -> PageResult<Response> {
    let allowed = scope.authorize(&platform, Action::MandateExport).await?;
    let mut tx = scope.tenant.begin().await?;
    let rows: Vec<ListRow> = sqlx::query_as(list_rows_sql!(
        "WHERE m.structure_id = $1 AND ",
        visible_sql!(),
        " ORDER BY m.created_at DESC"
    ))
    .bind(allowed.structure())
    .fetch_all(&mut *tx)
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::MandatesExported)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .details(json!({ "rows": rows.len() })),
    )
    .await?;
    tx.commit().await?;
    let now = OffsetDateTime::now_utc();
    let mut out = String::from("\u{feff}mandat;personne;démarches;créé le;expire le;état\r\n");
    for r in rows {
        let row = to_row(r, now);
        out.push_str(
            &[
                csv_field(&row.id),
                csv_field(&row.usager),
                csv_field(&row.categories),
                csv_field(&row.created),
                csv_field(&row.expires),
                csv_field(row.state.label()),
            ]
            .join(";"),
        );
        out.push_str("\r\n");
    }
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "content-disposition",
            "attachment; filename=\"mandats.csv\"",
        )
        .header("cache-control", "no-store")
        .body(out))
}
