//! Professionals for tests: accounts created through the production code, with an
//! authenticator-app seed the test knows, and a browser-like client that keeps cookies and
//! reads CSRF tokens from forms.

use std::time::Duration;

use foundation::auth::{factors, secrets::SeedCipher, totp};
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use habilitation_desk::accounts;
use policies::{Domain, Role};
use sqlx::PgPool;
use uuid::Uuid;

use super::TestApp;

pub struct TestProfessional {
    pub id: ProfessionalId,
    pub email: String,
    pub seed: Vec<u8>,
    /// The TOTP step the test started at (codes for base-1, base and base+1 are all valid).
    pub base_step: i64,
}

impl TestProfessional {
    /// The code of `base_step + offset` (offset in -1..=1).
    pub fn code(&self, offset: i64) -> String {
        totp::code_at(&self.seed, 30, ((self.base_step + offset) * 30) as u64)
    }

    /// The code of the current step + `offset` (offset in -1..=1), waiting first if the step
    /// ends within 4 seconds: on a loaded machine, a code of `base_step` may have left the
    /// ±1 window by the time a test logs in, one of the current step has not.
    pub async fn code_now(&self, offset: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if now % 30 > 26 {
            tokio::time::sleep(Duration::from_secs((31 - now % 30) as u64)).await;
        }
        let step = time::OffsetDateTime::now_utc().unix_timestamp() / 30;
        totp::code_at(&self.seed, 30, ((step + offset) * 30) as u64)
    }
}

pub fn cipher() -> SeedCipher {
    let settings = foundation::config::Settings::default();
    SeedCipher::new(
        &settings.security.totp_key,
        settings.security.totp_key_version,
    )
    .expect("clé")
}

/// Waits, if needed, so that at least 12 seconds remain in the current 30-second step: a code
/// of the previous step (offset -1) is then still inside the ±1 window when a loaded machine
/// takes a few seconds to use it.
pub async fn fresh_step() -> i64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if now % 30 > 18 {
        tokio::time::sleep(std::time::Duration::from_secs((31 - now % 30) as u64)).await;
    }
    time::OffsetDateTime::now_utc().unix_timestamp() / 30
}

/// Creates an active professional with a confirmed app factor and these roles.
pub async fn professional(
    admin: &PgPool,
    name: &str,
    roles: &[(Role, Domain, Option<&str>)],
) -> TestProfessional {
    let email = format!(
        "{}-{}@example.test",
        name.to_lowercase().replace(' ', "."),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let mut tx = admin.begin().await.expect("tx");
    let id = accounts::create_professional(&mut tx, &email, name)
        .await
        .expect("compte");
    for (role, domain, departement) in roles {
        accounts::grant_role(&mut tx, id, *role, *domain, *departement)
            .await
            .expect("rôle");
    }
    let (factor, seed) = factors::start_app_enrolment(&mut tx, &cipher(), id)
        .await
        .expect("facteur");
    sqlx::query("UPDATE platform.second_factors SET confirmed_at = now() WHERE id = $1")
        .bind(factor)
        .execute(&mut *tx)
        .await
        .expect("confirmation");
    tx.commit().await.expect("commit");
    TestProfessional {
        id,
        email,
        seed,
        base_step: fresh_step().await,
    }
}

/// The value of the first `csrf` hidden field of a page.
pub fn csrf_of(html: &str) -> String {
    csrf_field(html).expect("champ csrf")
}

/// The value of the first `csrf` hidden field of a page, if it has one.
fn csrf_field(html: &str) -> Option<String> {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker)? + marker.len();
    html[start..].split('"').next().map(str::to_owned)
}

