//! A guardian service's measures at scale: the CSV import (page and report, idempotent
//! re-import, updates, refusals, Latin-1 and malformed files refused whole), a judicial
//! mandate used through the identity provider within the decision's démarches only, the
//! hand-over of caseloads, and the alerts before a measure ends (clock given).

use foundation::ids::{MandateId, StructureId};
use foundation::tenancy::{DepartementCode, Territory};
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::Alg;
use mandate_service::judicial::alerts;
use policies::Role;
use serde_json::{Value, json};

use super::common::identity::*;
use super::common::idp::{Fixture, Rp, choose, register};
use super::common::{TestApp, spawn_app};

pub const HEADER: &str = "numero_dossier;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_lieu_naissance;code_pays_naissance;type_mesure;tribunal;date_jugement;numero_rg;date_debut;date_fin;date_revision;demarches;delegue";

fn day(offset: i64) -> time::Date {
    foundation::paris::today() + time::Duration::days(offset)
}

fn fr(offset: i64) -> String {
    foundation::paris::day(day(offset))
}

/// A line of the file: case, family name, given names, kind, end (days from today), démarches,
/// delegate.
pub fn line(
    case: &str,
    family: &str,
    given: &str,
    kind: &str,
    ends: i64,
    demarches: &str,
    delegate: &str,
) -> String {
    format!(
        "{case};{family};;{given};F;12/04/1941;33063;99100;{kind};Tribunal judiciaire de Bordeaux;{};RG {case};{};{};;{demarches};{delegate}",
        fr(-30),
        fr(-30),
        fr(ends)
    )
}

/// A guardian service in Gironde with two delegates (the first logged in) and a référent.
pub struct Service {
    pub structure: StructureId,
    pub first: TestProfessional,
    pub second: TestProfessional,
    pub referent: TestProfessional,
    pub client: Browser,
    pub territory: Territory,
}

pub async fn service(app: &TestApp) -> Service {
    let structure = structure_domain(app, "33").await;
    sqlx::query(
        "UPDATE dep_33.structures SET name = 'ATMP de la Gironde', guardian_service = true WHERE id = $1",
    )
    .bind(structure)
    .execute(&app.db.admin)
    .await
    .expect("service");
    let at = |role| [(role, structure.domain(), Some("33"))];
    let first = professional(&app.db.admin, "Claire Dupont", &at(Role::Aidant)).await;
    let second = professional(&app.db.admin, "Bruno Délégué", &at(Role::Aidant)).await;
    let referent = professional(&app.db.admin, "Rita Référente", &at(Role::Referent)).await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &first, -1).await.status(), 303);
    let tenancy = test_support::tenancy(app.db.admin.clone()).await;
    let territory = tenancy
        .unguarded(DepartementCode::parse("33").expect("33"))
        .await
        .expect("territoire");
    Service {
        structure,
        first,
        second,
        referent,
        client,
        territory,
    }
}

/// Uploads a file on the import page; returns the answer.
pub async fn upload(app: &TestApp, client: &Browser, bytes: &[u8]) -> reqwest::Response {
    let (status, html) = page(client, &app.url("/mesures/import")).await;
    assert_eq!(status, 200, "{html}");
    let token = csrf_of(&html);
    client
        .post_multipart(
            &app.url("/mesures/import"),
            &[("csrf", &token)],
            ("fichier", "mesures.csv", bytes),
        )
        .await
}

