//! The document vault against SeaweedFS and Postgres: only ciphertext in the store, signed
//! links that expire and cannot be altered, no document across territories, size and type
//! limits, idempotent retention purge, a clear 503 while the store is stopped and recovery
//! without intervention once it is back.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, spawn_app, spawn_app_with};
use document_vault_bridge::vault::{Retention, Vault, VaultError};
use foundation::app::Platform;
use foundation::ids::TenantId;
use foundation::tenancy::{DepartementCode, Territory};
use uuid::Uuid;

async fn platform_of(
    app: &TestApp,
    tweak: impl FnOnce(&mut foundation::config::Settings),
) -> Platform {
    let mut settings = test_support::test_settings(&app.db.app_url);
    tweak(&mut settings);
    Platform::connect(settings).await.expect("plateforme")
}

async fn territory(platform: &Platform, code: &str) -> Territory {
    platform
        .tenancy
        .unguarded(DepartementCode::parse(code).expect("code"))
        .await
        .expect("territoire")
}

fn pdf(marker: &str) -> Vec<u8> {
    format!("%PDF-1.7\n% attestation de test\n({marker})\n%%EOF\n").into_bytes()
}

async fn put(
    vault: &Vault,
    platform: &Platform,
    code: &str,
    tenant: TenantId,
    bytes: &[u8],
    retention: Retention,
) -> Result<Uuid, VaultError> {
    let mut conn = platform.platform_pool().acquire().await.expect("connexion");
    vault
        .put(
            &territory(platform, code).await,
            &mut conn,
            tenant,
            "attestation",
            bytes,
            retention,
        )
        .await
}

#[tokio::test]
async fn the_store_holds_only_ciphertext_and_links_serve_the_document() {
    let app = spawn_app(&["33", "75"]).await;
    let platform = platform_of(&app, |_| {}).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    let canary = format!("CANARI-{}", Uuid::new_v4().simple());
    let id = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf(&canary),
        Retention::MandateArchive,
    )
    .await
    .expect("dépôt");

    // The raw object, read straight from the store, does not contain the canary.
    let store = document_vault_bridge::store::Store::new(&platform.settings.object_store).await;
    let raw = store.get(&format!("{tenant}/{id}")).await.expect("objet");
    assert!(
        !raw.windows(canary.len()).any(|w| w == canary.as_bytes()),
        "clair dans le stockage"
    );

    // A signed link serves it, decrypted, not cacheable.
    let link = vault.link(
        "33",
        id,
        time::Duration::minutes(5),
        time::OffsetDateTime::now_utc(),
    );
    let resp = app.get(&link).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(String::from_utf8_lossy(&resp.bytes().await.expect("corps")).contains(&canary));

    // Tampered, expired, or moved to another territory: refused.
    // The last hex digit of the signature changed (to another digit, whatever it was).
    let last = if link.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &link[..link.len() - 1]);
    assert_eq!(app.get(&tampered).await.status(), 403);
    let expired = vault.link(
        "33",
        id,
        time::Duration::seconds(-1),
        time::OffsetDateTime::now_utc(),
    );
    assert_eq!(app.get(&expired).await.status(), 403);
    assert_eq!(
        app.get(&link.replace("/documents/33/", "/documents/75/"))
            .await
            .status(),
        403
    );
    // Even with a valid signature, a document is not found through another territory.
    let foreign = vault.link(
        "75",
        id,
        time::Duration::minutes(5),
        time::OffsetDateTime::now_utc(),
    );
    assert_eq!(app.get(&foreign).await.status(), 404);
    let mut conn = platform.platform_pool().acquire().await.expect("connexion");
    assert_eq!(
        vault
            .get(&territory(&platform, "75").await, &mut conn, id)
            .await
            .err(),
        Some(VaultError::NotFound)
    );
}

