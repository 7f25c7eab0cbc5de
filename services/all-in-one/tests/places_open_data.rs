//! The habilitated places as open data in the national « Lieux de médiation numérique » schema
//! (1.0.1): the JSON validates against the JSON Schema kept in docs/open-data/, the CSV has the
//! schema's header in its order, reads back as RFC 4180 and says what the JSON says; inactive
//! structures and those the schema cannot describe are not there; errors are the documented
//! JSON ones.

mod common;

use std::collections::BTreeMap;

use common::{TestApp, spawn_app};
use foundation::ids::{StructureId, TenantId};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::tenants::{self, TenantKind};
use serde_json::{Value, json};

const SCHEMA: &str =
    include_str!("../../../docs/open-data/lieux-de-mediation-numerique-1.0.1.schema.json");

const FRANCE_SERVICES: &str = "Espace « Bastide », dit \"le Relais\" — Maison France Services";
const FORMULA: &str = "=HYPERLINK(\"http://exemple.test\",\"Mairie\")";
const LONG_MISSION: &str = "Accueil des habitants de la commune et accompagnement dans leurs \
    démarches administratives en ligne : état civil, logement, prestations sociales, impôts, \
    carte grise, permis de conduire, retraite, emploi. Les agents d'accueil, habilités Aidants \
    Connect, réalisent les démarches pour les personnes qui ne peuvent pas les faire seules, \
    avec leur consentement, et les orientent vers les partenaires du territoire.";

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("schéma JSON")
}

/// The schema's columns in order, as docs/open-data/ keeps them from the published schema.
fn columns() -> Vec<String> {
    schema()["$defs"]["lieu"]["x-column-order"]
        .as_array()
        .expect("ordre des colonnes")
        .iter()
        .map(|c| c.as_str().expect("colonne").to_owned())
        .collect()
}

/// Every error of `instance` against the stored schema (formats checked too).
fn schema_errors(instance: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("schéma valide");
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

struct Structure<'a> {
    name: &'a str,
    kind: &'a str,
    siret: Option<&'a str>,
    address: &'a str,
    commune: &'a str,
    postal_code: Option<&'a str>,
    france_services: Option<&'a str>,
    mission: &'a str,
    opening_hours: &'a str,
    active: bool,
}

impl Default for Structure<'_> {
    fn default() -> Self {
        Self {
            name: "",
            kind: "mairie",
            siret: None,
            address: "1 place de la Mairie",
            commune: "33063",
            postal_code: None,
            france_services: None,
            mission: "",
            opening_hours: "",
            active: true,
        }
    }
}

/// Writes a structure as an accepted request would (every column the request form fills).
async fn insert(app: &TestApp, tenant: TenantId, s: Structure<'_>) -> StructureId {
    let code = DepartementCode::parse(&s.commune[..2]).expect("département");
    let id = StructureId::new_v7();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}.structures (id, tenant_id, name, kind, siret, address, commune_code,
             postal_code, france_services, france_services_number, mission, opening_hours, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        code.schema_name()
    )))
    .bind(id)
    .bind(tenant)
    .bind(s.name)
    .bind(s.kind)
    .bind(s.siret)
    .bind(s.address)
    .bind(s.commune)
    .bind(s.postal_code)
    .bind(s.france_services.is_some())
    .bind(s.france_services)
    .bind(s.mission)
    .bind(s.opening_hours)
    .bind(s.active)
    .execute(&app.db.admin)
    .await
    .expect("structure");
    id
}

async fn tenant(app: &TestApp, code: &str, name: &str) -> TenantId {
    tenants::create_tenant(
        &app.db.admin,
        &TenantKind::Departement(DepartementCode::parse(code).expect("code")),
        name,
    )
    .await
    .expect("tenant")
    .id
}

