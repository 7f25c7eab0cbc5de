//! Professional login, second factors, sessions and CSRF, end to end against the real stack:
//! what a user sees, and what an attacker gets (nothing).

mod common;

use common::identity::*;
use common::spawn_app;
use policies::Role;
use uuid::Uuid;

#[tokio::test]
async fn login_sends_a_link_that_get_does_not_consume_and_post_consumes_once() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let alice = professional(
        &app.db.admin,
        "Alice Aidant",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let client = browser(&app.address);

    let (status, body) = ask_link(&client, &app, &alice.email, &alice.code(-1)).await;
    assert_eq!(status, 200);
    assert!(body.contains("Consultez votre messagerie"), "{body}");
    let link = mailed_link(&alice.email).await;
    assert!(link.starts_with(&app.address), "{link}");

    // Opening the link (as a mail scanner would) twice consumes nothing.
    for _ in 0..2 {
        let (status, html) = page(&browser(&app.address), &link).await;
        assert_eq!(status, 200);
        assert!(html.contains("Me connecter"));
    }
    let unconsumed: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.email_links WHERE professional_id = $1 AND consumed_at IS NULL")
        .bind(alice.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("liens");
    assert_eq!(unconsumed, 1);
    // Not in the links table (every table: secrets_at_rest.rs).
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let clear: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.email_links WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'")
        .bind(&token)
        .fetch_one(&app.db.admin)
        .await
        .expect("recherche");
    assert_eq!(clear, 0);

    let (_, confirm) = page(&client, &link).await;
    let csrf = csrf_of(&confirm);
    let resp = client
        .post(
            &app.url("/connexion/lien"),
            &[("csrf", csrf.as_str()), ("jeton", token.as_str())],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/compte");
    let set_cookie: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("ac_session="))
        .expect("cookie de session");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let (status, account) = page(&client, &app.url("/compte")).await;
    assert_eq!(status, 200);
    assert!(account.contains("Alice Aidant") && account.contains(&alice.email));

    // The same link a second time: refused, with a clear page.
    let (_, confirm) = page(&client, &link).await;
    let csrf = csrf_of(&confirm);
    let again = client
        .post(
            &app.url("/connexion/lien"),
            &[("csrf", csrf.as_str()), ("jeton", token.as_str())],
        )
        .await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.expect("corps").contains("plus valable"));
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let app = spawn_app(&[]).await;
    let bob = professional(&app.db.admin, "Bob Expire", &[]).await;
    let client = browser(&app.address);
    ask_link(&client, &app, &bob.email, &bob.code(-1)).await;
    let link = mailed_link(&bob.email).await;
    // Lifetime is 5 minutes.
    let minutes: f64 = sqlx::query_scalar("SELECT extract(epoch FROM expires_at - created_at)::float8 / 60 FROM platform.email_links WHERE professional_id = $1")
        .bind(bob.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("durée");
    assert!((minutes - 5.0).abs() < 0.01, "{minutes}");
    sqlx::query("UPDATE platform.email_links SET expires_at = now() - interval '1 second' WHERE professional_id = $1")
        .bind(bob.id)
        .execute(&app.db.admin)
        .await
        .expect("expiration");
    let (_, confirm) = page(&client, &link).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let resp = client
        .post(
            &app.url("/connexion/lien"),
            &[
                ("csrf", csrf_of(&confirm).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        page(&client, &app.url("/compte")).await.0,
        303,
        "aucune session ouverte"
    );
}

#[tokio::test]
async fn errors_do_not_reveal_whether_an_account_exists() {
    let app = spawn_app(&[]).await;
    let carol = professional(&app.db.admin, "Carol Existe", &[]).await;
    let client = browser(&app.address);
    let wrong = if carol.code(0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (s1, unknown) = ask_link(&client, &app, "personne@example.test", &carol.code(0)).await;
    let (s2, bad_code) = ask_link(&client, &app, &carol.email, wrong).await;
    assert_eq!((s1, s2), (422, 422));
    let alert = |html: &str| {
        html.split("fr-alert--error")
            .nth(1)
            .map(|s| s.split("</div>").next().unwrap_or_default().to_owned())
    };
    assert_eq!(alert(&unknown), alert(&bad_code));
    assert!(alert(&unknown).is_some_and(|a| a.contains("incorrect")));
}

/// `factors::use_step` is the whole guard of a right code checked without a lock (the
/// recap's): it takes a step once, never an earlier one, and never on a factor locked, delayed
/// or revoked — the case of two requests that read the factor before either wrote it.
#[tokio::test]
async fn a_step_is_used_once_and_only_on_a_factor_in_use() {
    use foundation::auth::factors::use_step;
    let app = spawn_app(&[]).await;
    let eve = professional(&app.db.admin, "Eve Étape", &[]).await;
    let factor: Uuid = sqlx::query_scalar(
        "SELECT id FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL",
    )
    .bind(eve.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("facteur");
    let now = time::OffsetDateTime::now_utc();
    let step = eve.base_step + 1;
    let used = |step: i64, now: time::OffsetDateTime| {
        let admin = app.db.admin.clone();
        async move {
            let mut conn = admin.acquire().await.expect("connexion");
            use_step(&mut conn, factor, step, now)
                .await
                .expect("use_step")
        }
    };
    assert!(used(step, now).await, "première fois");
    assert!(!used(step, now).await, "même pas, lu avant qu'il serve");
    assert!(!used(step - 1, now).await, "pas plus ancien");
    assert!(used(step + 1, now).await, "pas suivant");
    let set = |sql: &'static str| {
        let admin = app.db.admin.clone();
        async move {
            sqlx::query(sql)
                .bind(factor)
                .execute(&admin)
                .await
                .expect("facteur");
        }
    };
    set("UPDATE platform.second_factors SET blocked_until = now() + interval '1 minute' WHERE id = $1").await;
    assert!(!used(step + 2, now).await, "délai en cours");
    assert!(
        used(step + 2, now + time::Duration::minutes(2)).await,
        "délai passé"
    );
    set("UPDATE platform.second_factors SET locked = true WHERE id = $1").await;
    assert!(!used(step + 3, now).await, "verrouillé");
    set("UPDATE platform.second_factors SET locked = false, revoked_at = now() WHERE id = $1")
        .await;
    assert!(!used(step + 3, now).await, "révoqué");
}

#[tokio::test]
async fn a_totp_code_is_never_accepted_twice() {
    let app = spawn_app(&[]).await;
    let dan = professional(&app.db.admin, "Dan Rejeu", &[]).await;
    let client = browser(&app.address);
    assert_eq!(
        ask_link(&client, &app, &dan.email, &dan.code(0)).await.0,
        200
    );
    assert_eq!(
        ask_link(&client, &app, &dan.email, &dan.code(0)).await.0,
        422,
        "même code"
    );
    assert_eq!(
        ask_link(&client, &app, &dan.email, &dan.code(-1)).await.0,
        422,
        "code plus ancien"
    );
    assert_eq!(
        ask_link(&client, &app, &dan.email, &dan.code(1)).await.0,
        200,
        "pas suivant, dans la fenêtre"
    );
}

#[tokio::test]
async fn failures_slow_down_then_lock_the_factor() {
    let app = spawn_app(&[]).await;
    let eve = professional(&app.db.admin, "Eve Essais", &[]).await;
    let client = browser(&app.address);
    // Her own browser, where she logged in before: failures there count toward the lock (an
    // unknown browser's only delay, see login_hardening.rs).
    assert_eq!(log_in(&client, &app, &eve, -1).await.status(), 303);
    let wrong = if eve.code(0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        assert_eq!(ask_link(&client, &app, &eve.email, wrong).await.0, 422);
    }
    // Blocked for a while: even the right code is refused now.
    assert_eq!(
        ask_link(&client, &app, &eve.email, &eve.code(0)).await.0,
        422
    );
    let (failures, blocked): (i32, bool) = sqlx::query_as(
        "SELECT failures, blocked_until > now() FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL",
    )
    .bind(eve.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("facteur");
    assert_eq!((failures, blocked), (3, true));
    // Once the delay is over (simulated), more failures up to 10 lock the factor.
    for _ in 3..10 {
        delays_pass(&app, &eve).await;
        assert_eq!(ask_link(&client, &app, &eve.email, wrong).await.0, 422);
    }
    delays_pass(&app, &eve).await;
    assert_eq!(
        ask_link(&client, &app, &eve.email, &eve.code(0)).await.0,
        422,
        "verrouillé"
    );
    let locked: bool = sqlx::query_scalar("SELECT locked FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL")
        .bind(eve.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("facteur");
    assert!(locked);
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM platform.security_journal WHERE professional_id = $1 ORDER BY seq",
    )
    .bind(eve.id)
    .fetch_all(&app.db.admin)
    .await
    .expect("journal");
    assert!(
        kinds.contains(&"factor_blocked".to_owned()) && kinds.contains(&"factor_locked".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn too_many_attempts_on_one_account_are_refused() {
    let app = spawn_app(&[]).await;
    let client = browser(&app.address);
    for _ in 0..10 {
        assert_eq!(
            ask_link(&client, &app, "inconnu@example.test", "123456")
                .await
                .0,
            422
        );
    }
    let (status, body) = ask_link(&client, &app, "inconnu@example.test", "123456").await;
    assert_eq!(status, 429);
    assert!(body.contains("Trop de tentatives"));
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token_and_our_origin() {
    let app = spawn_app(&[]).await;
    let fay = professional(&app.db.admin, "Fay Csrf", &[]).await;
    let client = browser(&app.address);
    assert_eq!(log_in(&client, &app, &fay, -1).await.status(), 303);

    // No token: refused, and the session is still there.
    let resp = client.post(&app.url("/deconnexion"), &[("x", "y")]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(page(&client, &app.url("/compte")).await.0, 200);
    // A wrong token: refused.
    let resp = client
        .post(
            &app.url("/deconnexion"),
            &[("csrf", "x".repeat(43).as_str())],
        )
        .await;
    assert_eq!(resp.status(), 403);
    // The right token from another site: refused.
    let (_, html) = page(&client, &app.url("/compte")).await;
    let token = csrf_of(&html);
    let resp = client
        .post_from(
            &app.url("/deconnexion"),
            &[("csrf", token.as_str())],
            "https://attaquant.example",
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(page(&client, &app.url("/compte")).await.0, 200);
}

#[tokio::test]
async fn a_session_is_unusable_after_logout_and_after_deactivation() {
    let app = spawn_app(&[]).await;
    let gus = professional(&app.db.admin, "Gus Sortie", &[]).await;
    let client = browser(&app.address);
    let resp = log_in(&client, &app, &gus, -1).await;
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ac_session="))
        .expect("cookie")
        .split(';')
        .next()
        .expect("valeur")
        .to_owned();
    let logout = post_form(&client, &app, "/compte", "/deconnexion", &[]).await;
    assert_eq!(logout.status(), 303);
    // The old cookie, replayed by someone who kept it, opens nothing.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = replay
        .get(app.url("/compte"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 303);
    assert!(
        resp.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/connexion")
    );

    // Deactivation ends a live session at once.
    let hal = professional(&app.db.admin, "Hal Retrait", &[]).await;
    let client = browser(&app.address);
    log_in(&client, &app, &hal, -1).await;
    assert_eq!(page(&client, &app.url("/compte")).await.0, 200);
    let mut tx = app.db.admin.begin().await.expect("tx");
    habilitation_desk::accounts::deactivate(&mut tx, hal.id, None, "habilitation retirée")
        .await
        .expect("retrait");
    tx.commit().await.expect("commit");
    assert_eq!(page(&client, &app.url("/compte")).await.0, 303);
}

#[tokio::test]
async fn logging_in_as_b_after_a_leaves_nothing_of_a() {
    let app = spawn_app(&[]).await;
    let a = professional(&app.db.admin, "Ines Premiere", &[]).await;
    let b = professional(&app.db.admin, "Jules Second", &[]).await;
    let client = browser(&app.address);
    log_in(&client, &app, &a, -1).await;
    let (_, first) = page(&client, &app.url("/compte")).await;
    assert!(first.contains("Ines Premiere"));
    post_form(&client, &app, "/compte", "/deconnexion", &[]).await;
    log_in(&client, &app, &b, -1).await;
    let (status, second) = page(&client, &app.url("/compte")).await;
    assert_eq!(status, 200);
    assert!(second.contains("Jules Second"));
    assert!(!second.contains("Ines") && !second.contains(&a.email));
    // Each login opened a new session id; A's is ended.
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NULL",
    )
    .bind(a.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("sessions");
    assert_eq!(open, 0);
}

#[tokio::test]
async fn the_session_id_changes_at_login() {
    let app = spawn_app(&[]).await;
    let kim = professional(&app.db.admin, "Kim Rotation", &[]).await;
    let client = browser(&app.address);
    let first = log_in(&client, &app, &kim, -1).await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("ac_session="))
            .map(str::to_owned)
    };
    let first_cookie = id_of(&first).expect("cookie");
    // Logging in again in the same browser while logged in: a new id, the previous one ended.
    let second = log_in(&client, &app, &kim, 0).await;
    let second_cookie = id_of(&second).expect("cookie");
    assert_ne!(first_cookie, second_cookie);
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NULL",
    )
    .bind(kim.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("sessions");
    assert_eq!(open, 1);
}

#[tokio::test]
async fn an_aidant_of_two_structures_switches_but_never_to_a_foreign_one() {
    let app = spawn_app(&["33", "75"]).await;
    let (s1, s2, foreign) = (
        structure_domain(&app, "33").await,
        structure_domain(&app, "33").await,
        structure_domain(&app, "75").await,
    );
    let lea = professional(
        &app.db.admin,
        "Lea Deux",
        &[
            (Role::Aidant, s1.domain(), Some("33")),
            (Role::Referent, s2.domain(), Some("33")),
        ],
    )
    .await;
    let client = browser(&app.address);
    log_in(&client, &app, &lea, -1).await;
    let resp = post_form(
        &client,
        &app,
        "/compte",
        "/compte/structure",
        &[("structure", &s2.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let current: Option<foundation::ids::StructureId> = sqlx::query_scalar(
        "SELECT current_structure
 FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NULL",
    )
    .bind(lea.id)
    .fetch_one(&app.db.admin)
    .await
    .expect("session");
    assert_eq!(current, Some(s2));
    let resp = post_form(
        &client,
        &app,
        "/compte",
        "/compte/structure",
        &[("structure", &foreign.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let (_, account) = page(&client, &app.url("/compte")).await;
    assert!(account.contains("aidant") && account.contains("référent"));
}

#[tokio::test]
async fn an_idle_session_asks_for_the_code_again() {
    let app = spawn_app(&[]).await;
    let max = professional(&app.db.admin, "Max Pause", &[]).await;
    let client = browser(&app.address);
    log_in(&client, &app, &max, -1).await;
    sqlx::query("UPDATE platform.sessions SET last_seen_at = now() - interval '16 minutes' WHERE professional_id = $1")
        .bind(max.id)
        .execute(&app.db.admin)
        .await
        .expect("inactivité");
    assert_eq!(page(&client, &app.url("/compte")).await.0, 200);
    let required: bool = sqlx::query_scalar("SELECT recheck_required FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NULL")
        .bind(max.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("session");
    assert!(required);
    let resp = post_form(
        &client,
        &app,
        "/compte/verification",
        "/compte/verification",
        &[("code", &max.code(0)), ("suite", "/compte")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let required: bool = sqlx::query_scalar("SELECT recheck_required FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NULL")
        .bind(max.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("session");
    assert!(!required);
}

#[tokio::test]
async fn enrolment_link_qr_and_first_code_activate_the_app() {
    let app = spawn_app(&[]).await;
    let mut tx = app.db.admin.begin().await.expect("tx");
    let email = format!(
        "nouvelle-{}@example.test",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let id = habilitation_desk::accounts::create_professional(&mut tx, &email, "Nina Nouvelle")
        .await
        .expect("compte");
    habilitation_desk::accounts::send_enrolment_link(&mut tx, &cipher(), id, &app.address)
        .await
        .expect("lien");
    tx.commit().await.expect("commit");
    let link = mailed(&email, "/activation?jeton=", 0).await;
    let client = browser(&app.address);
    let (_, start) = page(&client, &link).await;
    let token = link.split("jeton=").nth(1).expect("jeton").to_owned();
    let resp = client
        .post(
            &app.url("/activation"),
            &[
                ("csrf", csrf_of(&start).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let qr_page = resp.text().await.expect("corps");
    assert!(qr_page.contains("<svg"), "QR code affiché");
    let secret = qr_page
        .split("<code>")
        .nth(1)
        .expect("clé")
        .split("</code>")
        .next()
        .expect("clé")
        .to_owned();
    let seed = totp_rs::Secret::try_from_base32(&secret)
        .expect("base32")
        .as_bytes()
        .to_vec();
    let factor = qr_page
        .split(r#"name="facteur" value=""#)
        .nth(1)
        .expect("facteur")
        .split('"')
        .next()
        .expect("facteur")
        .to_owned();
    let step = common::identity::fresh_step().await;
    let code = foundation::auth::totp::code_at(&seed, 30, (step * 30) as u64);
    let resp = client
        .post(
            &app.url("/activation/confirmation"),
            &[
                ("csrf", csrf_of(&qr_page).as_str()),
                ("jeton", token.as_str()),
                ("facteur", factor.as_str()),
                ("code", code.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Votre compte est activé")
    );
    // The seed is stored encrypted: its bytes appear nowhere in clear.
    let clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM platform.second_factors WHERE position($1 in seed_ciphertext) > 0",
    )
    .bind(&seed)
    .fetch_one(&app.db.admin)
    .await
    .expect("recherche");
    assert_eq!(clear, 0);
    // The activation link is spent; the new factor logs in.
    let (_, again) = page(&client, &link).await;
    let resp = client
        .post(
            &app.url("/activation"),
            &[
                ("csrf", csrf_of(&again).as_str()),
                ("jeton", token.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 400);
    let nina = TestProfessional {
        id,
        email,
        seed,
        base_step: step,
    };
    assert_eq!(log_in(&client, &app, &nina, 1).await.status(), 303);
}

#[tokio::test]
async fn the_security_journal_is_append_only_and_verifiable() {
    let app = spawn_app(&[]).await;
    let oscar = professional(&app.db.admin, "Oscar Journal", &[]).await;
    let client = browser(&app.address);
    log_in(&client, &app, &oscar, -1).await;
    post_form(&client, &app, "/compte", "/deconnexion", &[]).await;

    let mut conn = app.db.admin.acquire().await.expect("connexion");
    let report = foundation::auth::journal::verify(&mut conn)
        .await
        .expect("vérification");
    assert!(
        report.checked >= 3 && report.first_broken.is_none(),
        "{report:?}"
    );

    // The application's role cannot change it.
    let app_pool = sqlx::PgPool::connect(&app.db.app_url).await.expect("pool");
    for sql in [
        "UPDATE platform.security_journal SET kind = 'x'",
        "DELETE FROM platform.security_journal",
        "TRUNCATE platform.security_journal",
    ] {
        let err = sqlx::query(sql).execute(&app_pool).await.expect_err(sql);
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
    // An edit by someone with more rights is detected, at the entry edited.
    sqlx::query("UPDATE platform.security_journal SET details = '{\"x\":1}' WHERE seq = 2")
        .execute(&mut *conn)
        .await
        .expect("altération");
    let report = foundation::auth::journal::verify(&mut conn)
        .await
        .expect("vérification");
    assert_eq!(report.first_broken, Some(2));
}

#[tokio::test]
async fn the_whole_login_works_in_chromium_with_the_keyboard_and_passes_axe() {
    let app = spawn_app(&["33"]).await;
    let s = structure_domain(&app, "33").await;
    let paul = professional(
        &app.db.admin,
        "Paul Clavier",
        &[(Role::Aidant, s.domain(), Some("33"))],
    )
    .await;
    let request = serde_json::json!({
        "base": app.address,
        "email": paul.email,
        "code": paul.code(0),
        "maildev": test_support::stack_var("AC_MAILDEV_URL"),
        "name": "Paul Clavier",
    });
    let result = test_support::browser::run("login.mjs", &request).await;
    assert_eq!(result["final"], app.url("/compte"), "{result}");
    assert_eq!(result["greeted"], true);
    let pages = result["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 4);
    let failures: Vec<_> = pages
        .iter()
        .filter(|p| p["violations"].as_array().is_some_and(|v| !v.is_empty()))
        .collect();
    assert!(failures.is_empty(), "violations axe : {failures:#?}");
}

#[tokio::test]
async fn identity_pages_pass_axe() {
    let app = spawn_app(&[]).await;
    let urls: Vec<String> = [
        "/connexion",
        "/connexion?deconnecte=1",
        "/connexion/lien?jeton=x",
        "/activation?jeton=x",
    ]
    .iter()
    .map(|p| app.url(p))
    .collect();
    let results = test_support::browser::axe_violations(&urls).await;
    let failures: Vec<_> = results.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(failures.is_empty(), "violations axe : {failures:#?}");
}

#[tokio::test]
async fn a_professional_replaces_their_own_app_after_proving_the_current_code() {
    let app = spawn_app(&[]).await;
    let quentin = professional(&app.db.admin, "Quentin Nouveau Telephone", &[]).await;
    let client = browser(&app.address);
    log_in(&client, &app, &quentin, -1).await;
    // Another session, opened before the replacement (on a lost phone, say).
    let mut conn = app.db.admin.acquire().await.expect("connexion");
    let elsewhere = foundation::auth::session::open(
        &mut conn,
        quentin.id,
        time::OffsetDateTime::now_utc(),
        false,
    )
    .await
    .expect("session");
    drop(conn);
    let elsewhere_hash = foundation::auth::secrets::token_hash(elsewhere.value_str());
    let wrong = if quentin.code(0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let resp = post_form(
        &client,
        &app,
        "/compte/second-facteur",
        "/compte/second-facteur",
        &[("code", wrong)],
    )
    .await;
    assert_eq!(resp.status(), 422);
    let resp = post_form(
        &client,
        &app,
        "/compte/second-facteur",
        "/compte/second-facteur",
        &[("code", &quentin.code(0))],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let qr_page = resp.text().await.expect("corps");
    assert!(qr_page.contains("<svg"));
    let secret = qr_page
        .split("<code>")
        .nth(1)
        .expect("clé")
        .split("</code>")
        .next()
        .expect("clé")
        .to_owned();
    let seed = totp_rs::Secret::try_from_base32(&secret)
        .expect("base32")
        .as_bytes()
        .to_vec();
    let factor = qr_page
        .split(r#"name="facteur" value=""#)
        .nth(1)
        .expect("facteur")
        .split('"')
        .next()
        .expect("facteur")
        .to_owned();
    // Until confirmed, the old app still works and the new one is not in use.
    let step = fresh_step().await;
    let new_code = foundation::auth::totp::code_at(&seed, 30, (step * 30) as u64);
    let resp = client
        .post(
            &app.url("/compte/second-facteur/confirmation"),
            &[
                ("csrf", csrf_of(&qr_page).as_str()),
                ("facteur", factor.as_str()),
                ("code", new_code.as_str()),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .expect("corps")
            .contains("Nouvelle application enregistrée")
    );
    let in_use: i64 = sqlx::query_scalar("SELECT count(*) FROM platform.second_factors WHERE professional_id = $1 AND revoked_at IS NULL AND confirmed_at IS NOT NULL")
        .bind(quentin.id)
        .fetch_one(&app.db.admin)
        .await
        .expect("facteurs");
    assert_eq!(in_use, 1);
    // The replacement ended the other browser's session; this one got a new session.
    let ended: bool =
        sqlx::query_scalar("SELECT ended_at IS NOT NULL FROM platform.sessions WHERE id_hash = $1")
            .bind(&elsewhere_hash)
            .fetch_one(&app.db.admin)
            .await
            .expect("session");
    assert!(ended, "l'autre session est terminée");
    assert_eq!(page(&client, &app.url("/compte")).await.0, 200);
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT end_reason FROM platform.sessions WHERE professional_id = $1 AND ended_at IS NOT NULL",
    )
    .bind(quentin.id)
    .fetch_all(&app.db.admin)
    .await
    .expect("sessions");
    assert_eq!(reasons, ["factor_revoked", "factor_revoked"]);
    // The old app's next code is refused; the new app's is accepted.
    let other = browser(&app.address);
    assert_eq!(
        ask_link(&other, &app, &quentin.email, &quentin.code(1))
            .await
            .0,
        422
    );
    let renewed = TestProfessional {
        id: quentin.id,
        email: quentin.email.clone(),
        seed,
        base_step: step,
    };
    assert_eq!(
        ask_link(&other, &app, &quentin.email, &renewed.code(1))
            .await
            .0,
        200
    );
}