/// A browser: keeps cookies (its own jar: reqwest's does not keep cookies set by an IP-address
/// host), does not follow redirects, sends the platform's Origin.
pub struct Browser {
    client: reqwest::Client,
    origin: String,
    cookies: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().expect("jar");
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&self, resp: &reqwest::Response) {
        let mut jar = self.cookies.lock().expect("jar");
        for value in resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = value.split(';').next().unwrap_or_default();
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            let expired = value.to_ascii_lowercase().contains("max-age=0");
            if expired || val.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), val.to_owned());
            }
        }
    }

    /// The cookies held, to hand a session over to the browser harness.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.cookies
            .lock()
            .expect("jar")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let resp = self
            .client
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        resp
    }

    pub async fn post(&self, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_from(url, fields, &self.origin.clone()).await
    }

    /// A POST carrying extra headers (a proxy's `X-Forwarded-For`, say).
    pub async fn post_with_headers(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(url)
            .header("cookie", self.cookie_header())
            .header("origin", &self.origin)
            .form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let resp = request.send().await.expect("POST");
        self.keep(&resp);
        resp
    }

    /// A `multipart/form-data` POST: text fields, then one file.
    pub async fn post_multipart(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> reqwest::Response {
        let boundary = "----ac-test-boundary-7c1f";
        let mut body: Vec<u8> = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (name, file_name, bytes) = file;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .client
            .post(url)
            .header("cookie", self.cookie_header())
            .header("origin", &self.origin)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("POST");
        self.keep(&resp);
        resp
    }

    pub async fn post_from(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        origin: &str,
    ) -> reqwest::Response {
        let resp = self
            .client
            .post(url)
            .header("cookie", self.cookie_header())
            .header("origin", origin)
            .form(fields)
            .send()
            .await
            .expect("POST");
        self.keep(&resp);
        resp
    }
}

pub fn browser(origin: &str) -> Browser {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Browser {
        client,
        origin: origin.to_owned(),
        cookies: Default::default(),
    }
}

pub async fn page(client: &Browser, url: &str) -> (u16, String) {
    let resp = client.get(url).await;
    (resp.status().as_u16(), resp.text().await.expect("corps"))
}

/// Posts a form with the CSRF token of `form_page`.
pub async fn post_form(
    client: &Browser,
    app: &TestApp,
    form_page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (status, html) = page(client, &app.url(form_page)).await;
    let Some(token) = csrf_field(&html) else {
        // Which page came instead of the form, for a failure seen only under load.
        let title = html
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or("(sans titre)");
        let main = html.split("<main").nth(1).unwrap_or(&html);
        let excerpt: String = main.chars().take(1500).collect();
        panic!("{form_page} : pas de champ csrf (statut {status}, « {title} ») : {excerpt}");
    };
    let mut form: Vec<(&str, &str)> = vec![("csrf", &token)];
    form.extend_from_slice(fields);
    client.post(&app.url(action), &form).await
}

/// Asks for a login link with `code`; returns the status and page.
pub async fn ask_link(client: &Browser, app: &TestApp, email: &str, code: &str) -> (u16, String) {
    let resp = post_form(
        client,
        app,
        "/connexion",
        "/connexion",
        &[("email", email), ("code", code), ("suite", "/compte")],
    )
    .await;
    (resp.status().as_u16(), resp.text().await.expect("corps"))
}

/// The newest link containing `path` mailed to `email`, once more than `known` such mails exist.
pub async fn mailed(email: &str, path: &str, known: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let links: Vec<String> = test_support::maildev::mails_to(email)
            .await
            .iter()
            .filter_map(|m| {
                m["text"].as_str().and_then(|t| {
                    t.split_whitespace()
                        .find(|w| w.contains(path))
                        .map(str::to_owned)
                })
            })
            .collect();
        if links.len() > known {
            return links.last().cloned().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "aucun courriel {path} pour {email}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn login_links_sent(email: &str) -> usize {
    test_support::maildev::mails_to(email)
        .await
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("/connexion/lien"))
        })
        .count()
}

/// The login link mailed to `email` after `ask_link` (the first one it received).
pub async fn mailed_link(email: &str) -> String {
    mailed(email, "/connexion/lien", 0).await
}

