//! Mandates end to end: creation in person through the FranceConnect stand-in, attestation,
//! public verification, supersession, revocation, renewal, expiry, the rules' French messages,
//! the list's filters and isolation, the reminder before expiry, and the journal of each act.

mod common;

use common::fc::identify;
use common::identity::*;
use common::{TestApp, spawn_app};
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use policies::Role;
use uuid::Uuid;

struct Counter {
    app_admin: sqlx::PgPool,
}

impl Counter {
    /// How many journal entries of `kind` the territory holds for `mandate` (or in all).
    async fn journal(&self, kind: &str, mandate: Option<MandateId>) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM dep_33.journal WHERE kind = $1 AND ($2::uuid IS NULL OR mandate_id = $2)",
        )
        .bind(kind)
        .bind(mandate)
        .fetch_one(&self.app_admin)
        .await
        .expect("journal")
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// Submits the terms form; returns the response (a redirect to FranceConnect when valid).
async fn terms(client: &Browser, app: &TestApp, fields: &[(&str, &str)]) -> reqwest::Response {
    post_form(client, app, "/mandats/nouveau", "/mandats/nouveau", fields).await
}

/// Confirms a recap with the declaration and `code`.
async fn confirm(
    client: &Browser,
    app: &TestApp,
    recap: &str,
    code: &str,
    declared: bool,
) -> reqwest::Response {
    let mut fields = vec![("code", code)];
    if declared {
        fields.push(("declaration", "oui"));
    }
    post_form(client, app, recap, recap, &fields).await
}

/// A whole creation through FranceConnect: returns the mandate id.
async fn create(
    client: &Browser,
    app: &TestApp,
    who: &TestProfessional,
    code_offset: i64,
    fields: &[(&str, &str)],
    fc_login: &str,
) -> MandateId {
    let resp = terms(client, app, fields).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let authorize = location(&resp);
    assert!(authorize.contains("/api/v2/authorize"), "{authorize}");
    for parameter in [
        "acr_values=eidas1",
        "prompt=login+consent",
        "response_type=code",
        "nonce=",
        "state=",
    ] {
        assert!(
            authorize.contains(parameter),
            "{parameter} absent de {authorize}"
        );
    }
    let recap = identify(client, app, &authorize, fc_login).await;
    let resp = confirm(client, app, &recap, &who.code(code_offset), true).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let to = location(&resp);
    assert!(to.ends_with("?message=cree"), "{to}");
    to.trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("id")
}

/// Askama escapes `&`, quotes and apostrophes in attributes and text; tests read the text.
fn unescape(html: &str) -> String {
    html.replace("&#38;", "&")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

async fn view(client: &Browser, url: &str) -> (u16, String) {
    let (status, html) = page(client, url).await;
    (status, unescape(&html))
}

/// Two people's mandates: `test` for housing (`duree` days), `avec_nom_dusage` for justice
/// (31 days), with the aidant's codes of steps 0 and 1.
async fn housing_and_justice(
    client: &Browser,
    app: &TestApp,
    who: &TestProfessional,
    duree: &str,
) -> (MandateId, MandateId) {
    let housing = create(
        client,
        app,
        who,
        0,
        &[("categories", "logement"), ("duree", duree)],
        "test",
    )
    .await;
    let justice = create(
        client,
        app,
        who,
        1,
        &[("categories", "justice"), ("duree", "31")],
        "avec_nom_dusage",
    )
    .await;
    (housing, justice)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    text[from..].split(end).next()
}

#[tokio::test]
async fn a_mandate_is_created_in_person_through_franceconnect_verified_and_revoked() {
    let app = spawn_app(&["33"]).await;
    let counter = Counter {
        app_admin: app.db.admin.clone(),
    };
    let (who, structure, client) = logged_in_aidant(&app).await;
    let mandate = create(
        &client,
        &app,
        &who,
        0,
        &[
            ("categories", "social"),
            ("categories", "logement"),
            ("duree", "182"),
        ],
        "test",
    )
    .await;

    // Stored in the territory: the usager matched on FranceConnect's sub, two authorisations.
    let (sub, family, birthdate): (String, String, String) = sqlx::query_as(
        "SELECT u.fc_sub, u.family_name, u.birthdate FROM dep_33.mandates m JOIN dep_33.usagers u ON u.id = m.usager_id WHERE m.id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("usager");
    assert!(!sub.is_empty());
    assert_eq!(
        (family.as_str(), birthdate.as_str()),
        ("DUBOIS", "1962-08-24")
    );
    let (days, cats, structure_of): (i32, Vec<String>, StructureId) = sqlx::query_as(
        "SELECT m.duration_days, ARRAY(SELECT category FROM dep_33.authorisations WHERE mandate_id = m.id ORDER BY 1), m.structure_id
         FROM dep_33.mandates m WHERE id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("mandat");
    assert_eq!(
        (days, cats, structure_of),
        (
            182,
            vec!["logement".to_owned(), "social".to_owned()],
            structure
        )
    );
    // FranceConnect's tokens are not kept, and the draft no longer holds the identity.
    let leftover: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.mandate_drafts WHERE identity IS NOT NULL")
            .fetch_one(&app.db.admin)
            .await
            .expect("brouillons");
    assert_eq!(leftover, 0);

    // The mandate page, its attestation (a PDF whose hash is journaled) and the public page.
    let (status, html) = view(&client, &app.url(&format!("/mandats/{mandate}"))).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Angela Claire Louise") && html.contains("En cours"),
        "{html}"
    );
    let pdf_link = between(&html, "href=\"/documents/", "\"").expect("lien d'attestation");
    let resp = client
        .get(&app.url(&format!("/documents/{pdf_link}")))
        .await;
    assert_eq!(resp.status(), 200, "{pdf_link}");
    let pdf = resp.bytes().await.expect("pdf").to_vec();
    assert!(pdf.starts_with(b"%PDF-"));
    let sha: Vec<u8> =
        sqlx::query_scalar("SELECT attestation_sha256 FROM dep_33.mandates WHERE id = $1")
            .bind(mandate)
            .fetch_one(&app.db.admin)
            .await
            .expect("empreinte");
    use sha2::Digest;
    assert_eq!(sha, sha2::Sha256::digest(&pdf).to_vec());
    let journaled: String = sqlx::query_scalar(
        "SELECT details FROM dep_33.journal WHERE kind = 'attestation_produced' AND mandate_id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("entrée d'attestation");
    assert!(journaled.contains(&hex::encode(&sha)));
    let text = mandate_service::attestation::shown_text(&pdf);
    assert!(text.contains(mandate_service::mandates::LEGAL_TEXT_VERSION));
    let verification = between(&text, &app.address, "\n")
        .map(|p| format!("{}{p}", app.address))
        .expect("URL de vérification");
    assert!(verification.contains("/verifier/33/"), "{verification}");
    let anonymous = reqwest::Client::new();
    let public = anonymous
        .get(&verification)
        .send()
        .await
        .expect("vérification")
        .text()
        .await
        .expect("page");
    assert!(public.contains("Ce mandat est valide"), "{public}");
    assert!(
        !public.contains("DUBOIS") && !public.contains("Angela"),
        "la page publique ne montre aucune identité"
    );
    let forged = anonymous
        .get(format!("{verification}x"))
        .send()
        .await
        .expect("vérification");
    assert_eq!(forged.status(), 404);
    // The pages not walked by the browser journey pass axe too: the public verification page,
    // an error page after FranceConnect, a filtered list, the terms form with an error.
    for (url, violations) in
        test_support::browser::axe_violations(std::slice::from_ref(&verification)).await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
    let with_session = test_support::browser::axe_violations_with_cookies(
        &[
            app.url("/mandats/franceconnect/retour?error=access_denied&state=x"),
            app.url("/mandats?etat=bientot&q=dubois&categorie=social"),
            app.url("/mandats/export.csv")
                .replace("/export.csv", "/nouveau"),
        ],
        &client.cookies(),
    )
    .await;
    for (url, violations) in with_session {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }

    // Revocation of one category, then of the rest: each journaled once, with attestations.
    let path = format!("/mandats/{mandate}");
    let resp = post_form(
        &client,
        &app,
        &path,
        &format!("{path}/revocation"),
        &[("categorie", "social")],
    )
    .await;
    assert_eq!(location(&resp), format!("{path}?message=revoque"));
    let (_, html) = view(&client, &app.url(&path)).await;
    assert!(
        html.contains("révoquée le") && html.contains("En cours"),
        "{html}"
    );
    let resp = post_form(
        &client,
        &app,
        &path,
        &format!("{path}/revocation"),
        &[("categorie", "social")],
    )
    .await;
    assert_eq!(
        location(&resp),
        format!("{path}?message=rien-a-revoquer"),
        "une démarche déjà révoquée ne l'est pas deux fois"
    );
    let resp = post_form(&client, &app, &path, &format!("{path}/revocation"), &[]).await;
    assert_eq!(location(&resp), format!("{path}?message=revoque"));
    let (_, html) = view(&client, &app.url(&path)).await;
    assert!(
        html.contains("Révoqué") && html.matches("Attestation de révocation").count() == 2,
        "{html}"
    );
    let public = anonymous
        .get(&verification)
        .send()
        .await
        .expect("vérification")
        .text()
        .await
        .expect("page");
    assert!(public.contains("n'est plus valide"));

    // The usager got a receipt of each act, by e-mail (FranceConnect gave an address), sent by
    // the application's worker.
    let receipts: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT o.template, o.channel, o.payload FROM dep_33.outbox o
         JOIN dep_33.usagers u ON u.email = o.recipient
         JOIN dep_33.mandates m ON m.usager_id = u.id AND m.id = $1
         WHERE o.template LIKE 'mandate_%' ORDER BY o.id",
    )
    .bind(mandate)
    .fetch_all(&app.db.admin)
    .await
    .expect("accusés");
    let shown: Vec<(&str, &str, &serde_json::Value, &serde_json::Value)> = receipts
        .iter()
        .map(|(t, c, p)| (t.as_str(), c.as_str(), &p["demarches"], &p["suite"]))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "mandate_created",
                "email",
                &serde_json::json!(["Logement", "Social - Santé"]),
                &serde_json::Value::Null
            ),
            (
                "mandate_revoked",
                "email",
                &serde_json::json!(["Social - Santé"]),
                &serde_json::json!("Le mandat reste en cours pour ses autres démarches.")
            ),
            (
                "mandate_revoked",
                "email",
                &serde_json::json!(["Logement"]),
                &serde_json::json!("Le mandat a pris fin.")
            ),
        ],
        "{receipts:?}"
    );
    assert!(
        receipts[0].2["structure"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let unsent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dep_33.outbox WHERE template IN ('mandate_created', 'mandate_revoked') AND sent_at IS NULL",
        )
        .fetch_one(&app.db.admin)
        .await
        .expect("envois");
        if unsent == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{unsent} accusés jamais envoyés"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    for (kind, of, expected) in [
        ("usager_identified", None, 1),
        ("mandate_created", Some(mandate), 1),
        ("authorisation_revoked", Some(mandate), 2),
        ("mandate_revoked", Some(mandate), 1),
        ("attestation_produced", Some(mandate), 3),
    ] {
        assert_eq!(counter.journal(kind, of).await, expected, "{kind}");
    }
    // The application's sealer chains these entries by itself, within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE seq IS NULL")
                .fetch_one(&app.db.admin)
                .await
                .expect("journal");
        if pending == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} entrées jamais chaînées"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("ctx");
    let mut tx = ctx.begin().await.expect("tx");
    let verification = foundation::journal::verify(&mut tx, None, &Default::default())
        .await
        .expect("vérification");
    assert!(verification.intact(), "{verification:?}");
    assert!(
        verification.checked >= 8 && verification.pending == 0,
        "{verification:?}"
    );
}

