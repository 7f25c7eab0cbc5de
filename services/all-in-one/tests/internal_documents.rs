//! The internal document API as another service calls it over HTTP, on the internal listener:
//! its token, the kinds and départements it is allowed, the tenant context, the vault's limits as documented JSON errors, and links that
//! serve the document.

mod common;

use common::{TestApp, spawn_app};
use foundation::auth::secrets::token_hash;
use foundation::ids::TenantId;
use serde_json::Value;
use uuid::Uuid;

/// A caller granted the départements the tests use.
async fn caller(app: &TestApp, name: &str, kinds: &[&str]) -> String {
    caller_for(app, name, kinds, &["33", "75"]).await
}

async fn tenant(app: &TestApp, departement: &str, commune: &str) -> TenantId {
    let id = TenantId::from_uuid(Uuid::new_v4());
    sqlx::query(
        "INSERT INTO platform.tenants (id, kind, name, departement_code, commune_code)
         VALUES ($1, 'commune', 'Commune de test', $2, $3)",
    )
    .bind(id)
    .bind(departement)
    .bind(commune)
    .execute(&app.db.admin)
    .await
    .expect("tenant");
    id
}

async fn store(
    app: &TestApp,
    token: Option<&str>,
    departement: &str,
    query: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(app.internal_url(&format!(
            "/internal/documents/departements/{departement}/documents?{query}"
        )))
        .header("content-type", "application/octet-stream")
        .body(bytes);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.expect("requête");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn documents(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dep_33.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn services_store_describe_and_link_documents_within_their_kinds_and_territory() {
    let app = spawn_app(&["33", "75"]).await;
    let token = caller(&app, "mandate-service", &["attestation"]).await;
    let begles = tenant(&app, "33", "33039").await;
    let paris = tenant(&app, "75", "75056").await;
    let canary = format!("CANARI-{}", Uuid::new_v4().simple());
    let pdf = format!("%PDF-1.7\n({canary})\n%%EOF\n").into_bytes();
    let query = format!("tenant={begles}&kind=attestation&retention=mandate_archive");

    // Without a token, with an unknown one: 401, nothing stored.
    let (status, body) = store(&app, None, "33", &query, pdf.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = store(&app, Some("inconnu"), "33", &query, pdf.clone()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    // A kind the caller is not allowed: 403.
    let (status, body) = store(
        &app,
        Some(&token),
        "33",
        &format!("tenant={begles}&kind=court_decision&retention=mandate_archive"),
        pdf.clone(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    // The vault's limits and the tenant context, as JSON errors.
    let (status, body) = store(&app, Some(&token), "33", &query, b"texte brut".to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unsupported_type")),
        "{body}"
    );
    let mut huge = b"%PDF-".to_vec();
    huge.resize(10 * 1024 * 1024 + 1, b'x');
    let (status, body) = store(&app, Some(&token), "33", &query, huge).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = store(
        &app,
        Some(&token),
        "33",
        &format!("tenant={begles}&kind=attestation&retention=toujours"),
        pdf.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("days:N")
    );
    let (status, _) = store(
        &app,
        Some(&token),
        "33",
        &format!("tenant={paris}&kind=attestation&retention=mandate_archive"),
        pdf.clone(),
    )
    .await;
    assert_eq!(status, 404, "un tenant d'un autre département");
    let (status, body) = store(&app, Some(&token), "xx", &query, pdf.clone()).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("code de département inconnu")
    );
    assert_eq!(documents(&app).await, 0, "aucun refus n'a rien écrit");

    // Stored, described, linked; the link serves the decrypted document.
    let (status, body) = store(&app, Some(&token), "33", &query, pdf.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["content_type"], "application/pdf");
    assert_eq!(body["tenant_id"], begles.to_string());
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(documents(&app).await, 1);
    let client = reqwest::Client::new();
    let described: Value = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/33/documents/{id}"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("requête")
        .json()
        .await
        .expect("json");
    assert_eq!(described["kind"], "attestation");
    assert_eq!(described["size_bytes"], pdf.len());
    // Through another territory it does not exist.
    let elsewhere = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/75/documents/{id}"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("requête");
    assert_eq!(elsewhere.status(), 404);
    let link_of = |seconds: &str| {
        client
            .post(app.internal_url(&format!(
                "/internal/documents/departements/33/documents/{id}/link?seconds={seconds}"
            )))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(link_of("5000").await.expect("requête").status(), 400);
    let link: Value = link_of("60")
        .await
        .expect("requête")
        .json()
        .await
        .expect("json");
    let resp = app.get(link["url"].as_str().expect("url")).await;
    assert_eq!(resp.status(), 200);
    assert!(String::from_utf8_lossy(&resp.bytes().await.expect("corps")).contains(&canary));

    // Without a valid token, not even a document's existence is told.
    let anonymous = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/33/documents/{}",
            Uuid::new_v4()
        )))
        .bearer_auth("inconnu")
        .send()
        .await
        .expect("requête");
    assert_eq!(anonymous.status(), 401);

    // Another service, not allowed attestations, cannot read it; a disabled caller is refused.
    let desk = caller(&app, "habilitation-desk", &["structure_document"]).await;
    let refused = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/33/documents/{id}"
        )))
        .bearer_auth(&desk)
        .send()
        .await
        .expect("requête");
    assert_eq!(refused.status(), 403);
    sqlx::query(
        "UPDATE platform.internal_callers SET active = false WHERE name = 'mandate-service'",
    )
    .execute(&app.db.admin)
    .await
    .expect("désactivation");
    assert_eq!(link_of("60").await.expect("requête").status(), 401);

    // The API is described.
    let spec: Value = client
        .get(app.internal_url("/internal/documents/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("spec");
    assert!(
        spec["paths"]["/departements/{departement}/documents"]["post"].is_object(),
        "{spec}"
    );
}

async fn caller_for(app: &TestApp, name: &str, kinds: &[&str], departements: &[&str]) -> String {
    let token = foundation::auth::secrets::new_token();
    sqlx::query(
        "INSERT INTO platform.internal_callers (name, token_sha256, kinds, departements)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(token_hash(&token))
    .bind(kinds)
    .bind(departements)
    .execute(&app.db.admin)
    .await
    .expect("appelant");
    token
}

#[tokio::test]
async fn errors_are_the_documented_json_even_before_the_handler_runs() {
    let app = spawn_app(&["33"]).await;
    let token = caller(&app, "mandate-service", &["attestation"]).await;
    let begles = tenant(&app, "33", "33039").await;
    let client = reqwest::Client::new();
    let is_json = |resp: &reqwest::Response| {
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"))
    };
    // No bearer token at all: the security scheme refuses before the handler.
    let resp = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/33/documents/{}",
            Uuid::new_v4()
        )))
        .send()
        .await
        .expect("requête");
    assert_eq!(resp.status(), 401);
    assert!(is_json(&resp), "{:?}", resp.headers());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");
    // A body without a content type: 415, documented, in JSON.
    let resp = client
        .post(app.internal_url(&format!(
            "/internal/documents/departements/33/documents?tenant={begles}&kind=attestation&retention=mandate_archive"
        )))
        .bearer_auth(&token)
        .body("%PDF-1.7")
        .send()
        .await
        .expect("requête");
    assert_eq!(resp.status(), 415);
    assert!(is_json(&resp), "{:?}", resp.headers());
    assert_eq!(
        resp.json::<Value>().await.expect("json")["code"],
        "unsupported_media_type"
    );

    // The document says what the handlers enforce.
    let spec: Value = client
        .get(app.internal_url("/internal/documents/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    let store = &spec["paths"]["/departements/{departement}/documents"]["post"];
    assert!(store["responses"]["415"].is_object(), "{store}");
    let param = |op: &Value, name: &str| {
        op["parameters"]
            .as_array()
            .expect("paramètres")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["schema"]
            .clone()
    };
    assert_eq!(param(store, "kind")["pattern"], "^[a-z0-9_]{1,40}$");
    let link = &spec["paths"]["/departements/{departement}/documents/{id}/link"]["post"];
    let seconds = param(link, "seconds");
    assert_eq!(
        (seconds["minimum"].as_f64(), seconds["maximum"].as_f64()),
        (Some(1.0), Some(900.0)),
        "{seconds}"
    );
}

#[tokio::test]
async fn a_caller_reaches_only_the_departements_it_is_granted() {
    let app = spawn_app(&["33", "75"]).await;
    let gironde_only = caller_for(&app, "mandate-service", &["attestation"], &["33"]).await;
    let paris_only = caller_for(&app, "paris-service", &["attestation"], &["75"]).await;
    let begles = tenant(&app, "33", "33039").await;
    let paris = tenant(&app, "75", "75056").await;
    let pdf = b"%PDF-1.7\n(test)\n%%EOF\n".to_vec();
    let query =
        |tenant: TenantId| format!("tenant={tenant}&kind=attestation&retention=mandate_archive");

    let (status, body) = store(&app, Some(&gironde_only), "33", &query(begles), pdf.clone()).await;
    assert_eq!(status, 201, "{body}");
    // Storing into a territory not granted: 404, nothing written.
    let (status, body) = store(&app, Some(&gironde_only), "75", &query(paris), pdf.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let in_paris: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_75.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("count");
    assert_eq!(in_paris, 0);

    // A document of Paris, read by the Gironde caller: the same 404 as an unknown document.
    let (status, body) = store(&app, Some(&paris_only), "75", &query(paris), pdf.clone()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let client = reqwest::Client::new();
    let describe = |id: String| {
        client
            .get(app.internal_url(&format!(
                "/internal/documents/departements/75/documents/{id}"
            )))
            .bearer_auth(&gironde_only)
            .send()
    };
    let foreign = describe(id.clone()).await.expect("requête");
    assert_eq!(foreign.status(), 404);
    let foreign: Value = foreign.json().await.expect("json");
    let unknown: Value = describe(Uuid::new_v4().to_string())
        .await
        .expect("requête")
        .json()
        .await
        .expect("json");
    assert_eq!(foreign, unknown);
    let link = client
        .post(app.internal_url(&format!(
            "/internal/documents/departements/75/documents/{id}/link"
        )))
        .bearer_auth(&gironde_only)
        .send()
        .await
        .expect("requête");
    assert_eq!(link.status(), 404);
    // Its own caller still reads it.
    let own = client
        .get(app.internal_url(&format!(
            "/internal/documents/departements/75/documents/{id}"
        )))
        .bearer_auth(&paris_only)
        .send()
        .await
        .expect("requête");
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn the_public_listener_does_not_serve_the_internal_api() {
    let app = spawn_app(&["33"]).await;
    for path in [
        "/internal/documents/openapi.json",
        "/internal/documents/departements/33/documents/00000000-0000-0000-0000-000000000000",
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    // The internal listener serves it, and nothing of the public platform.
    let internal = reqwest::get(app.internal_url("/internal/documents/openapi.json"))
        .await
        .expect("requête");
    assert_eq!(internal.status(), 200);
    let page = reqwest::get(app.internal_url("/connexion"))
        .await
        .expect("requête");
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("application/json")
    );
}
