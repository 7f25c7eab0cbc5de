//! A usager's phone and address belong to the structure they were given to: another
//! structure holding a mandate for the same person cannot redirect the first one's receipts;
//! a change is journaled for every structure holding a live mandate, and the person is told at
//! the contact they had.

mod common;

use std::time::Duration;

use common::identity::*;
use common::idp::{angela, mandate_for};
use common::{TestApp, spawn_app};
use foundation::ids::{ProfessionalId, StructureId, UsagerId};
use policies::Role;
use uuid::Uuid;

/// A random mobile number, as typed and in E.164 (unique enough across runs of the shared
/// SMS gateway).
fn mobile() -> (String, String) {
    let n = Uuid::new_v4().as_u128() % 100_000_000;
    let digits = format!("{n:08}");
    let typed = format!(
        "07 {} {} {} {}",
        &digits[0..2],
        &digits[2..4],
        &digits[4..6],
        &digits[6..8]
    );
    (typed, format!("+337{digits}"))
}

async fn aidant_of_new_structure(
    app: &TestApp,
    name: &str,
) -> (StructureId, TestProfessional, Browser) {
    let structure = structure_domain(app, "33").await;
    let who = professional(
        &app.db.admin,
        name,
        &[(Role::Aidant, structure.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, app, &who, -1).await.status(), 303);
    (structure, who, client)
}

async fn set_phone(app: &TestApp, client: &Browser, usager: UsagerId, typed: &str) {
    let resp = post_form(
        client,
        app,
        &format!("/usagers/{usager}"),
        &format!("/usagers/{usager}/coordonnees"),
        &[("telephone", typed)],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

async fn phone_of(app: &TestApp, usager: UsagerId, structure: StructureId) -> Option<String> {
    sqlx::query_scalar(
        "SELECT phone FROM dep_33.usager_contacts WHERE usager_id = $1 AND structure_id = $2",
    )
    .bind(usager)
    .bind(structure)
    .fetch_optional(&app.db.admin)
    .await
    .expect("contact")
    .flatten()
}

#[tokio::test]
async fn another_structure_cannot_redirect_a_structures_receipts() {
    let app = spawn_app(&["33"]).await;
    let (a, ana, a_client) = aidant_of_new_structure(&app, "Ana Premiere").await;
    let (b, bob, b_client) = aidant_of_new_structure(&app, "Bob Seconde").await;
    // One person, no e-mail: receipts go by SMS to the number each structure was given.
    let mut person = angela(&format!("contact-{}", Uuid::new_v4().simple()));
    person.email = None;
    let (usager, _) = mandate_for(&app, a, ana.id, &person, &["logement"]).await;
    let (same, _) = mandate_for(&app, b, bob.id, &person, &["famille"]).await;
    assert_eq!(usager, same, "une seule personne dans le territoire");

    let (a_typed, a_e164) = mobile();
    let (b_typed, b_e164) = mobile();
    let (b2_typed, b2_e164) = mobile();
    assert!(a_e164 != b_e164 && b_e164 != b2_e164, "numéros distincts");
    set_phone(&app, &a_client, usager, &a_typed).await;
    set_phone(&app, &b_client, usager, &b_typed).await;

    // B's number applies to B's receipts only.
    assert_eq!(
        phone_of(&app, usager, a).await.as_deref(),
        Some(a_e164.as_str())
    );
    assert_eq!(
        phone_of(&app, usager, b).await.as_deref(),
        Some(b_e164.as_str())
    );
    let (_, a_page) = page(&a_client, &app.url(&format!("/usagers/{usager}"))).await;
    assert!(
        a_page.contains(&format!("se terminant par {}", &a_e164[a_e164.len() - 2..])),
        "la page de A annonce toujours son propre numéro"
    );

    // B replaces its number: the person is told at the number B had, and the change is
    // journaled for both structures holding a live mandate.
    set_phone(&app, &b_client, usager, &b2_typed).await;
    let told =
        test_support::sms_gateway::wait_for_sms_to(&b_e164, 1, Duration::from_secs(15)).await;
    assert_eq!(told.len(), 1, "un avis au numéro précédent");
    let text = told[0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("a modifié vos coordonnées"), "{text}");
    assert!(
        test_support::sms_gateway::wait_for_sms_to(&a_e164, 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "rien au numéro de A"
    );
    let journaled: Vec<(StructureId, Option<ProfessionalId>)> = sqlx::query_as(
        "SELECT structure_id, professional_id FROM dep_33.journal
         WHERE kind = 'usager_contact_updated' AND usager_id = $1
           AND (details::jsonb ->> 'changed_by_structure')::uuid = $2
         ORDER BY id",
    )
    .bind(usager)
    .bind(b)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    // Two changes by B (first number, then its replacement), each journaled for B and for A.
    assert_eq!(
        journaled,
        vec![(b, Some(bob.id)), (a, None), (b, Some(bob.id)), (a, None)]
    );
    assert_eq!(
        phone_of(&app, usager, a).await.as_deref(),
        Some(a_e164.as_str())
    );
}
