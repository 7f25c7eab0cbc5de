//! The identity provider's test fixtures: an aidant with a live mandate, registered clients,
//! the aidant's choice pages driven over HTTP, and the openid-client relying party
//! (`infra/idp-client/rp.mjs`) playing FranceConnect.

use std::process::Stdio;

use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use mandate_service::categories;
use mandate_service::franceconnect::Identity;
use mandate_service::idp::clients::{self, AuthMethod, NewClient};
use mandate_service::idp::keys::Alg;
use mandate_service::jws::JwkSet;
use mandate_service::mandates::{self, NewMandate};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::TestApp;
use super::identity::*;

pub struct Fixture {
    pub who: TestProfessional,
    pub structure: StructureId,
    pub aidant: Browser,
    pub usager: UsagerId,
    pub mandate: MandateId,
}

/// The identity FranceConnect gave when the mandate was made (the stand-in's `test`).
pub fn angela(sub: &str) -> Identity {
    Identity {
        sub: sub.into(),
        given_name: "Angela Claire Louise".into(),
        family_name: "DUBOIS".into(),
        preferred_username: None,
        birthdate: "1962-08-24".into(),
        gender: "female".into(),
        birthplace: "75107".into(),
        birthcountry: "99100".into(),
        email: Some(format!("{sub}@usagers.test")),
    }
}

/// An aidant of a structure in Gironde, logged in, whose structure holds a mandate of
/// `identity` for `codes`.
pub async fn fixture(app: &TestApp, identity: &Identity, codes: &[&str]) -> Fixture {
    let (who, structure, aidant) = logged_in_aidant(app).await;
    let (usager, mandate) = mandate_for(app, structure, who.id, identity, codes).await;
    Fixture {
        who,
        structure,
        aidant,
        usager,
        mandate,
    }
}

/// A mandate made in the structure (as the mandate service makes it after FranceConnect).
pub async fn mandate_for(
    app: &TestApp,
    structure: StructureId,
    aidant: ProfessionalId,
    identity: &Identity,
    codes: &[&str],
) -> (UsagerId, MandateId) {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let tenant = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    let mut tx = tenant.begin().await.expect("tx");
    let usager = mandates::upsert_usager(&mut tx, identity, structure, aidant)
        .await
        .expect("usager");
    let mandate = mandates::create(
        &mut tx,
        &NewMandate {
            id: MandateId::new_v7(),
            structure,
            aidant,
            usager,
            categories: codes
                .iter()
                .map(|c| categories::by_code(c).expect("catégorie"))
                .collect(),
            duration_days: 365,
            renewal_of: None,
            idempotency_key: None,
            language: None,
            attestation: None,
        },
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("mandat");
    tx.commit().await.expect("commit");
    (usager, mandate)
}

/// Registers a client allowed every scope and every démarche category; returns its secret.
pub async fn register(
    app: &TestApp,
    client_id: &str,
    method: AuthMethod,
    redirect: &str,
    logout: &[&str],
    alg: Alg,
    jwks: Option<JwkSet>,
) -> Option<String> {
    let scopes: Vec<&str> = mandate_service::idp::SCOPES.into();
    let all: Vec<&str> = categories::ALL.iter().map(|c| c.code).collect();
    register_allowed(
        app,
        NewClient {
            client_id: client_id.into(),
            name: "FranceConnect (test)".into(),
            auth_method: method,
            jwks,
            redirect_uris: vec![redirect.into()],
            post_logout_redirect_uris: logout.iter().map(|s| (*s).to_owned()).collect(),
            signing_alg: alg,
            allowed_scopes: Vec::new(),
            allowed_categories: Vec::new(),
        },
        &scopes,
        &all,
    )
    .await
}

/// Registers `client` allowed only `scopes` and `categories`; returns its secret.
pub async fn register_allowed(
    app: &TestApp,
    mut client: NewClient,
    scopes: &[&str],
    categories: &[&str],
) -> Option<String> {
    client.allowed_scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    client.allowed_categories = categories.iter().map(|c| (*c).to_owned()).collect();
    clients::register(
        &app.db.admin,
        &client,
        foundation::config::Environment::Test,
    )
    .await
    .expect("client enregistré")
}

fn query_pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    serde_urlencoded::from_str(query).expect("query")
}

