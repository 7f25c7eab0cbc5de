//! The identity provider's flow as FranceConnect and an aidant drive it over HTTP, and the
//! desks it needs (an aidant's session, a usager under mandate, a registered client): what
//! the identity-provider benchmark and the soak share.

use std::time::{Duration, Instant};

use foundation::auth::session;
use foundation::ids::{MandateId, StructureId, UsagerId};
use foundation::tenancy::Territory;
use mandate_service::categories;
use mandate_service::franceconnect::Identity;
use mandate_service::idp::clients::{self, AuthMethod, NewClient};
use mandate_service::idp::keys::Alg;
use mandate_service::mandates::{self, NewMandate};
use policies::Role;
use test_support::database::TestDatabase;
use time::OffsetDateTime;
use uuid::Uuid;

pub const CLIENT: &str = "franceconnect-banc";
pub const REDIRECT: &str = "http://127.0.0.1:9/api/v2/oidc-callback";

/// A simulated desk: an aidant's session and a usager under mandate.
pub struct Worker {
    pub cookie: String,
    pub usager: UsagerId,
}

pub fn authorize_query(n: u64) -> String {
    serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email birth"),
        ("acr_values", "eidas1"),
        ("prompt", "login"),
        ("state", &format!("etat-{n:016}-banc-d-essai")),
        ("nonce", &format!("nonce-{n:016}-banc-d-essai")),
        (
            "claims",
            r#"{"id_token":{"rep_scope":{"essential":true,"values":["Logement"]}}}"#,
        ),
    ])
    .unwrap_or_default()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().map(str::to_owned)
}

/// One complete flow; returns each request's latency.
pub async fn flow(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    w: &Worker,
    n: u64,
    csrf: &mut Option<(String, String)>,
) -> anyhow::Result<[Duration; 5]> {
    let query = authorize_query(n);
    let authorize = format!("{base}/oidc/authorize?{query}");
    let mut cookie = format!("ac_session={}", w.cookie);
    if let Some((_, c)) = csrf.as_ref() {
        cookie.push_str(&format!("; ac_csrf={c}"));
    }
    let t = Instant::now();
    let resp = http
        .get(&authorize)
        .header("cookie", &cookie)
        .send()
        .await?;
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let title = body
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or_default();
        anyhow::bail!("authorize {status} : {title}");
    }
    if csrf.is_none() {
        let set = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("ac_csrf="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("pas de cookie CSRF"))?;
        *csrf = Some((set.clone(), set.clone()));
        cookie.push_str(&format!("; ac_csrf={set}"));
    }
    resp.bytes().await?;
    let t1 = t.elapsed();

    let t = Instant::now();
    let resp = http
        .get(format!("{authorize}&ac_usager={}", w.usager))
        .header("cookie", &cookie)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "démarches {}", resp.status());
    let html = resp.text().await?;
    let token = csrf_of(&html).ok_or_else(|| anyhow::anyhow!("pas de jeton CSRF"))?;
    let t2 = t.elapsed();

    let t = Instant::now();
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(&query)?;
    form.push(("csrf".into(), token));
    form.push(("ac_usager".into(), w.usager.to_string()));
    form.push(("ac_categorie".into(), "logement".into()));
    form.push(("ac_action".into(), "choisir".into()));
    let resp = http
        .post(format!("{base}/oidc/choix"))
        .header("cookie", &cookie)
        .header("origin", base)
        .form(&form)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 303, "choix {}", resp.status());
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let code = param(&location, "code").ok_or_else(|| anyhow::anyhow!("pas de code"))?;
    let t3 = t.elapsed();

    let (t4, t5) = token_and_userinfo(http, base, secret, &code).await?;
    Ok([t1, t2, t3, t4, t5])
}

