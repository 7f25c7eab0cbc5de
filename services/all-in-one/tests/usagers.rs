//! The usager's own space (`/mes-mandats`): a person signs in with FranceConnect (the stand-in)
//! and sees every mandate they hold — here made at the counter, through FranceConnect, by
//! aidants of two départements — with the uses made of each, and nobody else's. The index that
//! finds them holds no identity; a FranceConnect return works once; logging out ends the
//! session.

mod common;

use common::fc::{identify, through_franceconnect};
use common::identity::*;
use common::{TestApp, audible, spawn_app};
use foundation::ids::{MandateId, StructureId};
use policies::Role;
use uuid::Uuid;

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// A structure named `name` in `departement`, and one of its aidants, logged in.
async fn aidant_of(
    app: &TestApp,
    departement: &str,
    name: &str,
) -> (TestProfessional, StructureId, Browser) {
    let structure = structure_domain(app, departement).await;
    let rename = match departement {
        "33" => "UPDATE dep_33.structures SET name = $2 WHERE id = $1",
        "34" => "UPDATE dep_34.structures SET name = $2 WHERE id = $1",
        other => panic!("département {other} non prévu"),
    };
    sqlx::query(rename)
        .bind(structure)
        .bind(name)
        .execute(&app.db.admin)
        .await
        .expect("nom");
    let who = professional(
        &app.db.admin,
        &format!("Aidant {name}"),
        &[(Role::Aidant, structure.domain(), Some(departement))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &who, -1).await.status(), 303);
    (who, structure, client)
}