#[tokio::test]
async fn a_new_mandate_supersedes_the_same_categories_and_renewal_needs_franceconnect_again() {
    let app = spawn_app(&["33"]).await;
    let counter = Counter {
        app_admin: app.db.admin.clone(),
    };
    let (who, _, client) = logged_in_aidant(&app).await;
    let first = create(
        &client,
        &app,
        &who,
        0,
        &[
            ("categories", "social"),
            ("categories", "famille"),
            ("duree", "365"),
        ],
        "test",
    )
    .await;
    let second = create(
        &client,
        &app,
        &who,
        1,
        &[("categories", "social"), ("duree", "31")],
        "test",
    )
    .await;
    let live: Vec<(MandateId, String)> = sqlx::query_as(
        "SELECT mandate_id, category FROM dep_33.authorisations WHERE revoked_at IS NULL AND superseded_at IS NULL ORDER BY category",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("autorisations");
    assert_eq!(
        live,
        vec![(first, "famille".to_owned()), (second, "social".to_owned())]
    );
    assert_eq!(
        counter
            .journal("authorisation_superseded", Some(first))
            .await,
        1
    );
    assert_eq!(
        counter.journal("usager_identified", None).await,
        1,
        "la même personne (même sub) n'est créée qu'une fois"
    );
    // The structure's list of its usagers (written by the creation's statement): the second
    // mandate's démarches join the first's, the later end is kept, the names are the person's.
    let listed: (Vec<String>, bool, bool) = sqlx::query_as(
        "SELECT l.categories, l.live_until = m.expires_at,
                (l.family_name, l.given_name, l.preferred_username, l.birthdate)
                    IS NOT DISTINCT FROM (u.family_name, u.given_name, u.preferred_username, u.birthdate)
         FROM dep_33.structure_usagers l
         JOIN dep_33.mandates m ON m.id = $1 AND m.usager_id = l.usager_id
         JOIN dep_33.usagers u ON u.id = l.usager_id",
    )
    .bind(first)
    .fetch_one(&app.db.admin)
    .await
    .expect("liste de la structure");
    assert_eq!(
        listed,
        (vec!["famille".into(), "social".into()], true, true)
    );

    // Renewal: the form is prefilled, and nothing is created before FranceConnect.
    let path = format!("/mandats/{first}");
    let resp = post_form(&client, &app, &path, &format!("{path}/renouvellement"), &[]).await;
    assert_eq!(
        location(&resp),
        format!("/mandats/nouveau?renouvellement={first}")
    );
    let (_, form) = view(&client, &app.url(&location(&resp))).await;
    assert!(
        form.contains("Renouveler un mandat") && form.contains("value=\"365\" checked"),
        "{form}"
    );
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("compte");
    let resp = terms(
        &client,
        &app,
        &[
            ("categories", "famille"),
            ("categories", "social"),
            ("duree", "365"),
            ("renouvellement", &first.to_string()),
        ],
    )
    .await;
    let authorize = location(&resp);
    assert!(
        authorize.contains("/api/v2/authorize"),
        "le renouvellement passe par FranceConnect : {authorize}"
    );
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("compte");
    assert_eq!(before, after);
    // Another person identifies: the renewal is refused with a clear message.
    let recap = identify(&client, &app, &authorize, "avec_nom_dusage").await;
    let code = code_after(&who, 1).await;
    let resp = confirm(&client, &app, &recap, &code, true).await;
    assert_eq!(resp.status(), 422);
    assert!(
        unescape(&resp.text().await.expect("page"))
            .contains("n'est pas celle du mandat à renouveler")
    );
}

/// A code of a step later than `base_step + last_used`, waiting until the clock allows it.
async fn code_after(who: &TestProfessional, last_used: i64) -> String {
    let target = who.base_step + last_used + 1;
    loop {
        let now = time::OffsetDateTime::now_utc().unix_timestamp() / 30;
        if now >= target - 1 {
            return who.code(last_used + 1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn every_rule_a_person_can_break_gets_a_clear_french_message_and_creates_nothing() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    for (fields, message) in [
        (vec![("duree", "31")], "Choisissez au moins une démarche."),
        (vec![("categories", "social")], "Choisissez une durée"),
        (
            vec![("categories", "social"), ("duree", "30")],
            "Choisissez une durée",
        ),
        (
            vec![("categories", "inconnue"), ("duree", "31")],
            "n'est pas proposée par votre structure",
        ),
    ] {
        let resp = terms(&client, &app, &fields).await;
        assert_eq!(resp.status(), 422);
        let html = unescape(&resp.text().await.expect("page"));
        assert!(html.contains(message), "{message} absent : {html}");
    }
    // A structure that handles only some categories: the others are neither shown nor accepted.
    sqlx::query("UPDATE dep_33.structures SET demarches = ARRAY['social'] WHERE id = $1")
        .bind(structure)
        .execute(&app.db.admin)
        .await
        .expect("restriction");
    let (_, form) = view(&client, &app.url("/mandats/nouveau")).await;
    assert!(form.contains("categorie-social") && !form.contains("categorie-argent"));
    let resp = terms(&client, &app, &[("categories", "argent"), ("duree", "31")]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        unescape(&resp.text().await.expect("page"))
            .contains("« Argent - Impôts - Consommation » n'est pas proposée par votre structure")
    );

    // FranceConnect's error response, an unknown state, a missing code: clear pages, no 500.
    for (query, message) in [
        (
            "error=access_denied&error_description=refus&state=abc",
            "a annulé l'identification",
        ),
        (
            "code=abc&state=inconnu",
            "ne correspond à aucune création de mandat",
        ),
        ("state=abc", "incomplet"),
        ("error=%3Cscript%3E", "FranceConnect a signalé une erreur"),
    ] {
        let (status, html) = view(
            &client,
            &app.url(&format!("/mandats/franceconnect/retour?{query}")),
        )
        .await;
        assert_eq!(status, 400, "{query}");
        assert!(
            html.contains(message) && !html.contains("<script>"),
            "{query} : {html}"
        );
    }

    // The recap: no declaration, then a wrong code — nothing is created.
    let resp = terms(&client, &app, &[("categories", "social"), ("duree", "1")]).await;
    let recap = identify(&client, &app, &location(&resp), "born_abroad").await;
    let (_, html) = view(&client, &app.url(&recap)).await;
    assert!(
        html.contains("ROSSI") && html.contains("à l'étranger") && html.contains("en 1990"),
        "{html}"
    );
    let resp = confirm(&client, &app, &recap, &who.code(0), false).await;
    assert_eq!(resp.status(), 422);
    assert!(unescape(&resp.text().await.expect("page")).contains("Cochez la case certifiant"));
    let resp = confirm(&client, &app, &recap, "000000", true).await;
    assert_eq!(resp.status(), 422);
    assert!(unescape(&resp.text().await.expect("page")).contains("Code incorrect"));
    // A landline or a malformed address: refused before the code is even checked, what was
    // typed is kept in the form.
    for (field, typed, message) in [
        (
            "telephone",
            "05 56 00 00 00",
            "Le numéro de téléphone mobile n'est pas valide",
        ),
        ("adresse", "Bordeaux", "L'adresse postale n'est pas valide"),
    ] {
        let (_, form) = view(&client, &app.url(&recap)).await;
        let token = csrf_of(&form);
        let resp = client
            .post(
                &app.url(&recap),
                &[
                    ("csrf", token.as_str()),
                    ("code", "000000"),
                    ("declaration", "oui"),
                    (field, typed),
                ],
            )
            .await;
        assert_eq!(resp.status(), 422, "{field}");
        let html = unescape(&resp.text().await.expect("page"));
        assert!(
            html.contains(message) && html.contains(typed),
            "{field} : {html}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("compte");
    assert_eq!(count, 0);
    // Then the right code: created once; a second submission lands on the same mandate.
    // (The same form sent twice, as a double click or a resent request would.)
    let (_, form) = view(&client, &app.url(&recap)).await;
    let token = csrf_of(&form);
    for code in [who.code(0), who.code(1)] {
        let resp = client
            .post(
                &app.url(&recap),
                &[
                    ("csrf", token.as_str()),
                    ("code", code.as_str()),
                    ("declaration", "oui"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 303);
    }
    let (status, _) = view(&client, &app.url(&format!("{recap}/termine"))).await;
    assert_eq!(status, 303, "la préparation terminée mène au mandat");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("compte");
    assert_eq!(count, 1);

    // A FranceConnect identity with an impossible birthplace is refused with an explanation.
    let resp = terms(&client, &app, &[("categories", "social"), ("duree", "1")]).await;
    let callback =
        common::fc::through_franceconnect(&client, &app, &location(&resp), "bad_birthplace").await;
    let (status, html) = view(&client, &callback).await;
    assert_eq!(status, 502);
    assert!(html.contains("commune de naissance invalide"), "{html}");
}

#[tokio::test]
async fn expiry_lists_filters_and_isolation() {
    let app = spawn_app(&["33", "34"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    let (m1, m2) = housing_and_justice(&client, &app, &who, "365").await;
    // m2 expired yesterday (computed expiry, nothing to run).
    sqlx::query("UPDATE dep_33.mandates SET created_at = now() - interval '32 days', expires_at = now() - interval '1 day' WHERE id = $1")
        .bind(m2)
        .execute(&app.db.admin)
        .await
        .expect("expiration");
    sqlx::query("UPDATE dep_33.authorisations SET expires_at = now() - interval '1 day' WHERE mandate_id = $1")
        .bind(m2)
        .execute(&app.db.admin)
        .await
        .expect("expiration");
    let list = |q: &'static str| {
        let client = &client;
        let app = &app;
        async move { view(client, &app.url(&format!("/mandats?{q}"))).await.1 }
    };
    let all = list("").await;
    assert!(
        all.contains("DUBOIS") && all.contains("MERCIER (DUBOIS) Pierre"),
        "{all}"
    );
    let live = list("etat=en-cours").await;
    assert!(
        live.contains("Angela") && !live.contains("MERCIER"),
        "{live}"
    );
    let expired = list("etat=expires").await;
    assert!(
        expired.contains("MERCIER") && expired.contains("Expiré") && !expired.contains("Angela")
    );
    // Search ignores case and accents; category filter.
    assert!(list("q=angéla").await.contains("Angela"));
    assert!(!list("q=zzz").await.contains("Angela"));
    let justice = list("categorie=justice").await;
    assert!(justice.contains("MERCIER") && !justice.contains("Angela"));
    // Search and démarche together, with a state: each statement binds its own parameters.
    assert!(
        list("q=mercier&categorie=justice")
            .await
            .contains("MERCIER")
    );
    assert!(!list("q=angela&categorie=justice").await.contains("Angela"));
    assert!(
        list("q=angela&etat=en-cours&categorie=logement")
            .await
            .contains("Angela")
    );
    assert!(!list("q=mercier&etat=en-cours").await.contains("MERCIER"));
    // Nonsense filters are ignored, not errors.
    let (status, _) = view(
        &client,
        &app.url("/mandats?etat=%27%3B&page=-4&categorie=x"),
    )
    .await;
    assert_eq!(status, 200);
    // An expired mandate no longer covers anything; a live one does: the one definition,
    // the view `live_authorisations`, as every read of "may we act for this person" uses it.
    let usager = |m: MandateId| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, UsagerId>("SELECT usager_id FROM dep_33.mandates WHERE id = $1")
                .bind(m)
                .fetch_one(&admin)
                .await
                .expect("usager")
        }
    };
    let covers = |m: MandateId, category: &'static str| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM dep_33.live_authorisations a
                                JOIN dep_33.mandates m ON m.usager_id = a.usager_id
                                WHERE m.id = $1 AND a.structure_id = $2 AND a.category = $3)",
            )
            .bind(m)
            .bind(structure)
            .bind(category)
            .fetch_one(&admin)
            .await
            .expect("covers")
        }
    };
    assert!(covers(m1, "logement").await);
    assert!(!covers(m1, "justice").await);
    assert!(!covers(m2, "justice").await);

    // Another structure's aidant, and another territory's: 404 on every id, empty lists.
    for departement in ["33", "34"] {
        let other_structure = structure_domain(&app, departement).await;
        let other = professional(
            &app.db.admin,
            "Bob Autre",
            &[(Role::Aidant, other_structure.domain(), Some(departement))],
        )
        .await;
        let other_client = browser(&app.address);
        log_in(&other_client, &app, &other, -1).await;
        let usager_id = usager(m1).await;
        for path in [
            format!("/mandats/{m1}"),
            format!("/usagers/{usager_id}"),
            format!("/mandats/{m1}/explication"),
        ] {
            let (status, _) = view(&other_client, &app.url(&path)).await;
            assert_eq!(status, 404, "{departement} {path}");
        }
        let resp = post_form(
            &other_client,
            &app,
            "/mandats/nouveau",
            &format!("/mandats/{m1}/revocation"),
            &[],
        )
        .await;
        assert_eq!(resp.status(), 404);
        let (_, html) = view(&other_client, &app.url("/mandats")).await;
        assert!(!html.contains("DUBOIS"));
    }
    // Still live after the foreign attempts.
    assert!(covers(m1, "logement").await);
}

#[tokio::test]
async fn long_mandates_are_reminded_once_thirty_days_before_they_expire() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    let referent = professional(
        &app.db.admin,
        "Rémi Référent",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await;
    let (long, short) = housing_and_justice(&client, &app, &who, "182").await;
    // A second long mandate, of the other usager, made by a colleague of the same structure:
    // one batch reminds both, each journalled.
    let colleague = professional(
        &app.db.admin,
        "Colette Collègue",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let colleague_client = browser(&app.address);
    log_in(&colleague_client, &app, &colleague, -1).await;
    let longer = create(
        &colleague_client,
        &app,
        &colleague,
        0,
        &[("categories", "logement"), ("duree", "365")],
        "avec_nom_dusage",
    )
    .await;
    sqlx::query(
        "UPDATE dep_33.mandates SET expires_at = now() + interval '10 days' WHERE id = ANY($1)",
    )
    .bind(vec![long, short, longer])
    .execute(&app.db.admin)
    .await
    .expect("échéance");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("platform");
    let tenant = platform
        .tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("ctx");
    assert_eq!(
        mandate_service::jobs::remind_expiring(&platform, &tenant)
            .await
            .expect("rappels"),
        2,
        "seuls les deux mandats longs sont rappelés"
    );
    assert_eq!(
        mandate_service::jobs::remind_expiring(&platform, &tenant)
            .await
            .expect("rappels"),
        0,
        "une seule fois"
    );
    let mail = test_support::maildev::wait_for_mail_to(
        &referent.email,
        std::time::Duration::from_secs(20),
    )
    .await
    .expect("rappel reçu");
    let text = mail["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("2 mandat(s)") && text.contains("/mandats?etat=bientot"),
        "{text}"
    );
    assert!(
        !text.contains("DUBOIS"),
        "aucune donnée de la personne dans le rappel"
    );
    let counter = Counter {
        app_admin: app.db.admin.clone(),
    };
    for (mandate, expected) in [(long, 1), (longer, 1), (short, 0)] {
        assert_eq!(
            counter
                .journal("mandate_expiry_reminder_queued", Some(mandate))
                .await,
            expected,
            "{mandate}"
        );
    }
    // Each entry names its own mandate's usager, and the chain takes the batch.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal j JOIN dep_33.mandates m ON m.id = j.mandate_id
         WHERE j.kind = 'mandate_expiry_reminder_queued'
           AND (j.usager_id IS DISTINCT FROM m.usager_id OR j.structure_id IS DISTINCT FROM m.structure_id)",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("entrées");
    assert_eq!(mismatched, 0);
    foundation::journal::seal_all(&tenant)
        .await
        .expect("chaînage");
    let mut tx = tenant.begin().await.expect("tx");
    let report = foundation::journal::verify(&mut tx, None, &Default::default())
        .await
        .expect("vérification");
    assert!(report.intact() && report.checked > 0, "{report:?}");
}

#[tokio::test]
async fn the_export_and_the_activity_page_follow_the_guard() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    create(
        &client,
        &app,
        &who,
        0,
        &[("categories", "logement"), ("duree", "31")],
        "test",
    )
    .await;
    // An aidant sees their activity but cannot export.
    let (status, html) = view(&client, &app.url("/activite")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("personnes accompagnées") && html.contains("<svg"),
        "{html}"
    );
    let resp = post_form(
        &client,
        &app,
        "/mandats/nouveau",
        "/mandats/export.csv",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 403);
    // The référent exports a CSV (journaled); the usager page is for aidants only.
    let referent = professional(
        &app.db.admin,
        "Rémi Référent",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await;
    let rclient = browser(&app.address);
    log_in(&rclient, &app, &referent, -1).await;
    let resp = post_form(&rclient, &app, "/mandats", "/mandats/export.csv", &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.expect("csv");
    assert!(
        csv.contains("DUBOIS Angela Claire Louise") && csv.contains("Logement"),
        "{csv}"
    );
    let counter = Counter {
        app_admin: app.db.admin.clone(),
    };
    assert_eq!(counter.journal("mandates_exported", None).await, 1);
    let usager: UsagerId = sqlx::query_scalar("SELECT id FROM dep_33.usagers")
        .fetch_one(&app.db.admin)
        .await
        .expect("usager");
    let (status, _) = view(&rclient, &app.url(&format!("/usagers/{usager}"))).await;
    assert_eq!(status, 403);
    let (status, html) = view(&client, &app.url(&format!("/usagers/{usager}"))).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Mandat créé") && html.contains("Première identification"),
        "{html}"
    );
}

#[tokio::test]
async fn the_whole_creation_and_revocation_work_in_chromium_with_the_keyboard_and_pass_axe() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = logged_in_aidant(&app).await;
    let cookies: Vec<(String, String)> = client.cookies();
    let result = test_support::browser::run(
        "mandate.mjs",
        &serde_json::json!({
            "base": app.address,
            "cookies": cookies,
            "seed_hex": hex::encode(&who.seed),
            "fc_login": "test",
        }),
    )
    .await;
    let steps = result["steps"].to_string();
    assert_eq!(result["revoked"], true, "étapes : {steps}");
    let pages = result["pages"].as_array().expect("pages");
    assert!(pages.len() >= 7, "{steps}");
    for p in pages {
        assert_eq!(p["violations"], serde_json::json!([]), "{}", p["url"]);
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates WHERE ended_reason = 'revoked'")
            .fetch_one(&app.db.admin)
            .await
            .expect("compte");
    assert_eq!(count, 1);
}

/// Two transactions identifying the same new person at once (two recaps, two aidants): the
/// second one's insert waits for the first, then finds the person known — one row, one
/// `usager_identified` entry, the same id for both.
#[tokio::test]
async fn a_person_identified_twice_at_once_is_created_once() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, _) = logged_in_aidant(&app).await;
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let tenant = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    let identity = common::idp::angela(&format!("deux-fois-{}", Uuid::new_v4().simple()));
    let mut first = tenant.begin().await.expect("tx");
    let id = mandate_service::mandates::upsert_usager(&mut first, &identity, structure, who.id)
        .await
        .expect("première");
    let second = tokio::spawn({
        let (tenant, identity, by) = (tenant.clone(), identity.clone(), who.id);
        async move {
            let mut tx = tenant.begin().await.expect("tx");
            let id = mandate_service::mandates::upsert_usager(&mut tx, &identity, structure, by)
                .await
                .expect("seconde");
            tx.commit().await.expect("commit");
            id
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "la seconde attend la première");
    first.commit().await.expect("commit");
    assert_eq!(second.await.expect("tâche"), id);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.usagers WHERE fc_sub = $1")
        .bind(&identity.sub)
        .fetch_one(&app.db.admin)
        .await
        .expect("usagers");
    assert_eq!(rows, 1);
    let entries: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM dep_33.journal WHERE usager_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&app.db.admin)
            .await
            .expect("journal");
    assert_eq!(entries, ["usager_identified"]);
}

/// The recap's code is checked without holding the factor locked (`factors::check_code_alone`):
/// one code typed on four recaps sent at once creates one mandate, the others being told the
/// code has served. (Requests rarely overlap between the factor's read and its use here; the
/// case where they do is `identity::a_step_is_used_once_and_only_on_a_factor_in_use`.)
#[tokio::test]
async fn one_code_sent_on_several_recaps_at_once_creates_one_mandate() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = logged_in_aidant(&app).await;
    let mut recaps = Vec::new();
    for person in ["test", "avec_nom_dusage", "sans_courriel", "born_abroad"] {
        let resp = terms(&client, &app, &[("categories", "logement"), ("duree", "1")]).await;
        recaps.push(identify(&client, &app, &location(&resp), person).await);
    }
    let code = who.code(0);
    let answers = futures::future::join_all(recaps.iter().map(|recap| async {
        let resp = confirm(&client, &app, recap, &code, true).await;
        let created = resp.status() == 303 && location(&resp).ends_with("?message=cree");
        (created, resp.text().await.unwrap_or_default())
    }))
    .await;
    let created = answers.iter().filter(|(created, _)| *created).count();
    assert_eq!(created, 1, "une seule création");
    for (_, html) in answers.iter().filter(|(created, _)| !created) {
        assert!(html.contains("Ce code a déjà servi"), "{html}");
    }
    let mandates: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("mandats");
    assert_eq!(mandates, 1);
}

#[tokio::test]
async fn a_usager_without_email_gets_receipts_by_sms_at_the_number_typed_on_the_recap() {
    let app = spawn_app(&["33"]).await;
    // Three aidants of one structure, one per creation: each confirms with its own current
    // code, without waiting for the next 30-second step.
    let (first, structure, client) = logged_in_aidant(&app).await;
    let mut aidants = vec![(first, client)];
    for name in ["Basile Aidant", "Chloé Aidante"] {
        let who = professional(
            &app.db.admin,
            name,
            &[(Role::Aidant, structure.domain(), Some("33"))],
        )
        .await;
        let client = browser(&app.address);
        assert_eq!(log_in(&client, &app, &who, -1).await.status(), 303);
        aidants.push((who, client));
    }
    // A number of the range kept for fiction, unique to this run.
    let suffix = Uuid::new_v4().as_u128() % 10_000;
    let typed = format!("06 39 98 {:02} {:02}", suffix / 100, suffix % 100);
    let e164 = format!("+3363998{suffix:04}");
    let mut mandates = Vec::new();
    for (extra, aidant) in [
        vec![("telephone", typed.as_str())],
        // Left empty: the number already known is kept.
        vec![],
        // An address given too: the phone still comes first.
        vec![("adresse", "M. Lucien FAURE\n12 rue des Lilas\n33130 Bègles")],
    ]
    .into_iter()
    .zip(&aidants)
    {
        let (who, client) = (&aidant.0, &aidant.1);
        let resp = terms(client, &app, &[("categories", "logement"), ("duree", "1")]).await;
        let recap = identify(client, &app, &location(&resp), "sans_courriel").await;
        let (_, form) = view(client, &app.url(&recap)).await;
        assert!(form.contains("Adresse électronique : aucune"), "{form}");
        let token = csrf_of(&form);
        let code = who.code(0);
        let mut fields = vec![
            ("csrf", token.as_str()),
            ("code", code.as_str()),
            ("declaration", "oui"),
        ];
        fields.extend(extra);
        let resp = client.post(&app.url(&recap), &fields).await;
        assert_eq!(
            resp.status(),
            303,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        mandates.push(location(&resp));
    }
    let (phone, address): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT c.phone, c.postal_address FROM dep_33.usager_contacts c
         JOIN dep_33.usagers u ON u.id = c.usager_id WHERE u.family_name = 'FAURE'",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("usager");
    assert_eq!(phone.as_deref(), Some(e164.as_str()));
    assert_eq!(
        address.as_deref(),
        Some("M. Lucien FAURE\n12 rue des Lilas\n33130 Bègles")
    );
    // Two changes journaled (the number, then the address), without their values.
    let changes: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details::jsonb - 'changed_by_structure' FROM dep_33.journal WHERE kind = 'usager_contact_updated' ORDER BY id",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(
        changes,
        [
            serde_json::json!({"phone": "updated", "postal_address": "unchanged"}),
            serde_json::json!({"phone": "unchanged", "postal_address": "updated"}),
        ]
    );
    // Each creation (the second and third superseding the previous one) was told by SMS,
    // through the local gateway, by the application's own worker.
    let sms =
        test_support::sms_gateway::wait_for_sms_to(&e164, 3, std::time::Duration::from_secs(15))
            .await;
    assert_eq!(sms.len(), 3, "{sms:?}");
    for message in &sms {
        let text = message["text"].as_str().expect("texte");
        assert!(
            text.starts_with("Aidants Connect : le ")
                && text.contains("un mandat jusqu'au")
                && text.contains("(Logement)"),
            "{text}"
        );
    }

    // The usager's page says how receipts go, and lets an aidant correct or remove the contact.
    let usager: UsagerId =
        sqlx::query_scalar("SELECT id FROM dep_33.usagers WHERE family_name = 'FAURE'")
            .fetch_one(&app.db.admin)
            .await
            .expect("usager");
    let client = &aidants[0].1;
    let page_url = app.url(&format!("/usagers/{usager}"));
    let (status, html) = view(client, &page_url).await;
    assert_eq!(status, 200);
    let end = &e164[e164.len() - 2..];
    assert!(
        html.contains(&format!(
            "par SMS, au numéro de téléphone mobile enregistré (se terminant par {end})"
        )) && html.contains("téléphone mobile enregistré")
            && html.contains("adresse postale enregistré"),
        "{html}"
    );
    let (app_ref, page_ref) = (&app, &page_url);
    let post = |fields: Vec<(&'static str, String)>| {
        let (app, page_url) = (app_ref, page_ref.clone());
        async move {
            let (_, form) = view(client, &page_url).await;
            let token = csrf_of(&form);
            let mut all = vec![("csrf", token)];
            all.extend(fields);
            let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client
                .post(
                    &app.url(&format!("/usagers/{usager}/coordonnees")),
                    &borrowed,
                )
                .await
        }
    };
    let resp = post(vec![("telephone", "05 56 00 00 00".into())]).await;
    assert_eq!(resp.status(), 422);
    let html = unescape(&resp.text().await.expect("page"));
    assert!(
        html.contains("Le numéro de téléphone mobile n'est pas valide")
            && html.contains("05 56 00 00 00"),
        "{html}"
    );
    let resp = post(vec![("telephone", "07 00 00 00 01".into())]).await;
    assert_eq!(
        location(&resp),
        format!("/usagers/{usager}?message=coordonnees")
    );
    let resp = post(vec![("supprimer_telephone", "oui".into())]).await;
    assert_eq!(
        location(&resp),
        format!("/usagers/{usager}?message=coordonnees")
    );
    let resp = post(vec![]).await;
    assert_eq!(
        location(&resp),
        format!("/usagers/{usager}?message=coordonnees-inchangees")
    );
    let (phone, address): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT phone, postal_address FROM dep_33.usager_contacts WHERE usager_id = $1",
    )
    .bind(usager)
    .fetch_one(&app.db.admin)
    .await
    .expect("usager");
    assert_eq!(phone, None);
    assert!(address.is_some());
    let (_, html) = view(
        client,
        &app.url(&format!("/usagers/{usager}?message=coordonnees")),
    )
    .await;
    assert!(
        html.contains("Les coordonnées sont enregistrées.")
            && html.contains("par courrier, à l'adresse postale enregistrée")
            && html.contains("téléphone mobile supprimé"),
        "{html}"
    );
    let kinds: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT details::jsonb - 'changed_by_structure' FROM dep_33.journal WHERE kind = 'usager_contact_updated' ORDER BY id",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(
        kinds[2..],
        [
            serde_json::json!({"phone": "updated", "postal_address": "unchanged"}),
            serde_json::json!({"phone": "removed", "postal_address": "unchanged"}),
        ]
    );
    // Another structure's aidant neither sees nor changes this person.
    let other = structure_domain(&app, "33").await;
    let stranger = professional(
        &app.db.admin,
        "Denis Aidant",
        &[(Role::Aidant, other.domain(), Some("33"))],
    )
    .await;
    let stranger_client = browser(&app.address);
    assert_eq!(
        log_in(&stranger_client, &app, &stranger, -1).await.status(),
        303
    );
    let (status, _) = view(&stranger_client, &page_url).await;
    assert_eq!(status, 404);
    let (_, any_page) = view(&stranger_client, &app.url("/mandats/nouveau")).await;
    let token = csrf_of(&any_page);
    let resp = stranger_client
        .post(
            &app.url(&format!("/usagers/{usager}/coordonnees")),
            &[("csrf", token.as_str()), ("supprimer_adresse", "oui")],
        )
        .await;
    assert_eq!(resp.status(), 404);
    for (url, violations) in test_support::browser::axe_violations_with_cookies(
        std::slice::from_ref(&page_url),
        &client.cookies(),
    )
    .await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}

