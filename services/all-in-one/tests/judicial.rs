//! Judicial protection measures (issue 18 §1–3): a guardian service's delegate records a
//! court's measure, the protected person identifies with FranceConnect (the stand-in), and the
//! mandate exists for the decision's period and démarches only, marked judicial in the list and
//! journaled. A structure that is not a guardian service cannot; a measure without a reference
//! or ending before it starts is refused in French and writes nothing. The service imports its
//! measures from a CSV (`judicial_import` below: report, idempotent re-import, Latin-1 and
//! malformed files refused whole, use through the identity provider within the decision's
//! démarches), hands caseloads over, and is alerted before measures end.

mod common;
#[path = "judicial/import.rs"]
mod judicial_import;

use common::fc::identify;
use common::identity::*;
use common::{TestApp, spawn_app};
use foundation::ids::{MandateId, StructureId};
use policies::Role;

fn location(resp: &reqwest::Response) -> String {
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

async fn delegate(app: &TestApp, guardian: bool) -> (TestProfessional, StructureId, Browser) {
    let structure = structure_domain(app, "33").await;
    sqlx::query(
        "UPDATE dep_33.structures SET name = 'UDAF de la Gironde', guardian_service = $2 WHERE id = $1",
    )
    .bind(structure)
    .bind(guardian)
    .execute(&app.db.admin)
    .await
    .expect("service");
    let who = professional(
        &app.db.admin,
        "Délégué Mandataire",
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &who, -1).await.status(), 303);
    (who, structure, client)
}

