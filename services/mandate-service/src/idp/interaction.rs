//! The authorization endpoint and the aidant's choice: which usager (among those with a live
//! mandate of the current structure), then which démarche (among those the mandate covers and
//! the client accepts). The request travels with the pages and is validated again at each step;
//! the only write is the grant, when the aidant confirms.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::ids::UsagerId;
use foundation::web::{FORM_ACTION_EXTRA, NavItem, Theme, html, origin_of};
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Redirect};
use poem::{Body, FromRequest, IntoResponse, Request, RequestBody, Response, handler};
use policies::{Action, choice};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::request::{AuthRequest, Params, Refusal, validate, with_query};
use super::{CODE_SECONDS, Provider, grant_token};
use crate::categories::{self, Category};
use crate::mandates::search_key;
use crate::scope::{Scope, VerifiedScope};
use crate::web::{THEME, birth_day, date, display_name, nav, notice};

const MAX_ROWS: i64 = 50;
// The rows the usager list asks for, written into its statement (`usager_list_sql`).
const _: () = assert!(MAX_ROWS + 1 == 51);
/// Above this many people of the territory found by a search, the usager list walks the
/// structure's names with the search as a filter (a name that common meets the page's rows
/// soon); up to it, it looks up the people found (about 4 µs each at national volume).
const FOUND_MAX: i64 = 10_000;

#[derive(Template)]
#[template(path = "idp_usagers.html")]
struct UsagersPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    client: &'a str,
    structure: &'a str,
    demarches: String,
    carried: &'a [(String, String)],
    q: String,
    rows: Vec<UsagerRow>,
    more: bool,
    error: Option<&'a str>,
}

struct UsagerRow {
    name: String,
    birth: String,
    categories: String,
    href: String,
}

#[derive(Template)]
#[template(path = "idp_categories.html")]
struct CategoriesPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    client: &'a str,
    structure: &'a str,
    usager: String,
    usager_id: String,
    carried: &'a [(String, String)],
    choices: Vec<(&'static str, &'static str, String, bool)>,
    back: String,
    error: Option<&'a str>,
}

fn refusal_response(refusal: Refusal, provider: &Provider) -> PageResult<Response> {
    match refusal.location(&provider.issuer) {
        Some(to) => Ok(Redirect::see_other(to).into_response()),
        None => {
            let Refusal::Page(why) = refusal else {
                return Err(PageError::status(StatusCode::BAD_REQUEST));
            };
            notice(
                StatusCode::BAD_REQUEST,
                "Demande de connexion refusée",
                vec![
                    why.to_owned(),
                    "Revenez au site sur lequel vous étiez et recommencez la démarche ; si le problème persiste, signalez-le à ce site.".into(),
                ],
                Some(("/", "Revenir à l'accueil d'Aidants Connect")),
            )
        }
    }
}

fn denied(request: &AuthRequest, provider: &Provider, why: &str) -> Response {
    let refusal = Refusal::Redirect {
        redirect_uri: request.redirect_uri.clone(),
        state: Some(request.state.clone()),
        error: "access_denied",
        description: why.to_owned(),
    };
    Redirect::see_other(refusal.location(&provider.issuer).unwrap_or_default()).into_response()
}

/// Validates the request carried by `params` (client looked up in the registry).
async fn validated(
    params: &Params,
    provider: &Provider,
) -> PageResult<Result<AuthRequest, Refusal>> {
    let client = provider
        .clients
        .get(params.get("client_id").unwrap_or_default())
        .await?;
    Ok(validate(params, client, provider.environment))
}

/// The categories this flow may use: those the client accepts and the structure allows.
fn allowed(request: &AuthRequest, scope: &Scope) -> Vec<Category> {
    let requested: Vec<&str> = request.requested.iter().map(|c| c.code).collect();
    let accepted = choice::accepted_here(&requested, &scope.structure.demarches);
    request
        .requested
        .iter()
        .copied()
        .filter(|c| accepted.contains(&c.code))
        .collect()
}

fn codes(list: &[Category]) -> Vec<String> {
    list.iter().map(|c| c.code.to_owned()).collect()
}

/// Role check for using a mandate in the current structure.
async fn may_use(platform: &Platform, scope: &Scope) -> bool {
    platform
        .guard
        .allows(
            scope.me.id.as_uuid(),
            &scope.structure.id.domain(),
            Action::MandateUse,
        )
        .await
}