#[tokio::test]
async fn each_structure_prints_its_own_letter_batches_from_its_letters_page() {
    let app = spawn_app(&["33"]).await;
    let (_, structure, alice) = logged_in_aidant(&app).await;
    let other = structure_domain(&app, "33").await;
    let bob = professional(
        &app.db.admin,
        "Bob Aidant",
        &[(Role::Aidant, other.domain(), Some("33"))],
    )
    .await;
    let bob_client = browser(&app.address);
    assert_eq!(log_in(&bob_client, &app, &bob, -1).await.status(), 303);

    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let departement = foundation::tenancy::DepartementCode::parse("33").expect("33");
    let ctx = platform.tenancy.unguarded(departement).await.expect("ctx");
    let mut tx = ctx.begin().await.expect("tx");
    for (owner, who) in [
        (structure, "Mme Odette LEROY"),
        (structure, "M. Gaston PETIT"),
        (other, "Mme Irène BLANC"),
    ] {
        let contact = mandate_service::contact::UsagerContact {
            postal_address: Some(format!("{who}\n4 rue du Port\n33000 Bordeaux")),
            ..Default::default()
        };
        mandate_service::contact::enqueue_usager_receipt(
            &mut tx,
            owner,
            &contact,
            "mandate_used",
            serde_json::json!({"date": "23/11/2026 à 10h05", "structure": "CCAS", "demarche": "Logement"}),
        )
        .await
        .expect("courrier");
    }
    tx.commit().await.expect("commit");

    let (status, html) = view(&alice, &app.url("/courriers")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("2 courriers attendent le prochain rassemblement")
            && html.contains("Aucun fichier pour le moment"),
        "{html}"
    );

    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let batches =
        notification_mailer::letters::batch_territory(&platform.tenancy, &vault, departement)
            .await
            .expect("lots");
    assert_eq!(batches.len(), 2);

    let (_, html) = view(&alice, &app.url("/courriers")).await;
    assert!(html.contains("Aucun courrier n'attend"), "{html}");
    let links: Vec<&str> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with("/documents/33/"))
        .collect();
    assert_eq!(links.len(), 1, "{html}");
    assert!(html.contains("PDF, 2 pages"), "{html}");
    let pdf = reqwest::get(app.url(links[0]))
        .await
        .expect("téléchargement");
    assert_eq!(pdf.status(), 200);
    let text = foundation::pdf::shown_text(&pdf.bytes().await.expect("pdf"));
    assert!(
        text.contains("Odette LEROY")
            && text.contains("Gaston PETIT")
            && !text.contains("Irène BLANC"),
        "{text}"
    );
    // The other structure sees its own file only.
    let (_, theirs) = view(&bob_client, &app.url("/courriers")).await;
    assert!(
        theirs.contains("PDF, 1 page<") && !theirs.contains(links[0]),
        "{theirs}"
    );

    for (url, violations) in test_support::browser::axe_violations_with_cookies(
        &[app.url("/courriers")],
        &alice.cookies(),
    )
    .await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
    // A file past its 90 days is purged from the vault: no longer offered.
    sqlx::query("UPDATE dep_33.letter_batches SET created_at = now() - interval '91 days' WHERE structure_id = $1")
        .bind(structure)
        .execute(&app.db.admin)
        .await
        .expect("vieillissement");
    let (_, html) = view(&alice, &app.url("/courriers")).await;
    assert!(html.contains("Aucun fichier pour le moment"), "{html}");
}

