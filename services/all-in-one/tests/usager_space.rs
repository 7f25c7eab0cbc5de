//! The usager's own space (`/mes-mandats`): a person signs in with FranceConnect (the stand-in)
//! and sees every mandate they hold — here made at the counter, through FranceConnect, by
//! aidants of two départements — with the uses made of each, and nobody else's. The index that
//! finds them holds no identity; a FranceConnect return works once; logging out ends the
//! session.

mod common;

use common::fc::{identify, through_franceconnect};
use common::identity::*;
use common::{TestApp, spawn_app};
use foundation::ids::{MandateId, StructureId};
use foundation::journal::{Event, NewEntry};
use policies::Role;

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
    category: &str,
    login: &str,
) -> MandateId {
    let resp = post_form(
        client,
        app,
        "/mandats/nouveau",
        "/mandats/nouveau",
        &[("categories", category), ("duree", "365")],
    )
    .await;
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
    assert_eq!(location(&resp), "/mes-mandats");
    callback
}

#[tokio::test]
async fn a_person_sees_every_mandate_they_hold_and_nobody_elses() {
    let app = spawn_app(&["33", "34"]).await;
    let (gironde, _, gironde_client) = aidant_of(&app, "33", "France Services Bastide").await;
    let (herault, _, herault_client) = aidant_of(&app, "34", "CCAS de Sète").await;
    let (other, _, other_client) = aidant_of(&app, "33", "Mairie de Bègles").await;
    let housing = at_the_counter(&app, &gironde_client, &gironde, "logement", "test").await;
    at_the_counter(&app, &herault_client, &herault, "social", "test").await;
    // Someone else's mandate, in the same département as the first.
    at_the_counter(&app, &other_client, &other, "justice", "avec_nom_dusage").await;

    // A use of the Gironde mandate, as the identity provider journals it.
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    let mut tx = territory.begin().await.expect("tx");
    foundation::journal::append(
        &mut tx,
        NewEntry::new(Event::MandateUsed).mandate(housing).details(
            serde_json::json!({ "category": "logement", "client": "inconnu-du-registre" }),
        ),
    )
    .await
    .expect("usage");
    tx.commit().await.expect("commit");

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
    at_the_counter(&app, &client, &who, "logement", "test").await;
    let person = browser(&app.address);
    sign_in(&app, &person, "test").await;
    let url = app.url("/mes-mandats");
    for cookies in [Vec::new(), person.cookies()] {
        let cookies: Vec<_> = cookies
            .iter()
            .map(|(name, value)| serde_json::json!({ "name": name, "value": value, "url": app.address }))
            .collect();
        let result = test_support::browser::run(
            "axe.mjs",
            &serde_json::json!({
                "urls": [url],
                "cookies": cookies,
                "viewport": { "width": 360, "height": 740 },
            }),
        )
        .await;
        let page = &result["pages"][0];
        assert_eq!(page["final"], url.as_str(), "{page}");
        assert_eq!(page["violations"], serde_json::json!([]), "{page}");
        assert_eq!(page["overflow"], false, "la page déborde à 360 px : {page}");
    }
}