/// Gironde: a France Services with its number, a mairie without SIRET whose name is a formula,
/// an inactive structure and one without an address; Landes: one mairie.
async fn seed(app: &TestApp) -> BTreeMap<&'static str, StructureId> {
    let gironde = tenant(app, "33", "Conseil départemental de la Gironde").await;
    let landes = tenant(app, "40", "Conseil départemental des Landes").await;
    let mut ids = BTreeMap::new();
    ids.insert(
        "france_services",
        insert(
            app,
            gironde,
            Structure {
                name: FRANCE_SERVICES,
                kind: "france_services",
                siret: Some("13002526500013"),
                address: "2 rue de la Benauge",
                postal_code: Some("33100"),
                france_services: Some("FS-33-0042"),
                mission: "Accueil, information et accompagnement aux démarches.",
                opening_hours: "Mo-Fr 09:00-12:00,14:00-17:00; Sa 09:00-12:00",
                ..Structure::default()
            },
        )
        .await,
    );
    ids.insert(
        "formula",
        insert(
            app,
            gironde,
            Structure {
                name: FORMULA,
                address: "Place de la Ve République\nBâtiment B, 1er étage",
                commune: "33318",
                mission: LONG_MISSION,
                opening_hours: "Lundi-vendredi 9h-17h",
                ..Structure::default()
            },
        )
        .await,
    );
    ids.insert(
        "inactive",
        insert(
            app,
            gironde,
            Structure {
                name: "Structure désactivée",
                siret: Some("21330063500017"),
                active: false,
                ..Structure::default()
            },
        )
        .await,
    );
    ids.insert(
        "no_address",
        insert(
            app,
            gironde,
            Structure {
                name: "Structure sans adresse",
                address: "",
                ..Structure::default()
            },
        )
        .await,
    );
    ids.insert(
        "landes",
        insert(
            app,
            landes,
            Structure {
                name: "Mairie de Mont-de-Marsan",
                siret: Some("21400192000014"),
                address: "2 place du Général Leclerc",
                commune: "40192",
                ..Structure::default()
            },
        )
        .await,
    );
    ids
}

async fn json_of(app: &TestApp, path: &str) -> Value {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8",
        "{path}"
    );
    let body: Value = resp.json().await.expect("json");
    let errors = schema_errors(&body);
    assert!(errors.is_empty(), "{path}: {errors:#?}\n{body:#}");
    body
}

/// The CSV read back: header, then each line as the JSON object it stands for (empty cells
/// absent, the formula guard's `'` taken off).
async fn csv_of(app: &TestApp, path: &str, file: &str) -> (Vec<String>, Vec<Value>) {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        resp.headers()["content-disposition"],
        format!("attachment; filename=\"{file}\"").as_str()
    );
    let bytes = resp.bytes().await.expect("corps");
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    assert!(!text.starts_with('\u{feff}'), "sans BOM");
    assert!(text.ends_with("\r\n"));
    assert!(!text.replace("\r\n", "").contains('\r'), "CRLF seulement");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("en-tête")
        .iter()
        .map(str::to_owned)
        .collect();
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.expect("ligne RFC 4180");
        assert_eq!(record.len(), header.len(), "même nombre de cellules");
        let mut object = serde_json::Map::new();
        for (column, cell) in header.iter().zip(record.iter()) {
            let cell = match cell.strip_prefix('\'') {
                Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
                _ => cell,
            };
            if !cell.is_empty() {
                object.insert(column.clone(), json!(cell));
            }
        }
        lines.push(Value::Object(object));
    }
    (header, lines)
}

fn by_id(places: &[Value], id: StructureId) -> Option<&Value> {
    places.iter().find(|p| p["id"] == id.to_string())
}