/// A mandate made directly in the structure, for `codes` (no attestation stored yet, as after
/// an object-store outage at creation).
async fn direct_mandate(
    app: &TestApp,
    structure: StructureId,
    aidant: ProfessionalId,
    family_name: &str,
    codes: &[&str],
) -> MandateId {
    let mut identity = common::idp::angela(&format!("fc-{}", Uuid::new_v4().simple()));
    identity.family_name = family_name.into();
    common::idp::mandate_for(app, structure, aidant, &identity, codes)
        .await
        .1
}

#[tokio::test]
async fn renewing_another_structures_mandate_is_not_found() {
    let app = spawn_app(&["33", "34"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    let mandate = direct_mandate(&app, structure, who.id, "DUBOIS", &["logement"]).await;
    // Another structure's aidant, in the same territory and in another: 404, never a redirect
    // to a renewal form.
    for departement in ["33", "34"] {
        let other_structure = structure_domain(&app, departement).await;
        let other = professional(
            &app.db.admin,
            "Bob Autre",
            &[(Role::Aidant, other_structure.domain(), Some(departement))],
        )
        .await;
        let other_client = browser(&app.address);
        log_in(&other_client, &app, &other, -1).await;
        let resp = post_form(
            &other_client,
            &app,
            "/mandats/nouveau",
            &format!("/mandats/{mandate}/renouvellement"),
            &[],
        )
        .await;
        assert_eq!(resp.status(), 404, "{departement}");
        assert!(resp.headers().get("location").is_none());
    }
    // An id that names nothing: 404 as well; the structure's own mandate: the renewal form.
    let resp = post_form(
        &client,
        &app,
        "/mandats/nouveau",
        &format!("/mandats/{}/renouvellement", Uuid::now_v7()),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = post_form(
        &client,
        &app,
        "/mandats/nouveau",
        &format!("/mandats/{mandate}/renouvellement"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp),
        format!("/mandats/nouveau?renouvellement={mandate}")
    );
}

async fn attestation_of(app: &TestApp, mandate: MandateId) -> Option<Uuid> {
    sqlx::query_scalar("SELECT attestation_id FROM dep_33.mandates WHERE id = $1")
        .bind(mandate)
        .fetch_one(&app.db.admin)
        .await
        .expect("mandat")
}

#[tokio::test]
async fn producing_an_attestation_needs_the_right_to_create_and_a_recent_code() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    let mandate = direct_mandate(&app, structure, who.id, "DUBOIS", &["logement"]).await;
    assert_eq!(attestation_of(&app, mandate).await, None);
    let page_path = format!("/mandats/{mandate}");
    let action = format!("/mandats/{mandate}/attestation");

    // A référent reads mandates but does not make them: 403, nothing produced.
    let referent = professional(
        &app.db.admin,
        "Rémi Référent",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await;
    let rclient = browser(&app.address);
    log_in(&rclient, &app, &referent, -1).await;
    let resp = post_form(&rclient, &app, &page_path, &action, &[]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(attestation_of(&app, mandate).await, None);

    // An aidant idle for 16 minutes is sent to the code re-check first; nothing produced.
    let idle = professional(
        &app.db.admin,
        "Ida Inactive",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let iclient = browser(&app.address);
    log_in(&iclient, &app, &idle, -1).await;
    sqlx::query("UPDATE platform.sessions SET last_seen_at = now() - interval '16 minutes' WHERE professional_id = $1")
        .bind(idle.id)
        .execute(&app.db.admin)
        .await
        .expect("inactivité");
    let resp = post_form(&iclient, &app, &page_path, &action, &[]).await;
    assert_eq!(resp.status(), 303);
    assert!(
        location(&resp).starts_with("/compte/verification?suite="),
        "{}",
        location(&resp)
    );
    assert_eq!(attestation_of(&app, mandate).await, None);

    // The aidant with a recent code produces it.
    let resp = post_form(&client, &app, &page_path, &action, &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        location(&resp),
        format!("/mandats/{mandate}?message=attestation")
    );
    assert!(attestation_of(&app, mandate).await.is_some());
}

#[tokio::test]
async fn the_csv_export_is_a_post_with_csrf_and_neutralises_formulas() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, _) = logged_in_aidant(&app).await;
    let hostile = [
        "=HYPERLINK(\"https://evil.example\";\"x\")",
        "+33 CALC",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        "\rCR",
    ];
    for name in hostile {
        direct_mandate(&app, structure, who.id, name, &["logement"]).await;
    }
    let referent = professional(
        &app.db.admin,
        "Rémi Référent",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await;
    let rclient = browser(&app.address);
    log_in(&rclient, &app, &referent, -1).await;
    let export = app.url("/mandats/export.csv");
    // A link cannot export (no GET), nor a form from elsewhere (no CSRF token).
    assert_eq!(rclient.get(&export).await.status(), 405);
    assert_eq!(rclient.post(&export, &[]).await.status(), 403);
    let counter = Counter {
        app_admin: app.db.admin.clone(),
    };
    assert_eq!(counter.journal("mandates_exported", None).await, 0);
    let resp = post_form(&rclient, &app, "/mandats", "/mandats/export.csv", &[]).await;
    assert_eq!(resp.status(), 200);
    let csv = resp.text().await.expect("csv");
    assert_eq!(counter.journal("mandates_exported", None).await, 1);
    for name in hostile {
        let cell = format!("\"'{} Angela Claire Louise\"", name.replace('"', "\"\""));
        assert!(csv.contains(&cell), "{cell:?} absent de {csv:?}");
    }
    // No cell of a data line starts with a formula character.
    for line in csv.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        for cell in line.split(";\"") {
            let inner = cell.trim_start_matches('"');
            assert!(
                !inner.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} dans {line:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_lists_cached_plans_read_their_page_not_the_whole_territory() {
    // A prepared statement's generic plan (PostgreSQL's choice after five executions on a
    // connection, kept until the tables' statistics change) must read the page through the
    // structure's indexes, whatever the territory holds: a plan that scans every usager and
    // sorts every mandate grows with the territory at each request.
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = logged_in_aidant(&app).await;
    sqlx::query(
        "INSERT INTO dep_33.usagers (id, fc_sub, given_name, family_name, birthdate, gender, birthplace, birthcountry, search_name)
         SELECT gen_random_uuid(), 'plan-' || i, 'Marie', 'DUBOIS-' || i, '1970-01-01', 'female', '33063', '99100', 'dubois-' || i || ' marie'
         FROM generate_series(1, 3000) AS i",
    )
    .execute(&app.db.admin)
    .await
    .expect("usagers");
    sqlx::query(
        // One in ten revoked (the benchmarks' population has one in twenty), set at the insert:
        // Citus refuses an UPDATE computing a column from another with a stable function.
        "INSERT INTO dep_33.mandates (id, structure_id, usager_id, created_by, created_at, duration_days, expires_at, legal_text_version, ended_at, ended_reason)
         SELECT gen_random_uuid(), $1, u.id, $2, c, 365, c + interval '365 days', '2026-11-v1',
                CASE WHEN revoked THEN c + interval '10 days' END, CASE WHEN revoked THEN 'revoked' END
         FROM (SELECT id, c, fc_sub LIKE 'plan-%0' AND c < now() - interval '10 days' AS revoked
               FROM (SELECT id, fc_sub, now() - (random() * interval '400 days') AS c
                     FROM dep_33.usagers WHERE fc_sub LIKE 'plan-%') r) u",
    )
    .bind(structure)
    .bind(who.id)
    .execute(&app.db.admin)
    .await
    .expect("mandates");
    sqlx::query(
        "INSERT INTO dep_33.authorisations (id, mandate_id, structure_id, usager_id, category, expires_at, revoked_at)
         SELECT gen_random_uuid(), m.id, m.structure_id, m.usager_id, c, m.expires_at, m.ended_at
         FROM dep_33.mandates m CROSS JOIN (VALUES ('social'), ('logement')) AS cats(c)",
    )
    .execute(&app.db.admin)
    .await
    .expect("authorisations");
    let mut conn = app.db.admin.acquire().await.expect("connection");
    sqlx::raw_sql(
        "ANALYZE dep_33.usagers, dep_33.mandates, dep_33.authorisations;
         SET search_path = dep_33, public;
         SET plan_cache_mode = force_generic_plan",
    )
    .execute(&mut *conn)
    .await
    .expect("generic plans");
    let citus = test_support::database::CitusNodes::from_env().is_some();
    for (n, state) in ["", "en-cours", "bientot", "expires", "revoques"]
        .into_iter()
        .enumerate()
    {
        let sql = mandate_service::web::list::page_sql(
            state,
            mandate_service::web::list::Search::None,
            false,
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE page_{n} AS {sql}")))
            .execute(&mut *conn)
            .await
            .expect("prepare");
        let explain = format!(
            "EXPLAIN (FORMAT JSON) EXECUTE page_{n}('{}', 21, 0)",
            structure.as_uuid()
        );
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .fetch_one(&mut *conn)
            .await
            .expect("explain");
        let nodes = common::plans::nodes(&plan[0]["Plan"]);
        // The plan that reads the rows (on Citus, the worker's) is the one read.
        assert!(
            nodes.iter().any(|n| n.relation == "mandates"),
            "« {state} » : {plan}"
        );
        if citus {
            // The coordinator sends each execution to the worker as an unnamed statement with
            // its values (parse, bind, execute: seen in the worker's log), so the worker plans
            // it for those values every time and never keeps the generic plan this test is
            // about; its plan for a value may rightly scan a table of 3,000 rows whole.
            continue;
        }
        let whole: Vec<_> = nodes
            .into_iter()
            .filter(|n| {
                n.kind == "Seq Scan" && matches!(n.relation.as_str(), "usagers" | "mandates")
            })
            .collect();
        assert!(whole.is_empty(), "« {state} » : {whole:?} in {plan}");
    }
    // The page itself, at that volume: twenty rows and a next page.
    let (status, html) = view(&client, &app.url("/mandats")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("DUBOIS-") && html.contains("page=2"),
        "{html}"
    );
    // A name search that finds few people in the territory (30: their mandates are read) and
    // one that finds more than `FOUND_MAX` (3,000: it filters the walk of the structure's
    // mandates) list the same rows as the search itself, newest first.
    for (q, pattern) in [("12+marie", "%12 marie%"), ("marie", "%marie%")] {
        let expected: Vec<String> = sqlx::query_scalar(
            "SELECT u.family_name FROM dep_33.mandates m JOIN dep_33.usagers u ON u.id = m.usager_id
             WHERE m.structure_id = $1 AND u.search_name LIKE $2
               AND least(m.ended_at, m.expires_at) > now() - interval '1 year'
             ORDER BY m.created_at DESC, m.id DESC LIMIT 20",
        )
        .bind(structure)
        .bind(pattern)
        .fetch_all(&app.db.admin)
        .await
        .expect("recherche");
        assert!(!expected.is_empty());
        let (status, html) = view(&client, &app.url(&format!("/mandats?q={q}"))).await;
        assert_eq!(status, 200);
        // Each row names the person twice (the cell and its link's label).
        let mut shown: Vec<&str> = html
            .match_indices("DUBOIS-")
            .map(|(at, _)| {
                let digits = html[at + 7..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(0);
                &html[at..at + 7 + digits]
            })
            .collect();
        shown.dedup();
        assert_eq!(shown, expected, "« {q} » : {html}");
    }
    // A search that finds few people reads their mandates, not the structure's (here a generic
    // plan; on Citus the worker's plan for the parameters as the coordinator sends them). This
    // does not reproduce what made the search two reads: at this size, the former one-statement
    // search reads few mandates too, on both layouts (tried). Its plan walked the largest
    // structure's 100,000 mandates on Citus at national volume, which `bench-volume` measures.
    use mandate_service::web::list::{FOUND_MAX, FOUND_SQL, Search, page_sql};
    let found: Vec<uuid::Uuid> = sqlx::query_scalar(FOUND_SQL)
        .bind("12 marie")
        .bind(FOUND_MAX + 1)
        .fetch_all(&mut *conn)
        .await
        .expect("trouvés");
    assert_eq!(found.len(), 30);
    let ids: Vec<String> = found.iter().map(|u| format!("'{u}'")).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE found_page AS {}",
        page_sql("", Search::Found, false)
    )))
    .execute(&mut *conn)
    .await
    .expect("prepare");
    // In text: Citus writes the worker's plan of an executed prepared statement as text even
    // inside a JSON `EXPLAIN`.
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE found_page('{}', 21, 0, ARRAY[{}]::uuid[])",
        structure.as_uuid(),
        ids.join(",")
    )))
    .fetch_all(&mut *conn)
    .await
    .expect("explain");
    let read = common::plans::read_text(&plan, "mandates");
    assert!(
        read >= 1.0 && read <= 3.0 * found.len() as f64,
        "{read} mandats lus pour {} personnes trouvées : {plan:#?}",
        found.len()
    );
}
