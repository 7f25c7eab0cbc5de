//! Habilitation requests through the desk's pages, as the tests drive them: an issuer's
//! verified browser, a complete request, submission, waves, the national reviewer.

use foundation::ids::{ProfessionalId, StructureId, TenantId};
use policies::{Domain, Role};
use uuid::Uuid;

use super::TestApp;
use super::identity::*;

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A Luhn-valid SIRET made of `n`.
pub fn siret(n: u32) -> String {
    let body = format!("9000{n:09}");
    let digits: Vec<u32> = body.chars().filter_map(|c| c.to_digit(10)).collect();
    let key = (0..10)
        .find(|k| {
            let mut all = digits.clone();
            all.push(*k);
            let sum: u32 = all
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| {
                    if i % 2 == 1 {
                        let x = d * 2;
                        if x > 9 { x - 9 } else { x }
                    } else {
                        d
                    }
                })
                .sum();
            sum.is_multiple_of(10)
        })
        .expect("clé");
    format!("{body}{key}")
}

pub fn unique_email(who: &str) -> String {
    format!(
        "{who}-{}@example.test",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// An issuer's browser, its address verified through the mailed link.
pub async fn issuer(app: &TestApp, email: &str) -> Browser {
    let client = browser(&app.address);
    let known = test_support::maildev::mails_to(email)
        .await
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("/demande/acces?jeton="))
        })
        .count();
    let resp = post_form(&client, app, "/demande", "/demande", &[("email", email)]).await;
    assert_eq!(resp.status(), 200);
    let link = mailed(email, "/demande/acces?jeton=", known).await;
    let (status, confirm) = page(&client, &link).await;
    assert_eq!(status, 200, "{confirm}");
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let resp = client
        .post(
            &app.url("/demande/acces"),
            &[
                ("csrf", csrf_of(&confirm).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/demande/mes-demandes");
    client
}

pub struct Structure<'a> {
    pub name: &'a str,
    pub siret: String,
    pub commune: &'a str,
    pub postal: &'a str,
}

pub fn structure_fields(s: &Structure) -> Vec<(&'static str, String)> {
    vec![
        ("name", s.name.to_owned()),
        ("kind", "ccas".to_owned()),
        ("siret", s.siret.clone()),
        ("address", "1 place de la Mairie".to_owned()),
        ("postal_code", s.postal.to_owned()),
        ("commune_code", s.commune.to_owned()),
        (
            "mission",
            "Accueil social et accompagnement aux démarches".to_owned(),
        ),
        (
            "opening_hours",
            "Du lundi au vendredi, 9 h - 17 h".to_owned(),
        ),
    ]
}

pub async fn post_fields(
    client: &Browser,
    app: &TestApp,
    form_page: &str,
    action: &str,
    fields: &[(&str, String)],
) -> reqwest::Response {
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_form(client, app, form_page, action, &borrowed).await
}

/// Fills the four steps; returns the reference (the request is a complete draft).
pub async fn fill(
    client: &Browser,
    app: &TestApp,
    s: &Structure<'_>,
    referent_email: &str,
) -> String {
    let resp = post_fields(
        client,
        app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &structure_fields(s),
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let to = location(&resp);
    let reference = to
        .strip_prefix("/demande/demandes/")
        .and_then(|r| r.strip_suffix("/referent"))
        .expect("référence")
        .to_owned();
    let base = format!("/demande/demandes/{reference}");
    let resp = post_fields(
        client,
        app,
        &format!("{base}/referent"),
        &format!("{base}/referent"),
        &[
            ("first_name", "Régine".into()),
            ("last_name", "Référente".into()),
            ("email", referent_email.into()),
            ("phone", "05 56 00 00 00".into()),
            ("is_aidant", "on".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    for (first, email) in [("Anne", "anne"), ("Bruno", "bruno")] {
        let resp = post_fields(
            client,
            app,
            &format!("{base}/aidants"),
            &format!("{base}/aidants"),
            &[
                ("first_name", first.into()),
                ("last_name", "Aidant".into()),
                ("email", unique_email(email)),
                ("profession", "Agent d'accueil".into()),
                ("employment", "public_agent".into()),
                ("employer", s.name.into()),
            ],
        )
        .await;
        assert_eq!(resp.status(), 303);
    }
    let resp = post_fields(
        client,
        app,
        &format!("{base}/engagements"),
        &format!("{base}/engagements"),
        &[
            ("terms_of_use", "on".into()),
            ("dpo_informed", "on".into()),
            ("training_financed", "on".into()),
            ("professionals_only", "on".into()),
            ("no_elected_official", "on".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    reference
}

pub async fn submit(client: &Browser, app: &TestApp, reference: &str) -> reqwest::Response {
    let base = format!("/demande/demandes/{reference}");
    post_form(client, app, &base, &format!("{base}/deposer"), &[]).await
}

pub async fn status_of(app: &TestApp, departement: &str, reference: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM dep_{}.structure_requests WHERE reference = $1",
        departement.to_lowercase()
    )))
    .bind(reference)
    .fetch_one(&app.db.admin)
    .await
    .expect("état")
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

/// A national admin, signed in.
pub async fn national(app: &TestApp) -> (TestProfessional, Browser) {
    let nadia = professional(
        &app.db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &nadia, -1).await.status(), 303);
    (nadia, client)
}

/// The département council's tenant (created when missing).
pub async fn council(app: &TestApp, departement: &str) -> TenantId {
    let d = foundation::tenancy::DepartementCode::parse(departement).expect("dep");
    match foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(d),
        &format!("Conseil départemental {departement}"),
    )
    .await
    {
        Ok(t) => t.id,
        Err(_) => sqlx::query_scalar(
            "SELECT id FROM platform.tenants WHERE kind = 'departement' AND departement_code = $1",
        )
        .bind(d.as_str())
        .fetch_one(&app.db.admin)
        .await
        .expect("tenant"),
    }
}

/// Creates and opens a wave of these départements through the national pages.
pub async fn open_wave(app: &TestApp, admin: &Browser, name: &str, codes: &str) {
    let resp = post_form(
        admin,
        app,
        "/national/vagues",
        "/national/vagues",
        &[
            ("name", name),
            ("opens_on", "2026-12-01"),
            ("departements", codes),
        ],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let wave: Uuid = sqlx::query_scalar("SELECT id FROM platform.rollout_waves WHERE name = $1")
        .bind(name)
        .fetch_one(&app.db.admin)
        .await
        .expect("vague");
    let resp = post_form(
        admin,
        app,
        "/national/vagues",
        "/national/vagues/ouvrir",
        &[("vague", &wave.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/national/vagues?message=ouverte");
}

pub async fn mail_subjects(email: &str) -> Vec<String> {
    test_support::maildev::mails_to(email)
        .await
        .iter()
        .filter_map(|m| m["subject"].as_str().map(str::to_owned))
        .collect()
}

pub async fn wait_subject(email: &str, part: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if mail_subjects(email).await.iter().any(|s| s.contains(part)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pas de courriel « {part} » pour {email} : {:?}",
            mail_subjects(email).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A request of Gironde accepted by the national team, as the desk leaves it.
pub struct Accepted {
    pub issuer: Browser,
    pub issuer_email: String,
    pub reference: String,
    pub structure: StructureId,
    pub referent_email: String,
    pub referent_id: ProfessionalId,
    pub admin: Browser,
    pub nadia: TestProfessional,
}

/// Opens Gironde, files a complete request (the référent-aidant and two aidants), submits and
/// accepts it through the pages.
pub async fn accepted_request(app: &TestApp, name: &str, n: u32) -> Accepted {
    council(app, "33").await;
    let (nadia, admin) = national(app).await;
    open_wave(app, &admin, "Vague de Gironde", "33").await;
    let issuer_email = unique_email("issuer");
    let client = issuer(app, &issuer_email).await;
    let referent_email = unique_email("regine");
    let s = Structure {
        name,
        siret: siret(n),
        commune: "33249",
        postal: "33310",
    };
    let reference = fill(&client, app, &s, &referent_email).await;
    assert_eq!(submit(&client, app, &reference).await.status(), 303);
    let review = format!("/instruction/demandes/{reference}");
    let resp = post_form(&admin, app, &review, &format!("{review}/accepter"), &[]).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let structure: StructureId = sqlx::query_scalar(
        "SELECT structure_id FROM dep_33.structure_requests WHERE reference = $1",
    )
    .bind(&reference)
    .fetch_one(&app.db.admin)
    .await
    .expect("structure");
    let referent_id: ProfessionalId =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
            .bind(&referent_email)
            .fetch_one(&app.db.admin)
            .await
            .expect("référent");
    Accepted {
        issuer: client,
        issuer_email,
        reference,
        structure,
        referent_email,
        referent_id,
        admin,
        nadia,
    }
}

/// A structure of `tenant` in `commune` (its département's territory).
pub async fn structure(app: &TestApp, tenant: TenantId, name: &str, commune: &str) -> StructureId {
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(&commune[..2]).expect("dep"))
        .await
        .expect("ctx");
    habilitation_desk::structures::create_structure(
        &ctx,
        &habilitation_desk::structures::NewStructure {
            tenant_id: tenant,
            name: name.into(),
            kind: "ccas".into(),
            commune: foundation::tenancy::CommuneCode::parse(commune).expect("commune"),
            address: "1 place de la Mairie".into(),
            france_services: false,
        },
    )
    .await
    .expect("structure")
}