/// Posts the measure form (`/mesures/nouvelle`) with its token.
async fn post_measure(
    client: &Browser,
    app: &TestApp,
    fields: Vec<(&'static str, String)>,
) -> reqwest::Response {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_form(
        client,
        app,
        "/mesures/nouvelle",
        "/mesures/nouvelle",
        &fields,
    )
    .await
}

fn date_in(days: i64) -> String {
    (foundation::paris::today() + time::Duration::days(days)).to_string()
}

#[tokio::test]
async fn a_guardian_service_records_a_measure_for_its_period_and_demarches_only() {
    let app = spawn_app(&["33"]).await;
    let (who, _, client) = delegate(&app, true).await;
    let decided = date_in(-30);
    let ends = date_in(5 * 365);
    let measure = |reference: &'static str, end: String| {
        vec![
            ("mesure", "tutelle".to_owned()),
            ("tribunal", "Tribunal judiciaire de Bordeaux".to_owned()),
            ("decision_reference", reference.to_owned()),
            ("decision_date", decided.clone()),
            ("debut", decided.clone()),
            ("fin", end),
            ("categories", "argent".to_owned()),
            ("categories", "logement".to_owned()),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| post_measure(&client, &app, fields);

    // Bad input: said in French, nothing written.
    let resp = post(measure("", ends.clone())).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("Indiquez la référence de la décision")
    );
    let resp = post(measure("RG 26/01234", date_in(-60))).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("La fin de la mesure doit venir après son début")
    );
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandate_drafts")
        .fetch_one(&app.db.admin)
        .await
        .expect("brouillons");
    assert_eq!(drafts, 0);

    // The measure, then the person through FranceConnect, then the recap.
    let resp = post(measure("RG 26/01234", ends.clone())).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let recap = identify(&client, &app, &location(&resp), "test").await;
    let (_, html) = page(&client, &app.url(&recap)).await;
    assert!(html.contains("Mesure : Tutelle"), "{html}");
    assert!(html.contains("référence RG 26/01234"), "{html}");
    let code = who.code_now(0).await;
    let resp = post_form(
        &client,
        &app,
        &recap,
        &recap,
        &[("code", &code), ("declaration", "oui")],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let mandate: MandateId = location(&resp)
        .trim_start_matches("/mandats/")
        .trim_end_matches("?message=cree")
        .parse()
        .expect("mandat");

    // For the decision's period (not a year) and its démarches only.
    let (kind, identified_by, end): (String, String, String) = sqlx::query_as(
        "SELECT kind, identified_by, ends::text FROM dep_33.judicial_measures WHERE mandate_id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("mesure");
    assert_eq!(
        (kind.as_str(), identified_by.as_str(), end.as_str()),
        ("tutelle", "franceconnect", ends.as_str())
    );
    let expires: String = sqlx::query_scalar(
        "SELECT (expires_at AT TIME ZONE 'Europe/Paris')::date::text FROM dep_33.mandates WHERE id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("fin");
    assert_eq!(expires, ends);
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT category FROM dep_33.live_authorisations WHERE mandate_id = $1 ORDER BY category",
    )
    .bind(mandate)
    .fetch_all(&app.db.admin)
    .await
    .expect("démarches");
    assert_eq!(live, ["argent", "logement"]);
    let journaled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'judicial_measure_recorded' AND mandate_id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(journaled, 1);
    let (_, html) = page(&client, &app.url("/mandats")).await;
    assert!(html.contains("Mesure judiciaire"), "{html}");
    assert!(html.contains("href=\"/mesures\""), "{html}");

    // The form passes axe.
    for (url, violations) in test_support::browser::axe_violations_with_cookies(
        &[app.url("/mesures/nouvelle")],
        &client.cookies(),
    )
    .await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}

#[tokio::test]
async fn a_structure_that_is_not_a_guardian_service_records_no_measure() {
    let app = spawn_app(&["33"]).await;
    let (_, _, client) = delegate(&app, false).await;
    let (status, html) = page(&client, &app.url("/mesures/nouvelle")).await;
    assert_eq!(status, 403);
    assert!(
        html.contains("n&#39;enregistre pas de mesures de protection")
            || html.contains("n'enregistre pas de mesures de protection"),
        "{html}"
    );
    let resp = post_form(
        &client,
        &app,
        "/mandats/nouveau",
        "/mesures/nouvelle",
        &[
            ("mesure", "tutelle"),
            ("tribunal", "TJ"),
            ("decision_reference", "RG 1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let drafts: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.mandate_drafts")
        .fetch_one(&app.db.admin)
        .await
        .expect("brouillons");
    assert_eq!(drafts, 0);
}

/// The guardian service's journey in Chromium, keyboard only, axe on every page: import a CSV
/// and read the report, hand a measure over, use a judicial mandate through the identity
/// provider for a démarche the decision allows, and find nobody for one it does not.
#[tokio::test]
async fn a_guardian_services_journey_in_chromium_with_the_keyboard_alone() {
    use judicial_import::{HEADER, line, measure_of, public_service, service};
    let app = spawn_app(&["33"]).await;
    let s = service(&app).await;
    let rp = public_service(&app).await;
    let (a, b) = (&s.first.email, &s.second.email);
    let csv = [
        HEADER.to_owned(),
        line(
            "G-1",
            "Lefèvre",
            "Marthe",
            "Curatelle renforcée",
            900,
            "argent|logement",
            a,
        ),
        line("G-2", "Garnier", "Paul", "tutelle", 300, "social", a),
        line("G-3", "Roux", "Emma", "tutelle", 500, "social", b),
    ]
    .join("\n");
    let path = std::env::temp_dir().join(format!("mesures-{}.csv", s.structure));
    std::fs::write(&path, csv).expect("fichier");
    let result = test_support::browser::run(
        "guardian.mjs",
        &serde_json::json!({
            "base": app.address,
            "rp": rp.origin,
            "email": a,
            "code": s.first.code_now(0).await,
            "maildev": test_support::stack_var("AC_MAILDEV_URL"),
            "known_links": login_links_sent(a).await,
            "csv": path.to_string_lossy(),
            "me": s.first.id.to_string(),
            "other": s.second.id.to_string(),
            "person": "Lefèvre Marthe",
            "allowed": "Logement",
            "category": "logement",
            "refused": "Justice",
        }),
    )
    .await;
    std::fs::remove_file(&path).ok();
    let steps = result["steps"].to_string();
    let report = result["report"].as_str().unwrap_or_default();
    assert!(
        report.contains("Import terminé : 3 importées"),
        "{report} {steps}"
    );
    assert!(
        result["handed_over"]
            .as_str()
            .unwrap_or_default()
            .contains("1 mesure a été confiée à Bruno Délégué"),
        "{steps}"
    );
    let g2 = measure_of(&app, s.structure, "G-2").await;
    let holder: Option<foundation::ids::ProfessionalId> = sqlx::query_scalar(
        "SELECT delegate_id FROM dep_33.judicial_measures WHERE mandate_id = $1",
    )
    .bind(g2)
    .fetch_one(&app.db.admin)
    .await
    .expect("délégué");
    assert_eq!(holder, Some(s.second.id), "{steps}");
    assert_eq!(result["identity"]["family_name"], "Lefèvre", "{steps}");
    assert_eq!(result["identity"]["rep_scope"], "Logement", "{steps}");
    let refused = result["refused"].as_str().unwrap_or_default();
    assert!(
        refused.contains("Aucune personne n'a de mandat en cours"),
        "{refused} {steps}"
    );
    let pages = result["pages"].as_array().expect("pages");
    assert!(pages.len() >= 8, "{steps}");
    for p in pages {
        assert_eq!(p["violations"], serde_json::json!([]), "{}", p["url"]);
    }
}

/// A person who cannot use FranceConnect: the delegate types the decision's civil status and
/// their TOTP code; the measure is recorded at once, marked as identified by civil status. A
/// wrong code or a missing name writes nothing.
#[tokio::test]
async fn a_measure_is_recorded_with_the_decisions_civil_status_when_franceconnect_cannot_be_used() {
    let app = spawn_app(&["33"]).await;
    let (who, structure, client) = delegate(&app, true).await;
    let decided = date_in(-30);
    let ends = date_in(3 * 365);
    let fields = |family: &'static str, code: String| {
        vec![
            ("identification", "etat_civil".to_owned()),
            ("mesure", "curatelle_renforcee".to_owned()),
            ("tribunal", "Tribunal judiciaire de Libourne".to_owned()),
            ("decision_reference", "RG 26/00777".to_owned()),
            ("decision_date", decided.clone()),
            ("debut", decided.clone()),
            ("fin", ends.clone()),
            ("categories", "argent".to_owned()),
            ("numero_dossier", "EC-1".to_owned()),
            ("nom_naissance", family.to_owned()),
            ("prenoms", "Odette Marie".to_owned()),
            ("sexe", "F".to_owned()),
            ("date_naissance", "1938-02-11".to_owned()),
            ("code", code),
        ]
    };
    let post = |fields: Vec<(&'static str, String)>| post_measure(&client, &app, fields);
    let measures = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dep_33.judicial_measures")
            .fetch_one(&app.db.admin)
            .await
            .expect("mesures")
    };
    let resp = post(fields("", who.code_now(0).await)).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("Le nom de naissance et les prénoms")
    );
    let resp = post(fields("Vidal", "000000".into())).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.expect("page").contains("Code incorrect"));
    assert_eq!(measures().await, 0);
    let resp = post(fields("Vidal", who.code_now(0).await)).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let (identified, usager_identified, delegate, case): (
        String,
        String,
        Option<foundation::ids::ProfessionalId>,
        String,
    ) = sqlx::query_as(
        "SELECT j.identified_by, u.identified_by, j.delegate_id, j.case_number
             FROM dep_33.judicial_measures j JOIN dep_33.mandates m ON m.id = j.mandate_id
             JOIN dep_33.usagers u ON u.id = m.usager_id WHERE j.structure_id = $1",
    )
    .bind(structure)
    .fetch_one(&app.db.admin)
    .await
    .expect("mesure");
    assert_eq!(
        (
            identified.as_str(),
            usager_identified.as_str(),
            delegate,
            case.as_str()
        ),
        ("civil_status", "civil_status", Some(who.id), "EC-1")
    );
    let live: Vec<String> =
        sqlx::query_scalar("SELECT category FROM dep_33.live_authorisations ORDER BY category")
            .fetch_all(&app.db.admin)
            .await
            .expect("démarches");
    assert_eq!(live, ["argent"]);
}
