//! Remote consent (issue 17 §2): the aidant prepares a mandate for a person who is not at the
//! counter; the person receives a link by SMS (read here from the local SMS gateway), identifies
//! with the FranceConnect stand-in on their own device, reads the recap (in the language the
//! aidant chose, also read aloud) and consents. Nothing exists before the consent; a link that
//! expired, was cancelled, replaced, already used or forwarded is refused in French; an identity
//! that does not match the person named is refused and changes nothing; a remote renewal
//! supersedes the mandate it renews.

mod common;

use common::fc::{identify, through_franceconnect};
use common::identity::*;
use common::{TestApp, audible, spawn_app};
use foundation::ids::{MandateId, StructureId};
use policies::Role;
use std::time::Duration;

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

/// A structure of the Gironde, one of its aidants, logged in.
async fn aidant(app: &TestApp) -> (TestProfessional, StructureId, Browser) {
    let structure = structure_domain(app, "33").await;
    sqlx::query("UPDATE dep_33.structures SET name = 'CCAS de Bègles' WHERE id = $1")
        .bind(structure)
        .execute(&app.db.admin)
        .await
        .expect("nom");
    let who = professional(
        &app.db.admin,
        "Camille Aidante",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &who, -1).await.status(), 303);
    (who, structure, client)
}

/// A mobile number of its own for each call (the SMS gateway is shared by every test).
fn mobile() -> (String, String) {
    let n = uuid::Uuid::new_v4().as_u128() % 100_000_000;
    (format!("06{n:08}"), format!("+336{n:08}"))
}

/// Prepares a remote consent for Angela Dubois (the stand-in's `test`), sent by SMS to
/// `phone`; returns the consent's page.
async fn prepare(
    app: &TestApp,
    client: &Browser,
    who: &TestProfessional,
    phone: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let code = who.code_now(0).await;
    let mut fields = vec![
        ("prenom", "Angela"),
        ("nom", "Dubois"),
        ("naissance", "1962-08-24"),
        ("categories", "logement"),
        ("categories", "social"),
        ("duree", "365"),
        ("canal", "sms"),
        ("telephone", phone),
        ("langue", "ar"),
        ("code", &code),
    ];
    for (k, v) in extra {
        fields.retain(|(key, _)| key != k);
        fields.push((k, v));
    }
    post_form(
        client,
        app,
        "/mandats/a-distance/nouveau",
        "/mandats/a-distance/nouveau",
        &fields,
    )
    .await
}