/// A parameter of a URL's query.
pub fn param(url: &str, name: &str) -> Option<String> {
    query_pairs(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The aidant, at the authorization URL, picks `usager` then `category`; returns where the
/// platform sends the browser (the client's redirect URI with a code, or an error).
pub async fn choose(
    fx: &Fixture,
    app: &TestApp,
    authorize_url: &str,
    usager: UsagerId,
    category: &str,
) -> String {
    let resp = fx.aidant.get(authorize_url).await;
    if resp.status() == 303 {
        return location(&resp);
    }
    assert_eq!(resp.status(), 200, "page de choix de la personne");
    let html = resp.text().await.expect("page");
    assert!(
        html.contains(&format!("ac_usager={usager}")),
        "la personne est proposée : {html}"
    );
    let (status, html) = page(&fx.aidant, &format!("{authorize_url}&ac_usager={usager}")).await;
    assert_eq!(status, 200, "{html}");
    let csrf = csrf_of(&html);
    let mut fields: Vec<(String, String)> = query_pairs(authorize_url);
    fields.push(("csrf".into(), csrf));
    fields.push(("ac_usager".into(), usager.to_string()));
    fields.push(("ac_categorie".into(), category.into()));
    fields.push(("ac_action".into(), "choisir".into()));
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = fx.aidant.post(&app.url("/oidc/choix"), &borrowed).await;
    assert_eq!(
        resp.status(),
        303,
        "choix refusé : {}",
        resp.text().await.unwrap_or_default()
    );
    location(&resp)
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// The openid-client relying party.
pub struct Rp {
    pub origin: String,
    child: tokio::process::Child,
    http: reqwest::Client,
}

impl Drop for Rp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn infra_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra")
}

impl Rp {
    pub async fn spawn() -> Rp {
        let mut child = tokio::process::Command::new("node")
            .arg("idp-client/rp.mjs")
            .current_dir(infra_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node infra/idp-client/rp.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
                .await
                .expect("le client openid-client démarre")
                .expect("ligne")
                .expect("sortie");
            if let Some(p) = line.strip_prefix("rp listening on ") {
                break p.trim().to_owned();
            }
        };
        Rp {
            origin: format!("http://127.0.0.1:{port}"),
            child,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    pub fn callback(&self) -> String {
        format!("{}/callback", self.origin)
    }

    pub async fn jwks(&self) -> JwkSet {
        self.http
            .get(format!("{}/jwks", self.origin))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json")
    }

    pub async fn configure(&self, config: Value) {
        let resp = self
            .http
            .post(format!("{}/configure", self.origin))
            .json(&config)
            .send()
            .await
            .expect("configure");
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// A new authorization request: (URL, state).
    pub async fn start(&self, rep_scope: Option<&str>) -> (String, String) {
        let mut url = format!("{}/start", self.origin);
        if let Some(r) = rep_scope {
            url = format!(
                "{url}?{}",
                serde_urlencoded::to_string([("rep_scope", r)]).expect("query")
            );
        }
        let v: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("start")
            .json()
            .await
            .expect("json");
        (
            v["url"].as_str().expect("url").to_owned(),
            v["state"].as_str().expect("state").to_owned(),
        )
    }

    /// Follows the platform's redirect to the RP's callback; returns its result.
    pub async fn land(&self, location: &str) -> Value {
        assert!(location.starts_with(&self.origin), "{location}");
        self.http.get(location).send().await.expect("callback");
        let state = param(location, "state").expect("state");
        self.get_json(&format!("/result?state={state}")).await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.origin))
            .send()
            .await
            .expect("rp")
            .json()
            .await
            .expect("json")
    }

    pub async fn post_json(&self, path: &str) -> Value {
        self.http
            .post(format!("{}{path}", self.origin))
            .send()
            .await
            .expect("rp")
            .json()
            .await
            .expect("json")
    }
}