/// Uploads a readable file and waits for its report page; returns the page.
pub async fn import(app: &TestApp, client: &Browser, bytes: &[u8]) -> String {
    let resp = upload(app, client, bytes).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let at = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    for _ in 0..600 {
        let state: Value = client
            .get(&app.url(&format!("{at}/etat")))
            .await
            .json()
            .await
            .expect("état");
        if state["state"] != "running" {
            assert_eq!(state["state"], "done", "{state}");
            assert_eq!(state["done"], state["total"], "{state}");
            let (status, html) = page(client, &app.url(&at)).await;
            assert_eq!(status, 200);
            return html;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("l'import ne se termine pas");
}

/// A public service: the openid-client relying party, registered as a client of the platform's
/// identity provider.
pub async fn public_service(app: &TestApp) -> Rp {
    let rp = Rp::spawn().await;
    let secret = register(
        app,
        "service-public-test",
        AuthMethod::ClientSecretPost,
        &rp.callback(),
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("client");
    rp.configure(json!({
        "issuer": app.address, "client_id": "service-public-test", "client_secret": secret,
        "auth_method": "client_secret_post", "alg": "ES256",
    }))
    .await;
    rp
}

async fn count(app: &TestApp, sql: &'static str, structure: StructureId) -> i64 {
    sqlx::query_scalar(sql)
        .bind(structure)
        .fetch_one(&app.db.admin)
        .await
        .expect(sql)
}

pub async fn measure_of(app: &TestApp, structure: StructureId, case: &str) -> MandateId {
    sqlx::query_scalar(
        "SELECT mandate_id FROM dep_33.judicial_measures WHERE structure_id = $1 AND case_number = $2",
    )
    .bind(structure)
    .bind(case)
    .fetch_one(&app.db.admin)
    .await
    .expect("mesure")
}

#[tokio::test]
async fn a_guardian_service_imports_its_measures_and_uses_one_within_the_decision_only() {
    let app = spawn_app(&["33"]).await;
    let s = service(&app).await;
    let outsider_structure = structure_domain(&app, "33").await;
    let outsider = professional(
        &app.db.admin,
        "Autre Service",
        &[(Role::Aidant, outsider_structure.domain(), Some("33"))],
    )
    .await;
    let measures = "SELECT count(*) FROM dep_33.judicial_measures WHERE structure_id = $1";

    // A file sent without the form's token (another site's form) is refused before reading.
    let forged = s
        .client
        .post_multipart(
            &app.url("/mesures/import"),
            &[("csrf", "x".repeat(43).as_str())],
            ("fichier", "mesures.csv", format!("{HEADER}\n").as_bytes()),
        )
        .await;
    assert_eq!(forged.status(), 403);
    let imports = "SELECT count(*) FROM dep_33.measure_imports WHERE structure_id = $1";
    assert_eq!(count(&app, imports, s.structure).await, 0);

    // A Latin-1 file, and a malformed one: refused whole, said where, nothing written.
    let mut latin1 = format!("{HEADER}\n").into_bytes();
    latin1.extend_from_slice(b"D-1;B\xE9ranger;;Ir\xE8ne;F;12/04/1941;;;tutelle;TJ;01/01/2026;RG 1;01/01/2026;01/01/2031;;social;\n");
    let resp = upload(&app, &s.client, &latin1).await;
    assert_eq!(resp.status(), 422);
    let html = resp.text().await.expect("page");
    assert!(
        html.contains("Ligne 2, colonne 6") && html.contains("Latin-1"),
        "{html}"
    );
    let malformed = format!(
        "{HEADER}\n{}\nD-2;Martin;Jeanne\n",
        line("D-1", "Martin", "Jeanne", "tutelle", 400, "social", "")
    );
    let resp = upload(&app, &s.client, malformed.as_bytes()).await;
    assert_eq!(resp.status(), 422);
    let html = resp.text().await.expect("page");
    assert!(html.contains("Ligne 3, colonne 4"), "{html}");
    assert_eq!(count(&app, measures, s.structure).await, 0);

    // The file: three measures, one for a delegate of another service, one ending before it
    // starts, one démarche unknown.
    let (a, b) = (&s.first.email, &s.second.email);
    let file = [
        HEADER.to_owned(),
        line(
            "D-101",
            "Lefèvre",
            "Marthe Louise",
            "Curatelle renforcée",
            900,
            "argent|logement",
            a,
        ),
        line("D-102", "Garnier", "Paul", "tutelle", 400, "social", b),
        line(
            "D-103",
            "Roux",
            "Emma",
            "habilitation familiale",
            200,
            "social|argent",
            "",
        ),
        line(
            "D-104",
            "Faure",
            "Léon",
            "tutelle",
            300,
            "social",
            &outsider.email,
        ),
        line("D-105", "Blanc", "Zoé", "tutelle", -10, "social", a),
        line("D-106", "Noël", "Jean", "tutelle", 300, "cuisine", a),
    ]
    .join("\n");
    let report = import(&app, &s.client, file.as_bytes()).await;
    assert!(
        report.contains("3 importées, 0 mise à jour, 0 déjà à jour, 3 refusées"),
        "{report}"
    );
    assert!(
        report.contains("n&#39;est pas un délégué de votre service")
            || report.contains("n'est pas un délégué de votre service"),
        "{report}"
    );
    assert!(report.contains("la mesure est déjà terminée"), "{report}");
    assert!(report.contains("démarche « cuisine » inconnue"), "{report}");
    assert_eq!(count(&app, measures, s.structure).await, 3);
    let civil: i64 = count(
        &app,
        "SELECT count(*) FROM dep_33.judicial_measures j JOIN dep_33.mandates m ON m.id = j.mandate_id
         JOIN dep_33.usagers u ON u.id = m.usager_id
         WHERE j.structure_id = $1 AND j.identified_by = 'civil_status' AND u.identified_by = 'civil_status'
           AND u.fc_sub LIKE 'etat-civil:%'",
        s.structure,
    )
    .await;
    assert_eq!(civil, 3);
    let d101 = measure_of(&app, s.structure, "D-101").await;
    let holder: Option<foundation::ids::ProfessionalId> = sqlx::query_scalar(
        "SELECT delegate_id FROM dep_33.judicial_measures WHERE mandate_id = $1",
    )
    .bind(d101)
    .fetch_one(&app.db.admin)
    .await
    .expect("délégué");
    assert_eq!(holder, Some(s.first.id));

    // The same file again changes nothing.
    let report = import(&app, &s.client, file.as_bytes()).await;
    assert!(
        report.contains("0 importée, 0 mise à jour, 3 déjà à jour, 3 refusées"),
        "{report}"
    );
    let recorded = "SELECT count(*) FROM dep_33.journal WHERE structure_id = $1 AND kind = 'judicial_measure_recorded'";
    assert_eq!(count(&app, recorded, s.structure).await, 3);
    assert_eq!(count(&app, measures, s.structure).await, 3);

    // The court extends D-101 and allows Social too: updated, not duplicated.
    let changed = file.replace(
        &line(
            "D-101",
            "Lefèvre",
            "Marthe Louise",
            "Curatelle renforcée",
            900,
            "argent|logement",
            a,
        ),
        &line(
            "D-101",
            "Lefèvre",
            "Marthe Louise",
            "Curatelle renforcée",
            1200,
            "argent|logement|social",
            a,
        ),
    );
    let report = import(&app, &s.client, changed.as_bytes()).await;
    assert!(
        report.contains("0 importée, 1 mise à jour, 2 déjà à jour, 3 refusées"),
        "{report}"
    );
    assert!(
        report.contains("modifié : décision, démarches."),
        "{report}"
    );
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT category FROM dep_33.live_authorisations WHERE mandate_id = $1 ORDER BY category",
    )
    .bind(d101)
    .fetch_all(&app.db.admin)
    .await
    .expect("démarches");
    assert_eq!(live, ["argent", "logement", "social"]);
    let expires: String = sqlx::query_scalar(
        "SELECT (expires_at AT TIME ZONE 'Europe/Paris')::date::text FROM dep_33.mandates WHERE id = $1",
    )
    .bind(d101)
    .fetch_one(&app.db.admin)
    .await
    .expect("fin");
    assert_eq!(expires, day(1200).to_string());

    // Through the identity provider (openid-client playing FranceConnect): a démarche the
    // decision allows (the one the update added) goes through with the decision's civil
    // status; one it does not allow offers nobody.
    let usager = sqlx::query_scalar("SELECT usager_id FROM dep_33.mandates WHERE id = $1")
        .bind(d101)
        .fetch_one(&app.db.admin)
        .await
        .expect("personne");
    let rp = public_service(&app).await;
    let fx = Fixture {
        who: s.first,
        structure: s.structure,
        aidant: s.client,
        usager,
        mandate: d101,
    };
    let (url, _) = rp.start(Some("Social-Santé")).await;
    let landed = rp
        .land(&choose(&fx, &app, &url, usager, "social").await)
        .await;
    assert_eq!(landed["error"], Value::Null, "{landed}");
    assert_eq!(landed["claims"]["rep_scope"], json!(["Social-Santé"]));
    assert_eq!(landed["userinfo"]["family_name"], "Lefèvre");
    assert_eq!(landed["userinfo"]["given_name"], "Marthe Louise");
    assert_eq!(landed["userinfo"]["birthdate"], "1941-04-12");
    let (url, _) = rp.start(Some("Justice")).await;
    let (status, html) = page(&fx.aidant, &url).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Aucune personne n'a de mandat en cours")
            || html.contains("Aucune personne n&#39;a de mandat en cours"),
        "{html}"
    );

    // The court's file corrects her family name: the structure's list of its usagers, which
    // the identity provider shows, follows it.
    let renamed = changed.replace("D-101;Lefèvre;", "D-101;Lefèvre-Roux;");
    let report = import(&app, &fx.aidant, renamed.as_bytes()).await;
    assert!(report.contains("1 mise à jour"), "{report}");
    let listed: (String, String) = sqlx::query_as(
        "SELECT family_name, birthdate FROM dep_33.structure_usagers
         WHERE usager_id = $1 AND structure_id = $2",
    )
    .bind(usager)
    .bind(s.structure)
    .fetch_one(&app.db.admin)
    .await
    .expect("liste");
    assert_eq!(listed, ("Lefèvre-Roux".to_owned(), "1941-04-12".to_owned()));

    // The pages pass axe.
    let import_page: String = sqlx::query_scalar(
        "SELECT '/mesures/import/' || id FROM dep_33.measure_imports WHERE structure_id = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(s.structure)
    .fetch_one(&app.db.admin)
    .await
    .expect("import");
    let urls = [
        app.url("/mesures"),
        app.url("/mesures/import"),
        app.url(&import_page),
    ];
    for (url, violations) in
        test_support::browser::axe_violations_with_cookies(&urls, &fx.aidant.cookies()).await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}

#[tokio::test]
async fn a_delegates_caseload_comes_first_and_is_handed_over_in_one_journaled_step() {
    let app = spawn_app(&["33"]).await;
    let s = service(&app).await;
    let (a, b) = (&s.first.email, &s.second.email);
    let file = [
        HEADER.to_owned(),
        line("B-1", "Aubert", "Anne", "tutelle", 100, "social", b),
        line("A-1", "Bernard", "Basile", "tutelle", 500, "social", a),
        line("A-2", "Colin", "Cécile", "tutelle", 600, "argent", a),
        line("A-3", "David", "Denis", "tutelle", 700, "logement", a),
    ]
    .join("\n");
    import(&app, &s.client, file.as_bytes()).await;

    // The first delegate's own measures come first, though B-1 ends sooner.
    let (_, html) = page(&s.client, &app.url("/mesures")).await;
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} : {html}"))
    };
    assert!(at("A-3") < at("B-1") && at("A-1") < at("B-1"), "{html}");

    // Some of them: A-1 to the second delegate.
    let a1 = measure_of(&app, s.structure, "A-1").await;
    let (a2, a3) = (
        measure_of(&app, s.structure, "A-2").await,
        measure_of(&app, s.structure, "A-3").await,
    );
    let b1 = measure_of(&app, s.structure, "B-1").await;
    let form_page = format!("/mesures?delegue={}", s.first.id);
    let (from, to) = (s.first.id.to_string(), s.second.id.to_string());
    // A hand-over from the first delegate's filtered list: to whom, which scope, which measures.
    let hand_over = |to: String, scope: &'static str, chosen: Vec<MandateId>| {
        let (client, app, form_page, from) = (&s.client, &app, form_page.clone(), from.clone());
        async move {
            let chosen: Vec<String> = chosen.iter().map(ToString::to_string).collect();
            let mut fields = vec![("de", from.as_str()), ("a", to.as_str()), ("portee", scope)];
            fields.extend(chosen.iter().map(|m| ("mesure", m.as_str())));
            post_form(client, app, &form_page, "/mesures/passation", &fields).await
        }
    };
    let resp = hand_over(to.clone(), "choisies", vec![a1]).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let held = |m: MandateId| {
        let db = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, Option<foundation::ids::ProfessionalId>>(
                "SELECT delegate_id FROM dep_33.judicial_measures WHERE mandate_id = $1",
            )
            .bind(m)
            .fetch_one(&db)
            .await
            .expect("délégué")
        }
    };
    assert_eq!(held(a1).await, Some(s.second.id));
    assert_eq!(held(a2).await, Some(s.first.id));

    // To someone of another service, or with a measure that is no longer theirs (B-1): refused
    // in French, nothing moved.
    let outsider_structure = structure_domain(&app, "33").await;
    let outsider = professional(
        &app.db.admin,
        "Autre Service",
        &[(Role::Aidant, outsider_structure.domain(), Some("33"))],
    )
    .await;
    let resp = hand_over(outsider.id.to_string(), "toutes", vec![]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("pas un délégué de votre service")
    );
    let resp = hand_over(to.clone(), "choisies", vec![a2, b1]).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("ne sont plus suivies par ce délégué")
    );
    assert_eq!(held(a2).await, Some(s.first.id), "rien n'a bougé");

    // All that remain, in one step: the first delegate leaves with nothing.
    let resp = hand_over(to.clone(), "toutes", vec![]).await;
    assert_eq!(resp.status(), 303);
    let (_, html) = page(&s.client, &app.url(&super::common::idp::location(&resp))).await;
    assert!(
        html.contains("2 mesures ont été confiées à Bruno Délégué"),
        "{html}"
    );
    for m in [a2, a3] {
        assert_eq!(held(m).await, Some(s.second.id));
    }
    let journaled: Vec<(MandateId, String)> = sqlx::query_as(
        "SELECT mandate_id, details FROM dep_33.journal
         WHERE kind = 'judicial_measure_handed_over' AND structure_id = $1 ORDER BY id",
    )
    .bind(s.structure)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(journaled.len(), 3);
    assert_eq!(journaled[0].0, a1);
    assert!(
        journaled
            .iter()
            .all(|(_, d)| d.contains(&to) && d.contains(&from))
    );
}