fn with_form_target(mut resp: Response, request: &AuthRequest) -> Response {
    if let Some(origin) = origin_of(&request.redirect_uri)
        && let Ok(value) = origin.parse()
    {
        resp.headers_mut().insert(FORM_ACTION_EXTRA, value);
    }
    resp
}

/// `GET /oidc/authorize` (and POST, turned into the same GET).
#[handler]
pub async fn authorize(
    req: &Request,
    platform: Data<&Platform>,
    provider: Data<&Provider>,
) -> PageResult<Response> {
    let params = Params::parse(req.uri().query().unwrap_or_default());
    let request = match validated(&params, &provider).await? {
        Ok(r) => r,
        Err(refusal) => return refusal_response(refusal, &provider),
    };
    // Only now the aidant: logged in, recently verified (else log in, then come back here).
    let VerifiedScope(scope) =
        VerifiedScope::from_request(req, &mut RequestBody::default()).await?;
    if !may_use(&platform, &scope).await {
        tracing::info!("identity provider: professional without mandate:use");
        return Ok(denied(
            &request,
            &provider,
            "le compte connecté n'est pas habilité à utiliser un mandat dans cette structure",
        ));
    }
    let allowed = allowed(&request, &scope);
    if allowed.is_empty() {
        return Ok(denied(
            &request,
            &provider,
            "aucune des démarches acceptées par le service n'est ouverte dans la structure",
        ));
    }
    let csrf = csrf::token(req, platform.settings.http.secure_cookies());
    if let Some(usager) = params
        .get("ac_usager")
        .and_then(|u| u.parse::<UsagerId>().ok())
    {
        return categories_page(&scope, &request, &allowed, usager, csrf, None).await;
    }
    let q: String = params
        .get("ac_q")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(100)
        .collect();
    usagers_page(&scope, &request, &allowed, q, csrf, None).await
}

/// `POST /oidc/authorize`: the same request as a form; answered by the equivalent GET.
#[handler]
pub async fn authorize_post(body: Body) -> PageResult<Response> {
    let bytes = body
        .into_bytes_limit(64 * 1024)
        .await
        .map_err(|_| poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| poem::Error::from_status(StatusCode::BAD_REQUEST))?;
    let params = Params::parse(&text);
    let carried: Vec<(&str, &str)> = super::request::CARRIED
        .iter()
        .filter_map(|n| params.get(n).map(|v| (*n, v)))
        .collect();
    Ok(Redirect::see_other(with_query("/oidc/authorize", &carried)).into_response())
}

type UsagerListRow = (
    UsagerId,
    String,
    String,
    Option<String>,
    String,
    Vec<String>,
);