pub async fn token_and_userinfo(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    code: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    let resp = http
        .post(format!("{base}/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("client_secret", secret),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    anyhow::ensure!(status == 200, "token {status} {body}");
    let access = body["access_token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(body["id_token"].is_string(), "pas d'id_token");
    let t4 = t.elapsed();
    let t = Instant::now();
    let resp = http
        .get(format!("{base}/oidc/userinfo"))
        .bearer_auth(&access)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "userinfo {}", resp.status());
    resp.bytes().await?;
    Ok((t4, t.elapsed()))
}

/// `desks` aidants of `structure`, each with a session and a usager under mandate (logement,
/// famille), plus `extra` usagers under mandate for a realistic list; and the registered
/// client's secret.
pub async fn desks(
    db: &TestDatabase,
    ctx: &Territory,
    structure: StructureId,
    desks: usize,
    extra: usize,
) -> anyhow::Result<(Vec<Worker>, String)> {
    // One aidant per simulated desk, each with a usager holding a mandate; 200 more usagers
    // make the structure's list realistic. The usagers are new at each call: a database kept
    // between runs (the national volume) would otherwise give the same 216 people one more live
    // mandate per run (38 authorisations each after 19 runs, read by every page of a flow),
    // where the empty database's have one.
    let run = Uuid::new_v4().simple().to_string();
    let run = &run[..8];
    let mut workers = Vec::new();
    for n in 0..desks + extra {
        let mut tx = db.admin.begin().await?;
        let aidant = habilitation_desk::accounts::create_professional(
            &mut tx,
            &format!("aidant-{n}-{}@banc.test", Uuid::new_v4().simple()),
            &format!("Aidant {n}"),
        )
        .await?;
        habilitation_desk::accounts::grant_role(
            &mut tx,
            aidant,
            Role::Aidant,
            structure.domain(),
            Some("33"),
        )
        .await?;
        tx.commit().await?;
        let mut ttx = ctx.begin().await?;
        let identity = Identity {
            sub: format!("banc-{run}-{n}"),
            given_name: format!("Prénom{n}"),
            family_name: format!("NOM{n:04}"),
            preferred_username: None,
            birthdate: "1970-01-01".into(),
            gender: "female".into(),
            birthplace: "33063".into(),
            birthcountry: "99100".into(),
            email: Some(format!("usager-{n}-{run}@banc.test")),
        };
        let usager = mandates::upsert_usager(&mut ttx, &identity, structure, aidant).await?;
        mandates::create(
            &mut ttx,
            &NewMandate {
                id: MandateId::new_v7(),
                structure,
                aidant,
                usager,
                categories: vec![
                    categories::by_code("logement").expect("logement"),
                    categories::by_code("famille").expect("famille"),
                ],
                duration_days: 365,
                renewal_of: None,
                idempotency_key: None,
                language: None,
                attestation: None,
            },
            OffsetDateTime::now_utc(),
        )
        .await?;
        ttx.commit().await?;
        if n < desks {
            let mut conn = db.admin.acquire().await?;
            let cookie = session::open(&mut conn, aidant, OffsetDateTime::now_utc(), false).await?;
            workers.push(Worker {
                cookie: cookie.value_str().to_owned(),
                usager,
            });
        }
    }
    // Statistics as a running territory has them: without, the planner takes the fresh tables
    // for empty, and its generic plan for the authorize page's usager list probes every
    // authorisation of the structure for each usager (216 × 216 rows per page here); without
    // those of `structure_usagers`, it reads and sorts all the structure's usagers instead of
    // walking them in name order and stopping at the page's 51st.
    // Every benchmark's desks are in Gironde.
    anyhow::ensure!(
        ctx.departement().schema_name() == "dep_33",
        "bureaux hors de Gironde"
    );
    sqlx::raw_sql(
        "ANALYZE dep_33.usagers, dep_33.mandates, dep_33.authorisations, dep_33.structure_usagers",
    )
    .execute(&db.admin)
    .await?;
    Ok((workers, client_secret(&db.admin).await?))
}

/// The benchmark's registered client ([`CLIENT`]), registered if new; its secret.
pub async fn client_secret(admin: &sqlx::PgPool) -> anyhow::Result<String> {
    // A database kept between runs (the national volume) holds the client already: a new
    // secret for it.
    if let Ok(secret) = clients::rotate_secret(admin, CLIENT).await {
        return Ok(secret);
    }
    let secret = clients::register(
        admin,
        &NewClient {
            client_id: CLIENT.into(),
            name: "FranceConnect (banc d'essai)".into(),
            auth_method: AuthMethod::ClientSecretPost,
            jwks: None,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            signing_alg: Alg::Es256,
            allowed_scopes: mandate_service::idp::SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allowed_categories: mandate_service::categories::ALL
                .iter()
                .map(|c| c.code.to_owned())
                .collect(),
        },
        foundation::config::Environment::Test,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("pas de secret"))?;
    Ok(secret)
}

/// Complete flows by every desk at once for `duration`: how many, and each request's latency.
pub async fn run_flows(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    workers: &std::sync::Arc<Vec<Worker>>,
    duration: Duration,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers.len())
        .map(|i| {
            let (http, base, secret) = (http.clone(), base.to_owned(), secret.to_owned());
            let workers = workers.clone();
            tokio::spawn(async move {
                let w = &workers[i];
                let mut csrf = None;
                let mut times = Vec::new();
                let mut n = (i as u64) << 32;
                let mut done = 0u64;
                while started.elapsed() < duration {
                    let t = flow(&http, &base, &secret, w, n, &mut csrf).await?;
                    times.extend(t);
                    n += 1;
                    done += 1;
                }
                Ok::<_, anyhow::Error>((done, times))
            })
        })
        .collect();
    let mut flows = 0;
    let mut times = Vec::new();
    for t in tasks {
        let (d, ts) = t.await??;
        flows += d;
        times.extend(ts);
    }
    Ok((flows, times))
}