#[tokio::test]
async fn alerts_go_90_30_and_7_days_before_the_end_and_at_the_renewal_date_once_each() {
    let app = spawn_app(&["33"]).await;
    let s = service(&app).await;
    let a = &s.first.email;
    // E-1 ends in 100 days, with a renewal date in 40; E-2 ends in 20 (its 90- and 30-day
    // alerts were never sent: a missed run).
    let with_renewal = line("E-1", "Etienne", "Eve", "tutelle", 100, "social", a).replace(
        &format!("{};;social", fr(100)),
        &format!("{};{};social", fr(100), fr(40)),
    );
    let file = [
        HEADER.to_owned(),
        with_renewal,
        line("E-2", "Fabre", "Fanny", "tutelle", 20, "social", a),
    ]
    .join("\n");
    let report = import(&app, &s.client, file.as_bytes()).await;
    assert!(report.contains("2 importées"), "{report}");
    let origin = app.address.clone();
    let pool = app.db.admin.clone();
    let run = |offset: i64| {
        let (pool, origin, territory) = (pool.clone(), origin.clone(), s.territory.clone());
        async move {
            alerts::run(&pool, &origin, &territory, day(offset))
                .await
                .expect("alertes")
        }
    };
    let sent = |template: &'static str, to: String| {
        let db = app.db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM dep_33.outbox WHERE template = $1 AND recipient = $2",
            )
            .bind(template)
            .bind(to)
            .fetch_one(&db)
            .await
            .expect("outbox")
        }
    };
    let ending = "judicial_measure_ending";
    // Today: E-2's most urgent due threshold (30 days) only.
    assert_eq!(run(0).await, 1);
    assert_eq!(sent(ending, a.clone()).await, 1);
    assert_eq!(
        sent(ending, s.referent.email.clone()).await,
        1,
        "la référente aussi"
    );
    assert_eq!(
        sent(ending, s.second.email.clone()).await,
        0,
        "pas l'autre délégué"
    );
    assert_eq!(run(0).await, 0, "une seule fois");
    // E-1: nothing at 91 days, the 90-day alert at 90, nothing until the renewal date.
    assert_eq!(run(100 - 91).await, 0);
    assert_eq!(run(100 - 90).await, 1);
    assert_eq!(run(100 - 89).await, 0);
    assert_eq!(run(39).await, 0);
    assert_eq!(run(40).await, 1, "date de révision");
    assert_eq!(sent("judicial_measure_renewal", a.clone()).await, 1);
    assert_eq!(run(41).await, 0);
    // E-2 at 7 days; then E-1 at 30 and at 7.
    assert_eq!(run(20 - 7).await, 1);
    assert_eq!(run(100 - 30).await, 1);
    assert_eq!(run(100 - 7).await, 1);
    assert_eq!(run(100 - 6).await, 0);
    assert_eq!(
        sent(ending, a.clone()).await,
        5,
        "E-2 : 30, 7 ; E-1 : 90, 30, 7"
    );
    let alerts: Vec<String> = sqlx::query_scalar(
        "SELECT details FROM dep_33.journal WHERE kind = 'judicial_measure_alert_queued' AND structure_id = $1 ORDER BY id",
    )
    .bind(s.structure)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    let kinds: Vec<String> = alerts
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).expect("json")["alert"]
                .as_str()
                .expect("alert")
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["30", "90", "renewal", "7", "30", "7"]);
    // The e-mail names the case, never the person.
    let payload: Value = sqlx::query_scalar(
        "SELECT payload FROM dep_33.outbox WHERE template = 'judicial_measure_ending' ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("payload");
    assert_eq!(payload["case"], "E-2");
    assert!(!payload.to_string().contains("Fabre"), "{payload}");
}