async fn usagers_page(
    scope: &Scope,
    request: &AuthRequest,
    allowed: &[Category],
    q: String,
    csrf: String,
    error: Option<&str>,
) -> PageResult<Response> {
    let search = Some(search_key(&q)).filter(|s| !s.is_empty());
    // One statement, its own transaction.
    let mut conn = scope.tenant.autocommit().await?;
    // The structure's usagers in name order (`structure_usagers`, département migration 0032),
    // each kept if it has a live authorisation for the démarches asked: the walk skips on the
    // index those whose bounds rule it out, checks the others, and stops at the 51st that
    // qualifies, whatever the size of the territory; the démarches are read by the same probe.
    // The bounds are checked inside the probe, and a search is a statement of its own, so that
    // the plan PostgreSQL keeps for the statement (a generic one, after five runs) still
    // walks the names: in the WHERE clause, the planner knows neither how many rows the bounds
    // nor `$3 IS NULL OR …` keep, takes them for a handful, and sorts the structure's every
    // usager instead (1 ms a page for 216 usagers under load, against 0.4). What a row shows is
    // in the walk's index (département migration 0037): without a search, no row of `usagers`
    // is read (at national volume, 0.49 ms a page against 0.92 with them). The probe is a
    // `CASE` around an array subquery rather than an aggregate: an `array_agg(DISTINCT …)`
    // sets up its sort for every usager walked, bounds ruled out or not (484 a page at national
    // volume: 0.48 ms a page against 0.32, load-tests/README.md, 2026-12-04); `OFFSET 0` keeps
    // the planner from copying the probe into the filter, which would run it twice per row kept.
    // With a search, the people whose names hold it are found first through the names'
    // trigram index (`web::list::FOUND_SQL`); up to [`FOUND_MAX`], the list is then those of
    // them in the structure, each looked up by the structure's key, sorted by name: a walk
    // of the names filtered by the search read most of the 100,432 people of the largest
    // structure for a common name at national volume (« martin », 4,857 people found: 105–149
    // ms a page against 18–20 ms, load-tests/README.md, 2026-12-04). `OFFSET 0` keeps each
    // look-up a probe of the key whatever plan PostgreSQL caches for the statement. They are
    // sorted by name before the probe, which then stops at the page's 51st kept (« martin »
    // in the largest structure: 135 probed instead of 2,438; 17 ms a statement against 22).
    let found = match &search {
        Some(search) => crate::web::list::found_people(&mut conn, search, FOUND_MAX).await?,
        None => None,
    };
    let sql = usager_list_sql(search.is_some(), found.is_some());
    let query = sqlx::query_as(sql)
        .bind(scope.structure.id)
        .bind(codes(allowed));
    let mut rows: Vec<UsagerListRow> = match (found, search) {
        (Some(ids), _) => query.bind(ids),
        (None, Some(search)) => query.bind(search),
        (None, None) => query,
    }
    .fetch_all(&mut *conn)
    .await?;
    drop(conn);
    let more = rows.len() as i64 > MAX_ROWS;
    rows.truncate(MAX_ROWS as usize);
    let carried: Vec<(&str, &str)> = request
        .carried
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let rows = rows
        .into_iter()
        .map(|(id, given, family, usage, birthdate, cats)| {
            let mut link = carried.clone();
            let id = id.to_string();
            link.push(("ac_usager", &id));
            UsagerRow {
                name: display_name(&given, &family, usage.as_deref()),
                birth: birth_day(&birthdate),
                categories: cats
                    .iter()
                    .map(|c| categories::label(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                href: with_query("/oidc/authorize", &link),
            }
        })
        .collect();
    let resp = html(&UsagersPage {
        theme: THEME,
        nav: nav(""),
        csrf,
        client: &request.client.name,
        structure: &scope.structure.name,
        demarches: allowed
            .iter()
            .map(|c| c.label)
            .collect::<Vec<_>>()
            .join(", "),
        carried: &request.carried,
        q,
        rows,
        more,
        error,
    })?;
    Ok(with_form_target(resp, request))
}

async fn categories_page(
    scope: &Scope,
    request: &AuthRequest,
    allowed: &[Category],
    usager: UsagerId,
    csrf: String,
    error: Option<&str>,
) -> PageResult<Response> {
    // The person and this structure's authorisations for them in one read, its own
    // transaction (one exchange with the server): the choice is checked again when it is made.
    // No row: no such person; one row without a category: no authorisation here.
    // Liveness by the database clock; the choice itself is `policies::choice::offered`.
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<OffsetDateTime>,
        Option<bool>,
        Option<bool>,
        Option<bool>,
    );
    let mut conn = scope.tenant.autocommit().await?;
    let found: Vec<Row> = sqlx::query_as(
        "SELECT u.given_name, u.family_name, u.preferred_username,
                a.category, a.expires_at, a.revoked_at IS NOT NULL, a.superseded_at IS NOT NULL,
                a.expires_at <= now()
         FROM usagers u
         LEFT JOIN authorisations a ON a.usager_id = u.id AND a.structure_id = $1
         WHERE u.id = $2",
    )
    .bind(scope.structure.id)
    .bind(usager)
    .fetch_all(&mut *conn)
    .await?;
    drop(conn);
    let person: Option<(String, String, Option<String>)> = found
        .first()
        .map(|(given, family, usage, ..)| (given.clone(), family.clone(), usage.clone()));
    let rows: Vec<(String, OffsetDateTime, bool, bool, bool)> = found
        .into_iter()
        .filter_map(|(_, _, _, category, until, revoked, superseded, expired)| {
            Some((category?, until?, revoked?, superseded?, expired?))
        })
        .collect();
    let states: Vec<choice::AuthorisationState> = rows
        .iter()
        .map(
            |(category, _, revoked, superseded, expired)| choice::AuthorisationState {
                structure: scope.structure.id.as_uuid(),
                usager: usager.as_uuid(),
                category: category.clone(),
                revoked: *revoked,
                superseded: *superseded,
                expired: *expired,
            },
        )
        .collect();
    let requested: Vec<&str> = allowed.iter().map(|c| c.code).collect();
    let offered = choice::offered(
        &requested,
        &scope.structure.demarches,
        scope.structure.id.as_uuid(),
        usager.as_uuid(),
        &states,
    );
    // Each offered category with the end of its latest live authorisation.
    let live: Vec<(String, OffsetDateTime)> = offered
        .into_iter()
        .filter_map(|category| {
            let until = rows
                .iter()
                .zip(&states)
                .filter(|((c, ..), state)| *c == category && state.is_live())
                .map(|((_, until, ..), _)| *until)
                .max()?;
            Some((category, until))
        })
        .collect();
    let Some((given, family, usage)) = person.filter(|_| !live.is_empty()) else {
        // Unknown here, or no live mandate for these démarches (any more): back to the list.
        return usagers_page(
            scope,
            request,
            allowed,
            String::new(),
            csrf,
            Some("Cette personne n'a pas (ou plus) de mandat en cours avec votre structure pour les démarches acceptées par ce service."),
        )
        .await;
    };
    let single = live.len() == 1;
    let choices = live
        .iter()
        .filter_map(|(code, until)| {
            let c = categories::by_code(code)?;
            // The last day included is the day before the end instant.
            Some((c.code, c.label, date(*until - Duration::seconds(1)), single))
        })
        .collect();
    let carried: Vec<(&str, &str)> = request
        .carried
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = html(&CategoriesPage {
        theme: THEME,
        nav: nav(""),
        csrf,
        client: &request.client.name,
        structure: &scope.structure.name,
        usager: display_name(&given, &family, usage.as_deref()),
        usager_id: usager.to_string(),
        carried: &request.carried,
        choices,
        back: with_query("/oidc/authorize", &carried),
        error,
    })?;
    let mut resp = with_form_target(resp, request);
    if error.is_some() {
        resp.set_status(StatusCode::BAD_REQUEST);
    }
    Ok(resp)
}

/// `POST /oidc/choix`: the aidant's decision — a code for the client, or a refusal.
#[handler]
pub async fn decide(
    req: &Request,
    body: Body,
    platform: Data<&Platform>,
    provider: Data<&Provider>,
) -> PageResult<Response> {
    let bytes = body
        .into_bytes_limit(64 * 1024)
        .await
        .map_err(|_| poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))?;
    let params = Params::parse(std::str::from_utf8(&bytes).unwrap_or_default());
    let request = match validated(&params, &provider).await? {
        Ok(r) => r,
        Err(refusal) => return refusal_response(refusal, &provider),
    };
    let VerifiedScope(scope) =
        VerifiedScope::from_request(req, &mut RequestBody::default()).await?;
    if params.get("ac_action") == Some("annuler") {
        return Ok(denied(&request, &provider, "l'aidant a annulé la demande"));
    }
    if !may_use(&platform, &scope).await {
        return Ok(denied(
            &request,
            &provider,
            "le compte connecté n'est pas habilité à utiliser un mandat dans cette structure",
        ));
    }
    let allowed = allowed(&request, &scope);
    let csrf = csrf::token(req, platform.settings.http.secure_cookies());
    let Some(usager) = params
        .get("ac_usager")
        .and_then(|u| u.parse::<UsagerId>().ok())
    else {
        return usagers_page(
            &scope,
            &request,
            &allowed,
            String::new(),
            csrf,
            Some("Choisissez d'abord la personne."),
        )
        .await;
    };
    let Some(category) = params
        .get("ac_categorie")
        .and_then(categories::by_code)
        .filter(|c| allowed.contains(c))
    else {
        return categories_page(
            &scope,
            &request,
            &allowed,
            usager,
            csrf,
            Some("Choisissez l'une des démarches proposées."),
        )
        .await;
    };
    let grant = Uuid::now_v7();
    let code = grant_token(scope.tenant.departement(), grant);
    // The flow's one durable commit is the redemption's: a grant counts only once redeemed,
    // and the redemption's commit flushes the WAL up to and past this one. A crash in between
    // loses an unredeemed code (FranceConnect's login is made again), never a used one.
    let mut tx = scope.tenant.begin_unflushed().await?;
    // The "for whom" check and the grant in one statement: a live authorisation of this
    // structure for this usager and démarche, or nothing is issued.
    let issued: Option<Uuid> = sqlx::query_scalar(
        // The authorisation is chosen in a CTE: Citus 13 deparses the single-statement form
        // (INSERT … SELECT … ORDER BY … LIMIT on a distributed schema) into invalid SQL.
        "WITH chosen AS (
             SELECT a.structure_id, a.usager_id, a.mandate_id, a.id, a.category
             FROM live_authorisations a
             WHERE a.structure_id = $12 AND a.usager_id = $13 AND a.category = $14
             ORDER BY a.expires_at DESC
             LIMIT 1)
         INSERT INTO oidc_grants (id, code_hash, client_id, redirect_uri, nonce, scopes,
             code_challenge, structure_id, aidant_id, session_hash, auth_time, usager_id,
             mandate_id, authorisation_id, category, issued_at, code_expires_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, c.structure_id, $8, $9, $10, c.usager_id,
                c.mandate_id, c.id, c.category, now(), now() + make_interval(secs => $11)
         FROM chosen c
         RETURNING id",
    )
    .bind(grant)
    .bind(foundation::auth::secrets::token_hash(&code))
    .bind(&request.client.client_id)
    .bind(&request.redirect_uri)
    .bind(&request.nonce)
    .bind(&request.scopes)
    .bind(&request.code_challenge)
    .bind(scope.me.id)
    .bind(&scope.me.session_hash)
    .bind(scope.me.totp_verified_at)
    .bind(CODE_SECONDS as f64)
    .bind(scope.structure.id)
    .bind(usager)
    .bind(category.code)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    if issued.is_none() {
        return categories_page(
            &scope,
            &request,
            &allowed,
            usager,
            csrf,
            Some("Le mandat pour cette démarche n'est plus en cours."),
        )
        .await;
    }
    let location = with_query(
        &request.redirect_uri,
        &[
            ("code", code.as_str()),
            ("state", request.state.as_str()),
            ("iss", provider.issuer.as_str()),
        ],
    );
    Ok(Redirect::see_other(location).into_response())
}

