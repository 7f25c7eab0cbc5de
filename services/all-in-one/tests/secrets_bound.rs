//! Secrets at rest are bound to their row, and earlier key versions stay readable: a seed
//! copied into another professional's factor opens nothing; a platform whose TOTP key was
//! rotated still reads seeds of the previous version given as a previous key.

mod common;

use base64::Engine;
use common::identity::*;
use common::spawn_app_with;
use test_support::database::TestDatabase;

#[tokio::test]
async fn a_seed_copied_into_another_factor_opens_nothing() {
    let app = common::spawn_app(&[]).await;
    let victim = professional(&app.db.admin, "Vera Victime", &[]).await;
    let intruder = professional(&app.db.admin, "Igor Intrus", &[]).await;
    // Someone able to write the table copies their own sealed seed into the victim's factor.
    sqlx::query(
        "UPDATE platform.second_factors v
         SET seed_ciphertext = i.seed_ciphertext, seed_nonce = i.seed_nonce
         FROM platform.second_factors i
         WHERE v.professional_id = $1 AND i.professional_id = $2",
    )
    .bind(victim.id)
    .bind(intruder.id)
    .execute(&app.db.admin)
    .await
    .expect("copie");
    let client = browser(&app.address);
    let (status, _) = ask_link(&client, &app, &victim.email, &intruder.code(0)).await;
    assert_eq!(
        status, 422,
        "le code de l'intrus n'ouvre pas le compte de la victime"
    );
    let bound: bool = sqlx::query_scalar(
        "SELECT aad_bound FROM platform.second_factors WHERE professional_id = $1",
    )
    .bind(victim.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("facteur");
    assert!(bound);
}

#[tokio::test]
async fn after_a_key_rotation_seeds_of_the_previous_version_stay_readable() {
    let db = TestDatabase::create().await;
    // A professional enrolled under the current (version 1) key.
    let ada = professional(&db.admin, "Ada Rotation", &[]).await;
    let old_key = foundation::config::Settings::default().security.totp_key;
    let new_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let previous = format!("1:{}", secrecy::ExposeSecret::expose_secret(&old_key));
    let app = spawn_app_with(db, move |s| {
        s.security.totp_key = new_key.clone().into();
        s.security.totp_key_version = 2;
        s.security.totp_previous_keys = previous.clone().into();
    })
    .await;
    let client = browser(&app.address);
    let (status, body) = ask_link(&client, &app, &ada.email, &ada.code(0)).await;
    assert_eq!(status, 200, "{body}");

    // Without the previous key, the same seed cannot be read (and the login says so generically).
    let db = TestDatabase::create().await;
    let bob = professional(&db.admin, "Bob Sans Trousseau", &[]).await;
    let app = spawn_app_with(db, |s| {
        s.security.totp_key = base64::engine::general_purpose::STANDARD
            .encode([42u8; 32])
            .into();
        s.security.totp_key_version = 2;
    })
    .await;
    let (status, _) = ask_link(&browser(&app.address), &app, &bob.email, &bob.code(0)).await;
    assert_eq!(status, 422);
}