#[tokio::test]
async fn size_and_type_limits_write_nothing() {
    let app = spawn_app(&["33"]).await;
    let platform = platform_of(&app, |_| {}).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    let mut big = pdf("gros");
    big.resize(document_vault_bridge::vault::MAX_BYTES + 1, b' ');
    assert_eq!(
        put(
            &vault,
            &platform,
            "33",
            tenant,
            &big,
            Retention::MandateArchive
        )
        .await,
        Err(VaultError::TooLarge)
    );
    assert_eq!(
        put(
            &vault,
            &platform,
            "33",
            tenant,
            b"<html>pas un pdf</html>",
            Retention::MandateArchive
        )
        .await,
        Err(VaultError::UnsupportedType)
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("count");
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn the_retention_purge_deletes_exactly_what_is_due_and_is_idempotent() {
    let app = spawn_app(&["33"]).await;
    let platform = platform_of(&app, |_| {}).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    let due1 = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("a"),
        Retention::Days(-1),
    )
    .await
    .expect("dépôt");
    let due2 = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("b"),
        Retention::Days(-2),
    )
    .await
    .expect("dépôt");
    let kept = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("c"),
        Retention::Days(30),
    )
    .await
    .expect("dépôt");
    let ctx = territory(&platform, "33").await;
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(vault.purge(&ctx, now).await, Ok(2));
    assert_eq!(vault.purge(&ctx, now).await, Ok(0), "deuxième passage");
    let store = document_vault_bridge::store::Store::new(&platform.settings.object_store).await;
    for (id, exists) in [(due1, false), (due2, false), (kept, true)] {
        assert_eq!(
            store.exists(&format!("{tenant}/{id}")).await,
            Ok(exists),
            "{id}"
        );
    }
    let mut conn = platform.platform_pool().acquire().await.expect("connexion");
    assert!(vault.get(&ctx, &mut conn, kept).await.is_ok());
    assert_eq!(
        vault.get(&ctx, &mut conn, due1).await.err(),
        Some(VaultError::NotFound)
    );
}