/// The usager list's statement: without a search, the structure's walk in name order; with
/// one, the people found first (`found`, `$3` their ids) each looked up in the structure; past
/// [`FOUND_MAX`] found, the walk filtered by the search (`$3` the search). `$1` the structure,
/// `$2` the démarches asked. Public for the tests of its cached plan.
///
/// The rows wanted (a page and one more) are written in the statement, not a parameter: with a
/// parameter, the generic plan's estimate for `LIMIT` is a tenth of the structure's rows, which
/// in a structure of a few thousand usagers loses to every custom plan's, so PostgreSQL would
/// plan the statement again at every page (0.30 ms a page in the largest structure at national
/// volume, more than its execution); with the constant it keeps the generic plan. For the same
/// reason the démarches asked filter the probe's rows (`array_position`, a handful per person)
/// rather than enter its index condition: there, the generic plan costs an unknown array as
/// ten index searches, loses to the custom plans in a structure of a few hundred usagers, and
/// the statement was planned at every page again.
pub fn usager_list_sql(search: bool, found: bool) -> &'static str {
    macro_rules! columns {
        () => {
            "SELECT su.usager_id, su.given_name, su.family_name, su.preferred_username,
                su.birthdate, c.categories"
        };
    }
    macro_rules! probe {
        () => {
            " CROSS JOIN LATERAL (
             SELECT CASE WHEN su.live_until > now() AND su.categories && $2 THEN
                 ARRAY(SELECT DISTINCT a.category
                       FROM live_authorisations a
                       WHERE a.structure_id = $1 AND a.usager_id = su.usager_id
                         AND array_position($2, a.category) IS NOT NULL
                       ORDER BY 1)
             END AS categories
             OFFSET 0
         ) c"
        };
    }
    macro_rules! kept {
        () => {
            " WHERE su.structure_id = $1 AND cardinality(c.categories) > 0"
        };
    }
    macro_rules! order {
        () => {
            " ORDER BY su.family_name, su.given_name, su.usager_id LIMIT 51"
        };
    }
    match (search, found) {
        (_, true) => concat!(
            columns!(),
            " FROM (
                 SELECT s.usager_id, s.given_name, s.family_name, s.preferred_username,
                        s.birthdate, s.live_until, s.categories
                 FROM unnest($3::uuid[]) AS f(id)
                 CROSS JOIN LATERAL (
                     SELECT * FROM structure_usagers s
                     WHERE s.structure_id = $1 AND s.usager_id = f.id
                     OFFSET 0
                 ) s
                 ORDER BY s.family_name, s.given_name, s.usager_id
             ) su",
            probe!(),
            " WHERE cardinality(c.categories) > 0",
            order!()
        ),
        (false, false) => concat!(
            columns!(),
            " FROM structure_usagers su",
            probe!(),
            kept!(),
            order!()
        ),
        (true, false) => concat!(
            columns!(),
            " FROM structure_usagers su",
            probe!(),
            " JOIN usagers u ON u.id = su.usager_id",
            kept!(),
            " AND u.search_name LIKE '%' || $3 || '%'",
            order!()
        ),
    }
}