/// A mandate made at the counter for FranceConnect's `login`, through the stand-in.
async fn at_the_counter(
    app: &TestApp,
    client: &Browser,
    who: &TestProfessional,
    categories: &[&str],
    login: &str,
) -> MandateId {
    let mut fields: Vec<(&str, &str)> = categories.iter().map(|c| ("categories", *c)).collect();
    fields.push(("duree", "365"));
    let resp = post_form(client, app, "/mandats/nouveau", "/mandats/nouveau", &fields).await;
    assert_eq!(resp.status(), 303);
    let recap = identify(client, app, &location(&resp), login).await;
    let resp = post_form(
        client,
        app,
        &recap,
        &recap,
        &[("code", &who.code(0)), ("declaration", "oui")],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    location(&resp)
        .trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("id du mandat")
}

/// The person signs in to their space through the stand-in; returns the FranceConnect return
/// URL the platform answered (to try it again).
async fn sign_in(app: &TestApp, person: &Browser, login: &str) -> String {
    let resp = person.get(&app.url("/mes-mandats/connexion")).await;
    assert_eq!(resp.status(), 303);
    let authorize = location(&resp);
    assert!(authorize.contains("/authorize"), "{authorize}");
    assert!(
        authorize.contains("mes-mandats%2Ffranceconnect%2Fretour"),
        "{authorize}"
    );
    let callback = through_franceconnect(person, app, &authorize, login).await;
    assert!(
        callback.contains("/mes-mandats/franceconnect/retour"),
        "{callback}"
    );
    let resp = person.get(&callback).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    // Then out of FranceConnect (franceconnect.md §A), and back to the space.
    let logout = location(&resp);
    assert!(
        logout.contains("/session/end") && logout.contains("id_token_hint"),
        "{logout}"
    );
    let back = through_franceconnect(person, app, &logout, login).await;
    assert!(
        back.contains("/mes-mandats/franceconnect/deconnexion"),
        "{back}"
    );
    let resp = person.get(&back).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/mes-mandats");
    callback
}

#[tokio::test]
async fn a_person_sees_every_mandate_they_hold_and_nobody_elses() {
    let app = spawn_app(&["33", "34"]).await;
    let (gironde, _, gironde_client) = aidant_of(&app, "33", "France Services Bastide").await;
    let (herault, _, herault_client) = aidant_of(&app, "34", "CCAS de Sète").await;
    let (other, _, other_client) = aidant_of(&app, "33", "Mairie de Bègles").await;
    let housing = at_the_counter(&app, &gironde_client, &gironde, &["logement"], "test").await;
    at_the_counter(&app, &herault_client, &herault, &["social"], "test").await;
    // Someone else's mandate, in the same département as the first.
    at_the_counter(&app, &other_client, &other, &["justice"], "avec_nom_dusage").await;

    // A use of the Gironde mandate, as the identity provider journals it.
    common::journal_a_use(&app, "33", housing, "logement").await;

    // Without a session: what the space is, and FranceConnect; no mandate.
    let person = browser(&app.address);
    let (status, html) = page(&person, &app.url("/mes-mandats")).await;
    assert_eq!(status, 200);
    assert!(html.contains("/mes-mandats/connexion"));
    assert!(!html.contains("France Services Bastide"));

    let callback = sign_in(&app, &person, "test").await;
    let (status, html) = page(&person, &app.url("/mes-mandats")).await;
    assert_eq!(status, 200);
    for shown in [
        "France Services Bastide",
        "CCAS de Sète",
        "Logement",
        "Social",
    ] {
        assert!(html.contains(shown), "{shown} absent");
    }
    assert!(
        !html.contains("Mairie de Bègles"),
        "le mandat d'une autre personne est affiché"
    );
    assert!(!html.contains("Justice"));
    // The use: its démarche and, the client being unknown, a plain word for the service.
    assert!(html.contains("Utilisations du mandat de France Services Bastide"));
    assert!(html.contains("service en ligne"));
    assert!(html.contains("Ce mandat n'a pas encore été utilisé"));

    // The index holds two départements for this person, and nothing that names them.
    let rows: Vec<(Vec<u8>, String)> = sqlx::query_as(
        "SELECT subject_hash, departement_code FROM platform.usager_index ORDER BY departement_code",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("index");
    let subs: Vec<String> = sqlx::query_scalar(
        "SELECT fc_sub FROM dep_33.usagers UNION SELECT fc_sub FROM dep_34.usagers",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("sujets");
    assert_eq!(subs.len(), 2, "deux personnes");
    for (hash, _) in &rows {
        assert_eq!(hash.len(), 32);
        assert!(subs.iter().all(|sub| hash.as_slice() != sub.as_bytes()));
    }
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = 'platform' AND table_name = 'usager_index' ORDER BY column_name",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("colonnes");
    assert_eq!(columns, ["departement_code", "subject_hash"]);
    let mut by_hash = std::collections::BTreeMap::<Vec<u8>, Vec<String>>::new();
    for (hash, dep) in rows {
        by_hash.entry(hash).or_default().push(dep);
    }
    let mut shapes: Vec<Vec<String>> = by_hash.into_values().collect();
    shapes.sort();
    assert_eq!(
        shapes,
        [
            vec!["33".to_owned()],
            vec!["33".to_owned(), "34".to_owned()]
        ]
    );
    // The session keeps the subject sealed, never in clear.
    let in_clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.usager_sessions s, unnest($1::text[]) sub
         WHERE position(convert_to(sub, 'UTF8') IN s.subject_sealed) > 0",
    )
    .bind(&subs)
    .fetch_one(&app.db.admin)
    .await
    .expect("sessions");
    assert_eq!(in_clear, 0);

    // FranceConnect's return works once.
    let again = person.get(&callback).await;
    assert_eq!(again.status(), 400);
    assert!(
        again
            .text()
            .await
            .unwrap_or_default()
            .contains("Connexion non reconnue")
    );

    // Logging out ends the session: the space is back to its FranceConnect page.
    let resp = post_form(
        &person,
        &app,
        "/mes-mandats",
        "/mes-mandats/deconnexion",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/mes-mandats?message=deconnexion");
    let (_, html) = page(&person, &app.url("/mes-mandats")).await;
    assert!(!html.contains("France Services Bastide"));
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.usager_sessions WHERE ended_at IS NOT NULL",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("sessions");
    assert_eq!(ended, 1);
    // Another person signing in sees only their own mandate.
    let second = browser(&app.address);
    sign_in(&app, &second, "avec_nom_dusage").await;
    let (_, html) = page(&second, &app.url("/mes-mandats")).await;
    assert!(html.contains("Mairie de Bègles") && html.contains("Justice"));
    assert!(!html.contains("France Services Bastide") && !html.contains("CCAS de Sète"));
}

/// The space on a phone: 360 px wide, axe-core finds nothing, nothing scrolls sideways —
/// without a session (its FranceConnect page) and with one (the list, with a use).
#[tokio::test]
async fn the_space_passes_axe_on_a_phone_screen_signed_out_and_in() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant_of(&app, "33", "France Services Bastide").await;
    let mandate = at_the_counter(&app, &client, &who, &["logement"], "test").await;
    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let space = app.url("/mes-mandats");
    let stopping = app.url(&format!("/mes-mandats/33/{mandate}/revocation"));
    common::pass_axe_on_a_phone(&app, &browser(&app.address), std::slice::from_ref(&space)).await;
    common::pass_axe_on_a_phone(&app, &person, &[space, stopping]).await;
}

/// The person stops one démarche, then the whole mandate, from their space: revoked in the
/// mandate's territory with the person as author (no aidant), journaled, an attestation made,
/// the structure's référent told by e-mail; someone else's mandate is 404 and stays live.
#[tokio::test]
async fn a_person_stops_a_demarche_then_the_mandate_and_the_structure_is_told() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = aidant_of(&app, "33", "France Services Bastide").await;
    let referent = professional(
        &app.db.admin,
        "Rémi Référent",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await;
    let mandate = at_the_counter(&app, &client, &who, &["logement", "argent"], "test").await;
    // Another aidant of the structure (a code works once) makes someone else's mandate.
    let colleague = professional(
        &app.db.admin,
        "Bob Aidant",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let colleague_client = browser(&app.address);
    assert_eq!(
        log_in(&colleague_client, &app, &colleague, -1)
            .await
            .status(),
        303
    );
    let theirs = at_the_counter(
        &app,
        &colleague_client,
        &colleague,
        &["justice"],
        "avec_nom_dusage",
    )
    .await;
    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let (_, html) = page(&person, &app.url("/mes-mandats")).await;
    let page_url = format!("/mes-mandats/33/{mandate}/revocation");
    assert!(
        html.contains(&format!("{page_url}?demarche=logement")),
        "{html}"
    );
    assert!(html.contains("Arrêter tout le mandat"));

    // Someone else's mandate: 404 both ways, and it stays live.
    let foreign = format!("/mes-mandats/33/{theirs}/revocation");
    let (status, _) = page(&person, &app.url(&foreign)).await;
    assert_eq!(status, 404);
    let resp = post_form(&person, &app, "/mes-mandats", &foreign, &[]).await;
    assert_eq!(resp.status(), 404);
    let live = |m: MandateId| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT category FROM dep_33.live_authorisations WHERE mandate_id = $1 ORDER BY category",
            )
            .bind(m)
            .fetch_all(&admin)
            .await
            .expect("démarches")
        }
    };
    assert_eq!(live(theirs).await, ["justice"]);

    // One démarche: the page says what stops, then it is done.
    let (status, html) = page(&person, &app.url(&format!("{page_url}?demarche=logement"))).await;
    assert_eq!(status, 200);
    assert!(html.contains("Oui, arrêter cette démarche") && html.contains("Logement"));
    let resp = post_form(
        &person,
        &app,
        &page_url,
        &page_url,
        &[("demarche", "logement")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/mes-mandats?message=revoque");
    assert_eq!(live(mandate).await, ["argent"]);
    let (revoked_by, attestation): (Option<Uuid>, Option<Uuid>) = sqlx::query_as(
        "SELECT revoked_by, revocation_attestation_id FROM dep_33.authorisations
         WHERE mandate_id = $1 AND category = 'logement'",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("démarche");
    assert_eq!(revoked_by, None, "aucun aidant n'a révoqué");
    assert!(attestation.is_some(), "attestation de révocation");
    let journaled: Vec<(Option<Uuid>, String)> = sqlx::query_as(
        "SELECT professional_id, details FROM dep_33.journal
         WHERE kind = 'authorisation_revoked' AND mandate_id = $1",
    )
    .bind(mandate)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0].0, None);
    assert!(
        journaled[0].1.contains("\"by\": \"usager\"")
            || journaled[0].1.contains("\"by\":\"usager\""),
        "{}",
        journaled[0].1
    );
    let mail = test_support::maildev::wait_for_mail_to(
        &referent.email,
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("la référente est prévenue");
    assert_eq!(
        mail["subject"],
        "Aidants Connect : une personne a arrêté un mandat de France Services Bastide"
    );
    assert!(
        mail["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Logement")
    );

    // The whole mandate: it ends.
    let resp = post_form(&person, &app, "/mes-mandats", &page_url, &[]).await;
    assert_eq!(resp.status(), 303);
    assert!(live(mandate).await.is_empty());
    let ended: Option<String> =
        sqlx::query_scalar("SELECT ended_reason FROM dep_33.mandates WHERE id = $1")
            .bind(mandate)
            .fetch_one(&app.db.admin)
            .await
            .expect("mandat");
    assert_eq!(ended.as_deref(), Some("revoked"));
    // Nothing left to stop: said so, nothing written.
    let resp = post_form(&person, &app, "/mes-mandats", &page_url, &[]).await;
    assert_eq!(location(&resp), "/mes-mandats?message=rien");
    assert_eq!(live(theirs).await, ["justice"]);
}

/// A FranceConnect return works only in the browser that started the login: a return URL
/// carried to another browser (login CSRF) opens nothing, and the first browser still can.
#[tokio::test]
async fn a_franceconnect_return_is_bound_to_the_browser_that_started_it() {
    let app = spawn_app(&["33"]).await;
    let started = browser(&app.address);
    let resp = started.get(&app.url("/mes-mandats/connexion")).await;
    assert_eq!(resp.status(), 303);
    let callback = through_franceconnect(&started, &app, &location(&resp), "test").await;
    let elsewhere = browser(&app.address);
    let resp = elsewhere.get(&callback).await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("Connexion non reconnue")
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.usager_sessions")
        .fetch_one(&app.db.admin)
        .await
        .expect("sessions");
    assert_eq!(sessions, 0);
    let resp = started.get(&callback).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert!(location(&resp).contains("/session/end"));
}

async fn choice(app: &TestApp, person: &Browser, receipts: &str, phone: &str) -> reqwest::Response {
    post_form(
        person,
        app,
        "/mes-mandats",
        "/mes-mandats/preferences",
        &[
            ("receipts", receipts),
            ("email", ""),
            ("phone", phone),
            ("address", ""),
        ],
    )
    .await
}

/// The person chooses how receipts reach them and gives their own contact: a mistake is said
/// in French and records nothing; SMS to their own mobile then carries the next receipt, in
/// place of FranceConnect's e-mail; « none » sends nothing more.
#[tokio::test]
async fn a_person_chooses_how_receipts_reach_them() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant_of(&app, "33", "France Services Bastide").await;
    let mandate = at_the_counter(&app, &client, &who, &["logement", "argent"], "test").await;
    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let recorded = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT receipts, own_phone FROM dep_33.usagers",
        )
        .fetch_one(&app.db.admin)
        .await
        .expect("usager")
    };
    let receipts = || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT channel, recipient FROM dep_33.outbox WHERE template = 'mandate_revoked'
             ORDER BY created_at",
        )
        .fetch_all(&app.db.admin)
        .await
        .expect("outbox")
    };

    // A landline: refused in French, nothing recorded.
    let resp = choice(&app, &person, "sms", "05 56 00 00 00").await;
    assert_eq!(resp.status(), 422);
    let html = resp.text().await.unwrap_or_default();
    assert!(
        html.contains("pas valide : saisissez un numéro de portable"),
        "{html}"
    );
    assert_eq!(recorded().await, ("auto".to_owned(), None));

    // By SMS to their own mobile: recorded, and the next receipt goes there.
    let resp = choice(&app, &person, "sms", "06 11 22 33 44").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/mes-mandats?message=preferences");
    assert_eq!(
        recorded().await,
        ("sms".to_owned(), Some("+33611223344".to_owned()))
    );
    let stop = format!("/mes-mandats/33/{mandate}/revocation");
    let resp = post_form(&person, &app, &stop, &stop, &[("demarche", "logement")]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        receipts().await,
        [("sms".to_owned(), "+33611223344".to_owned())]
    );

    // None: the whole mandate stops, and no receipt is queued.
    assert_eq!(choice(&app, &person, "none", "").await.status(), 303);
    let resp = post_form(&person, &app, &stop, &stop, &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(receipts().await.len(), 1);
    let (_, html) = page(&person, &app.url("/mes-mandats")).await;
    assert!(html.contains("value=\"none\" checked"), "{html}");
}