#[tokio::test]
async fn a_territorys_places_follow_the_national_schema_in_json_and_csv() {
    let app = spawn_app(&["33", "40"]).await;
    let ids = seed(&app).await;

    let body = json_of(&app, "/api/habilitation/departements/33/lieux").await;
    let places = body.as_array().expect("tableau");
    assert_eq!(places.len(), 2, "{body:#}");
    for absent in ["inactive", "no_address", "landes"] {
        assert!(by_id(places, ids[absent]).is_none(), "{absent}: {body:#}");
    }

    let fs = by_id(places, ids["france_services"]).expect("France Services");
    assert_eq!(
        fs,
        &json!({
            "id": ids["france_services"].to_string(),
            "pivot": "13002526500013",
            "nom": FRANCE_SERVICES,
            "commune": "Bordeaux",
            "code_postal": "33100",
            "code_insee": "33063",
            "adresse": "2 rue de la Benauge",
            "typologie": "RFS",
            "horaires": "Mo-Fr 09:00-12:00,14:00-17:00; Sa 09:00-12:00",
            "presentation_resume": "Accueil, information et accompagnement aux démarches.",
            "source": "Aidants Connect",
            "date_maj": fs["date_maj"],
            "services": "Aide aux démarches administratives",
            "dispositif_programmes_nationaux": "Aidants Connect|France Services",
            "modalites_accompagnement": "Accompagnement individuel",
        })
    );
    let today = time::OffsetDateTime::now_utc();
    let paris = foundation::paris::local(today).date();
    let yesterday = paris.previous_day().expect("veille");
    let date_maj = fs["date_maj"].as_str().expect("date_maj");
    assert!(
        [paris.to_string(), yesterday.to_string()].contains(&date_maj.to_owned()),
        "{date_maj}"
    );

    // Without a SIRET, with free-text hours and a long mission: fourteen zeros, no hours, a
    // summary within 280 characters and the mission in full; the commune's postal code.
    let mairie = by_id(places, ids["formula"]).expect("mairie");
    assert_eq!(mairie["nom"], FORMULA);
    assert_eq!(mairie["pivot"], "00000000000000");
    assert_eq!(
        (
            &mairie["commune"],
            &mairie["code_postal"],
            &mairie["code_insee"]
        ),
        (&json!("Pessac"), &json!("33600"), &json!("33318"))
    );
    assert_eq!(
        mairie["adresse"],
        "Place de la Ve République, Bâtiment B, 1er étage"
    );
    assert_eq!(mairie["typologie"], "MUNI");
    assert_eq!(mairie["dispositif_programmes_nationaux"], "Aidants Connect");
    assert!(mairie.get("horaires").is_none(), "{mairie:#}");
    let resume = mairie["presentation_resume"].as_str().expect("résumé");
    assert!(
        resume.chars().count() <= 280 && resume.ends_with('…'),
        "{resume}"
    );
    assert_eq!(mairie["presentation_detail"], LONG_MISSION);

    // No personal data, nor what the schema has no field for.
    let text = body.to_string();
    assert!(!text.contains("FS-33-0042"), "{text}");
    assert!(!text.contains("désactivée"), "{text}");

    // The CSV: the schema's header in order, then the same places, cell for cell.
    let (header, lines) = csv_of(
        &app,
        "/api/habilitation/departements/33/lieux.csv",
        "lieux-de-mediation-numerique_33.csv",
    )
    .await;
    assert_eq!(header, columns());
    assert_eq!(header.first().map(String::as_str), Some("id"));
    assert_eq!(header.last().map(String::as_str), Some("prise_rdv"));
    assert_eq!(header.len(), 32);
    assert_eq!(&lines, places);
    let raw = app
        .get("/api/habilitation/departements/33/lieux.csv")
        .await
        .text()
        .await
        .expect("csv");
    assert!(
        raw.contains("\"'=HYPERLINK(\"\"http://exemple.test\"\",\"\"Mairie\"\")\""),
        "{raw}"
    );
    assert!(raw.contains("\"Espace « Bastide », dit \"\"le Relais\"\" — Maison France Services\""));

    // The stored schema does refuse what the national schema refuses.
    let mut wrong = fs.clone();
    wrong["pivot"] = json!("");
    wrong["services"] = json!("Accompagner les démarches");
    wrong["extra"] = json!(1);
    wrong.as_object_mut().expect("objet").remove("adresse");
    assert_eq!(schema_errors(&json!([wrong])).len(), 4);
}

