//! Habilitation desk II, end to end against the real stack: training (capacity under
//! concurrency, waiting list, attendance), Pix import, the charter and activation, the
//! référent's space and tools (new files, withdrawal at the next request everywhere, moves,
//! co-référents, démarches), the national team's withdrawal, deactivation and register — and
//! the whole path from an accepted request to a first mandate, in Chromium with the keyboard
//! alone.

mod common;

use common::identity::*;
use common::idp::*;
use common::requests::accepted_request;
use common::spawn_app;
use foundation::ids::{ProfessionalId, StructureId};
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::Alg;
use policies::{Domain, Role};
use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:9/api/v2/oidc-callback";

fn authorize_url(app: &common::TestApp, client_id: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("scope", "openid profile"),
        ("state", "etat-123456"),
        ("nonce", "nonce-123456"),
        ("acr_values", "eidas1"),
    ])
    .expect("query");
    format!("{}?{query}", app.url("/oidc/authorize"))
}

async fn redeem(app: &common::TestApp, client_id: &str, secret: &str, code: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/oidc/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn userinfo_status(app: &common::TestApp, token: &str) -> u16 {
    app.client
        .get(app.url("/oidc/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

async fn count(app: &common::TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

#[tokio::test]
async fn a_withdrawal_takes_effect_at_the_next_request_everywhere() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-retrait"), &["logement"]).await;
    let rita = professional(
        &app.db.admin,
        "Rita Référente",
        &[(Role::Referent, fx.structure.domain(), Some("33"))],
    )
    .await;
    let referent = browser(&app.address);
    assert_eq!(log_in(&referent, &app, &rita, -1).await.status(), 303);
    // The aidant is also signed in in another browser.
    let elsewhere = browser(&app.address);
    assert_eq!(log_in(&elsewhere, &app, &fx.who, 0).await.status(), 303);
    assert_eq!(elsewhere.get(&app.url("/mandats")).await.status(), 200);

    // An identity-provider flow in progress (a code not redeemed yet) and one already given.
    let secret = register(
        &app,
        "fc-retrait",
        AuthMethod::ClientSecretPost,
        CALLBACK,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");
    let url = authorize_url(&app, "fc-retrait");
    let pending = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let used = param(
        &choose(&fx, &app, &url, fx.usager, "logement").await,
        "code",
    )
    .expect("code");
    let (status, body) = redeem(&app, "fc-retrait", &secret, &used).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("jeton").to_owned();
    assert_eq!(userinfo_status(&app, &token).await, 200);

    // Another structure's référent cannot reach this aidant: 404, nothing changes.
    let other = structure_domain(&app, "33").await;
    let stranger = professional(
        &app.db.admin,
        "Sam Autre",
        &[(Role::Referent, other.domain(), Some("33"))],
    )
    .await;
    let sb = browser(&app.address);
    assert_eq!(log_in(&sb, &app, &stranger, -1).await.status(), 303);
    assert_eq!(
        sb.get(&app.url(&format!("/referent/aidants/retrait?aidant={}", fx.who.id)))
            .await
            .status(),
        404
    );
    let resp = post_form(
        &sb,
        &app,
        "/compte",
        "/referent/aidants/retrait",
        &[("aidant", &fx.who.id.to_string()), ("reason", "Intrusion")],
    )
    .await;
    assert_eq!(resp.status(), 404);
    // An aidant has no right to withdraw anyone: 403.
    let resp = post_form(
        &elsewhere,
        &app,
        "/compte",
        "/referent/aidants/retrait",
        &[("aidant", &fx.who.id.to_string()), ("reason", "x")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    // Without a reason: a French error on the field, nothing withdrawn.
    let form_page = format!("/referent/aidants/retrait?aidant={}", fx.who.id);
    let (status, form) = page(&referent, &app.url(&form_page)).await;
    assert_eq!(status, 200);
    assert!(form.contains("Alice Aidant"));
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url(&form_page), app.url("/referent/aidants")],
        &referent.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let resp = post_form(
        &referent,
        &app,
        &form_page,
        "/referent/aidants/retrait",
        &[("aidant", &fx.who.id.to_string()), ("reason", "  ")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Indiquez le motif du retrait")
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.role_assignments WHERE role = 'aidant'"
        )
        .await,
        1
    );
    assert_eq!(elsewhere.get(&app.url("/mandats")).await.status(), 200);

    // Withdrawn.
    let resp = post_form(
        &referent,
        &app,
        &form_page,
        "/referent/aidants/retrait",
        &[
            ("aidant", &fx.who.id.to_string()),
            ("reason", "A quitté la structure le 27 novembre."),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        common::idp::location(&resp),
        "/referent/aidants?message=habilitation-retiree"
    );
    // Both browsers' sessions are over at the next request.
    for b in [&fx.aidant, &elsewhere] {
        let resp = b.get(&app.url("/mandats")).await;
        assert_eq!(resp.status(), 303);
        assert!(common::idp::location(&resp).starts_with("/connexion?suite="));
    }
    // The flow in progress stops; the token already given answers nothing more.
    let (status, body) = redeem(&app, "fc-retrait", &secret, &pending).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(userinfo_status(&app, &token).await, 401);
    // Logging in again opens nothing in that structure.
    let again = browser(&app.address);
    assert_eq!(log_in(&again, &app, &fx.who, 1).await.status(), 303);
    let resp = again.get(&app.url("/mandats")).await;
    let to = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        resp.status() == 403 || (resp.status() == 303 && to.starts_with("/compte")),
        "{} {to}",
        resp.status()
    );
    // Recorded in the territory (with the reason), journaled in both journals, mailed.
    let reason: String = sqlx::query_scalar("SELECT reason FROM dep_33.habilitation_withdrawals WHERE professional_id = $1 AND NOT by_national")
        .bind(fx.who.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("retrait");
    assert_eq!(reason, "A quitté la structure le 27 novembre.");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'habilitation_withdrawn'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'habilitation_withdrawn'"
        )
        .await,
        1
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mails = test_support::maildev::mails_to(&fx.who.email).await;
        if mails.iter().any(|m| {
            m["subject"].as_str().is_some_and(|s| s.contains("retirée"))
                && m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("A quitté la structure"))
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pas de courriel de retrait"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Withdrawing again: nothing left to withdraw, 404.
    let resp = post_form(
        &referent,
        &app,
        "/compte",
        "/referent/aidants/retrait",
        &[("aidant", &fx.who.id.to_string()), ("reason", "Encore")],
    )
    .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn the_national_team_withdraws_any_habilitation() {
    let app = spawn_app(&["33", "01"]).await;
    let a = structure_domain(&app, "33").await;
    let b = structure_domain(&app, "01").await;
    let ada = professional(
        &app.db.admin,
        "Ada Deux Structures",
        &[
            (Role::Aidant, a.domain(), Some("33")),
            (Role::Aidant, b.domain(), Some("01")),
        ],
    )
    .await;
    let nadia = professional(
        &app.db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);
    let search = format!("/national/habilitations?email={}", ada.email);
    let (status, list) = page(&nb, &app.url(&search)).await;
    assert_eq!(status, 200);
    assert_eq!(
        list.matches("Retirer l&#39;habilitation<span").count()
            + list.matches("Retirer l'habilitation<span").count(),
        2,
        "{list}"
    );
    let resp = post_form(
        &nb,
        &app,
        &search,
        "/national/habilitations/retrait",
        &[
            ("aidant", &ada.id.to_string()),
            ("structure", &b.to_string()),
            ("reason", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    // The pages pass axe (the référent's form is checked in the other test).
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url(&search), app.url("/national/habilitations")],
        &nb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let resp = post_form(
        &nb,
        &app,
        &search,
        "/national/habilitations/retrait",
        &[
            ("aidant", &ada.id.to_string()),
            ("structure", &b.to_string()),
            ("reason", "Signalement d'un usage abusif."),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    // Only the Ain habilitation is gone; recorded in the Ain, not in Gironde.
    let left: Vec<String> = sqlx::query_scalar("SELECT domain FROM platform.role_assignments WHERE professional_id = $1 AND role = 'aidant'")
        .bind(ada.id)
        .fetch_all(&app.db.admin)
        .await
        .expect("rôles");
    assert_eq!(left, vec![format!("structure:{a}")]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_01.habilitation_withdrawals WHERE by_national"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.habilitation_withdrawals").await,
        0
    );
    // A referent cannot use the national page: 403.
    let rita = professional(
        &app.db.admin,
        "Rita",
        &[(Role::Referent, a.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    assert_eq!(rb.get(&app.url(&search)).await.status(), 403);
}

#[tokio::test]
async fn a_referent_chooses_the_demarches_the_structure_handles() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Démarches",
        &[
            (Role::Referent, s.domain(), Some("33")),
            (Role::Aidant, s.domain(), Some("33")),
        ],
    )
    .await;
    let ada = professional(
        &app.db.admin,
        "Ada Démarches",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &ada, -1).await.status(), 303);
    // An aidant who is not référent: 403.
    assert_eq!(ab.get(&app.url("/structure/demarches")).await.status(), 403);
    let resp = post_form(
        &ab,
        &app,
        "/compte",
        "/structure/demarches",
        &[("demarche", "logement")],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let (status, form) = page(&rb, &app.url("/structure/demarches")).await;
    assert_eq!(status, 200);
    assert_eq!(form.matches(" checked").count(), 10, "all ten at first");
    // None ticked: refused with the reason, nothing changed.
    let resp = post_form(
        &rb,
        &app,
        "/structure/demarches",
        "/structure/demarches",
        &[("demarche", "inconnue")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Cochez au moins une démarche")
    );
    let current = || async {
        sqlx::query_scalar::<_, Vec<String>>(
            "SELECT demarches FROM dep_33.structures WHERE id = $1",
        )
        .bind(s)
        .fetch_one(&app.db.admin)
        .await
        .expect("démarches")
    };
    assert_eq!(current().await.len(), 10);
    let resp = post_form(
        &rb,
        &app,
        "/structure/demarches",
        "/structure/demarches",
        &[("demarche", "logement"), ("demarche", "famille")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        current().await,
        vec!["famille".to_owned(), "logement".to_owned()]
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'structure_demarches_set'"
        )
        .await,
        1
    );
    // Mandate creation offers only those.
    let (status, new_mandate) = page(&ab, &app.url("/mandats/nouveau")).await;
    assert_eq!(status, 200);
    assert!(
        new_mandate.contains(r#"value="logement""#) && new_mandate.contains(r#"value="famille""#)
    );
    assert!(!new_mandate.contains(r#"value="justice""#));
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure/demarches")],
        &rb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn the_national_team_deactivates_a_structure_as_a_whole() {
    let app = spawn_app(&["33"]).await;
    let fx = fixture(&app, &angela("fc-sub-desactivation"), &["logement"]).await;
    let secret = register(
        &app,
        "fc-desactivation",
        AuthMethod::ClientSecretPost,
        CALLBACK,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("secret");
    let pending = param(
        &choose(
            &fx,
            &app,
            &authorize_url(&app, "fc-desactivation"),
            fx.usager,
            "logement",
        )
        .await,
        "code",
    )
    .expect("code");
    let nadia = professional(
        &app.db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);
    let (status, list) = page(&nb, &app.url("/national/structures?departement=33")).await;
    assert_eq!(status, 200);
    assert!(list.contains(&fx.structure.to_string()));
    let fields = |reason: &'static str| {
        vec![
            ("departement", "33".to_owned()),
            ("structure", fx.structure.to_string()),
            ("reason", reason.to_owned()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        let nb = &nb;
        let app = &app;
        async move {
            let borrowed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(
                nb,
                app,
                "/compte",
                "/national/structures/desactiver",
                &borrowed,
            )
            .await
        }
    };
    assert_eq!(post(fields("")).await.status(), 400);
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 200);
    assert_eq!(
        post(fields("Convention résiliée par le conseil départemental."))
            .await
            .status(),
        303
    );
    // Its aidant can act no more, and the flow in progress stops.
    assert_eq!(fx.aidant.get(&app.url("/mandats")).await.status(), 403);
    let (status, body) = redeem(&app, "fc-desactivation", &secret, &pending).await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = page(&nb, &app.url("/national/structures?departement=33")).await;
    assert!(list.contains("Convention résiliée par le conseil départemental."));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'structure_deactivated'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'structure_deactivated'"
        )
        .await,
        1
    );
    // Already deactivated: 404; an aidant cannot use the page: 403.
    assert_eq!(post(fields("Encore")).await.status(), 404);
    assert_eq!(
        fx.aidant
            .get(&app.url("/national/structures?departement=33"))
            .await
            .status(),
        403
    );
    let found = test_support::browser::axe_violations_with_cookies(
        &[
            app.url("/national/structures?departement=33"),
            app.url("/national/structures"),
        ],
        &nb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

/// The session's first day comes (attendance is recorded from then).
async fn session_day_comes(app: &common::TestApp, session: uuid::Uuid) {
    sqlx::query("UPDATE platform.training_sessions SET first_day = (now() AT TIME ZONE 'Europe/Paris')::date WHERE id = $1")
        .bind(session)
        .execute(&app.db.admin)
        .await
        .expect("premier jour");
}

/// `n` habilitation files of a structure of Gironde (as an accepted request leaves them), with
/// their index entries. Returns their ids.
async fn files(app: &common::TestApp, structure: StructureId, n: usize) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = uuid::Uuid::now_v7();
        let email = format!("aidant{i}-{}@example.test", &id.simple().to_string()[24..]);
        sqlx::query(
            "INSERT INTO dep_33.habilitation_files (id, structure_id, first_name, last_name, email, profession, employment, employer)
             VALUES ($1, $2, 'Aidant', $3, $4, 'Agent d''accueil', 'public_agent', 'Mairie')",
        )
        .bind(id)
        .bind(structure)
        .bind(format!("Numéro {i:02}"))
        .bind(&email)
        .execute(&app.db.admin)
        .await
        .expect("dossier");
        sqlx::query(
            "INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
             VALUES ($1, '33', $2, $3, $4)",
        )
        .bind(id)
        .bind(structure)
        .bind(&email)
        .bind(format!("Aidant Numéro {i:02}"))
        .execute(&app.db.admin)
        .await
        .expect("index");
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn a_session_never_takes_more_than_its_capacity_and_its_trainer_records_attendance() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Formation",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let nadia = professional(
        &app.db.admin,
        "Nadia Formation",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);

    // The national team: an organisation, then a session of 12 seats (bad input first).
    let resp = post_form(
        &nb,
        &app,
        "/national/formations",
        "/national/formations/organismes",
        &[("name", "Formateurs du Sud-Ouest")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let organisation: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.training_organisations")
            .fetch_one(&app.db.admin)
            .await
            .expect("organisme");
    let later = (foundation::paris::today() + time::Duration::days(20)).to_string();
    let org = organisation.to_string();
    let resp = post_form(
        &nb,
        &app,
        "/national/formations",
        "/national/formations/sessions",
        &[
            ("organisation", &org),
            ("title", "Formation initiale"),
            ("first_day", "2020-01-01"),
            ("mode", "in_person"),
            ("address", ""),
            ("region", "75"),
            ("capacity", "0"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    for expected in [
        "commencer après aujourd",
        "adresse de la session",
        "entre 1 et 200",
    ] {
        assert!(body.contains(expected), "{expected}");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.training_sessions").await,
        0
    );
    let resp = post_form(
        &nb,
        &app,
        "/national/formations",
        "/national/formations/sessions",
        &[
            ("organisation", &org),
            ("title", "Formation initiale"),
            ("first_day", &later),
            ("mode", "remote"),
            ("region", "75"),
            ("capacity", "12"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let session: uuid::Uuid = sqlx::query_scalar("SELECT id FROM platform.training_sessions")
        .fetch_one(&app.db.admin)
        .await
        .expect("session");

    // 40 registrations at once for 12 seats: exactly 12 registered, 28 told it is full,
    // nothing else written.
    let ids = files(&app, s, 42).await;
    let (_, html) = page(&rb, &app.url("/structure/formation")).await;
    let token = csrf_of(&html);
    let url = app.url("/structure/formation/inscription");
    let session_id = session.to_string();
    let forms: Vec<[(&str, String); 3]> = ids[..40]
        .iter()
        .map(|f| {
            [
                ("csrf", token.clone()),
                ("session", session_id.clone()),
                ("dossier", f.to_string()),
            ]
        })
        .collect();
    let answers = futures::future::join_all(forms.iter().map(|form| {
        let borrowed: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let rb = &rb;
        let url = &url;
        async move { rb.post(url, &borrowed).await }
    }))
    .await;
    let mut registered = 0;
    let mut full = 0;
    for a in &answers {
        assert_eq!(a.status(), 303);
        let to = common::idp::location(a);
        if to.ends_with("message=inscrit") {
            registered += 1;
        } else if to.contains("complet=") {
            full += 1;
        } else {
            panic!("réponse inattendue : {to}");
        }
    }
    assert_eq!((registered, full), (12, 28));
    assert_eq!(
        count(
            &app,
            "SELECT seats_taken::bigint FROM platform.training_sessions"
        )
        .await,
        12
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.training_registrations").await,
        12
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'training_registered'"
        )
        .await,
        12
    );

    // The 41st joins the waiting list; registering one already registered is refused.
    let waiting_file = ids[40].to_string();
    let resp = post_form(
        &rb,
        &app,
        "/structure/formation",
        "/structure/formation/inscription",
        &[
            ("session", &session_id),
            ("dossier", &waiting_file),
            ("attente", "oui"),
        ],
    )
    .await;
    assert!(common::idp::location(&resp).ends_with("message=attente"));
    let first: uuid::Uuid = sqlx::query_scalar("SELECT file_id FROM platform.training_registrations WHERE status = 'registered' ORDER BY created_at LIMIT 1")
        .fetch_one(&app.db.admin)
        .await
        .expect("inscrit");
    let resp = post_form(
        &rb,
        &app,
        "/structure/formation",
        "/structure/formation/inscription",
        &[("session", &session_id), ("dossier", &first.to_string())],
    )
    .await;
    assert!(common::idp::location(&resp).ends_with("message=deja"));
    // Cancelling frees the seat, which goes to the waiting list (told by e-mail).
    let registration: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.training_registrations WHERE file_id = $1")
            .bind(first)
            .fetch_one(&app.db.admin)
            .await
            .expect("inscription");
    let resp = post_form(
        &rb,
        &app,
        "/structure/formation",
        "/structure/formation/annulation",
        &[("inscription", &registration.to_string())],
    )
    .await;
    assert!(common::idp::location(&resp).ends_with("message=annule"));
    let promoted: String =
        sqlx::query_scalar("SELECT status FROM platform.training_registrations WHERE file_id = $1")
            .bind(ids[40])
            .fetch_one(&app.db.admin)
            .await
            .expect("promu");
    assert_eq!(promoted, "registered");
    assert_eq!(
        count(
            &app,
            "SELECT seats_taken::bigint FROM platform.training_sessions"
        )
        .await,
        12
    );

    // Another structure's référent reaches none of these files or registrations: 404.
    let other = structure_domain(&app, "33").await;
    let sam = professional(
        &app.db.admin,
        "Sam Ailleurs",
        &[(Role::Referent, other.domain(), Some("33"))],
    )
    .await;
    let sb = browser(&app.address);
    assert_eq!(log_in(&sb, &app, &sam, -1).await.status(), 303);
    let resp = post_form(
        &sb,
        &app,
        "/compte",
        "/structure/formation/inscription",
        &[("session", &session_id), ("dossier", &ids[41].to_string())],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = post_form(
        &sb,
        &app,
        "/compte",
        "/structure/formation/annulation",
        &[("inscription", &registration.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 404);

    // The trainer of the organisation records attendance; another organisation's trainer: 404.
    let tom = professional(
        &app.db.admin,
        "Tom Formateur",
        &[(Role::Trainer, Domain::Organisation(organisation), None)],
    )
    .await;
    let tb = browser(&app.address);
    assert_eq!(log_in(&tb, &app, &tom, -1).await.status(), 303);
    let (status, sessions) = page(&tb, &app.url("/formation")).await;
    assert_eq!(status, 200);
    assert!(sessions.contains("Formation initiale"));
    let session_page = format!("/formation/sessions/{session}");
    let present: uuid::Uuid = sqlx::query_scalar("SELECT id FROM platform.training_registrations WHERE status = 'registered' ORDER BY created_at LIMIT 1")
        .fetch_one(&app.db.admin)
        .await
        .expect("inscrit");
    // Before its first day, a session takes no attendance: no buttons, a refused post writes
    // nothing.
    let (status, attendees) = page(&tb, &app.url(&session_page)).await;
    assert_eq!(status, 200);
    assert_eq!(attendees.matches(r#"name="inscription""#).count(), 0);
    assert!(attendees.contains("à partir du premier jour"));
    let resp = post_form(
        &tb,
        &app,
        "/compte",
        &format!("{session_page}/presence"),
        &[
            ("inscription", &present.to_string()),
            ("presence", "present"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("pas encore commencé")
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.training_registrations WHERE status = 'attended'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'attendance_recorded'"
        )
        .await,
        0
    );
    session_day_comes(&app, session).await;
    let (status, attendees) = page(&tb, &app.url(&session_page)).await;
    assert_eq!(status, 200);
    assert_eq!(attendees.matches(r#"name="inscription""#).count(), 12);
    let resp = post_form(
        &tb,
        &app,
        &session_page,
        &format!("{session_page}/presence"),
        &[
            ("inscription", &present.to_string()),
            ("presence", "present"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.training_registrations WHERE status = 'attended'"
        )
        .await,
        1
    );
    let other_org: uuid::Uuid = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.training_organisations (id, name) VALUES ($1, 'Autre organisme')",
    )
    .bind(other_org)
    .execute(&app.db.admin)
    .await
    .expect("organisme");
    let zoe = professional(
        &app.db.admin,
        "Zoé Autre",
        &[(Role::Trainer, Domain::Organisation(other_org), None)],
    )
    .await;
    let zb = browser(&app.address);
    assert_eq!(log_in(&zb, &app, &zoe, -1).await.status(), 303);
    assert_eq!(zb.get(&app.url(&session_page)).await.status(), 404);
    let resp = post_form(
        &zb,
        &app,
        "/compte",
        &format!("{session_page}/presence"),
        &[
            ("inscription", &present.to_string()),
            ("presence", "absent"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 404);
    // A référent is no trainer: 403.
    assert_eq!(rb.get(&app.url("/formation")).await.status(), 403);

    // Reminders, two days before, once.
    sqlx::query("UPDATE platform.training_sessions SET first_day = (now() AT TIME ZONE 'Europe/Paris')::date + 2")
        .execute(&app.db.admin)
        .await
        .expect("date");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let job = habilitation_desk::training::reminders();
    assert_eq!((job.run)(platform.clone()).await.expect("rappels"), 11);
    assert_eq!((job.run)(platform.clone()).await.expect("rappels"), 0);

    // The pages pass axe.
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure/formation")],
        &rb.cookies(),
    )
    .await;
    let found2 = test_support::browser::axe_violations_with_cookies(
        &[app.url("/national/formations")],
        &nb.cookies(),
    )
    .await;
    let found3 = test_support::browser::axe_violations_with_cookies(
        &[app.url("/formation"), app.url(&session_page)],
        &tb.cookies(),
    )
    .await;
    for (url, violations) in found.into_iter().chain(found2).chain(found3) {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn the_national_team_imports_pix_results_with_a_line_report() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let ids = files(&app, s, 2).await;
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM platform.habilitation_file_index ORDER BY display_name",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("adresses");
    let nadia = professional(
        &app.db.admin,
        "Nadia Pix",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);
    // A wrong header: the whole paste is refused, what was typed stays.
    let resp = post_form(
        &nb,
        &app,
        "/national/pix",
        "/national/pix",
        &[("resultats", "email,score,date\nx@y.fr,500,2026-11-02")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(body.contains("en-tête invalide") && body.contains("x@y.fr,500,2026-11-02"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.pix_results").await,
        0
    );
    let csv = format!(
        "identifiant,score,date\r\n{},512,2026-11-02\r\n{},300,02/11/2026\r\nnul@part.example.test,400,2026-11-02\r\n{},-3,2026-11-02\r\n",
        emails[0], ids[1], emails[1]
    );
    let resp = post_form(
        &nb,
        &app,
        "/national/pix",
        "/national/pix",
        &[("resultats", &csv)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let report = resp.text().await.expect("corps");
    assert!(
        report.contains("2 ligne(s) importée(s), 2 ligne(s) non importée(s)"),
        "{report}"
    );
    assert!(report.contains("personne inconnue") && report.contains("score invalide"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.pix_results").await,
        2
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'pix_imported'"
        )
        .await,
        1
    );
    // A référent may not import: 403.
    let rita = professional(
        &app.db.admin,
        "Rita Pix",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    assert_eq!(rb.get(&app.url("/national/pix")).await.status(), 403);
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/national/pix")],
        &nb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn training_pix_and_the_charter_open_the_aidants_account() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Parcours",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let file = files(&app, s, 1).await[0];
    let email: String =
        sqlx::query_scalar("SELECT email FROM platform.habilitation_file_index WHERE file_id = $1")
            .bind(file)
            .fetch_one(&app.db.admin)
            .await
            .expect("adresse");
    let organisation = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO platform.training_organisations (id, name) VALUES ($1, 'Organisme du parcours')")
        .bind(organisation)
        .execute(&app.db.admin)
        .await
        .expect("organisme");
    let session = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, mode, region_code, capacity)
         VALUES ($1, $2, 'Parcours', (now() AT TIME ZONE 'Europe/Paris')::date + 10, 'remote', '75', 5)",
    )
    .bind(session)
    .bind(organisation)
    .execute(&app.db.admin)
    .await
    .expect("session");
    // The référent registers the file; the trainer records the aidant present: the charter
    // link is mailed.
    let resp = post_form(
        &rb,
        &app,
        "/structure/formation",
        "/structure/formation/inscription",
        &[
            ("session", &session.to_string()),
            ("dossier", &file.to_string()),
        ],
    )
    .await;
    assert!(common::idp::location(&resp).ends_with("message=inscrit"));
    let tom = professional(
        &app.db.admin,
        "Tom Parcours",
        &[(Role::Trainer, Domain::Organisation(organisation), None)],
    )
    .await;
    let tb = browser(&app.address);
    assert_eq!(log_in(&tb, &app, &tom, -1).await.status(), 303);
    let registration: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.training_registrations")
            .fetch_one(&app.db.admin)
            .await
            .expect("inscription");
    session_day_comes(&app, session).await;
    let session_page = format!("/formation/sessions/{session}");
    let resp = post_form(
        &tb,
        &app,
        &session_page,
        &format!("{session_page}/presence"),
        &[
            ("inscription", &registration.to_string()),
            ("presence", "present"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let charter = mailed(&email, "/charte?jeton=", 0).await;
    // Pix next: still no account (the charter is not accepted).
    let nadia = professional(
        &app.db.admin,
        "Nadia Parcours",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await;
    let nb = browser(&app.address);
    assert_eq!(log_in(&nb, &app, &nadia, -1).await.status(), 303);
    let resp = post_form(
        &nb,
        &app,
        "/national/pix",
        "/national/pix",
        &[(
            "resultats",
            &format!("identifiant;score;date\n{email};480;2026-11-20"),
        )],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM platform.professionals WHERE email = '{email}'")
        )
        .await,
        0
    );
    // The charter: its GET consumes nothing, its POST accepts and opens the account.
    let aidant_browser = browser(&app.address);
    let (status, text) = page(&aidant_browser, &charter).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("Version 2026-11") && text.contains("J&#39;accepte la charte")
            || text.contains("J'accepte la charte")
    );
    let found = test_support::browser::axe_violations(std::slice::from_ref(&charter)).await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let token = charter.split("jeton=").nth(1).expect("jeton").to_owned();
    let resp = aidant_browser
        .post(
            &app.url("/charte"),
            &[("csrf", csrf_of(&text).as_str()), ("jeton", token.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("votre habilitation est ouverte")
    );
    let resp = aidant_browser
        .post(
            &app.url("/charte"),
            &[("csrf", csrf_of(&text).as_str()), ("jeton", token.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 400, "a charter link serves once");
    let professional_id: ProfessionalId =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.db.admin)
            .await
            .expect("compte");
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.role_assignments WHERE professional_id = '{professional_id}' AND role = 'aidant' AND domain = 'structure:{s}'")).await, 1);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM dep_33.habilitation_files WHERE id = '{file}' AND state = 'active' AND professional_id = '{professional_id}'")).await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'aidant_activated'"
        )
        .await,
        1
    );
    // The référent is told; the aidant activates from the mail, logs in and makes mandates.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !test_support::maildev::mails_to(&rita.email)
        .await
        .iter()
        .any(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("est habilité"))
        })
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "le référent n'est pas prévenu"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ada = activate_from_mail(&app, &aidant_browser, &email, professional_id).await;
    assert_eq!(log_in(&aidant_browser, &app, &ada, 1).await.status(), 303);
    assert_eq!(aidant_browser.get(&app.url("/mandats")).await.status(), 200);
    // The register lists the aidant, with the training and the Pix score; its CSV too.
    let (status, register) = page(&nb, &app.url("/national/registre")).await;
    assert_eq!(status, 200);
    assert!(register.contains(&email) && register.contains("Parcours") && register.contains("480"));
    let resp = post_form(
        &nb,
        &app,
        "/national/registre",
        "/national/registre.csv",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let csv = resp.text().await.expect("csv");
    assert!(csv.starts_with("\"nom\",\"email\",\"structure\""), "{csv}");
    assert!(csv.contains(&format!("\"{email}\"")) && csv.contains("\"480\""));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.security_journal WHERE kind = 'registry_exported'"
        )
        .await,
        1
    );
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/national/registre")],
        &nb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    // A new version of the charter: asked again at the next login, then out of the way.
    sqlx::query("INSERT INTO platform.charter_versions (version, body, published_at) VALUES ('2027-01', 'Nouvelle règle.', now())")
        .execute(&app.db.admin)
        .await
        .expect("version");
    delays_pass(&app, &ada).await;
    // As if the next code had come (a code is accepted once).
    sqlx::query("UPDATE platform.second_factors SET last_used_step = 0 WHERE professional_id = $1")
        .bind(ada.id)
        .execute(&app.db.admin)
        .await
        .expect("pas suivant");
    let again = browser(&app.address);
    let resp = log_in(&again, &app, &ada, 1).await;
    assert_eq!(resp.status(), 303);
    assert!(
        common::idp::location(&resp).starts_with("/compte/charte?suite="),
        "{}",
        common::idp::location(&resp)
    );
    let (status, renewed) = page(&again, &app.url("/compte/charte")).await;
    assert_eq!(status, 200);
    assert!(renewed.contains("Version 2027-01") && renewed.contains("Nouvelle règle."));
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/compte/charte")],
        &again.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let resp = post_form(
        &again,
        &app,
        "/compte/charte",
        "/compte/charte",
        &[("suite", "/mandats")],
    )
    .await;
    assert_eq!(common::idp::location(&resp), "/mandats");
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM platform.charter_acceptances WHERE email = '{email}'")
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_referent_adds_a_professional_to_habilitate_and_never_a_volunteer() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Ajout",
        &[(Role::Referent, s.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let fields = |employment: &'static str, email: &'static str| {
        vec![
            ("first_name", "Paul"),
            ("last_name", "Nouveau"),
            ("email", email),
            ("profession", "Agent d'accueil"),
            ("employment", employment),
            ("employer", "Mairie"),
        ]
    };
    let resp = post_form(
        &rb,
        &app,
        "/structure/aidants/nouveau",
        "/structure/aidants/nouveau",
        &fields("volunteer", "paul@mairie.example.test"),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(body.contains("bénévoles") && body.contains("paul@mairie.example.test"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.habilitation_files").await,
        0
    );
    let resp = post_form(
        &rb,
        &app,
        "/structure/aidants/nouveau",
        "/structure/aidants/nouveau",
        &fields("public_agent", "paul@mairie.example.test"),
    )
    .await;
    assert_eq!(
        common::idp::location(&resp),
        "/structure/formation?message=ajoute"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.habilitation_files WHERE state = 'to_train'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.habilitation_file_index"
        )
        .await,
        1
    );
    let (_, training) = page(&rb, &app.url("/structure/formation")).await;
    assert!(training.contains("Paul Nouveau") && training.contains("à former"));
    let resp = post_form(
        &rb,
        &app,
        "/structure/aidants/nouveau",
        "/structure/aidants/nouveau",
        &fields("public_agent", "paul@mairie.example.test"),
    )
    .await;
    assert_eq!(resp.status(), 400, "one file per person and structure");
    // An aidant of the structure may not add anyone: 403.
    let ada = professional(
        &app.db.admin,
        "Ada Ajout",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &ada, -1).await.status(), 303);
    assert_eq!(
        ab.get(&app.url("/structure/aidants/nouveau"))
            .await
            .status(),
        403
    );
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure/aidants/nouveau")],
        &rb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
}

#[tokio::test]
async fn a_referent_moves_an_aidant_to_another_structure_of_the_same_tenant_only() {
    let app = spawn_app(&["33"]).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("dep"))
        .await
        .expect("territoire");
    let council = foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(ctx.departement()),
        "Conseil",
    )
    .await
    .expect("conseil")
    .id;
    let city = foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Commune(
            foundation::tenancy::CommuneCode::parse("33063").expect("commune"),
        ),
        "Ville",
    )
    .await
    .expect("commune")
    .id;
    let mut ids = Vec::new();
    for (tenant, name) in [
        (council, "Maison A"),
        (council, "Maison B"),
        (city, "Mairie C"),
    ] {
        ids.push(
            habilitation_desk::structures::create_structure(
                &ctx,
                &habilitation_desk::structures::NewStructure {
                    tenant_id: tenant,
                    name: name.into(),
                    kind: "mairie".into(),
                    commune: foundation::tenancy::CommuneCode::parse("33063").expect("commune"),
                    address: String::new(),
                    france_services: false,
                },
            )
            .await
            .expect("structure"),
        );
    }
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let rita = professional(
        &app.db.admin,
        "Rita Déplace",
        &[(Role::Referent, a.domain(), Some("33"))],
    )
    .await;
    let xavier = professional(
        &app.db.admin,
        "Xavier Mobile",
        &[(Role::Aidant, a.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let xb = browser(&app.address);
    assert_eq!(log_in(&xb, &app, &xavier, -1).await.status(), 303);
    let form_page = format!("/structure/aidants/deplacer?aidant={}", xavier.id);
    let (status, form) = page(&rb, &app.url(&form_page)).await;
    assert_eq!(status, 200);
    assert!(
        form.contains("Maison B") && !form.contains("Mairie C"),
        "only the same tenant's structures"
    );
    let found =
        test_support::browser::axe_violations_with_cookies(&[app.url(&form_page)], &rb.cookies())
            .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    // Another tenant's structure: 404, nothing moved.
    let resp = post_form(
        &rb,
        &app,
        &form_page,
        "/structure/aidants/deplacer",
        &[
            ("aidant", &xavier.id.to_string()),
            ("structure", &c.to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(xb.get(&app.url("/mandats")).await.status(), 200);
    let resp = post_form(
        &rb,
        &app,
        &form_page,
        "/structure/aidants/deplacer",
        &[
            ("aidant", &xavier.id.to_string()),
            ("structure", &b.to_string()),
        ],
    )
    .await;
    assert_eq!(
        common::idp::location(&resp),
        "/referent/aidants?message=aidant-deplace"
    );
    let roles: Vec<String> = sqlx::query_scalar("SELECT domain FROM platform.role_assignments WHERE professional_id = $1 AND role = 'aidant'")
        .bind(xavier.id)
        .fetch_all(&app.db.admin)
        .await
        .expect("rôles");
    assert_eq!(roles, vec![format!("structure:{b}")]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'aidant_moved'"
        )
        .await,
        1
    );
    // A co-référent: an aidant of the structure only (another is 404), told by e-mail.
    let yann = professional(
        &app.db.admin,
        "Yann Second",
        &[(Role::Aidant, a.domain(), Some("33"))],
    )
    .await;
    let resp = post_form(
        &rb,
        &app,
        "/referent/aidants",
        "/structure/co-referents",
        &[("aidant", &xavier.id.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 404, "Xavier is no longer of this structure");
    let resp = post_form(
        &rb,
        &app,
        "/referent/aidants",
        "/structure/co-referents",
        &[("aidant", &yann.id.to_string())],
    )
    .await;
    assert_eq!(
        common::idp::location(&resp),
        "/referent/aidants?message=co-referent"
    );
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.role_assignments WHERE professional_id = '{}' AND role = 'referent' AND domain = 'structure:{a}'", yann.id)).await, 1);
    let yb = browser(&app.address);
    assert_eq!(log_in(&yb, &app, &yann, -1).await.status(), 303);
    assert_eq!(yb.get(&app.url("/referent/aidants")).await.status(), 200);
    // The aidant's session ended; an aidant no longer of A is 404 for its référent.
    assert_eq!(xb.get(&app.url("/mandats")).await.status(), 303);
    assert_eq!(rb.get(&app.url(&form_page)).await.status(), 404);
}

#[tokio::test]
async fn a_withdrawn_file_cannot_be_registered_and_an_active_aidant_gets_the_new_structure() {
    let app = spawn_app(&["33"]).await;
    let a = structure_domain(&app, "33").await;
    let b = structure_domain(&app, "33").await;
    let rita = professional(
        &app.db.admin,
        "Rita Double",
        &[(Role::Referent, b.domain(), Some("33"))],
    )
    .await;
    let rb = browser(&app.address);
    assert_eq!(log_in(&rb, &app, &rita, -1).await.status(), 303);
    let session = uuid::Uuid::now_v7();
    let organisation = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.training_organisations (id, name) VALUES ($1, 'Organisme double')",
    )
    .bind(organisation)
    .execute(&app.db.admin)
    .await
    .expect("organisme");
    sqlx::query(
        "INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, mode, region_code, capacity)
         VALUES ($1, $2, 'Session double', (now() AT TIME ZONE 'Europe/Paris')::date + 5, 'remote', '75', 3)",
    )
    .bind(session)
    .bind(organisation)
    .execute(&app.db.admin)
    .await
    .expect("session");
    // A withdrawn file of the structure: its registration is refused, nothing written.
    let withdrawn = files(&app, b, 1).await[0];
    sqlx::query("UPDATE dep_33.habilitation_files SET state = 'withdrawn' WHERE id = $1")
        .bind(withdrawn)
        .execute(&app.db.admin)
        .await
        .expect("retrait");
    let resp = post_form(
        &rb,
        &app,
        "/compte",
        "/structure/formation/inscription",
        &[
            ("session", &session.to_string()),
            ("dossier", &withdrawn.to_string()),
        ],
    )
    .await;
    assert!(common::idp::location(&resp).ends_with("message=fermee"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.training_registrations").await,
        0
    );
    // Someone already active in structure A, with a file of structure B that becomes ready:
    // the same account gets B, no second account, no enrolment link.
    let ada = professional(
        &app.db.admin,
        "Ada Double",
        &[(Role::Aidant, a.domain(), Some("33"))],
    )
    .await;
    let file = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO dep_33.habilitation_files (id, structure_id, first_name, last_name, email, profession, employment, employer)
         VALUES ($1, $2, 'Ada', 'Double', $3, 'Agent', 'public_agent', 'B')",
    )
    .bind(file)
    .bind(b)
    .bind(&ada.email)
    .execute(&app.db.admin)
    .await
    .expect("dossier");
    // Trained, certified and the charter accepted (as the steps above leave them).
    sqlx::query(
        "WITH idx AS (INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
                      VALUES ($1, '33', $2, $3, 'Ada Double') RETURNING file_id),
              reg AS (INSERT INTO platform.training_registrations (id, session_id, file_id, status)
                      SELECT gen_random_uuid(), $4, file_id, 'attended' FROM idx RETURNING file_id),
              pix AS (INSERT INTO platform.pix_results (file_id, score, certified_on)
                      SELECT file_id, 400, (now() AT TIME ZONE 'Europe/Paris')::date FROM reg RETURNING file_id)
         INSERT INTO platform.charter_acceptances (email, version) SELECT $3, '2026-11' FROM pix",
    )
    .bind(file)
    .bind(b)
    .bind(&ada.email)
    .bind(session)
    .execute(&app.db.admin)
    .await
    .expect("parcours");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let job = habilitation_desk::activation::job();
    assert_eq!((job.run)(platform.clone()).await.expect("activation"), 1);
    assert_eq!((job.run)(platform.clone()).await.expect("activation"), 0);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) FROM platform.professionals WHERE email = '{}'",
                ada.email
            )
        )
        .await,
        1
    );
    let roles: Vec<String> = sqlx::query_scalar("SELECT domain FROM platform.role_assignments WHERE professional_id = $1 AND role = 'aidant' ORDER BY domain")
        .bind(ada.id)
        .fetch_all(&app.db.admin)
        .await
        .expect("rôles");
    let mut expected = vec![format!("structure:{a}"), format!("structure:{b}")];
    expected.sort();
    assert_eq!(roles, expected);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM dep_33.habilitation_files WHERE id = '{file}' AND state = 'active'")).await, 1);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mails = test_support::maildev::mails_to(&ada.email).await;
        if mails.iter().any(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("est ouverte"))
        }) {
            assert!(
                !mails.iter().any(|m| m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("/activation?jeton="))),
                "no enrolment link for an existing account"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pas de courriel d'ouverture"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A training organisation with one session ten days ahead, and its trainer (signed in).
async fn session_with_trainer(
    app: &common::TestApp,
    capacity: i32,
) -> (uuid::Uuid, uuid::Uuid, TestProfessional, Browser) {
    let organisation = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO platform.training_organisations (id, name) VALUES ($1, 'Organisme du parcours')")
        .bind(organisation)
        .execute(&app.db.admin)
        .await
        .expect("organisme");
    let session = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, mode, region_code, capacity)
         VALUES ($1, $2, 'Parcours', (now() AT TIME ZONE 'Europe/Paris')::date + 10, 'remote', '75', $3)",
    )
    .bind(session)
    .bind(organisation)
    .bind(capacity)
    .execute(&app.db.admin)
    .await
    .expect("session");
    let tom = professional(
        &app.db.admin,
        "Tom Parcours",
        &[(Role::Trainer, Domain::Organisation(organisation), None)],
    )
    .await;
    let tb = browser(&app.address);
    assert_eq!(log_in(&tb, app, &tom, -1).await.status(), 303);
    (organisation, session, tom, tb)
}

/// The habilitation file of `first_name` in the structure: (id, e-mail).
async fn file_of(
    app: &common::TestApp,
    structure: StructureId,
    first_name: &str,
) -> (uuid::Uuid, String) {
    sqlx::query_as(
        "SELECT id, email FROM dep_33.habilitation_files WHERE structure_id = $1 AND first_name = $2",
    )
    .bind(structure)
    .bind(first_name)
    .fetch_one(&app.db.admin)
    .await
    .expect("dossier")
}

#[tokio::test]
async fn the_issuer_registers_the_structures_aidants_and_the_referent_follows_them_in_one_space() {
    let app = spawn_app(&["33"]).await;
    let a = accepted_request(&app, "CCAS de Cenon", 31).await;
    let (_, session, _, _) = session_with_trainer(&app, 1).await;
    let (anne, _) = file_of(&app, a.structure, "Anne").await;
    let (bruno, _) = file_of(&app, a.structure, "Bruno").await;
    let base = format!("/demande/demandes/{}", a.reference);
    let training = format!("{base}/formation");
    // The accepted request leads to its training page, which lists the three files to train.
    let (status, recap) = page(&a.issuer, &app.url(&base)).await;
    assert_eq!(status, 200);
    assert!(recap.contains(&format!("href=\"{training}\"")), "{recap}");
    let (status, listed) = page(&a.issuer, &app.url(&training)).await;
    assert_eq!(status, 200);
    assert_eq!(listed.matches(">à former</span>").count(), 3, "{listed}");
    // The issuer registers Anne: written with the issuer as registrar, journaled so.
    let resp = post_form(
        &a.issuer,
        &app,
        &training,
        &format!("{training}/inscription"),
        &[
            ("session", &session.to_string()),
            ("dossier", &anne.to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("{training}?message=inscrit"));
    let issuer_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.issuers WHERE email = $1")
            .bind(&a.issuer_email)
            .fetch_one(&app.db.admin)
            .await
            .expect("demandeur");
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.training_registrations WHERE file_id = '{anne}' AND status = 'registered' AND registered_by IS NULL AND registered_by_issuer = '{issuer_id}'")).await, 1);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.security_journal WHERE kind = 'training_registered' AND actor_id IS NULL AND details::jsonb->>'issuer' = '{issuer_id}'")).await, 1);
    // The session is full for Bruno: nothing written, the waiting list offered, then taken.
    let resp = post_form(
        &a.issuer,
        &app,
        &training,
        &format!("{training}/inscription"),
        &[
            ("session", &session.to_string()),
            ("dossier", &bruno.to_string()),
        ],
    )
    .await;
    let full = location(&resp);
    assert!(full.contains("complet="), "{full}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.training_registrations").await,
        1
    );
    let (_, offered) = page(&a.issuer, &app.url(&full)).await;
    assert!(
        offered.contains("Cette session est complète") && offered.contains("liste d&#39;attente")
            || offered.contains("liste d'attente")
    );
    let resp = post_form(
        &a.issuer,
        &app,
        &training,
        &format!("{training}/inscription"),
        &[
            ("session", &session.to_string()),
            ("dossier", &bruno.to_string()),
            ("attente", "oui"),
        ],
    )
    .await;
    assert_eq!(location(&resp), format!("{training}?message=attente"));
    // Another issuer, or a request not accepted, gets 404 and writes nothing.
    let stranger = common::requests::issuer(&app, &common::requests::unique_email("autre")).await;
    assert_eq!(stranger.get(&app.url(&training)).await.status(), 404);
    let resp = post_form(
        &stranger,
        &app,
        "/demande/mes-demandes",
        &format!("{training}/inscription"),
        &[
            ("session", &session.to_string()),
            ("dossier", &bruno.to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let draft = common::requests::fill(
        &a.issuer,
        &app,
        &common::requests::Structure {
            name: "Mairie de Floirac",
            siret: common::requests::siret(32),
            commune: "33167",
            postal: "33270",
        },
        &common::requests::unique_email("rene"),
    )
    .await;
    assert_eq!(
        a.issuer
            .get(&app.url(&format!("/demande/demandes/{draft}/formation")))
            .await
            .status(),
        404
    );
    // A registration of another structure's file cannot be cancelled from here.
    let elsewhere = structure_domain(&app, "33").await;
    let other = files(&app, elsewhere, 1).await[0];
    let foreign = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO platform.training_registrations (id, session_id, file_id, status) VALUES ($1, $2, $3, 'waiting')")
        .bind(foreign)
        .bind(session)
        .bind(other)
        .execute(&app.db.admin)
        .await
        .expect("inscription d'ailleurs");
    let resp = post_form(
        &a.issuer,
        &app,
        &training,
        &format!("{training}/annulation"),
        &[("inscription", &foreign.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.training_registrations WHERE id = '{foreign}' AND status = 'waiting'")).await, 1);
    // The issuer cancels Anne's seat: Bruno, first on the waiting list, takes it.
    let anne_registration: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.training_registrations WHERE file_id = $1")
            .bind(anne)
            .fetch_one(&app.db.admin)
            .await
            .expect("inscription");
    let resp = post_form(
        &a.issuer,
        &app,
        &training,
        &format!("{training}/annulation"),
        &[("inscription", &anne_registration.to_string())],
    )
    .await;
    assert_eq!(location(&resp), format!("{training}?message=annule"));
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.training_registrations WHERE file_id = '{bruno}' AND status = 'registered'")).await, 1);
    assert_eq!(count(&app, &format!("SELECT count(*) FROM platform.security_journal WHERE kind = 'training_cancelled' AND details::jsonb->>'issuer' = '{issuer_id}'")).await, 1);

    // The référent's space: every person with the step reached; the tools one link away.
    let rb = browser(&app.address);
    let regine = activate_from_mail(&app, &rb, &a.referent_email, a.referent_id).await;
    assert_eq!(log_in(&rb, &app, &regine, 1).await.status(), 303);
    let (_, account) = page(&rb, &app.url("/compte")).await;
    assert!(account.contains("href=\"/structure\""));
    let (status, space) = page(&rb, &app.url("/structure")).await;
    assert_eq!(status, 200, "{space}");
    assert!(space.contains("CCAS de Cenon"));
    assert!(
        space.contains("Bruno Aidant") && space.contains("inscrit en formation"),
        "{space}"
    );
    assert!(space.contains("Anne Aidant") && space.contains("Régine Référente"));
    assert_eq!(
        space.matches(">à former</span>").count(),
        2,
        "Anne (annulée) et Régine : {space}"
    );
    for tool in [
        "/structure/formation",
        "/structure/aidants/nouveau",
        "/referent/aidants",
        "/structure/demarches",
    ] {
        assert!(space.contains(&format!("href=\"{tool}\"")), "{tool}");
    }
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url("/structure"), app.url("/structure/formation")],
        &rb.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    let found = test_support::browser::axe_violations_with_cookies(
        &[app.url(&base), app.url(&training), app.url(&full)],
        &a.issuer.cookies(),
    )
    .await;
    for (url, violations) in found {
        assert!(violations.is_empty(), "{url} : {violations:#?}");
    }
    // An aidant of the structure has no référent's space.
    let ada = professional(
        &app.db.admin,
        "Ada Sans Espace",
        &[(Role::Aidant, a.structure.domain(), Some("33"))],
    )
    .await;
    let ab = browser(&app.address);
    assert_eq!(log_in(&ab, &app, &ada, -1).await.status(), 303);
    assert_eq!(ab.get(&app.url("/structure")).await.status(), 403);
}

#[tokio::test]
async fn from_an_accepted_request_to_a_first_mandate_with_the_keyboard_alone() {
    let app = spawn_app(&["33"]).await;
    let a = accepted_request(&app, "CCAS de Bègles", 33).await;
    let (_, session, _, trainer) = session_with_trainer(&app, 10).await;
    let (anne, anne_email) = file_of(&app, a.structure, "Anne").await;
    let (bruno, _) = file_of(&app, a.structure, "Bruno").await;
    let rb = browser(&app.address);
    let regine = activate_from_mail(&app, &rb, &a.referent_email, a.referent_id).await;
    assert_eq!(log_in(&rb, &app, &regine, 1).await.status(), 303);
    let phase = |name: &'static str, cookies: Vec<(String, String)>, fields: Value| {
        let app = &app;
        async move {
            let mut request = serde_json::json!({
                "phase": name,
                "base": app.address,
                "cookies": cookies,
                "maildev": test_support::stack_var("AC_MAILDEV_URL"),
            });
            if let (Some(into), Value::Object(more)) = (request.as_object_mut(), fields) {
                into.extend(more);
            }
            let result = test_support::browser::run("journey.mjs", &request).await;
            assert!(
                result["error"].is_null(),
                "{name} : {} ; étapes : {}",
                result["error"],
                result["steps"]
            );
            let pages = result["pages"].as_array().expect("pages");
            assert!(pages.len() >= 2, "{name} : pages vérifiées : {pages:?}");
            for p in pages {
                assert_eq!(
                    p["violations"],
                    serde_json::json!([]),
                    "{name} : {}",
                    p["url"]
                );
            }
            result
        }
    };
    // The issuer registers Bruno; the référent, from her space, registers Anne.
    phase(
        "issuer",
        a.issuer.cookies(),
        serde_json::json!({ "reference": a.reference, "file": bruno, "session": session, "name": "Bruno Aidant" }),
    )
    .await;
    let seen = phase(
        "referent",
        rb.cookies(),
        serde_json::json!({ "file": anne, "session": session, "name": "Anne Aidant" }),
    )
    .await;
    assert!(
        seen["seen"]["space"]
            .as_str()
            .is_some_and(|t| t.contains("Anne Aidant"))
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.training_registrations WHERE status = 'registered'"
        )
        .await,
        2
    );
    // The trainer records Anne present: the charter link is mailed.
    let registration: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM platform.training_registrations WHERE file_id = $1")
            .bind(anne)
            .fetch_one(&app.db.admin)
            .await
            .expect("inscription");
    session_day_comes(&app, session).await;
    phase(
        "trainer",
        trainer.cookies(),
        serde_json::json!({ "session": session, "registration": registration }),
    )
    .await;
    let charter = mailed(&anne_email, "/charte?jeton=", 0).await;
    // The national team imports Anne's Pix result, typed in the page.
    phase(
        "pix",
        a.admin.cookies(),
        serde_json::json!({ "csv": format!("identifiant;score;date\n{anne_email};512;2026-11-20") }),
    )
    .await;
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) FROM platform.pix_results WHERE file_id = '{anne}' AND score = 512"
            )
        )
        .await,
        1
    );
    // Anne accepts the charter: her account opens, the enrolment link is mailed.
    phase(
        "charter",
        Vec::new(),
        serde_json::json!({ "link": charter }),
    )
    .await;
    let activation = mailed(&anne_email, "/activation?jeton=", 0).await;
    let enrolled = phase(
        "enrol",
        Vec::new(),
        serde_json::json!({ "link": activation }),
    )
    .await;
    let seed_hex = enrolled["seed_hex"].as_str().expect("clé").to_owned();
    assert_eq!(seed_hex.len(), 40, "{seed_hex}");
    let anne_account: ProfessionalId =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
            .bind(&anne_email)
            .fetch_one(&app.db.admin)
            .await
            .expect("compte");
    // A code serves once: as if the next one had come.
    let next_code = || async {
        sqlx::query(
            "UPDATE platform.second_factors SET last_used_step = 0 WHERE professional_id = $1",
        )
        .bind(anne_account)
        .execute(&app.db.admin)
        .await
        .expect("pas suivant");
    };
    next_code().await;
    let logged = phase(
        "login",
        Vec::new(),
        serde_json::json!({ "email": anne_email, "seed_hex": seed_hex }),
    )
    .await;
    assert!(
        logged["seen"]["landed"]
            .as_str()
            .is_some_and(|u| u.ends_with("/compte")),
        "{}",
        logged["seen"]
    );
    next_code().await;
    let cookies: Vec<(String, String)> = logged["cookies"]
        .as_array()
        .expect("cookies")
        .iter()
        .filter_map(|c| Some((c[0].as_str()?.to_owned(), c[1].as_str()?.to_owned())))
        .collect();
    let result = test_support::browser::run(
        "mandate.mjs",
        &serde_json::json!({
            "base": app.address,
            "cookies": cookies,
            "seed_hex": seed_hex,
            "fc_login": "test",
        }),
    )
    .await;
    let steps = result["steps"].to_string();
    assert!(
        result["mandate"]
            .as_str()
            .is_some_and(|m| m.contains("/mandats/")),
        "étapes : {steps}"
    );
    for p in result["pages"].as_array().expect("pages") {
        assert_eq!(p["violations"], serde_json::json!([]), "{}", p["url"]);
    }
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM dep_33.mandates WHERE created_by = '{anne_account}'")
        )
        .await,
        1
    );
    // The référent's space shows Anne habilitated, with her authenticator app.
    let (_, space) = page(&rb, &app.url("/structure")).await;
    let anne_row = space
        .split("Anne Aidant")
        .nth(1)
        .expect("Anne")
        .split("</tr>")
        .next()
        .expect("ligne")
        .to_owned();
    assert!(
        anne_row.contains("habilité") && anne_row.contains("application d&#39;authentification")
            || anne_row.contains("application d'authentification"),
        "{anne_row}"
    );
}