/// The explanation in the person's language: at the counter the aidant shows it in Turkish on
/// the recap and plays it (espeak-ng, a real WAV with sound), the mandate records the language;
/// in their space the person reads it in Romanian or Arabic (right to left) and listens to it;
/// someone else's mandate has no explanation for them (404).
#[tokio::test]
async fn the_explanation_is_read_and_heard_in_the_persons_language() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant_of(&app, "33", "France Services Bastide").await;
    let fields = [("categories", "logement"), ("duree", "365")];
    let resp = post_form(
        &client,
        &app,
        "/mandats/nouveau",
        "/mandats/nouveau",
        &fields,
    )
    .await;
    assert_eq!(resp.status(), 303);
    let recap = identify(&client, &app, &location(&resp), "test").await;
    let (status, html) = page(&client, &app.url(&format!("{recap}?langue=tr"))).await;
    assert_eq!(status, 200);
    assert!(html.contains("lang=\"tr\""), "{html}");
    assert!(
        html.contains("Vekaletiniz, basitçe açıklanmış hali"),
        "{html}"
    );
    assert!(html.contains("name=\"langue\" value=\"tr\""), "{html}");
    let audio = format!("{recap}/explication.wav?langue=tr");
    assert!(html.contains(&audio), "{html}");
    let resp = client.get(&app.url(&audio)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let wav = resp.bytes().await.expect("son");
    assert!(audible(&wav), "silencieux ({} octets)", wav.len());
    let code = who.code(0);
    let resp = post_form(
        &client,
        &app,
        &recap,
        &recap,
        &[("code", &code), ("declaration", "oui"), ("langue", "tr")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let mandate: MandateId = location(&resp)
        .trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("mandat");
    let language: String = sqlx::query_scalar("SELECT language FROM dep_33.mandates WHERE id = $1")
        .bind(mandate)
        .fetch_one(&app.db.admin)
        .await
        .expect("langue");
    assert_eq!(language, "tr");
    // The attestation carries the explanation in Turkish beside the French terms: a real PDF
    // reader (poppler's pdftotext) finds both.
    let (_, html) = page(&client, &app.url(&format!("/mandats/{mandate}"))).await;
    let from = html.find("href=\"/documents/").expect("lien d'attestation") + 6;
    let link = html[from..]
        .split('"')
        .next()
        .expect("lien")
        .replace("&#38;", "&");
    let resp = client.get(&app.url(&link)).await;
    assert_eq!(resp.status(), 200, "{link}");
    let pdf = resp.bytes().await.expect("pdf");
    let path = std::env::temp_dir().join(format!("attestation-{mandate}.pdf"));
    std::fs::write(&path, &pdf).expect("écriture");
    let out = std::process::Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils, installé par infra/run)");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Mandat de représentation"), "{text}");
    assert!(
        text.contains("Explication du mandat donnée à la personne (Turc)"),
        "{text}"
    );
    assert!(
        text.contains("Vekaletiniz, basitçe açıklanmış hali"),
        "{text}"
    );
    assert!(text.contains("France Services Bastide"), "{text}");

    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let (_, html) = page(&person, &app.url("/mes-mandats")).await;
    let explanation = format!("/mes-mandats/33/{mandate}/explication");
    assert!(html.contains(&explanation), "{html}");
    let (status, html) = page(&person, &app.url(&format!("{explanation}?langue=ro"))).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Mandatul dumneavoastră, explicat simplu"),
        "{html}"
    );
    assert!(html.contains("France Services Bastide"));
    let resp = person
        .get(&app.url(&format!("{explanation}.wav?langue=ar")))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(audible(&resp.bytes().await.expect("son")));
    // Someone else's mandate: nothing to read or hear.
    let stranger = browser(&app.address);
    sign_in(&app, &stranger, "avec_nom_dusage").await;
    let (status, _) = page(&stranger, &app.url(&explanation)).await;
    assert_eq!(status, 404);
    let resp = stranger.get(&app.url(&format!("{explanation}.wav"))).await;
    assert_eq!(resp.status(), 404);

    // The Arabic page, right to left, on a phone: axe finds nothing, nothing overflows.
    let arabic = app.url(&format!("{explanation}?langue=ar"));
    let (_, html) = page(&person, &arabic).await;
    assert!(html.contains("lang=\"ar\" dir=\"rtl\""), "{html}");
    common::pass_axe_on_a_phone(&app, &person, &[arabic]).await;
}