#[tokio::test]
async fn a_measures_court_decision_is_kept_in_the_vault_and_other_files_are_refused() {
    let app = spawn_app(&["33"]).await;
    let s = service(&app).await;
    let file = [
        HEADER.to_owned(),
        line(
            "J-1",
            "Jourdan",
            "Jules",
            "tutelle",
            900,
            "social",
            &s.first.email,
        ),
    ]
    .join("\n");
    import(&app, &s.client, file.as_bytes()).await;
    let measure = measure_of(&app, s.structure, "J-1").await;
    let at = format!("/mesures/{measure}/decision");
    let send = |bytes: Vec<u8>| {
        let (client, app, at) = (&s.client, &app, at.clone());
        async move {
            let (status, html) = page(client, &app.url(&at)).await;
            assert_eq!(status, 200, "{html}");
            client
                .post_multipart(
                    &app.url(&at),
                    &[("csrf", &csrf_of(&html))],
                    ("decision", "jugement.pdf", &bytes),
                )
                .await
        }
    };
    let documents = "SELECT count(*) FROM dep_33.documents WHERE kind = 'court_decision' AND $1::uuid IS NOT NULL";
    // Not a PDF or an image, or too large: said in French, nothing stored.
    let resp = send(b"Jugement du 15 mars 2026".to_vec()).await;
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("ni un PDF ni une image")
    );
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b' ');
    let resp = send(big).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.expect("page").contains("dépasse 10 Mo"));
    assert_eq!(count(&app, documents, s.structure).await, 0);
    // A PDF: stored, recorded, journaled, served back through a short link.
    let pdf = b"%PDF-1.4\n% decision J-1\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n".to_vec();
    let resp = send(pdf.clone()).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let (document, kind): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT d.id, d.kind FROM dep_33.judicial_measures j JOIN dep_33.documents d ON d.id = j.decision_document_id
         WHERE j.mandate_id = $1",
    )
    .bind(measure)
    .fetch_one(&app.db.admin)
    .await
    .expect("décision");
    assert_eq!(kind, "court_decision");
    let journaled: String = sqlx::query_scalar(
        "SELECT details FROM dep_33.journal WHERE kind = 'judicial_decision_attached' AND mandate_id = $1",
    )
    .bind(measure)
    .fetch_one(&app.db.admin)
    .await
    .expect("journal");
    assert!(
        journaled.contains(&document.to_string()) && journaled.contains("\"PDF\""),
        "{journaled}"
    );
    let (_, html) = page(&s.client, &app.url(&at)).await;
    let link = html
        .split("href=\"")
        .map(|p| p.split('"').next().unwrap_or_default())
        .find(|h| h.contains(&document.to_string()))
        .unwrap_or_else(|| panic!("lien : {html}"))
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let url = if link.starts_with("http") {
        link
    } else {
        app.url(&link)
    };
    let served = reqwest::get(&url).await.expect("lien");
    assert_eq!(served.status(), 200, "{url}");
    assert_eq!(served.bytes().await.expect("octets").to_vec(), pdf);
    // The page passes axe.
    for (url, violations) in
        test_support::browser::axe_violations_with_cookies(&[app.url(&at)], &s.client.cookies())
            .await
    {
        assert!(violations.is_empty(), "{url} : {violations:?}");
    }
}