/// The whole login: code, mailed link, confirmation button. Returns the final response.
pub async fn log_in(
    client: &Browser,
    app: &TestApp,
    who: &TestProfessional,
    offset: i64,
) -> reqwest::Response {
    let known = login_links_sent(&who.email).await;
    let code = who.code_now(offset).await;
    let (status, body) = ask_link(client, app, &who.email, &code).await;
    assert_eq!(status, 200, "{body}");
    let link = mailed(&who.email, "/connexion/lien", known).await;
    let (_, confirm) = page(client, &link).await;
    let token = link
        .split("jeton=")
        .nth(1)
        .expect("jeton")
        .split('&')
        .next()
        .expect("jeton")
        .to_owned();
    let csrf = csrf_of(&confirm);
    client
        .post(
            &app.url("/connexion/lien"),
            &[("csrf", csrf.as_str()), ("jeton", token.as_str())],
        )
        .await
}

/// An aidant of a new structure in Gironde, logged in (factor verified): who, where, their
/// browser.
pub async fn logged_in_aidant(app: &TestApp) -> (TestProfessional, StructureId, Browser) {
    let structure = structure_domain(app, "33").await;
    let who = professional(
        &app.db.admin,
        "Alice Aidant",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    let resp = log_in(&client, app, &who, -1).await;
    assert_eq!(resp.status(), 303);
    (who, structure, client)
}

pub async fn structure_domain(app: &TestApp, departement: &str) -> StructureId {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(departement).expect("dep"))
        .await
        .expect("ctx");
    let tenant = foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(ctx.departement()),
        "Conseil",
    )
    .await
    .map(|t| t.id)
    .unwrap_or_else(|_| TenantId::from_uuid(Uuid::nil()));
    habilitation_desk::structures::create_structure(
        &ctx,
        &habilitation_desk::structures::NewStructure {
            tenant_id: tenant,
            name: format!("Structure {}", &Uuid::new_v4().simple().to_string()[..6]),
            kind: "mairie".into(),
            commune: foundation::tenancy::CommuneCode::parse(&format!("{departement}063"))
                .expect("commune"),
            address: String::new(),
            france_services: false,
        },
    )
    .await
    .expect("structure")
}

/// Lifts the delays of `who` and of unknown browsers, and the attempt limits, as time passing
/// would, between failures.
pub async fn delays_pass(app: &TestApp, who: &TestProfessional) {
    sqlx::query(
        "UPDATE platform.second_factors SET blocked_until = NULL WHERE professional_id = $1",
    )
    .bind(who.id)
    .execute(&app.db.admin)
    .await
    .expect("délai");
    sqlx::query("UPDATE platform.login_delays SET blocked_until = NULL")
        .execute(&app.db.admin)
        .await
        .expect("délai");
    sqlx::query("DELETE FROM platform.rate_limits")
        .execute(&app.db.admin)
        .await
        .expect("fenêtre");
}

/// Activates an account from its mailed enrolment link (app factor); the professional, with
/// the seed the test now knows.
pub async fn activate_from_mail(
    app: &TestApp,
    client: &Browser,
    email: &str,
    id: ProfessionalId,
) -> TestProfessional {
    let link = mailed(email, "/activation?jeton=", 0).await;
    let (_, start) = page(client, &link).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let resp = client
        .post(
            &app.url("/activation"),
            &[
                ("csrf", csrf_of(&start).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let qr = resp.text().await.expect("corps");
    let between = |text: &str, a: &str, b: &str| {
        text.split(a)
            .nth(1)
            .expect(a)
            .split(b)
            .next()
            .expect(b)
            .to_owned()
    };
    let secret = between(&qr, "<code>", "</code>");
    let seed = totp_rs::Secret::try_from_base32(&secret)
        .expect("base32")
        .as_bytes()
        .to_vec();
    let factor = between(&qr, r#"name="facteur" value=""#, "\"");
    let step = fresh_step().await;
    let code = foundation::auth::totp::code_at(&seed, 30, (step * 30) as u64);
    let resp = client
        .post(
            &app.url("/activation/confirmation"),
            &[
                ("csrf", csrf_of(&qr).as_str()),
                ("jeton", token.as_str()),
                ("facteur", factor.as_str()),
                ("code", code.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    TestProfessional {
        id,
        email: email.to_owned(),
        seed,
        base_step: step,
    }
}
