//! The services running apart call each other over their HTTP APIs: here the mandate service
//! stores its attestations through the document-vault-bridge's internal API, the bridge being
//! another application with its own listeners. The platform's own object store is made
//! unreachable, so an attestation can only have been stored by the bridge. (The in-process
//! vault, the default, is what every other mandate test uses.)

mod common;

use common::identity::*;
use common::spawn_app_with;
use foundation::auth::secrets::{new_token, token_hash};
use test_support::database::TestDatabase;
use uuid::Uuid;

#[tokio::test]
async fn attestations_are_stored_through_the_vault_service_when_it_runs_apart() {
    let db = TestDatabase::with_departements(&["33"]).await;
    // The bridge alone, on the same database and the stack's object store.
    let bridge =
        document_vault_bridge::Application::build(test_support::test_settings(&db.app_url))
            .await
            .expect("document-vault-bridge");
    let (bridge_public, bridge_internal) = (bridge.port(), bridge.internal_port());
    tokio::spawn(bridge.run_until_stopped());
    // The mandate service's token, as `tenant-admin internal caller add` registers it.
    let token = new_token();
    sqlx::query(
        "INSERT INTO platform.internal_callers (name, token_sha256, kinds, departements)
         VALUES ('mandate-service', $1, ARRAY['mandate_attestation', 'revocation_attestation'], ARRAY['33'])",
    )
    .bind(token_hash(&token))
    .execute(&db.admin)
    .await
    .expect("appelant");
    let remote = format!("http://127.0.0.1:{bridge_internal}");
    let app = spawn_app_with(db, |settings| {
        settings.documents.vault_url = Some(remote.clone());
        settings.documents.vault_token = token.clone().into();
        // Nothing listens there: the vault of this process cannot store anything.
        settings.object_store.endpoint = "http://127.0.0.1:9".into();
    })
    .await;

    let (who, structure, client) = logged_in_aidant(&app).await;
    let identity = common::idp::angela(&format!("fc-{}", Uuid::new_v4().simple()));
    let (_, mandate) =
        common::idp::mandate_for(&app, structure, who.id, &identity, &["logement"]).await;
    let page_path = format!("/mandats/{mandate}");
    let resp = post_form(
        &client,
        &app,
        &page_path,
        &format!("/mandats/{mandate}/attestation"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        format!("/mandats/{mandate}?message=attestation").as_str()
    );

    // Recorded on the mandate, with its journal entry, and stored by the bridge as the
    // mandate service's kind.
    let (document, sha): (Option<Uuid>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT attestation_id, attestation_sha256 FROM dep_33.mandates WHERE id = $1",
    )
    .bind(mandate)
    .fetch_one(&app.db.admin)
    .await
    .expect("mandat");
    let document = document.expect("attestation enregistrée sur le mandat");
    let (kind, stored_sha): (String, Vec<u8>) =
        sqlx::query_as("SELECT kind, sha256 FROM dep_33.documents WHERE id = $1")
            .bind(document)
            .fetch_one(&app.db.admin)
            .await
            .expect("document");
    assert_eq!(kind, "mandate_attestation");
    assert_eq!(sha.as_deref(), Some(stored_sha.as_slice()));
    let journaled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dep_33.journal WHERE kind = 'attestation_produced' AND mandate_id = $1
           AND details::jsonb->>'document' = $2",
    )
    .bind(mandate)
    .bind(document.to_string())
    .fetch_one(&app.db.admin)
    .await
    .expect("journal");
    assert_eq!(journaled, 1);

    // The link the mandate page gives, signed by the mandate service, is served by the bridge.
    let (status, html) = page(&client, &app.url(&page_path)).await;
    assert_eq!(status, 200);
    let start = html
        .find(&format!("/documents/33/{document}?"))
        .expect("lien de l'attestation sur la page");
    let link: String = html[start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect::<String>()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let resp = reqwest::get(format!("http://127.0.0.1:{bridge_public}{link}"))
        .await
        .expect("téléchargement");
    assert_eq!(resp.status(), 200, "{link}");
    let pdf = resp.bytes().await.expect("PDF");
    assert!(pdf.starts_with(b"%PDF-"));

    // A token the bridge no longer accepts: the act goes on without attestation, nothing is
    // half-recorded, and the page says it can be produced later.
    sqlx::query(
        "UPDATE platform.internal_callers SET active = false WHERE name = 'mandate-service'",
    )
    .execute(&app.db.admin)
    .await
    .expect("désactivation");
    let other = common::idp::angela(&format!("fc-{}", Uuid::new_v4().simple()));
    let (_, second) = common::idp::mandate_for(&app, structure, who.id, &other, &["social"]).await;
    let documents_before: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("documents");
    let second_page = format!("/mandats/{second}");
    let resp = post_form(
        &client,
        &app,
        &second_page,
        &format!("/mandats/{second}/attestation"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        format!("/mandats/{second}?message=attestation-indisponible").as_str()
    );
    let attached: Option<Uuid> =
        sqlx::query_scalar("SELECT attestation_id FROM dep_33.mandates WHERE id = $1")
            .bind(second)
            .fetch_one(&app.db.admin)
            .await
            .expect("mandat");
    assert_eq!(attached, None);
    let documents_after: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.documents")
        .fetch_one(&app.db.admin)
        .await
        .expect("documents");
    assert_eq!(documents_after, documents_before);
}