/// A person who moves from the Gironde to the Hérault transfers their mandate: the new
/// structure's aidant ticks "transfer", the person identifies with FranceConnect and chooses on
/// the recap which mandate the new one replaces; the old one ends, in its own territory, at the
/// instant the new one starts; both territories journal it; a mandate the person did not choose,
/// and someone else's mandate slipped into the form, stay live; a transfer a failure left
/// pending is completed by the job.
#[tokio::test]
async fn a_mandate_is_transferred_across_departements_only_as_the_person_chooses() {
    use foundation::jobs::run_due;
    let app = spawn_app(&["33", "34"]).await;
    let (bordeaux, begles, bordeaux_client) = aidant_of(&app, "33", "CCAS de Bègles").await;
    let begles_referent = professional(
        &app.db.admin,
        "Rita Référente",
        &[(Role::Referent, begles.domain(), Some("33"))],
    )
    .await;
    let (talence, _, talence_client) = aidant_of(&app, "33", "Mairie de Talence").await;
    let (pessac, _, pessac_client) = aidant_of(&app, "33", "Mairie de Pessac").await;
    let (sete, _, sete_client) = aidant_of(&app, "34", "CCAS de Sète").await;
    let old = at_the_counter(
        &app,
        &bordeaux_client,
        &bordeaux,
        &["logement", "social"],
        "test",
    )
    .await;
    // A mandate with another structure the person will not choose to end, and someone else's.
    let kept = at_the_counter(&app, &talence_client, &talence, &["justice"], "test").await;
    let other_person = at_the_counter(
        &app,
        &pessac_client,
        &pessac,
        &["logement"],
        "avec_nom_dusage",
    )
    .await;

    // In Sète: a new mandate that may take over the person's others.
    let fields = [
        ("categories", "logement"),
        ("categories", "social"),
        ("duree", "365"),
        ("transfert", "oui"),
    ];
    let resp = post_form(
        &sete_client,
        &app,
        "/mandats/nouveau",
        "/mandats/nouveau",
        &fields,
    )
    .await;
    assert_eq!(resp.status(), 303);
    let recap = identify(&sete_client, &app, &location(&resp), "test").await;
    let (_, html) = page(&sete_client, &app.url(&recap)).await;
    assert!(html.contains(&format!("value=\"33/{old}\"")), "{html}");
    assert!(
        html.contains("CCAS de Bègles (Logement, Social - Santé)"),
        "{html}"
    );
    assert!(html.contains(&format!("value=\"33/{kept}\"")), "{html}");
    assert!(
        !html.contains(&other_person.to_string()),
        "le mandat d'une autre personne est proposé"
    );
    let code = sete.code(0);
    let old_key = format!("33/{old}");
    let forged = format!("33/{other_person}");
    let resp = post_form(
        &sete_client,
        &app,
        &recap,
        &recap,
        &[
            ("code", &code),
            ("declaration", "oui"),
            ("transferer", &old_key),
            ("transferer", &forged),
        ],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let new: MandateId = location(&resp)
        .trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("mandat");

    // The old mandate ended, in the Gironde, when the new one started in the Hérault.
    let (reason, to_dep, to_mandate, ended_at): (
        Option<String>,
        Option<String>,
        Option<MandateId>,
        Option<time::OffsetDateTime>,
    ) = sqlx::query_as(
        "SELECT ended_reason, transferred_to_departement, transferred_to_mandate, ended_at
             FROM dep_33.mandates WHERE id = $1",
    )
    .bind(old)
    .fetch_one(&app.db.admin)
    .await
    .expect("ancien");
    assert_eq!(reason.as_deref(), Some("transferred"));
    assert_eq!(to_dep.as_deref(), Some("34"));
    assert_eq!(to_mandate, Some(new));
    let started: time::OffsetDateTime =
        sqlx::query_scalar("SELECT created_at FROM dep_34.mandates WHERE id = $1")
            .bind(new)
            .fetch_one(&app.db.admin)
            .await
            .expect("nouveau");
    assert_eq!(ended_at, Some(started));
    let live = |dep: &'static str, m: MandateId| {
        let db = app.db.admin.clone();
        async move {
            let sql = match dep {
                "33" => "SELECT count(*) FROM dep_33.live_authorisations WHERE mandate_id = $1",
                _ => "SELECT count(*) FROM dep_34.live_authorisations WHERE mandate_id = $1",
            };
            sqlx::query_scalar::<_, i64>(sql)
                .bind(m)
                .fetch_one(&db)
                .await
                .expect("en cours")
        }
    };
    assert_eq!(live("33", old).await, 0);
    assert_eq!(live("34", new).await, 2);
    assert_eq!(live("33", kept).await, 1, "le mandat non choisi continue");
    assert_eq!(
        live("33", other_person).await,
        1,
        "le mandat d'autrui continue"
    );
    let out: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_transferred_out' AND mandate_id = $1",
    )
    .bind(old)
    .fetch_one(&app.db.admin)
    .await
    .expect("journal 33");
    let into: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_34.journal WHERE kind = 'mandate_transferred_in' AND mandate_id = $1",
    )
    .bind(new)
    .fetch_one(&app.db.admin)
    .await
    .expect("journal 34");
    assert_eq!((out, into), (1, 1));
    // Only what the person was offered and chose is recorded as taken over.
    let recorded: Vec<MandateId> = sqlx::query_scalar(
        "SELECT from_mandate FROM dep_34.mandate_transfers WHERE mandate_id = $1",
    )
    .bind(new)
    .fetch_all(&app.db.admin)
    .await
    .expect("transferts");
    assert_eq!(recorded, [old]);

    // The old structure's référent is told, by e-mail.
    let mail = test_support::maildev::wait_for_mail_to(
        &begles_referent.email,
        std::time::Duration::from_secs(20),
    )
    .await
    .expect("courriel au référent");
    assert_eq!(
        mail["subject"],
        "Aidants Connect : un mandat de CCAS de Bègles a été transféré à une autre structure"
    );
    assert!(
        mail["text"]
            .as_str()
            .is_some_and(|t| t.contains("Logement") && t.contains(&old.to_string())),
        "{mail}"
    );

    // In their space, the person sees it as transferred.
    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let (_, html) = page(&person, &app.url("/mes-mandats")).await;
    assert!(html.contains("Transféré à une autre structure"), "{html}");

    // A transfer left pending (the process stopped between the two territories) is completed
    // by the job, once.
    // Someone else's mandate in a pending record (a forged row) is never ended: the old
    // territory checks it is the same FranceConnect subject.
    for pending in [kept, other_person] {
        sqlx::query(
            "INSERT INTO dep_34.mandate_transfers (mandate_id, from_departement, from_mandate, requested_at)
             VALUES ($1, '33', $2, now() - interval '1 minute')",
        )
        .bind(new)
        .bind(pending)
        .execute(&app.db.admin)
        .await
        .expect("en attente");
    }
    sqlx::query("UPDATE platform.job_runs SET last_started_at = now() - interval '2 hours' WHERE name = 'mandate_transfers'")
        .execute(&app.db.admin)
        .await
        .expect("période");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let ran = run_due(&platform, &[mandate_service::transfers::job()]).await;
    assert_eq!(ran, vec![("mandate_transfers", Ok(2))]);
    assert_eq!(live("33", kept).await, 0);
    assert_eq!(
        live("33", other_person).await,
        1,
        "le mandat d'autrui continue"
    );
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM dep_34.mandate_transfers WHERE from_mandate = $1")
            .bind(other_person)
            .fetch_one(&app.db.admin)
            .await
            .expect("issue");
    assert_eq!(outcome.as_deref(), Some("already_ended"));
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_34.mandate_transfers WHERE completed_at IS NULL",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("en attente");
    assert_eq!(pending, 0);
}