/// A Logement mandate of `days` days made at the counter for the stand-in's `test`.
async fn at_the_counter(
    app: &TestApp,
    client: &Browser,
    who: &TestProfessional,
    days: &str,
) -> MandateId {
    let resp = post_form(
        client,
        app,
        "/mandats/nouveau",
        "/mandats/nouveau",
        &[("categories", "logement"), ("duree", days)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let recap = identify(client, app, &location(&resp), "test").await;
    let code = who.code_now(0).await;
    let resp = post_form(
        client,
        app,
        &recap,
        &recap,
        &[("code", &code), ("declaration", "oui")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    location(&resp)
        .trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("mandat")
}

/// The `n`-th SMS to `e164` (1-based), and the consent link it carries (its path).
async fn link_in_sms(e164: &str, n: usize) -> String {
    let sms = test_support::sms_gateway::wait_for_sms_to(e164, n, Duration::from_secs(20)).await;
    assert!(sms.len() >= n, "SMS n° {n} non reçu : {sms:?}");
    let text = sms[n - 1]["text"].as_str().expect("texte").to_owned();
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/consentement/"))
        .unwrap_or_else(|| panic!("pas de lien : {text}"));
    let path = &url[url.find("/consentement/").expect("chemin")..];
    path.to_owned()
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.db.admin)
        .await
        .expect("compte")
}

/// The person starts FranceConnect from the link and comes back; returns the platform's
/// answer to FranceConnect's return (not followed) and that return's URL.
async fn franceconnect_from_link(
    app: &TestApp,
    person: &Browser,
    link: &str,
    login: &str,
) -> (reqwest::Response, String) {
    let resp = post_form(person, app, link, link, &[]).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let authorize = location(&resp);
    assert!(
        authorize.contains("consentement%2Ffranceconnect%2Fretour"),
        "{authorize}"
    );
    let callback = through_franceconnect(person, app, &authorize, login).await;
    assert!(
        callback.contains("/consentement/franceconnect/retour"),
        "{callback}"
    );
    (person.get(&callback).await, callback)
}

/// After a matching identity: out of FranceConnect and back to the recap; returns its path.
async fn back_to_recap(
    app: &TestApp,
    person: &Browser,
    answer: reqwest::Response,
    login: &str,
) -> String {
    assert_eq!(answer.status(), 303);
    let logout = location(&answer);
    assert!(logout.contains("/session/end"), "{logout}");
    let back = through_franceconnect(person, app, &logout, login).await;
    assert!(
        back.contains("/consentement/franceconnect/deconnexion"),
        "{back}"
    );
    let resp = person.get(&back).await;
    assert_eq!(resp.status(), 303);
    let recap = location(&resp);
    assert!(recap.starts_with("/consentement/33/dossier/"), "{recap}");
    recap
}

#[tokio::test]
async fn the_person_consents_on_their_own_phone_and_only_then_the_mandate_exists() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = aidant(&app).await;
    let (typed, e164) = mobile();

    let resp = prepare(&app, &client, &who, &typed, &[]).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let status_page = location(&resp);
    assert!(
        status_page.starts_with("/mandats/a-distance/"),
        "{status_page}"
    );
    let status_page = status_page.trim_end_matches("?message=envoye").to_owned();
    let link = link_in_sms(&e164, 1).await;
    assert!(link.starts_with("/consentement/33/"), "{link}");
    let (_, html) = page(&client, &app.url(&status_page)).await;
    assert!(html.contains("Lien envoyé"), "{html}");

    // Nothing is usable before consent.
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.mandates").await, 0);

    // Opening the link (twice) consumes nothing; the explanation is in Arabic, right to left.
    let person = browser(&app.address);
    for _ in 0..2 {
        let (status, html) = page(&person, &app.url(&link)).await;
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("CCAS de Bègles vous propose un mandat"),
            "{html}"
        );
        assert!(html.contains("lang=\"ar\" dir=\"rtl\""), "{html}");
        assert!(html.contains("وكالتك، بشرح بسيط"));
    }
    let (_, html) = page(&client, &app.url(&status_page)).await;
    assert!(html.contains("Lien ouvert"), "{html}");

    let (answer, callback) = franceconnect_from_link(&app, &person, &link, "test").await;
    let recap = back_to_recap(&app, &person, answer, "test").await;
    // FranceConnect's return works once.
    let resp = person.get(&callback).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.expect("page").contains("non reconnu"));

    // The link forwarded to another device is refused; so is the recap there.
    let stranger = browser(&app.address);
    let (status, html) = page(&stranger, &app.url(&link)).await;
    assert_eq!(status, 403);
    assert!(html.contains("ouvert sur un autre appareil"), "{html}");
    let (status, _) = page(&stranger, &app.url(&recap)).await;
    assert_eq!(status, 404);

    // The recap names the person FranceConnect vouched for, and reads the explanation aloud.
    let (status, html) = page(&person, &app.url(&recap)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Angela Claire Louise DUBOIS"), "{html}");
    assert!(html.contains("J'accepte le mandat"), "{html}");
    let resp = person
        .get(&app.url(&format!("{recap}/explication.wav")))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let wav = resp.bytes().await.expect("son");
    assert!(wav.starts_with(b"RIFF"), "pas un WAV");
    assert!(
        audible(&wav),
        "explication silencieuse ({} octets)",
        wav.len()
    );
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.mandates").await, 0);

    // Consent: the mandate exists, made by the aidant who prepared it, for the named person.
    let resp = post_form(&person, &app, &recap, &recap, &[("decision", "accepter")]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("Merci, votre mandat est créé")
    );
    let (mandate, created_by, aidant_structure): (MandateId, uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT id, created_by, structure_id FROM dep_33.mandates")
            .fetch_one(&app.db.admin)
            .await
            .expect("mandat");
    assert_eq!(created_by, who.id.as_uuid());
    assert_eq!(aidant_structure, structure.as_uuid());
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT category FROM dep_33.live_authorisations WHERE mandate_id = $1 ORDER BY category",
    )
    .bind(mandate)
    .fetch_all(&app.db.admin)
    .await
    .expect("démarches");
    assert_eq!(live, ["logement", "social"]);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM dep_33.journal ORDER BY id")
        .fetch_all(&app.db.admin)
        .await
        .expect("journal");
    assert!(
        kinds.iter().any(|k| k == "remote_consent_sent"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "mandate_created"), "{kinds:?}");
    // The receipt is queued like at the counter (FranceConnect gave an e-mail: it goes there).
    let receipts: Vec<(String, String)> = sqlx::query_as(
        "SELECT channel, recipient FROM dep_33.outbox WHERE template = 'mandate_created'",
    )
    .fetch_all(&app.db.admin)
    .await
    .expect("reçus");
    assert_eq!(
        receipts,
        [("email".to_owned(), "angela.dubois@example.test".to_owned())]
    );
    let (_, html) = page(&client, &app.url(&status_page)).await;
    assert!(html.contains("Consentement donné"), "{html}");
    assert!(html.contains(&format!("/mandats/{mandate}")));

    // The link has served: refused, and a second answer creates nothing more.
    let (status, html) = page(&person, &app.url(&link)).await;
    assert_eq!(status, 410);
    assert!(html.contains("Ce lien a déjà servi"), "{html}");
    let resp = person
        .post(&app.url(&recap), &[("decision", "accepter")])
        .await;
    assert!(resp.status().is_client_error());
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.mandates").await, 1);
}

#[tokio::test]
async fn a_wrong_identity_an_expired_cancelled_or_replaced_link_and_a_refusal_change_nothing() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant(&app).await;
    let (typed, e164) = mobile();

    // Bad input: nothing recorded, nothing sent.
    let resp = prepare(&app, &client, &who, &typed, &[("nom", "")]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("Indiquez le prénom et le nom")
    );
    let resp = prepare(&app, &client, &who, "05 56 00 00 00", &[]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("téléphone mobile n&#39;est pas valide")
    );
    let resp = prepare(&app, &client, &who, &typed, &[("naissance", "2999-01-01")]).await;
    assert_eq!(resp.status(), 422);
    let resp = prepare(&app, &client, &who, &typed, &[("code", "000000")]).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.remote_consents").await,
        0
    );

    // Each preparation takes a code of its own (a code serves once; the login took -1).
    let code = who.code_now(0).await;
    let resp = prepare(&app, &client, &who, &typed, &[("code", &code)]).await;
    assert_eq!(resp.status(), 303);
    let status_page = location(&resp)
        .trim_end_matches("?message=envoye")
        .to_owned();
    let first = link_in_sms(&e164, 1).await;

    // Someone else identifies (Pierre Mercier for Angela Dubois): refused, nothing kept.
    let person = browser(&app.address);
    let (answer, _) = franceconnect_from_link(&app, &person, &first, "avec_nom_dusage").await;
    assert_eq!(answer.status(), 403);
    assert!(
        answer
            .text()
            .await
            .expect("page")
            .contains("ne correspond pas à la personne attendue")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.mandates").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.mandate_drafts WHERE identity IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.usagers").await, 0);

    // Sent once more: the first link dies, the new one opens; a third sending is refused.
    let resend = format!("{status_page}/renvoi");
    let resp = post_form(&client, &app, &status_page, &resend, &[]).await;
    assert_eq!(resp.status(), 303);
    let second = link_in_sms(&e164, 2).await;
    assert_ne!(first, second);
    let (status, html) = page(&person, &app.url(&first)).await;
    assert_eq!(status, 404);
    assert!(html.contains("seul le plus récent fonctionne"), "{html}");
    let (status, _) = page(&person, &app.url(&second)).await;
    assert_eq!(status, 200);
    let resp = post_form(&client, &app, &status_page, &resend, &[]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("déjà été renvoyé une fois")
    );

    // Cancelled by the aidant: the link says so.
    let cancel = format!("{status_page}/annulation");
    let resp = post_form(&client, &app, &status_page, &cancel, &[]).await;
    assert_eq!(resp.status(), 303);
    let (status, html) = page(&person, &app.url(&second)).await;
    assert_eq!(status, 410);
    assert!(html.contains("Cette demande a été annulée"), "{html}");
    let resp = person.post(&app.url(&second), &[]).await;
    assert!(resp.status().is_client_error(), "{}", resp.status());

    // Expired after 24 hours (prepared by a colleague, with their own code).
    let structure = structure_domain(&app, "33").await;
    let colleague = professional(
        &app.db.admin,
        "Dominique Collègue",
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
    let code = colleague.code_now(0).await;
    let resp = prepare(
        &app,
        &colleague_client,
        &colleague,
        &typed,
        &[("code", &code)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let expired_page = location(&resp)
        .trim_end_matches("?message=envoye")
        .to_owned();
    let third = link_in_sms(&e164, 3).await;
    sqlx::query("UPDATE dep_33.remote_consents SET link_expires_at = now() - interval '1 second' WHERE link_expires_at > now()")
        .execute(&app.db.admin)
        .await
        .expect("expiration");
    let (status, html) = page(&person, &app.url(&third)).await;
    assert_eq!(status, 410);
    assert!(html.contains("Ce lien a expiré"), "{html}");
    let (_, html) = page(&colleague_client, &app.url(&expired_page)).await;
    assert!(html.contains("Lien expiré"), "{html}");

    // Refused by the person: journaled, no mandate.
    let code = who.code_now(1).await;
    let resp = prepare(&app, &client, &who, &typed, &[("code", &code)]).await;
    assert_eq!(resp.status(), 303);
    let fourth = link_in_sms(&e164, 4).await;
    let fresh = browser(&app.address);
    let (answer, _) = franceconnect_from_link(&app, &fresh, &fourth, "test").await;
    let recap = back_to_recap(&app, &fresh, answer, "test").await;
    let resp = post_form(&fresh, &app, &recap, &recap, &[("decision", "refuser")]).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("Vous avez refusé le mandat")
    );
    assert_eq!(count(&app, "SELECT count(*) FROM dep_33.mandates").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'remote_consent_refused'"
        )
        .await,
        1
    );
    let (status, _) = page(&fresh, &app.url(&fourth)).await;
    assert_eq!(status, 410);
    let outcomes: Vec<Option<String>> =
        sqlx::query_scalar("SELECT outcome FROM dep_33.remote_consents ORDER BY created_at")
            .fetch_all(&app.db.admin)
            .await
            .expect("états");
    assert_eq!(
        outcomes,
        [
            Some("cancelled".to_owned()),
            None,
            Some("refused".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_remote_renewal_supersedes_the_mandate_it_renews() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant(&app).await;
    // A mandate made at the counter for the stand-in's `test`.
    let old = at_the_counter(&app, &client, &who, "31").await;

    // The renewal form is prefilled with the mandate's terms and person.
    let form = format!("/mandats/a-distance/nouveau?renouvellement={old}");
    let (status, html) = page(&client, &app.url(&form)).await;
    assert_eq!(status, 200);
    assert!(html.contains("value=\"DUBOIS\""), "{html}");
    assert!(html.contains("value=\"1962-08-24\""), "{html}");
    assert!(html.contains("value=\"logement\" checked"), "{html}");
    let (typed, e164) = mobile();
    let code = who.code_now(1).await;
    let old_text = old.to_string();
    let resp = post_form(
        &client,
        &app,
        &form,
        "/mandats/a-distance/nouveau",
        &[
            ("renouvellement", &old_text),
            ("prenom", "Angela Claire Louise"),
            ("nom", "DUBOIS"),
            ("naissance", "1962-08-24"),
            ("categories", "logement"),
            ("duree", "365"),
            ("canal", "sms"),
            ("telephone", &typed),
            ("langue", "fr"),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let link = link_in_sms(&e164, 1).await;
    let person = browser(&app.address);
    let (answer, _) = franceconnect_from_link(&app, &person, &link, "test").await;
    let recap = back_to_recap(&app, &person, answer, "test").await;
    let resp = post_form(&person, &app, &recap, &recap, &[("decision", "accepter")]).await;
    assert_eq!(resp.status(), 200);

    let (renewal_of, usagers): (Option<MandateId>, i64) = sqlx::query_as(
        "SELECT m.renewal_of, (SELECT count(*) FROM dep_33.usagers)
         FROM dep_33.mandates m WHERE m.id <> $1",
    )
    .bind(old)
    .fetch_one(&app.db.admin)
    .await
    .expect("renouvellement");
    assert_eq!(renewal_of, Some(old));
    assert_eq!(usagers, 1, "la même personne");
    let old_live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.live_authorisations WHERE mandate_id = $1")
            .bind(old)
            .fetch_one(&app.db.admin)
            .await
            .expect("ancien");
    assert_eq!(old_live, 0, "l'ancien mandat est remplacé");
}

/// The person's pages at 360 px (the link's page and the recap, in Arabic right to left) and
/// the aidant's (the list, the form, one request) pass axe-core; nothing scrolls sideways on
/// the phone.
#[tokio::test]
async fn the_pages_pass_axe_and_the_persons_fit_a_phone() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant(&app).await;
    let (typed, e164) = mobile();
    let resp = prepare(&app, &client, &who, &typed, &[]).await;
    assert_eq!(resp.status(), 303);
    let status_page = location(&resp)
        .trim_end_matches("?message=envoye")
        .to_owned();
    let link = link_in_sms(&e164, 1).await;
    let person = browser(&app.address);
    let link_url = app.url(&link);
    let (status, _) = page(&person, &link_url).await;
    assert_eq!(status, 200);
    // The recap after FranceConnect, and the page of a link never opened.
    let (answer, _) = franceconnect_from_link(&app, &person, &link, "test").await;
    let recap = app.url(&back_to_recap(&app, &person, answer, "test").await);
    let fresh_link = {
        // Another request, its link never opened, for the unbound page.
        let code = who.code_now(1).await;
        let (typed2, e164_2) = mobile();
        let resp = prepare(
            &app,
            &client,
            &who,
            &typed2,
            &[("code", &code), ("langue", "fr")],
        )
        .await;
        assert_eq!(resp.status(), 303);
        app.url(&link_in_sms(&e164_2, 1).await)
    };
    common::pass_axe_on_a_phone(&app, &person, &[fresh_link, recap]).await;

    let aidant_pages = [
        app.url("/mandats/a-distance"),
        app.url("/mandats/a-distance/nouveau"),
        app.url(&status_page),
    ];
    for (url, violations) in
        test_support::browser::axe_violations_with_cookies(&aidant_pages, &client.cookies()).await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}

/// A remote transfer: the person, on their own device, sees their mandate with a structure of
/// another département and chooses that the new one replaces it; it ends there when the new one
/// starts.
#[tokio::test]
async fn a_remote_consent_transfers_the_mandate_the_person_chooses() {
    let app = spawn_app(&["33", "34"]).await;
    let (who, _, client) = aidant(&app).await;
    // A mandate made at the counter in the Hérault for the stand-in's `test`.
    let sete = structure_domain(&app, "34").await;
    let herault = professional(
        &app.db.admin,
        "Aidant Sète",
        &[(Role::Aidant, sete.domain(), Some("34"))],
    )
    .await;
    let herault_client = browser(&app.address);
    assert_eq!(
        log_in(&herault_client, &app, &herault, -1).await.status(),
        303
    );
    let old = at_the_counter(&app, &herault_client, &herault, "365").await;

    let (typed, e164) = mobile();
    let resp = prepare(&app, &client, &who, &typed, &[("transfert", "oui")]).await;
    assert_eq!(resp.status(), 303);
    let link = link_in_sms(&e164, 1).await;
    let person = browser(&app.address);
    let (answer, _) = franceconnect_from_link(&app, &person, &link, "test").await;
    let recap = back_to_recap(&app, &person, answer, "test").await;
    let (_, html) = page(&person, &app.url(&recap)).await;
    let key = format!("34/{old}");
    assert!(html.contains(&format!("value=\"{key}\"")), "{html}");
    let resp = post_form(
        &person,
        &app,
        &recap,
        &recap,
        &[("decision", "accepter"), ("transferer", &key)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let new: MandateId = sqlx::query_scalar("SELECT id FROM dep_33.mandates")
        .fetch_one(&app.db.admin)
        .await
        .expect("nouveau");
    let (reason, to): (Option<String>, Option<MandateId>) = sqlx::query_as(
        "SELECT ended_reason, transferred_to_mandate FROM dep_34.mandates WHERE id = $1",
    )
    .bind(old)
    .fetch_one(&app.db.admin)
    .await
    .expect("ancien");
    assert_eq!(reason.as_deref(), Some("transferred"));
    assert_eq!(to, Some(new));
}

/// The link by e-mail: it reaches the person's address (MailDev) and opens the same page.
#[tokio::test]
async fn the_link_goes_by_e_mail_when_the_aidant_chooses_it() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = aidant(&app).await;
    let address = format!("angela.{}@example.test", uuid::Uuid::new_v4().simple());
    let resp = prepare(
        &app,
        &client,
        &who,
        "",
        &[("canal", "email"), ("email", &address), ("telephone", "")],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let mail = test_support::maildev::wait_for_mail_to(&address, Duration::from_secs(20))
        .await
        .expect("courriel du lien");
    assert_eq!(
        mail["subject"],
        "Aidants Connect : CCAS de Bègles vous propose un mandat"
    );
    let text = mail["text"].as_str().expect("texte");
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/consentement/33/"))
        .unwrap_or_else(|| panic!("pas de lien : {text}"));
    let person = browser(&app.address);
    let path = &url[url.find("/consentement/").expect("chemin")..];
    let (status, html) = page(&person, &app.url(path)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("CCAS de Bègles vous propose un mandat"),
        "{html}"
    );
    // The aidant sees that the link was opened.
    let (_, html) = page(&client, &app.url("/mandats/a-distance")).await;
    assert!(html.contains("Lien ouvert"), "{html}");
}