async fn store_check(app: &TestApp) -> bool {
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.expect("json");
    ready["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "object_store")
        .expect("store")["ok"]
        == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_store_gives_a_clear_503_nothing_else_breaks_and_it_recovers_alone() {
    // A SeaweedFS of this test's own, really stopped then restarted (the stack's is shared).
    let mut seaweed = test_support::private_seaweedfs::PrivateSeaweedFs::start().await;
    let (endpoint, access, secret) = (
        seaweed.endpoint(),
        seaweed.access_key.clone(),
        seaweed.secret_key.clone(),
    );
    let private = move |s: &mut foundation::config::Settings| {
        s.object_store.endpoint = endpoint.clone();
        s.object_store.access_key_id = access.clone();
        s.object_store.secret_access_key = secret.clone().into();
        s.object_store.timeout_ms = 1_000;
    };
    let db = test_support::database::TestDatabase::with_departements(&["33"]).await;
    let app = spawn_app_with(db, private.clone()).await;
    let platform = platform_of(&app, private).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    let before = put_until_stored(&vault, &platform, tenant, "avant").await;
    let link = vault.link(
        "33",
        before,
        time::Duration::minutes(10),
        time::OffsetDateTime::now_utc(),
    );
    assert_eq!(app.get(&link).await.status(), 200);

    seaweed.stop().await;
    // Writing: a clear error within the timeout, no reference left without its object.
    let started = Instant::now();
    let outcome = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("pendant"),
        Retention::MandateArchive,
    )
    .await;
    assert_eq!(outcome, Err(VaultError::Unavailable));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("count");
    assert_eq!(rows, 1, "aucune référence sans objet");
    assert_eq!(
        VaultError::Unavailable.to_string(),
        "le stockage des documents est momentanément indisponible ; réessayez dans quelques minutes"
    );
    // Reading through a link: a French 503 page, quickly.
    let started = Instant::now();
    let resp = app.get(&link).await;
    assert_eq!(resp.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    let page = resp.text().await.expect("page");
    assert!(page.contains("momentanément indisponible"), "{page}");

    // Everything else keeps working; readiness names the store.
    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(
        app.get("/api/habilitation/departements/33/lieux")
            .await
            .status(),
        200
    );
    assert!(!store_check(&app).await);

    // Restarted: the same vault, without any intervention, reads and writes again.
    seaweed.restart().await;
    let after = put_until_stored(&vault, &platform, tenant, "après").await;
    assert_ne!(after, before);
    let resp = app.get(&link).await;
    assert_eq!(resp.status(), 200);
    assert!(String::from_utf8_lossy(&resp.bytes().await.expect("corps")).contains("avant"));
    assert!(store_check(&app).await);
}

/// Stores a document, retrying while a just-started store warms up (within a minute).
async fn put_until_stored(
    vault: &Vault,
    platform: &Platform,
    tenant: TenantId,
    marker: &str,
) -> Uuid {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match put(
            vault,
            platform,
            "33",
            tenant,
            &pdf(marker),
            Retention::MandateArchive,
        )
        .await
        {
            Ok(id) => return id,
            Err(VaultError::Unavailable) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => panic!("dépôt impossible : {e}"),
        }
    }
}

#[tokio::test]
async fn a_tenant_key_rotation_rewraps_every_document_key() {
    let app = spawn_app(&["33"]).await;
    let platform = platform_of(&app, |_| {}).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    let first = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("un"),
        Retention::MandateArchive,
    )
    .await
    .expect("dépôt");
    let second = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("deux"),
        Retention::MandateArchive,
    )
    .await
    .expect("dépôt");
    let ctx = territory(&platform, "33").await;
    let mut conn = platform.platform_pool().acquire().await.expect("connexion");
    assert_eq!(
        vault.rotate_tenant_key(&ctx, &mut conn, tenant).await,
        Ok(2)
    );
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT key_version FROM dep_33.documents WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(&app.db.admin)
    .await
    .expect("versions");
    assert_eq!(versions, vec![2]);
    for (id, marker) in [(first, "un"), (second, "deux")] {
        let (_, bytes) = vault
            .get(&ctx, &mut conn, id)
            .await
            .expect("lecture après rotation");
        assert!(String::from_utf8_lossy(&bytes).contains(&format!("({marker})")));
    }
    // New documents use the new version; a second rotation re-wraps them all again.
    let third = put(
        &vault,
        &platform,
        "33",
        tenant,
        &pdf("trois"),
        Retention::MandateArchive,
    )
    .await
    .expect("dépôt");
    assert_eq!(
        vault.rotate_tenant_key(&ctx, &mut conn, tenant).await,
        Ok(3)
    );
    assert!(vault.get(&ctx, &mut conn, third).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_documents_and_rotations_of_a_tenant_never_collide_on_its_key() {
    let app = spawn_app(&["33"]).await;
    let platform = platform_of(&app, |s| s.database.max_connections = 16).await;
    let vault = document_vault_bridge::vault(&platform)
        .await
        .expect("coffre");
    let tenant = TenantId::from_uuid(Uuid::new_v4());

    // Twelve first documents at once: each must find or create the tenant's one key.
    let puts = (0..12).map(|i| {
        let (vault, platform) = (vault.clone(), platform.clone());
        async move {
            put(
                &vault,
                &platform,
                "33",
                tenant,
                &pdf(&format!("concurrent-{i}")),
                Retention::MandateArchive,
            )
            .await
        }
    });
    for result in futures::future::join_all(puts).await {
        result.expect("dépôt concurrent");
    }
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM platform.tenant_keys WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&app.db.admin)
            .await
            .expect("clés");
    assert_eq!(keys, 1);
    // Four rotations at once: four new versions, one after the other.
    let rotations = (0..4).map(|_| {
        let (vault, platform) = (vault.clone(), platform.clone());
        async move {
            let mut conn = platform.platform_pool().acquire().await.expect("connexion");
            vault
                .rotate_tenant_key(&territory(&platform, "33").await, &mut conn, tenant)
                .await
        }
    });
    for result in futures::future::join_all(rotations).await {
        result.expect("rotation concurrente");
    }
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT version FROM platform.tenant_keys WHERE tenant_id = $1 ORDER BY version",
    )
    .bind(tenant)
    .fetch_all(&app.db.admin)
    .await
    .expect("versions");
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}