/// The person's journey in Chromium on a phone (360 px), with the keyboard alone: FranceConnect
/// (the stand-in, typed), their mandates from two départements with a use, one démarche
/// stopped, a mandate explained in Arabic; axe-core finds nothing and no page scrolls sideways.
#[tokio::test]
async fn the_persons_journey_works_on_a_phone_with_the_keyboard_alone() {
    let app = spawn_app(&["33", "34"]).await;
    let (gironde, _, gironde_client) = aidant_of(&app, "33", "France Services Bastide").await;
    let (herault, _, herault_client) = aidant_of(&app, "34", "CCAS de Sète").await;
    let housing = at_the_counter(
        &app,
        &gironde_client,
        &gironde,
        &["logement", "social"],
        "test",
    )
    .await;
    at_the_counter(&app, &herault_client, &herault, &["justice"], "test").await;
    common::journal_a_use(&app, "33", housing, "logement").await;

    let result = test_support::browser::run(
        "usager.mjs",
        &serde_json::json!({ "base": app.address, "fc_login": "test", "demarche": "logement" }),
    )
    .await;
    let steps = result["steps"].as_array().expect("étapes");
    assert_eq!(
        steps,
        &["franceconnect", "space", "stopped", "explained"]
            .map(serde_json::Value::from)
            .to_vec(),
        "{result}"
    );
    let space = result["texts"]["space"].as_str().expect("espace");
    for shown in [
        "France Services Bastide",
        "CCAS de Sète",
        "Logement",
        "Justice",
        "service en ligne",
    ] {
        assert!(space.contains(shown), "{shown} absent : {space}");
    }
    let after = result["texts"]["after"].as_str().expect("après");
    assert!(after.contains("Logement (révoquée)"), "{after}");
    let explained = result["texts"]["explanation"]
        .as_str()
        .expect("explication");
    assert!(explained.contains("وكالتك، بشرح بسيط"), "{explained}");
    let live: Vec<String> =
        sqlx::query_scalar("SELECT category FROM dep_33.live_authorisations WHERE mandate_id = $1")
            .bind(housing)
            .fetch_all(&app.db.admin)
            .await
            .expect("démarches");
    assert_eq!(live, ["social"]);
    let pages = result["pages"].as_array().expect("pages");
    assert!(pages.len() >= 5, "{result}");
    for page in pages {
        assert_eq!(page["violations"], serde_json::json!([]), "{page}");
        assert_eq!(page["overflow"], false, "la page déborde à 360 px : {page}");
    }
}
