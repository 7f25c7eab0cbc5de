//! Habilitation desk I, end to end against the real stack: an issuer verifies their address,
//! fills and submits a structure request, the national team (or a territory by delegation)
//! reviews it, accepting creates the structure, the référent's account and the habilitation
//! files in the right territory, and rollout waves hold requests until their territory opens.

mod common;

use common::identity::*;
use common::requests::*;
use common::{TestApp, spawn_app};
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use policies::Role;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Issuer's address.

#[tokio::test]
async fn an_issuer_verifies_their_address_by_a_single_use_link() {
    let app = spawn_app(&["33"]).await;
    let client = browser(&app.address);
    // Without a verified address, the request pages send to the address form.
    let resp = client.get(&app.url("/demande/mes-demandes")).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/demande?session=expiree");

    // A bad address: a French error on the field, what was typed kept, nothing written.
    let resp = post_form(
        &client,
        &app,
        "/demande",
        "/demande",
        &[("email", "pas-une-adresse")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(
        body.contains("n&#39;est pas valide") || body.contains("n'est pas valide"),
        "{body}"
    );
    assert!(body.contains(r#"value="pas-une-adresse""#));
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.issuers").await,
        0
    );

    let email = unique_email("demandeuse");
    let resp = post_form(&client, &app, "/demande", "/demande", &[("email", &email)]).await;
    assert_eq!(resp.status(), 200);
    let link = mailed(&email, "/demande/acces?jeton=", 0).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    // Only the hash is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM platform.issuer_links")
        .fetch_one(&app.db.admin)
        .await
        .expect("lien");
    assert_eq!(stored, foundation::auth::secrets::token_hash(&token));
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM platform.outbox WHERE payload::text LIKE '%{token}%'")
        )
        .await,
        0
    );

    // GET (a mail scanner, twice) consumes nothing; the POST does, once.
    for _ in 0..2 {
        let (status, body) = page(&client, &link).await;
        assert_eq!(status, 200);
        assert!(body.contains("Accéder à mes demandes"));
    }
    let (_, confirm) = page(&client, &link).await;
    let consume_url = app.url("/demande/acces");
    let resp = client
        .post(
            &consume_url,
            &[
                ("csrf", csrf_of(&confirm).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 303);
    let (status, list) = page(&client, &app.url("/demande/mes-demandes")).await;
    assert_eq!(status, 200);
    assert!(list.contains(&email));
    let verified: bool =
        sqlx::query_scalar("SELECT verified_at IS NOT NULL FROM platform.issuers WHERE email = $1")
            .bind(&email)
            .fetch_one(&app.db.admin)
            .await
            .expect("vérifiée");
    assert!(verified);

    // Reused: refused clearly, in another browser too.
    let other = browser(&app.address);
    let (status, page_again) = page(&other, &link).await;
    assert_eq!(status, 400);
    assert!(
        page_again.contains("n&#39;est plus valable") || page_again.contains("n'est plus valable")
    );
    let (_, start) = page(&other, &app.url("/demande")).await;
    let resp = other
        .post(
            &consume_url,
            &[
                ("csrf", csrf_of(&start).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        other.get(&app.url("/demande/mes-demandes")).await.status(),
        303
    );

    // Expired (24 h) or forged: refused, nothing opened.
    let late = unique_email("tardive");
    let resp = post_form(&other, &app, "/demande", "/demande", &[("email", &late)]).await;
    assert_eq!(resp.status(), 200);
    let late_link = mailed(&late, "/demande/acces?jeton=", 0).await;
    sqlx::query("UPDATE platform.issuer_links SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL")
        .execute(&app.db.admin)
        .await
        .expect("expiration");
    assert_eq!(page(&other, &late_link).await.0, 400);
    assert_eq!(
        page(&other, &app.url("/demande/acces?jeton=forge")).await.0,
        400
    );
    assert_eq!(page(&other, &app.url("/demande/acces")).await.0, 400);

    // Logging out ends the issuer session.
    let resp = post_form(
        &client,
        &app,
        "/demande/mes-demandes",
        "/demande/deconnexion",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        client.get(&app.url("/demande/mes-demandes")).await.status(),
        303
    );
}

// ---------------------------------------------------------------------------------------------
// The form.

#[tokio::test]
async fn the_form_keeps_what_was_typed_and_writes_nothing_half() {
    let app = spawn_app(&["33", "01"]).await;
    let email = unique_email("formulaire");
    let client = issuer(&app, &email).await;

    // Step 1 full of mistakes: each on its field, every value kept, nothing written.
    let resp = post_form(
        &client,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &[
            ("name", ""),
            ("kind", "pirate"),
            ("siret", "13002526500014"),
            ("address", "3 rue des Lilas"),
            ("postal_code", "336"),
            ("commune_code", "33600"),
            ("france_services", "on"),
            ("france_services_number", ""),
            ("mission", "Accueil"),
            ("opening_hours", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    for expected in [
        "Indiquez le nom de la structure",
        "Choisissez le type de structure",
        "clé de contrôle incorrecte",
        "Le code postal compte 5 chiffres",
        "numéro de labellisation France Services",
        "Indiquez les horaires",
        r#"value="13002526500014""#,
        r#"value="33600""#,
        "3 rue des Lilas",
        r#"id="siret-erreur""#,
        r#"aria-invalid="true""#,
    ] {
        assert!(body.contains(expected), "{expected} absent");
    }
    // A commune that does not exist, a postal code that does not match.
    let mut fields = structure_fields(&Structure {
        name: "CCAS de Pessac",
        siret: siret(1),
        commune: "33999",
        postal: "33600",
    });
    let resp = post_fields(
        &client,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &fields,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Aucune commune ne porte le code INSEE 33999")
    );
    fields[5].1 = "33318".into();
    fields[4].1 = "33000".into();
    let resp = post_fields(
        &client,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &fields,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("ne correspond pas à la commune Pessac")
    );
    for table in [
        "platform.request_index",
        "dep_33.structure_requests",
        "dep_01.structure_requests",
    ] {
        assert_eq!(
            count(&app, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }

    // Valid: the draft lives in the département of its commune, and nowhere else.
    fields[4].1 = "33600".into();
    let resp = post_fields(
        &client,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &fields,
    )
    .await;
    assert_eq!(resp.status(), 303);
    let reference = location(&resp)
        .strip_prefix("/demande/demandes/")
        .and_then(|r| r.strip_suffix("/referent"))
        .expect("référence")
        .to_owned();
    assert!(reference.starts_with("HAB-33-"), "{reference}");
    assert_eq!(status_of(&app, "33", &reference).await, "draft");
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_01.structure_requests").await,
        0
    );
    let base = format!("/demande/demandes/{reference}");

    // Step 2 with a bad phone: nothing of it saved.
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/referent"),
        &format!("{base}/referent"),
        &[
            ("first_name", "Régine".into()),
            ("last_name", "Référente".into()),
            ("email", "regine@ccas-pessac.example.test".into()),
            ("phone", "12".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(body.contains("numéro de téléphone français"));
    assert!(body.contains("regine@ccas-pessac.example.test"));
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structure_requests WHERE referent_email IS NOT NULL"
        )
        .await,
        0
    );

    // Aidants: volunteers, civic service, interns and elected officials are refused with the
    // reason; a professional is listed.
    for (employment, profession, why) in [
        ("volunteer", "Accueil", "bénévoles"),
        ("civic_service", "Accueil", "service civique"),
        ("intern", "Accueil", "stagiaires"),
        ("elected", "Accueil", "élus"),
        ("employee", "Adjoint au maire", "élus"),
    ] {
        let resp = post_fields(
            &client,
            &app,
            &format!("{base}/aidants"),
            &format!("{base}/aidants"),
            &[
                ("first_name", "Paul".into()),
                ("last_name", "Bénévole".into()),
                ("email", "paul@example.test".into()),
                ("profession", profession.into()),
                ("employment", employment.into()),
                ("employer", "CCAS".into()),
            ],
        )
        .await;
        assert_eq!(resp.status(), 400, "{employment}");
        let body = resp.text().await.expect("corps").to_lowercase();
        assert!(body.contains(why), "{employment}: {why}");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.request_aidants").await,
        0
    );

    // Commitments: all or nothing.
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/engagements"),
        &format!("{base}/engagements"),
        &[("terms_of_use", "on".into()), ("dpo_informed", "on".into())],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Cet engagement est nécessaire")
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.request_commitments").await,
        0
    );

    // Incomplete, the submission is refused with what is missing.
    let resp = submit(&client, &app, &reference).await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(body.contains("le référent"), "{body}");
    assert_eq!(status_of(&app, "33", &reference).await, "draft");

    // Moving the structure to another département is refused (the request lives here).
    let mut elsewhere = fields.clone();
    elsewhere[5].1 = "01053".into();
    elsewhere[4].1 = "01000".into();
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/structure"),
        &format!("{base}/structure"),
        &elsewhere,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("la commune doit s")
    );

    // Commitments recorded with their text version and time.
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/engagements"),
        &format!("{base}/engagements"),
        &[
            ("terms_of_use", "on".into()),
            ("dpo_informed", "on".into()),
            ("training_financed", "on".into()),
            ("professionals_only", "on".into()),
            ("no_elected_official", "on".into()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.request_commitments WHERE text_version = '2026-11' AND accepted_at IS NOT NULL").await,
        5
    );

    // Another issuer may not see or touch this request.
    let intruder = issuer(&app, &unique_email("intrus")).await;
    for path in ["", "/structure", "/referent", "/aidants", "/engagements"] {
        assert_eq!(
            intruder
                .get(&app.url(&format!("{base}{path}")))
                .await
                .status(),
            404,
            "{path}"
        );
    }
    let resp = post_form(
        &intruder,
        &app,
        "/demande/mes-demandes",
        &format!("{base}/retirer"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(status_of(&app, "33", &reference).await, "draft");
}

#[tokio::test]
async fn a_second_open_request_for_a_siret_is_refused_with_a_link_to_the_first() {
    let app = spawn_app(&["33"]).await;
    let first = issuer(&app, &unique_email("premier")).await;
    let s = Structure {
        name: "CCAS de Talence",
        siret: siret(7),
        commune: "33522",
        postal: "33400",
    };
    let reference = fill(&first, &app, &s, &unique_email("ref")).await;
    let second = issuer(&app, &unique_email("second")).await;
    let resp = post_fields(
        &second,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &structure_fields(&s),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(
        body.contains(&format!("/demande/demandes/{reference}")),
        "{body}"
    );
    assert!(
        body.contains("Rien n&#39;a été enregistré") || body.contains("Rien n'a été enregistré")
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structure_requests").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.request_index").await,
        1
    );
    // Once withdrawn, the SIRET is free again.
    let base = format!("/demande/demandes/{reference}");
    let resp = post_form(&first, &app, &base, &format!("{base}/retirer"), &[]).await;
    assert_eq!(resp.status(), 303);
    let resp = post_fields(
        &second,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &structure_fields(&s),
    )
    .await;
    assert_eq!(resp.status(), 303);
}

// ---------------------------------------------------------------------------------------------
// Submission, review, acceptance.

#[tokio::test]
async fn a_request_goes_from_draft_to_accepted_and_creates_everything_in_its_territory() {
    let app = spawn_app(&["33", "01"]).await;
    let council33 = council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague 1", "33, 01").await;

    let issuer_email = unique_email("issuer");
    let client = issuer(&app, &issuer_email).await;
    let referent_email = unique_email("regine");
    let s = Structure {
        name: "CCAS de Lormont",
        siret: siret(42),
        commune: "33249",
        postal: "33310",
    };
    let reference = fill(&client, &app, &s, &referent_email).await;
    let base = format!("/demande/demandes/{reference}");
    let resp = submit(&client, &app, &reference).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "submitted");
    wait_subject(&issuer_email, "bien reçue").await;

    // Edited after submission: a French 409, nothing changes.
    let mut changed = structure_fields(&s);
    changed[0].1 = "Nom changé".into();
    let resp = post_fields(&client, &app, &base, &format!("{base}/structure"), &changed).await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("ne peut pas être modifiée")
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structure_requests WHERE structure_name = 'Nom changé'"
        )
        .await,
        0
    );

    // The national queue lists it; the reviewer writes, then asks for changes.
    let (status, queue) = page(&admin, &app.url("/instruction")).await;
    assert_eq!(status, 200);
    assert!(
        queue.contains(&reference)
            && queue.contains("CCAS de Lormont")
            && queue.contains("Lormont")
    );
    let review = format!("/instruction/demandes/{reference}");
    let resp = post_form(
        &admin,
        &app,
        &review,
        &format!("{review}/message"),
        &[("message", "")],
    )
    .await;
    assert_eq!(resp.status(), 400, "an empty message is refused");
    let resp = post_form(
        &admin,
        &app,
        &review,
        &format!("{review}/message"),
        &[("message", "Les horaires du samedi ?")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    wait_subject(&issuer_email, "nouveau message").await;
    let resp = post_form(
        &admin,
        &app,
        &review,
        &format!("{review}/modifications"),
        &[("changes", "Précisez les horaires du samedi.")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "changes_requested");
    wait_subject(&issuer_email, "modifications demandées").await;
    // Accepting while changes are asked is refused.
    let resp = post_form(&admin, &app, &review, &format!("{review}/accepter"), &[]).await;
    assert_eq!(resp.status(), 409);

    // The issuer answers, amends and submits again; the reviewer is told.
    let (_, recap) = page(&client, &app.url(&base)).await;
    assert!(recap.contains("Précisez les horaires du samedi."));
    let resp = post_form(
        &client,
        &app,
        &base,
        &format!("{base}/message"),
        &[("message", "Fermé le samedi.")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    wait_subject(&_nadia.email, "nouveau message").await;
    let mut amended = structure_fields(&s);
    amended[7].1 = "Du lundi au vendredi, 9 h - 17 h ; fermé le samedi".into();
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/structure"),
        &format!("{base}/structure"),
        &amended,
    )
    .await;
    assert_eq!(resp.status(), 303);
    let resp = submit(&client, &app, &reference).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "amended");
    wait_subject(&_nadia.email, "modifiée").await;

    // Accepted: the structure in the département's schema, linked to its tenant, the
    // référent's account and role, one file per aidant and for the référent-aidant.
    let resp = post_form(&admin, &app, &review, &format!("{review}/accepter"), &[]).await;
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(status_of(&app, "33", &reference).await, "accepted");
    let (structure, tenant, siret_stored): (StructureId, TenantId, String) = sqlx::query_as(
        "SELECT id, tenant_id, siret FROM dep_33.structures WHERE request_id IS NOT NULL",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("structure");
    assert_eq!(tenant, council33);
    assert_eq!(siret_stored, s.siret);
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_01.structures").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_01.habilitation_files").await,
        0
    );
    let files: Vec<(String, String)> = sqlx::query_as(
        "SELECT email, state FROM dep_33.habilitation_files WHERE structure_id = $1 ORDER BY email",
    )
    .bind(structure)
    .fetch_all(&app.db.admin)
    .await
    .expect("dossiers");
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|(_, state)| state == "to_train"));
    assert!(files.iter().any(|(e, _)| *e == referent_email));
    let referent: ProfessionalId = sqlx::query_scalar(
        "SELECT a.professional_id FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
         WHERE p.email = $1 AND a.role = 'referent' AND a.domain = $2 AND a.departement_code = '33'",
    )
    .bind(&referent_email)
    .bind(format!("structure:{structure}"))
    .fetch_one(&app.db.admin)
    .await
    .expect("référent");
    wait_subject(&issuer_email, "acceptée").await;
    let journal: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM dep_33.journal WHERE details LIKE '%' || $1 || '%' ORDER BY id",
    )
    .bind(&reference)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    for kind in [
        "request_submitted",
        "request_message",
        "request_changes_requested",
        "request_amended",
        "request_accepted",
        "structure_created",
        "habilitation_files_created",
        "referent_appointed",
    ] {
        assert!(
            journal.iter().any(|k| k == kind),
            "{kind} absent : {journal:?}"
        );
    }
    assert_eq!(count(&app, "SELECT count(*) FROM dep_01.journal").await, 0);

    // The référent activates their account from the mail, then logs in to their structure.
    let client_ref = browser(&app.address);
    let regine = activate_from_mail(&app, &client_ref, &referent_email, referent).await;
    assert_eq!(log_in(&client_ref, &app, &regine, 1).await.status(), 303);
    let (status, account) = page(&client_ref, &app.url("/compte")).await;
    assert_eq!(status, 200);
    assert!(account.contains("CCAS de Lormont"), "{account}");

    // The issuer sees "accepted"; the request is closed for edits.
    let (_, recap) = page(&client, &app.url(&base)).await;
    assert!(recap.contains("Acceptée"));
    let resp = post_form(
        &client,
        &app,
        "/demande/mes-demandes",
        &format!("{base}/retirer"),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn two_concurrent_accepts_create_everything_once() {
    let app = spawn_app(&["33"]).await;
    council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague concurrente", "33").await;
    let client = issuer(&app, &unique_email("concurrence")).await;
    let s = Structure {
        name: "Mairie de Pessac",
        siret: siret(99),
        commune: "33318",
        postal: "33600",
    };
    let reference = fill(&client, &app, &s, &unique_email("ref")).await;
    assert_eq!(submit(&client, &app, &reference).await.status(), 303);
    let review = format!("/instruction/demandes/{reference}");
    let (_, html) = page(&admin, &app.url(&review)).await;
    let token = csrf_of(&html);
    let url = app.url(&format!("{review}/accepter"));
    let form = [("csrf", token.as_str())];
    // Both acceptances are held at their first write (the structure) until both are in
    // flight: each has read the request by then, so only its row lock can tell them apart.
    let mut blocker = app.db.admin.begin().await.expect("tx");
    sqlx::query("LOCK TABLE dep_33.structures IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("verrou");
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        blocker.commit().await.expect("libération");
    };
    let (a, b, ()) = tokio::join!(admin.post(&url, &form), admin.post(&url, &form), release);
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![303, 409]);
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structures").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.habilitation_files").await,
        3
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.role_assignments WHERE role = 'referent'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.request_acceptances").await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'request_accepted'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn reviewing_needs_the_right_and_stays_in_the_reviewers_territory() {
    let app = spawn_app(&["33", "01"]).await;
    let council33 = council(&app, "33").await;
    let council01 = council(&app, "01").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague 2", "33, 01").await;
    let client = issuer(&app, &unique_email("droits")).await;
    let s = Structure {
        name: "CCAS de Bordeaux",
        siret: siret(5),
        commune: "33063",
        postal: "33000",
    };
    let reference = fill(&client, &app, &s, &unique_email("ref")).await;
    assert_eq!(submit(&client, &app, &reference).await.status(), 303);
    let review = format!("/instruction/demandes/{reference}");

    // An aidant has no review right: 403 on the queue, the page and every act.
    let st = structure_domain(&app, "33").await;
    let aidant = professional(
        &app.db.admin,
        "Ada Aidante",
        &[(Role::Aidant, st.domain(), Some("33"))],
    )
    .await;
    let ada = browser(&app.address);
    assert_eq!(log_in(&ada, &app, &aidant, -1).await.status(), 303);
    assert_eq!(ada.get(&app.url("/instruction")).await.status(), 403);
    assert_eq!(ada.get(&app.url(&review)).await.status(), 403);
    let (_, account) = page(&ada, &app.url("/compte")).await;
    let token = csrf_of(&account);
    for act in ["accepter", "refuser", "modifications", "message"] {
        let resp = ada
            .post(
                &app.url(&format!("{review}/{act}")),
                &[
                    ("csrf", token.as_str()),
                    ("reason", "x"),
                    ("changes", "x"),
                    ("message", "x"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 403, "{act}");
    }

    // Territory admins: one of 01, one of 33, both delegated by the national team.
    let admin01 = professional(
        &app.db.admin,
        "Tom Ain",
        &[(Role::TerritoryAdmin, council01.domain(), None)],
    )
    .await;
    let admin33 = professional(
        &app.db.admin,
        "Tina Gironde",
        &[(Role::TerritoryAdmin, council33.domain(), None)],
    )
    .await;
    // Not a territory admin of that département: refused with the reason, nothing granted.
    let resp = post_form(
        &admin,
        &app,
        "/national/relecteurs",
        "/national/relecteurs",
        &[("email", &admin01.email), ("departement", "33")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.role_assignments WHERE role = 'reviewer'"
        )
        .await,
        0
    );
    for (who, dep) in [(&admin01, "01"), (&admin33, "33")] {
        let resp = post_form(
            &admin,
            &app,
            "/national/relecteurs",
            "/national/relecteurs",
            &[("email", &who.email), ("departement", dep)],
        )
        .await;
        assert_eq!(resp.status(), 303);
    }
    let tom = browser(&app.address);
    assert_eq!(log_in(&tom, &app, &admin01, -1).await.status(), 303);
    // The reviewer of 01 sees only 01's requests, and 404 for 33's.
    let (status, queue) = page(&tom, &app.url("/instruction?etat=tous")).await;
    assert_eq!(status, 200);
    assert!(!queue.contains(&reference));
    assert_eq!(tom.get(&app.url(&review)).await.status(), 404);
    assert_eq!(
        tom.get(&app.url(&format!("{review}?territoire=33")))
            .await
            .status(),
        404
    );
    let (_, q) = page(&tom, &app.url("/instruction?territoire=33&etat=tous")).await;
    assert!(!q.contains(&reference));
    let token = csrf_of(&page(&tom, &app.url("/compte")).await.1);
    let resp = tom
        .post(
            &app.url(&format!("{review}/accepter")),
            &[("csrf", token.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(status_of(&app, "33", &reference).await, "submitted");
    // Unknown or malformed references: 404.
    for bad in ["HAB-33-ZZZZZZZZ", "n-importe-quoi", "HAB-99-ABCDEFGH"] {
        assert_eq!(
            admin
                .get(&app.url(&format!("/instruction/demandes/{bad}")))
                .await
                .status(),
            404
        );
    }

    // The reviewer of 33 refuses it, with a reason; an empty reason is refused.
    let tina = browser(&app.address);
    assert_eq!(log_in(&tina, &app, &admin33, -1).await.status(), 303);
    let (_, queue) = page(&tina, &app.url("/instruction")).await;
    assert!(queue.contains(&reference));
    let resp = post_form(
        &tina,
        &app,
        &review,
        &format!("{review}/refuser"),
        &[("reason", "  ")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(status_of(&app, "33", &reference).await, "submitted");
    let resp = post_form(
        &tina,
        &app,
        &review,
        &format!("{review}/refuser"),
        &[("reason", "Structure hors du champ du dispositif.")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "refused");
    let issuer_email: String = sqlx::query_scalar(
        "SELECT issuer_email FROM dep_33.structure_requests WHERE reference = $1",
    )
    .bind(&reference)
    .fetch_one(&app.db.admin)
    .await
    .expect("demandeur");
    wait_subject(&issuer_email, "refusée").await;
    // Withdrawing the delegation takes the right away at once.
    let resp = post_form(
        &admin,
        &app,
        "/national/relecteurs",
        "/national/relecteurs/retirer",
        &[
            ("professionnel", &admin33.id.to_string()),
            ("collectivite", &council33.to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let tina_again = browser(&app.address);
    assert_eq!(log_in(&tina_again, &app, &admin33, 0).await.status(), 303);
    assert_eq!(tina_again.get(&app.url("/instruction")).await.status(), 403);
}

// ---------------------------------------------------------------------------------------------
// Rollout waves.

#[tokio::test]
async fn a_request_waits_until_its_wave_opens_then_enters_review() {
    let app = spawn_app(&["33", "40"]).await;
    council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    // 40 opens now; 33 is planned in a later wave.
    open_wave(&app, &admin, "Vague Landes", "40").await;
    let resp = post_form(
        &admin,
        &app,
        "/national/vagues",
        "/national/vagues",
        &[
            ("name", "Vague Gironde"),
            ("opens_on", "2027-03-01"),
            ("departements", "33"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    // A département in two waves, unknown codes, no date: refused on their fields.
    let resp = post_form(
        &admin,
        &app,
        "/national/vagues",
        "/national/vagues",
        &[
            ("name", "Doublon"),
            ("opens_on", ""),
            ("departements", "33, 99"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("corps");
    assert!(
        body.contains("Codes de département inconnus : 99"),
        "{body}"
    );
    assert!(body.contains("date d&#39;ouverture") || body.contains("date d'ouverture"));
    assert_eq!(
        count(&app, "SELECT count(*) FROM platform.rollout_waves").await,
        2
    );

    // The landing page lists the open territory and the planned wave.
    let landing = app.get("/").await.text().await.expect("accueil");
    assert!(landing.contains("Landes (40)"), "{landing}");
    assert!(landing.contains("Vague Gironde") && landing.contains("01/03/2027"));

    let issuer_email = unique_email("attente");
    let client = issuer(&app, &issuer_email).await;
    let s = Structure {
        name: "CCAS de Pessac",
        siret: siret(3),
        commune: "33318",
        postal: "33600",
    };
    let reference = fill(&client, &app, &s, &unique_email("ref")).await;
    let resp = submit(&client, &app, &reference).await;
    assert_eq!(
        location(&resp),
        format!("/demande/demandes/{reference}?message=en-attente")
    );
    assert_eq!(status_of(&app, "33", &reference).await, "waiting");
    wait_subject(&issuer_email, "bien reçue").await;
    let (_, queue) = page(&admin, &app.url("/instruction")).await;
    assert!(
        !queue.contains(&reference),
        "a waiting request is not to review yet"
    );
    let (_, waiting) = page(&admin, &app.url("/instruction?etat=waiting")).await;
    assert!(waiting.contains(&reference));
    // Waiting is not reviewable.
    let review = format!("/instruction/demandes/{reference}");
    assert_eq!(
        post_form(&admin, &app, &review, &format!("{review}/accepter"), &[])
            .await
            .status(),
        409
    );

    // The territory admin of 33 follows it.
    let council33 = council(&app, "33").await;
    let tina = professional(
        &app.db.admin,
        "Tina Suivi",
        &[(Role::TerritoryAdmin, council33.domain(), None)],
    )
    .await;
    let tb = browser(&app.address);
    assert_eq!(log_in(&tb, &app, &tina, -1).await.status(), 303);
    let (status, follow) = page(&tb, &app.url("/territoire/deploiement")).await;
    assert_eq!(status, 200);
    assert!(
        follow.contains(&reference)
            && follow.contains("Vague Gironde")
            && follow.contains("En attente")
    );

    // The wave opens: the request enters review and its issuer is told.
    let wave: Uuid =
        sqlx::query_scalar("SELECT id FROM platform.rollout_waves WHERE name = 'Vague Gironde'")
            .fetch_one(&app.db.admin)
            .await
            .expect("vague");
    let resp = post_form(
        &admin,
        &app,
        "/national/vagues",
        "/national/vagues/ouvrir",
        &[("vague", &wave.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "submitted");
    wait_subject(&issuer_email, "entre en examen").await;
    let (_, queue) = page(&admin, &app.url("/instruction")).await;
    assert!(queue.contains(&reference));
    // Opening again changes nothing.
    let resp = post_form(
        &admin,
        &app,
        "/national/vagues",
        "/national/vagues/ouvrir",
        &[("vague", &wave.to_string())],
    )
    .await;
    assert_eq!(location(&resp), "/national/vagues?message=deja-ouverte");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'request_released'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_commune_admin_follows_only_its_communes_requests() {
    let app = spawn_app(&["33"]).await;
    let council33 = council(&app, "33").await;
    let pessac = foundation::tenancy::tenants::create_tenant(
        &app.db.admin,
        &foundation::tenancy::tenants::TenantKind::Commune(
            foundation::tenancy::CommuneCode::parse("33318").expect("commune"),
        ),
        "Ville de Pessac",
    )
    .await
    .expect("commune")
    .id;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague 33", "33").await;
    let client = issuer(&app, &unique_email("communes")).await;
    let at_pessac = fill(
        &client,
        &app,
        &Structure {
            name: "CCAS de Pessac",
            siret: siret(11),
            commune: "33318",
            postal: "33600",
        },
        &unique_email("r1"),
    )
    .await;
    let at_talence = fill(
        &client,
        &app,
        &Structure {
            name: "CCAS de Talence",
            siret: siret(12),
            commune: "33522",
            postal: "33400",
        },
        &unique_email("r2"),
    )
    .await;
    for r in [&at_pessac, &at_talence] {
        assert_eq!(submit(&client, &app, r).await.status(), 303);
    }
    let mayor_staff = professional(
        &app.db.admin,
        "Paul Pessac",
        &[(Role::TerritoryAdmin, pessac.domain(), None)],
    )
    .await;
    let b = browser(&app.address);
    assert_eq!(log_in(&b, &app, &mayor_staff, -1).await.status(), 303);
    let (_, follow) = page(&b, &app.url("/territoire/deploiement")).await;
    assert!(follow.contains(&at_pessac));
    assert!(!follow.contains(&at_talence), "a commune sees only its own");
    let dep_staff = professional(
        &app.db.admin,
        "Dora Gironde",
        &[(Role::TerritoryAdmin, council33.domain(), None)],
    )
    .await;
    let d = browser(&app.address);
    assert_eq!(log_in(&d, &app, &dep_staff, -1).await.status(), 303);
    let (_, follow) = page(&d, &app.url("/territoire/deploiement")).await;
    assert!(follow.contains(&at_pessac) && follow.contains(&at_talence));
    // Acceptance links the Pessac structure to the commune's tenant.
    let review = format!("/instruction/demandes/{at_pessac}");
    assert_eq!(
        post_form(&admin, &app, &review, &format!("{review}/accepter"), &[])
            .await
            .status(),
        303
    );
    let tenant: TenantId =
        sqlx::query_scalar("SELECT tenant_id FROM dep_33.structures WHERE commune_code = '33318'")
            .fetch_one(&app.db.admin)
            .await
            .expect("structure");
    assert_eq!(tenant, pessac);
    // No issuer, référent or aidant personal data on the territory page.
    assert!(!follow.contains("@example.test"));
}

// ---------------------------------------------------------------------------------------------
// API and digest.

#[tokio::test]
async fn the_weekly_digest_lists_requests_submitted_through_the_desk() {
    let app = spawn_app(&["33"]).await;
    let (nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague digest", "33").await;
    let client = issuer(&app, &unique_email("digest")).await;
    let submitted = fill(
        &client,
        &app,
        &Structure {
            name: "CCAS du digest",
            siret: siret(31),
            commune: "33318",
            postal: "33600",
        },
        &unique_email("r"),
    )
    .await;
    let draft = fill(
        &client,
        &app,
        &Structure {
            name: "Brouillon du digest",
            siret: siret(32),
            commune: "33522",
            postal: "33400",
        },
        &unique_email("r"),
    )
    .await;
    assert_eq!(submit(&client, &app, &submitted).await.status(), 303);
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    // The previous digest ended an hour ago; the next is due next Monday, 10:00 in Paris.
    sqlx::query(
        "INSERT INTO platform.request_digests (week_start, covered_from, covered_until, request_count, recipients)
         VALUES ((date_trunc('week', now() AT TIME ZONE 'Europe/Paris'))::date, now() - interval '8 days', now() - interval '1 hour', 0, 1)
         ON CONFLICT (week_start) DO UPDATE SET covered_until = EXCLUDED.covered_until",
    )
    .execute(&app.db.admin)
    .await
    .expect("digest précédent");
    let now: time::OffsetDateTime = sqlx::query_scalar(
        "SELECT date_trunc('week', now() AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'Europe/Paris' + interval '7 days 10 hours'",
    )
    .fetch_one(&app.db.admin)
    .await
    .expect("lundi");
    let digest = habilitation_desk::requests::send_weekly_digest(&platform, now)
        .await
        .expect("digest")
        .expect("envoyé");
    assert_eq!(digest.requests, 1);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let mails = test_support::maildev::mails_to(&nadia.email).await;
        // The platform's own scheduler may have sent an (empty) digest at start: ours names it.
        if let Some(m) = mails
            .iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains(&submitted)))
        {
            break m["text"].as_str().unwrap_or_default().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "pas de digest");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        text.contains(&submitted) && text.contains("CCAS du digest"),
        "{text}"
    );
    assert!(!text.contains(&draft));
}

#[tokio::test]
async fn an_acceptance_interrupted_before_the_referents_account_is_finished_by_the_job() {
    let app = spawn_app(&["33"]).await;
    council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague reprise", "33").await;
    let client = issuer(&app, &unique_email("reprise")).await;
    let referent_email = unique_email("referente");
    let reference = fill(
        &client,
        &app,
        &Structure {
            name: "CCAS repris",
            siret: siret(41),
            commune: "33318",
            postal: "33600",
        },
        &referent_email,
    )
    .await;
    assert_eq!(submit(&client, &app, &reference).await.status(), 303);
    // The platform part fails (as if the database went away between the two steps): the
    // referent account is not there, the territory's acceptance stands.
    sqlx::query("ALTER TABLE platform.request_acceptances RENAME TO request_acceptances_away")
        .execute(&app.db.admin)
        .await
        .expect("panne");
    let review = format!("/instruction/demandes/{reference}");
    assert_eq!(
        post_form(&admin, &app, &review, &format!("{review}/accepter"), &[])
            .await
            .status(),
        303
    );
    assert_eq!(status_of(&app, "33", &reference).await, "accepted");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.role_assignments WHERE role = 'referent'"
        )
        .await,
        0
    );
    sqlx::query("ALTER TABLE platform.request_acceptances_away RENAME TO request_acceptances")
        .execute(&app.db.admin)
        .await
        .expect("retour");
    sqlx::query("UPDATE dep_33.structure_requests SET decided_at = now() - interval '1 minute'")
        .execute(&app.db.admin)
        .await
        .expect("temps");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let job = habilitation_desk::requests::acceptance::finish_accepted();
    for _ in 0..2 {
        (job.run)(platform.clone()).await.expect("tâche");
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM platform.role_assignments WHERE role = 'referent'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM dep_33.structure_requests WHERE accounts_done_at IS NOT NULL"
        )
        .await,
        1
    );
    // One activation link, however many runs.
    mailed(&referent_email, "/activation?jeton=", 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let links = test_support::maildev::mails_to(&referent_email).await.len();
    assert_eq!(links, 1);
}

#[tokio::test]
async fn abandoned_drafts_are_purged_after_six_months_and_nothing_else() {
    let app = spawn_app(&["33"]).await;
    let client = issuer(&app, &unique_email("oubli")).await;
    let old = fill(
        &client,
        &app,
        &Structure {
            name: "Brouillon oublié",
            siret: siret(51),
            commune: "33318",
            postal: "33600",
        },
        &unique_email("r"),
    )
    .await;
    let recent = fill(
        &client,
        &app,
        &Structure {
            name: "Brouillon récent",
            siret: siret(52),
            commune: "33522",
            postal: "33400",
        },
        &unique_email("r"),
    )
    .await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague purge", "33").await;
    let submitted = fill(
        &client,
        &app,
        &Structure {
            name: "Déposée ancienne",
            siret: siret(53),
            commune: "33063",
            postal: "33000",
        },
        &unique_email("r"),
    )
    .await;
    assert_eq!(submit(&client, &app, &submitted).await.status(), 303);
    sqlx::query("UPDATE dep_33.structure_requests SET updated_at = now() - interval '181 days' WHERE reference IN ($1, $2)")
        .bind(&old)
        .bind(&submitted)
        .execute(&app.db.admin)
        .await
        .expect("vieillissement");
    let platform = foundation::app::Platform::connect(test_support::test_settings(&app.db.app_url))
        .await
        .expect("plateforme");
    let job = habilitation_desk::requests::draft_purge();
    assert_eq!((job.run)(platform.clone()).await.expect("purge"), 1);
    assert_eq!((job.run)(platform.clone()).await.expect("purge"), 0);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT reference FROM dep_33.structure_requests ORDER BY 1")
            .fetch_all(&app.db.admin)
            .await
            .expect("demandes");
    let mut expected = vec![recent.clone(), submitted.clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) FROM platform.request_index WHERE reference = '{old}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.request_aidants").await,
        4
    );
    assert_eq!(
        client
            .get(&app.url(&format!("/demande/demandes/{old}")))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_issuer_starts_at_most_twenty_requests_a_day() {
    let app = spawn_app(&["33"]).await;
    let client = issuer(&app, &unique_email("script")).await;
    for n in 0..21u32 {
        let s = Structure {
            name: "Structure en série",
            siret: siret(600 + n),
            commune: "33318",
            postal: "33600",
        };
        let resp = post_fields(
            &client,
            &app,
            "/demande/nouvelle",
            "/demande/nouvelle",
            &structure_fields(&s),
        )
        .await;
        if n < 20 {
            assert_eq!(resp.status(), 303, "{n}");
        } else {
            assert_eq!(resp.status(), 400);
            assert!(
                resp.text()
                    .await
                    .expect("corps")
                    .contains("c&#39;est le maximum")
            );
        }
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structure_requests").await,
        20
    );
}

#[tokio::test]
async fn the_issuer_api_answers_the_signed_in_issuer_only() {
    let app = spawn_app(&["33"]).await;
    let anonymous = app.get("/api/habilitation/demandes").await;
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");
    let client = issuer(&app, &unique_email("api")).await;
    let reference = fill(
        &client,
        &app,
        &Structure {
            name: "CCAS API",
            siret: siret(21),
            commune: "33318",
            postal: "33600",
        },
        &unique_email("r"),
    )
    .await;
    let resp = client.get(&app.url("/api/habilitation/demandes")).await;
    assert_eq!(resp.status(), 200);
    let list: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(list["requests"][0]["reference"], reference.as_str());
    assert_eq!(list["requests"][0]["status"], "draft");
    assert_eq!(list["requests"][0]["departement"], "33");
    let resp = client
        .get(&app.url(&format!("/api/habilitation/demandes/{reference}")))
        .await;
    assert_eq!(resp.status(), 200);
    let other = issuer(&app, &unique_email("autre-api")).await;
    let resp = other
        .get(&app.url(&format!("/api/habilitation/demandes/{reference}")))
        .await;
    assert_eq!(resp.status(), 404);
    let resp = other
        .get(&app.url("/api/habilitation/demandes/HAB-99-XXXXXXXX"))
        .await;
    assert_eq!(resp.status(), 404);
}

// ---------------------------------------------------------------------------------------------
// Browser journeys and accessibility.

/// Runs one phase of `infra/browser/habilitation.mjs` (the keyboard alone) with a session's
/// cookies; fails on the script's error and on any axe violation of a page it visited.
async fn keyboard_phase(
    app: &TestApp,
    phase: &str,
    cookies: &[(String, String)],
    fields: serde_json::Value,
) -> serde_json::Value {
    let mut request = serde_json::json!({
        "phase": phase,
        "base": app.address,
        "cookies": cookies,
        "maildev": test_support::stack_var("AC_MAILDEV_URL"),
    });
    if let (Some(into), serde_json::Value::Object(more)) = (request.as_object_mut(), fields) {
        into.extend(more);
    }
    let result = test_support::browser::run("habilitation.mjs", &request).await;
    assert!(
        result["error"].is_null(),
        "{phase} : {} ; étapes : {}",
        result["error"],
        result["steps"]
    );
    let pages = result["pages"].as_array().expect("pages");
    assert!(!pages.is_empty(), "{phase} : aucune page vérifiée");
    let failures: Vec<_> = pages
        .iter()
        .filter(|p| p["violations"].as_array().is_none_or(|v| !v.is_empty()))
        .collect();
    assert!(
        failures.is_empty(),
        "{phase} : violations axe : {failures:#?}"
    );
    result
}

/// The cookies a phase's browser ended with, to hand the session to the next phase.
fn cookies_after(result: &serde_json::Value) -> Vec<(String, String)> {
    result["cookies"]
        .as_array()
        .expect("cookies")
        .iter()
        .map(|c| {
            (
                c[0].as_str().expect("nom").to_owned(),
                c[1].as_str().expect("valeur").to_owned(),
            )
        })
        .collect()
}

/// The visited URLs of a phase, with their status, to show what was checked.
fn visited(result: &serde_json::Value) -> Vec<(String, u64)> {
    result["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| {
            (
                p["url"].as_str().unwrap_or_default().to_owned(),
                p["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The same SIRET with a wrong Luhn key.
fn wrong_key(siret: &str) -> String {
    let (body, key) = siret.split_at(13);
    let key = key.parse::<u32>().expect("clé");
    format!("{body}{}", (key + 1) % 10)
}

fn assert_axe_clean(results: Vec<(String, Vec<String>)>) {
    let failures: Vec<_> = results.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(failures.is_empty(), "violations axe : {failures:#?}");
}

#[tokio::test]
async fn the_issuers_whole_journey_works_in_chromium_with_the_keyboard_and_passes_axe() {
    let app = spawn_app(&["33"]).await;
    council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague clavier", "33").await;
    let email = unique_email("clavier");
    let referent_email = unique_email("referente");
    let aidant_email = unique_email("aidante");
    let good = siret(61);

    // Phase 1: address, link, the four steps (two mistakes corrected), submission.
    let filed = keyboard_phase(
        &app,
        "issuer-file",
        &[],
        serde_json::json!({
            "email": email,
            "bad_email": "demandeuse.example.test",
            "structure": {
                "name": "CCAS de Lormont",
                "siret": good,
                "bad_siret": wrong_key(&good),
                "address": "1 place de la Mairie",
                "postal_code": "33310",
                "commune_code": "33249",
                "mission": "Accueil social et accompagnement aux démarches",
                "opening_hours": "Du lundi au vendredi, 9 h - 17 h",
            },
            "referent": {
                "first_name": "Régine",
                "last_name": "Référente",
                "email": referent_email,
                "phone": "05 56 00 00 00",
            },
            "aidant": {
                "first_name": "Anne",
                "last_name": "Clavier",
                "email": aidant_email,
                "profession": "Agent d'accueil",
                "employer": "CCAS de Lormont",
            },
        }),
    )
    .await;
    assert_eq!(
        filed["steps"],
        serde_json::json!([
            "address",
            "verified",
            "structure",
            "referent",
            "aidants",
            "commitments",
            "submitted"
        ])
    );
    let seen = &filed["seen"];
    assert!(
        seen["siret_error"]
            .as_str()
            .is_some_and(|e| e.contains("clé de contrôle")),
        "{seen}"
    );
    assert!(
        seen["aidant_error"]
            .as_str()
            .is_some_and(|e| e.contains("bénévoles")),
        "{seen}"
    );
    assert_eq!(seen["state"], "Déposée, en cours d'examen");
    let reference = filed["reference"].as_str().expect("référence").to_owned();
    assert!(reference.starts_with("HAB-33-"), "{reference}");
    assert_eq!(status_of(&app, "33", &reference).await, "submitted");
    // What was typed is what was recorded: the corrected SIRET, one aidant, five commitments.
    let (stored_siret, stored_referent): (String, String) = sqlx::query_as(
        "SELECT siret, referent_email FROM dep_33.structure_requests WHERE reference = $1",
    )
    .bind(&reference)
    .fetch_one(&app.db.admin)
    .await
    .expect("demande");
    assert_eq!(
        (stored_siret, stored_referent),
        (good.clone(), referent_email)
    );
    let aidants: Vec<(String, String)> =
        sqlx::query_as("SELECT email, employment FROM dep_33.request_aidants")
            .fetch_all(&app.db.admin)
            .await
            .expect("aidants");
    assert_eq!(aidants, vec![(aidant_email, "public_agent".to_owned())]);
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.request_commitments").await,
        5
    );
    // Every page of the journey was checked, error states included.
    let pages = visited(&filed);
    assert_eq!(pages.len(), 14, "{pages:#?}");
    assert_eq!(
        pages.iter().filter(|(_, status)| *status == 400).count(),
        3,
        "{pages:#?}"
    );
    wait_subject(&email, "bien reçue").await;

    // The reviewer, over HTTP, asks for changes.
    let review = format!("/instruction/demandes/{reference}");
    let asked = "Précisez les horaires du samedi.";
    let resp = post_form(
        &admin,
        &app,
        &review,
        &format!("{review}/modifications"),
        &[("changes", asked)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    wait_subject(&email, "modifications demandées").await;

    // Phase 2, same browser session: the issuer reads, answers, amends and submits again.
    let hours = "Du lundi au vendredi, 9 h - 17 h ; fermé le samedi";
    let answer = "Nous sommes fermés le samedi.";
    let answered = keyboard_phase(
        &app,
        "issuer-answer",
        &cookies_after(&filed),
        serde_json::json!({
            "reference": reference,
            "expect": asked,
            "answer": answer,
            "opening_hours": hours,
        }),
    )
    .await;
    assert_eq!(answered["seen"]["state"], "Modifications demandées");
    assert_eq!(answered["seen"]["after"], "Modifiée, en cours d'examen");
    assert_eq!(status_of(&app, "33", &reference).await, "amended");
    let (_, html) = page(&admin, &app.url(&review)).await;
    assert!(html.contains(answer) && html.contains("fermé le samedi"));
    wait_subject(&_nadia.email, "nouveau message").await;

    // The reviewer accepts; phase 3 sees it accepted.
    let resp = post_form(&admin, &app, &review, &format!("{review}/accepter"), &[]).await;
    assert_eq!(resp.status(), 303);
    let accepted = keyboard_phase(
        &app,
        "issuer-accepted",
        &cookies_after(&answered),
        serde_json::json!({ "reference": reference }),
    )
    .await;
    assert_eq!(accepted["seen"]["list"], "Acceptée");
    assert_eq!(accepted["seen"]["state"], "Acceptée");
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.habilitation_files").await,
        1
    );
}

#[tokio::test]
async fn the_reviewers_journey_works_in_chromium_with_the_keyboard_and_passes_axe() {
    let app = spawn_app(&["33", "01"]).await;
    council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague relecture", "33, 01").await;
    let issuer_email = unique_email("relue");
    let client = issuer(&app, &issuer_email).await;
    let s = Structure {
        name: "CCAS de Bègles",
        siret: siret(62),
        commune: "33039",
        postal: "33130",
    };
    let reference = fill(&client, &app, &s, &unique_email("ref")).await;
    assert_eq!(submit(&client, &app, &reference).await.status(), 303);
    // Another territory's request, which the territory filter leaves out.
    let other_client = issuer(&app, &unique_email("ain")).await;
    let other = fill(
        &other_client,
        &app,
        &Structure {
            name: "CCAS de Bourg-en-Bresse",
            siret: siret(63),
            commune: "01053",
            postal: "01000",
        },
        &unique_email("ref"),
    )
    .await;
    assert_eq!(submit(&other_client, &app, &other).await.status(), 303);

    let changes = "Ajoutez les horaires du samedi, s'il vous plaît.";
    let asked = keyboard_phase(
        &app,
        "review-changes",
        &admin.cookies(),
        serde_json::json!({ "reference": reference, "departement": "33", "changes": changes }),
    )
    .await;
    assert_eq!(asked["steps"], serde_json::json!(["opened", "changes"]));
    assert!(
        asked["seen"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Rien n'a été fait")),
        "{}",
        asked["seen"]
    );
    assert_eq!(
        asked["seen"]["field_error"],
        "Indiquez ce qui est à modifier avant d'envoyer la demande."
    );
    assert_eq!(asked["seen"]["state"], "Modifications demandées");
    assert_eq!(status_of(&app, "33", &reference).await, "changes_requested");
    assert_eq!(status_of(&app, "01", &other).await, "submitted");
    wait_subject(&issuer_email, "modifications demandées").await;

    // The issuer, over HTTP, answers and amends.
    let base = format!("/demande/demandes/{reference}");
    let resp = post_form(
        &client,
        &app,
        &base,
        &format!("{base}/message"),
        &[("message", "Fermé le samedi.")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let mut amended = structure_fields(&s);
    amended[7].1 = "Du lundi au vendredi, 9 h - 17 h ; fermé le samedi".into();
    let resp = post_fields(
        &client,
        &app,
        &format!("{base}/structure"),
        &format!("{base}/structure"),
        &amended,
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(submit(&client, &app, &reference).await.status(), 303);
    assert_eq!(status_of(&app, "33", &reference).await, "amended");

    let accepted = keyboard_phase(
        &app,
        "review-accept",
        &cookies_after(&asked),
        serde_json::json!({ "reference": reference, "departement": "33" }),
    )
    .await;
    assert!(
        accepted["seen"]["thread"]
            .as_str()
            .is_some_and(|t| t.contains(changes) && t.contains("Fermé le samedi.")),
        "{}",
        accepted["seen"]
    );
    assert_eq!(accepted["seen"]["state"], "Acceptée");
    assert_eq!(status_of(&app, "33", &reference).await, "accepted");
    assert_eq!(
        count(&app, "SELECT count(*) FROM dep_33.structures").await,
        1
    );
    wait_subject(&issuer_email, "acceptée").await;
}

/// Submits forms in Chromium with the keyboard (fields typed, the button pressed) and returns
/// the resulting pages' statuses; their axe violations fail the test.
async fn keyboard_forms(
    app: &TestApp,
    cookies: &[(String, String)],
    forms: serde_json::Value,
) -> Vec<(String, u64)> {
    let result = keyboard_phase(app, "forms", cookies, serde_json::json!({ "forms": forms })).await;
    visited(&result)
}

#[tokio::test]
async fn every_habilitation_page_passes_axe_in_each_state_and_on_errors() {
    let app = spawn_app(&["33", "40"]).await;
    let council33 = council(&app, "33").await;
    let (_nadia, admin) = national(&app).await;
    open_wave(&app, &admin, "Vague Gironde", "33").await;
    let resp = post_form(
        &admin,
        &app,
        "/national/vagues",
        "/national/vagues",
        &[
            ("name", "Vague Landes"),
            ("opens_on", "2027-03-01"),
            ("departements", "40"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    // A territory admin of 33, delegated: a line on the reviewers' page, and the territory page.
    let tina = professional(
        &app.db.admin,
        "Tina Gironde",
        &[(Role::TerritoryAdmin, council33.domain(), None)],
    )
    .await;
    let territory = browser(&app.address);
    assert_eq!(log_in(&territory, &app, &tina, -1).await.status(), 303);
    let resp = post_form(
        &admin,
        &app,
        "/national/relecteurs",
        "/national/relecteurs",
        &[("email", &tina.email), ("departement", "33")],
    )
    .await;
    assert_eq!(resp.status(), 303);

    // Requests in each state, from one issuer.
    let issuer_email = unique_email("etats");
    let client = issuer(&app, &issuer_email).await;
    let mut n = 70;
    let mut filed = |name: &'static str, commune: &'static str, postal: &'static str| {
        n += 1;
        Structure {
            name,
            siret: siret(n),
            commune,
            postal,
        }
    };
    let draft = fill(
        &client,
        &app,
        &filed("CCAS de Lormont", "33249", "33310"),
        &unique_email("r"),
    )
    .await;
    let submitted_s = filed("CCAS de Pessac", "33318", "33600");
    let submitted = fill(&client, &app, &submitted_s, &unique_email("r")).await;
    let thread = fill(
        &client,
        &app,
        &filed("CCAS de Talence", "33522", "33400"),
        &unique_email("r"),
    )
    .await;
    let accepted = fill(
        &client,
        &app,
        &filed("CCAS de Bègles", "33039", "33130"),
        &unique_email("r"),
    )
    .await;
    let refused = fill(
        &client,
        &app,
        &filed("CCAS de Bordeaux", "33063", "33000"),
        &unique_email("r"),
    )
    .await;
    let waiting = fill(
        &client,
        &app,
        &filed("CCAS de Mont-de-Marsan", "40192", "40000"),
        &unique_email("r"),
    )
    .await;
    for r in [&submitted, &thread, &accepted, &refused, &waiting] {
        assert_eq!(submit(&client, &app, r).await.status(), 303);
    }
    // A draft with its first step only: the other steps empty, the recap listing what lacks.
    let partial_s = filed("Mairie de Cenon", "33119", "33150");
    let resp = post_fields(
        &client,
        &app,
        "/demande/nouvelle",
        "/demande/nouvelle",
        &structure_fields(&partial_s),
    )
    .await;
    assert_eq!(resp.status(), 303);
    let partial = location(&resp)
        .strip_prefix("/demande/demandes/")
        .and_then(|r| r.strip_suffix("/referent"))
        .expect("référence")
        .to_owned();
    let review_of = |r: &str| format!("/instruction/demandes/{r}");
    for (path, field, text) in [
        (
            format!("{}/message", review_of(&thread)),
            "message",
            "Les horaires du samedi ?",
        ),
        (
            format!("{}/modifications", review_of(&thread)),
            "changes",
            "Précisez les horaires du samedi.",
        ),
        (
            format!("{}/refuser", review_of(&refused)),
            "reason",
            "Structure hors du champ du dispositif.",
        ),
    ] {
        let resp = post_form(&admin, &app, &review_of(&thread), &path, &[(field, text)]).await;
        assert_eq!(resp.status(), 303, "{path}");
    }
    let base = |r: &str| format!("/demande/demandes/{r}");
    let resp = post_form(
        &client,
        &app,
        &base(&thread),
        &format!("{}/message", base(&thread)),
        &[("message", "Fermé le samedi.")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let resp = post_form(
        &admin,
        &app,
        &review_of(&accepted),
        &format!("{}/accepter", review_of(&accepted)),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 303);
    for (r, dep, state) in [
        (&draft, "33", "draft"),
        (&submitted, "33", "submitted"),
        (&thread, "33", "changes_requested"),
        (&accepted, "33", "accepted"),
        (&refused, "33", "refused"),
        (&waiting, "40", "waiting"),
        (&partial, "33", "draft"),
    ] {
        assert_eq!(status_of(&app, dep, r).await, state, "{r}");
    }

    // Anonymous pages: the landing page with its waves, the address form, the link pages.
    let fresh = unique_email("lien");
    let anonymous = browser(&app.address);
    let resp = post_form(
        &anonymous,
        &app,
        "/demande",
        "/demande",
        &[("email", &fresh)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let link = mailed(&fresh, "/demande/acces?jeton=", 0).await;
    let urls: Vec<String> = [
        "/",
        "/demande",
        "/demande?session=expiree",
        "/demande/acces?jeton=forge",
    ]
    .iter()
    .map(|p| app.url(p))
    .chain([link])
    .collect();
    assert_axe_clean(test_support::browser::axe_violations(&urls).await);

    // The issuer's pages: an empty list, then each step and each state of the recap.
    let newcomer = issuer(&app, &unique_email("nouvelle")).await;
    let (_, empty) = page(&newcomer, &app.url("/demande/mes-demandes")).await;
    assert!(empty.contains("pas encore de demande"));
    assert_axe_clean(
        test_support::browser::axe_violations_with_cookies(
            &[
                app.url("/demande/mes-demandes"),
                app.url("/demande"),
                app.url("/demande/nouvelle"),
            ],
            &newcomer.cookies(),
        )
        .await,
    );
    let mut paths = vec!["/demande/mes-demandes".to_owned()];
    for step in ["structure", "referent", "aidants", "engagements"] {
        paths.push(format!("{}/{step}", base(&draft)));
        paths.push(format!("{}/{step}", base(&partial)));
    }
    paths.push(format!("{}/aidants?message=ajoute", base(&draft)));
    for (r, flash) in [
        (&draft, ""),
        (&partial, ""),
        (&submitted, "?message=deposee"),
        (&thread, "?message=message"),
        (&accepted, ""),
        (&refused, ""),
        (&waiting, "?message=en-attente"),
    ] {
        paths.push(format!("{}{flash}", base(r)));
    }
    let urls: Vec<String> = paths.iter().map(|p| app.url(p)).collect();
    assert_axe_clean(
        test_support::browser::axe_violations_with_cookies(&urls, &client.cookies()).await,
    );

    // The national team's pages, the review pages in each state, and the territory's page.
    let mut paths: Vec<String> = [
        "/instruction",
        "/instruction?etat=tous",
        "/instruction?territoire=40&etat=waiting",
        "/instruction?etat=accepted&anciennete=3",
        "/national/vagues",
        "/national/vagues?message=ouverte",
        "/national/relecteurs",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    for r in [&submitted, &thread, &accepted, &refused, &waiting] {
        paths.push(review_of(r));
    }
    paths.push(format!("{}?message=modifications", review_of(&thread)));
    paths.push(format!("{}?message=acceptee", review_of(&accepted)));
    let urls: Vec<String> = paths.iter().map(|p| app.url(p)).collect();
    assert_axe_clean(
        test_support::browser::axe_violations_with_cookies(&urls, &admin.cookies()).await,
    );
    assert_axe_clean(
        test_support::browser::axe_violations_with_cookies(
            &[
                app.url("/territoire/deploiement"),
                app.url("/instruction"),
                app.url(&review_of(&submitted)),
            ],
            &territory.cookies(),
        )
        .await,
    );

    // Error states, reached by submitting the forms with the keyboard.
    let statuses = keyboard_forms(
        &app,
        &[],
        serde_json::json!([{
            "url": app.url("/demande"),
            "fields": [["#email", "pas-une-adresse"]],
            "submit": "form[action=\"/demande\"] button[type=submit]",
        }]),
    )
    .await;
    assert!(statuses.iter().all(|(_, s)| *s == 400), "{statuses:?}");
    let step_submit = "main form[novalidate] button[type=submit]";
    let statuses = keyboard_forms(
        &app,
        &client.cookies(),
        serde_json::json!([
            { "url": app.url("/demande/nouvelle"), "fields": [], "submit": step_submit },
            {
                "url": app.url("/demande/nouvelle"),
                "fields": [
                    ["#name", submitted_s.name],
                    ["#kind", "ccas", "select"],
                    ["#siret", submitted_s.siret],
                    ["#address", "1 place de la Mairie"],
                    ["#postal_code", submitted_s.postal],
                    ["#commune_code", submitted_s.commune],
                    ["#mission", "Accueil"],
                    ["#opening_hours", "Le matin"],
                ],
                "submit": step_submit,
            },
            {
                "url": app.url(&format!("{}/structure", base(&partial))),
                "fields": [["#siret", "1234"], ["#commune_code", "33999"]],
                "submit": step_submit,
            },
            {
                "url": app.url(&format!("{}/referent", base(&partial))),
                "fields": [["#email", "regine@"], ["#phone", "12"]],
                "submit": step_submit,
            },
            {
                "url": app.url(&format!("{}/aidants", base(&partial))),
                "fields": [["#first_name", "Paul"], ["#email", "paul@"]],
                "submit": format!("form[action=\"{}/aidants\"] button[type=submit]", base(&partial)),
            },
            {
                "url": app.url(&format!("{}/engagements", base(&partial))),
                "fields": [],
                "submit": step_submit,
            },
            {
                "url": app.url(&base(&thread)),
                "fields": [],
                "submit": format!("form[action=\"{}/message\"] button", base(&thread)),
            },
        ]),
    )
    .await;
    assert!(statuses.iter().all(|(_, s)| *s == 400), "{statuses:?}");
    let statuses = keyboard_forms(
        &app,
        &admin.cookies(),
        serde_json::json!([
            {
                "url": app.url("/national/vagues"),
                "fields": [["#name", "Doublon"], ["#departements", "33, 99"]],
                "submit": "form[action=\"/national/vagues\"] button[type=submit]",
            },
            {
                "url": app.url("/national/relecteurs"),
                "fields": [["#email", "personne@example.test"], ["#departement", "33"]],
                "submit": "form[action=\"/national/relecteurs\"] button[type=submit]",
            },
            {
                "url": app.url("/national/relecteurs"),
                "fields": [["#email", tina.email], ["#departement", "99"]],
                "submit": "form[action=\"/national/relecteurs\"] button[type=submit]",
            },
            {
                "url": app.url(&review_of(&submitted)),
                "fields": [],
                "submit": format!("form[action=\"{}/refuser\"] button", review_of(&submitted)),
            },
            {
                "url": app.url(&review_of(&submitted)),
                "fields": [],
                "submit": format!("form[action=\"{}/message\"] button", review_of(&submitted)),
            },
        ]),
    )
    .await;
    assert!(statuses.iter().all(|(_, s)| *s == 400), "{statuses:?}");
}
