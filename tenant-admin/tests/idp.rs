//! `tenant-admin idp client add` as a process: redirect URIs are parsed and bad ones refused
//! with one clear line, a non-zero exit, and nothing registered.

use std::process::Output;

use test_support::database::TestDatabase;

async fn add_client(db: &TestDatabase, environment: &str, client_id: &str, uri: &str) -> Output {
    add_client_allowed(db, environment, client_id, uri, "profile,email", "logement").await
}

async fn add_client_allowed(
    db: &TestDatabase,
    environment: &str,
    client_id: &str,
    uri: &str,
    scopes: &str,
    categories: &str,
) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        .env("AC_ENVIRONMENT", environment)
        .arg("--database-url")
        .arg(&db.admin_url)
        .arg("--app-role")
        .arg(test_support::database::app_role())
        .args([
            "idp",
            "client",
            "add",
            "--client-id",
            client_id,
            "--name",
            "Service de test",
            "--redirect-uri",
            uri,
            "--scopes",
            scopes,
            "--categories",
            categories,
        ])
        .output()
        .await
        .expect("tenant-admin")
}

async fn registered(db: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar("SELECT client_id FROM platform.oidc_clients ORDER BY client_id")
        .fetch_all(&db.admin)
        .await
        .expect("clients")
}

#[tokio::test]
async fn bad_redirect_uris_are_refused_with_a_clear_message() {
    let db = TestDatabase::create().await;
    for (environment, uri) in [
        ("development", "http://127.0.0.1:8080@evil.example/cb"),
        ("development", "https://fc.example@evil.example/cb"),
        ("development", "https://user:secret@fc.example/cb"),
        ("development", "https://fc.example/cb#fragment"),
        ("development", "http://evil.example/cb"),
        ("development", "http://localhost.evil.example/cb"),
        ("development", "javascript://fc.example/%0Aalert(1)"),
        ("development", "/relative/cb"),
        ("production", "http://127.0.0.1:8080/cb"),
        ("production", "http://localhost:8080/cb"),
    ] {
        let out = add_client(&db, environment, "service-refuse", uri).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{environment} {uri} accepté");
        assert!(
            stderr.contains("URI") && stderr.contains("refusée"),
            "{environment} {uri} : {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(registered(&db).await.is_empty(), "rien d'enregistré");
    // What is accepted: https anywhere, plain http on the loopback interface in development.
    for (environment, id, uri) in [
        (
            "production",
            "service-https",
            "https://fc.example/api/v2/oidc-callback",
        ),
        (
            "development",
            "service-local",
            "http://127.0.0.1:4000/callback",
        ),
        (
            "development",
            "service-local-6",
            "http://[::1]:4000/callback",
        ),
    ] {
        let out = add_client(&db, environment, id, uri).await;
        assert!(
            out.status.success(),
            "{environment} {uri} : {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        registered(&db).await,
        ["service-https", "service-local", "service-local-6"]
    );
}

#[tokio::test]
async fn a_client_is_registered_with_its_scopes_and_categories_and_unknown_ones_are_refused() {
    let db = TestDatabase::create().await;
    let uri = "https://fc.example/api/v2/oidc-callback";
    for (scopes, categories, expected) in [
        ("profile,admin", "logement", "scope inconnu : admin"),
        (
            "profile",
            "logement,Inconnue",
            "catégorie de démarche inconnue : Inconnue",
        ),
    ] {
        let out =
            add_client_allowed(&db, "production", "service-refuse", uri, scopes, categories).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    assert!(registered(&db).await.is_empty());
    let out = add_client_allowed(
        &db,
        "production",
        "service-logement",
        uri,
        "profile,email",
        "logement,Famille-Scolarité",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (scopes, categories): (Vec<String>, Vec<String>) = sqlx::query_as(
        "SELECT allowed_scopes, allowed_categories FROM platform.oidc_clients WHERE client_id = 'service-logement'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("client");
    assert_eq!(scopes, ["email", "openid", "profile"]);
    assert_eq!(categories, ["famille", "logement"]);
}