#[tokio::test]
async fn the_national_export_gathers_every_served_territory_in_order() {
    let app = spawn_app(&["33", "40"]).await;
    let ids = seed(&app).await;

    let body = json_of(&app, "/api/habilitation/lieux").await;
    let places = body.as_array().expect("tableau");
    let order: Vec<&str> = places
        .iter()
        .map(|p| p["code_insee"].as_str().expect("code INSEE"))
        .collect();
    assert_eq!(order.len(), 3, "{body:#}");
    assert!(order[..2].iter().all(|c| c.starts_with("33")), "{order:?}");
    assert_eq!(order[2], "40192");
    assert_eq!(
        by_id(places, ids["landes"]).expect("Landes")["commune"],
        "Mont-de-Marsan"
    );

    let (header, lines) = csv_of(
        &app,
        "/api/habilitation/lieux.csv",
        "lieux-de-mediation-numerique_national.csv",
    )
    .await;
    assert_eq!(header, columns());
    assert_eq!(&lines, places);
}

#[tokio::test]
async fn unknown_departements_answer_the_documented_404() {
    let app = spawn_app(&["33"]).await;
    for path in [
        "/api/habilitation/departements/20/lieux",
        "/api/habilitation/departements/20/lieux.csv",
        "/api/habilitation/departements/abc/lieux.csv",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "not_found", "{body}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("code de département inconnu"),
            "{body}"
        );
    }
    // A real département whose territory is not open on this platform: not found either, with
    // its own message (a 503 « maintenance » would tell a client to retry forever; schemathesis
    // found it by drawing 24).
    for path in [
        "/api/habilitation/departements/24/lieux",
        "/api/habilitation/departements/24/lieux.csv",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "not_found", "{body}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("aucun territoire n'est ouvert pour le département 24"),
            "{body}"
        );
    }
    // A territory provisioned with no structure: an empty list, an empty CSV with its header.
    assert_eq!(
        json_of(&app, "/api/habilitation/departements/33/lieux").await,
        json!([])
    );
    let (header, lines) = csv_of(
        &app,
        "/api/habilitation/departements/33/lieux.csv",
        "lieux-de-mediation-numerique_33.csv",
    )
    .await;
    assert_eq!((header, lines), (columns(), vec![]));
}

/// What schemathesis checks: every answer of these routes is in the OpenAPI document, with its
/// content type.
#[tokio::test]
async fn the_openapi_document_describes_every_answer() {
    let app = spawn_app(&["33"]).await;
    let doc: Value = app
        .get("/api/habilitation/openapi.json")
        .await
        .json()
        .await
        .expect("openapi");
    for (path, ok_type) in [
        (
            "/departements/{code}/lieux",
            "application/json; charset=utf-8",
        ),
        ("/departements/{code}/lieux.csv", "text/csv; charset=utf-8"),
        ("/lieux", "application/json; charset=utf-8"),
        ("/lieux.csv", "text/csv; charset=utf-8"),
    ] {
        let responses = &doc["paths"][path]["get"]["responses"];
        assert!(
            responses["200"]["content"][ok_type].is_object(),
            "{path}: {responses:#}"
        );
        for status in ["404", "500", "503"] {
            assert!(
                responses[status]["content"]["application/json; charset=utf-8"].is_object(),
                "{path} {status}: {responses:#}"
            );
        }
    }
    let csv = &doc["paths"]["/lieux.csv"]["get"]["responses"]["200"];
    let headers = csv["headers"].as_object().expect("en-têtes");
    assert!(
        headers
            .keys()
            .any(|h| h.eq_ignore_ascii_case("content-disposition")),
        "{csv:#}"
    );
    let lieu = &doc["components"]["schemas"]["LieuMediationNumerique"];
    let mut documented: Vec<String> = lieu["properties"]
        .as_object()
        .expect("propriétés")
        .keys()
        .cloned()
        .collect();
    let mut expected = columns();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
}
