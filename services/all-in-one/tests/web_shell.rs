//! The DSFR web shell: pages in French, error pages, API errors, security headers, and
//! accessibility checked by axe-core in headless Chromium.

mod common;

use std::time::Duration;

use common::spawn_app;

#[tokio::test]
async fn the_landing_page_is_french_dsfr_and_counts_served_territories() {
    let app = spawn_app(&["33", "2B"]).await;
    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("corps");
    assert!(body.contains(r#"<html lang="fr""#));
    assert!(body.contains("/dsfr/dsfr.min.css"));
    assert!(body.contains("2 départements sur 101"), "{body}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("script-src 'self'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(app.get("/dsfr/dsfr.min.css").await.status(), 200);
}

#[tokio::test]
async fn unknown_pages_get_a_french_404_page_and_apis_a_json_error() {
    let app = spawn_app(&[]).await;
    let page = app.get("/cette-page-n-existe-pas").await;
    assert_eq!(page.status(), 404);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .expect("corps")
            .contains("Page non trouvée")
    );

    let api = app.get("/api/habilitation/nulle-part").await;
    assert_eq!(api.status(), 404);
    let body: serde_json::Value = api.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let wrong_method = app.get("/deconnexion").await;
    assert_eq!(wrong_method.status(), 405);
    assert!(
        wrong_method
            .text()
            .await
            .expect("corps")
            .contains("Action non permise")
    );

    // A state-changing request without the CSRF token is refused before anything runs.
    let post = app.client.post(app.url("/")).send().await.expect("requête");
    assert_eq!(post.status(), 403);
    assert!(post.text().await.expect("corps").contains("Accès refusé"));
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app(&["33"]).await;
    let health: serde_json::Value = app.get("/health").await.json().await.expect("json");
    assert_eq!(health["status"], "ok");
    let resp = app.get("/health/ready").await;
    assert_eq!(resp.status(), 200);
    let ready: serde_json::Value = resp.json().await.expect("json");
    let checks: Vec<&str> = ready["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(checks, ["database", "smtp", "object_store"]);
    assert_eq!(ready["status"], "ready", "{ready}");
    for spec in ["/health/openapi.json", "/api/habilitation/openapi.json"] {
        let doc: serde_json::Value = app.get(spec).await.json().await.expect("openapi");
        assert_eq!(doc["openapi"], "3.0.0", "{spec}");
    }
}

/// A relay or an object store that is down does not take the platform out of service (e-mails
/// wait in the outbox, documents answer their own 503): readiness says which, and stays 200
/// (`degraded`); only what every request needs, the database, makes it 503.
#[tokio::test]
async fn readiness_names_a_down_relay_and_keeps_serving() {
    let db = test_support::database::TestDatabase::create().await;
    // An SMTP port nobody listens on.
    let app = common::spawn_app_with(db, |s| s.smtp.port = 9).await;
    let resp = app.get("/health/ready").await;
    assert_eq!(resp.status(), 200);
    let ready: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let check = |name: &str| {
        ready["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    let smtp = check("smtp");
    assert_eq!(smtp["ok"], false);
    assert_eq!(smtp["essential"], false);
    assert_eq!(smtp["detail"], "serveur SMTP injoignable");
    assert_eq!(check("database")["essential"], true);
    assert_eq!(check("object_store")["essential"], false);
    // And the pages are served.
    assert_eq!(app.get("/").await.status(), 200);
}

#[tokio::test]
async fn landing_legal_and_error_pages_pass_axe_in_chromium() {
    let app = spawn_app(&["33"]).await;
    let urls: Vec<String> = [
        "/",
        "/accessibilite",
        "/mentions-legales",
        "/donnees-personnelles",
        "/une-page-absente",
        "/_apercu/erreur/403",
        "/_apercu/erreur/500",
        "/_apercu/erreur/503",
    ]
    .iter()
    .map(|p| app.url(p))
    .collect();
    let results = test_support::browser::axe_violations(&urls).await;
    assert_eq!(
        results.len(),
        urls.len(),
        "chaque page doit avoir été chargée"
    );
    let failures: Vec<_> = results.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(failures.is_empty(), "violations axe : {failures:#?}");
}

#[tokio::test]
async fn the_axe_harness_reports_violations_when_there_are_some() {
    // The accessibility check above is only worth something if it can fail.
    let page = "data:text/html,<html><body><img src=x></body></html>".to_owned();
    let results = test_support::browser::axe_violations(&[page]).await;
    let rules: Vec<&str> = results[0]
        .1
        .iter()
        .filter_map(|v| v.split(':').next())
        .collect();
    assert!(rules.contains(&"image-alt"), "{rules:?}");
    assert!(rules.contains(&"html-has-lang"), "{rules:?}");
}

#[tokio::test]
async fn the_skip_link_takes_keyboard_users_to_the_content() {
    let app = spawn_app(&[]).await;
    let result = test_support::browser::run(
        "keyboard-skiplink.mjs",
        &serde_json::json!({ "url": app.url("/") }),
    )
    .await;
    assert_eq!(result["first"], "Contenu", "{result}");
    assert_eq!(result["hash"], "#contenu");
    assert_eq!(result["inMain"], true, "{result}");
}

#[tokio::test]
async fn readiness_tells_which_dependency_fails_but_never_its_error() {
    let db = test_support::database::TestDatabase::create().await;
    // An object store nobody listens on: the S3 client's error names the address and more.
    let closed = test_support::free_port();
    let app = common::spawn_app_with(db, move |s| {
        s.object_store.endpoint = format!("http://127.0.0.1:{closed}");
        s.object_store.timeout_ms = 500;
    })
    .await;
    let resp = app.get("/health/ready").await;
    // Reported, not taken out of service (`readiness_names_a_down_relay_and_keeps_serving`).
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("corps");
    let ready: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(ready["status"], "degraded", "{ready}");
    for check in ready["checks"].as_array().expect("checks") {
        if check["ok"] == true {
            // The document says `detail` is a string: absent, never null.
            assert!(check.get("detail").is_none(), "{check}");
        } else {
            assert_eq!(check["name"], "object_store", "{ready}");
            assert_eq!(
                check["detail"], "stockage de documents injoignable",
                "{ready}"
            );
        }
    }
    assert!(!text.contains(&closed.to_string()), "{text}");
}

#[tokio::test]
async fn methods_the_platform_never_serves_get_405_not_403() {
    let app = spawn_app(&["33"]).await;
    // A page too: TRACE is served nowhere, whatever the CSRF layer would say.
    let trace = app
        .client
        .request(reqwest::Method::TRACE, app.url("/"))
        .send()
        .await
        .expect("requête");
    assert_eq!(trace.status(), 405);
    for path in [
        "/health",
        "/health/ready",
        "/api/habilitation/departements/33/lieux",
    ] {
        for method in ["TRACE", "PUT", "DELETE"] {
            let resp = app
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("méthode"),
                    app.url(path),
                )
                .send()
                .await
                .expect("requête");
            assert_eq!(resp.status(), 405, "{method} {path}");
            // RFC 9110: a 405 names the methods the resource has (from its OpenAPI document).
            assert_eq!(
                resp.headers()
                    .get("allow")
                    .map(|v| v.to_str().expect("allow")),
                Some("GET, HEAD"),
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn over_https_cookies_are_host_prefixed_and_hsts_is_sent() {
    let db = test_support::database::TestDatabase::create().await;
    let app = common::spawn_app_with(db, |s| {
        s.http.public_url = "https://aidants.example.test".into();
    })
    .await;
    let resp = app.get("/connexion").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().expect("hsts")),
        Some("max-age=63072000; includeSubDomains")
    );
    let csrf_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("cookie").to_owned())
        .find(|c| c.contains("ac_csrf="))
        .expect("cookie CSRF");
    assert!(csrf_cookie.starts_with("__Host-ac_csrf="), "{csrf_cookie}");
    assert!(csrf_cookie.contains("Secure"), "{csrf_cookie}");
    assert!(csrf_cookie.contains("Path=/"), "{csrf_cookie}");
    assert!(!csrf_cookie.contains("Domain"), "{csrf_cookie}");
    let token = csrf_cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("valeur");
    // The CSRF check reads the prefixed cookie only: a plain `ac_csrf` (which a sibling
    // subdomain could have planted) is not accepted.
    let post = |cookie: String| {
        app.client
            .post(app.url("/deconnexion"))
            .header("origin", "https://aidants.example.test")
            .header("cookie", cookie)
            .form(&[("csrf", token.as_str())])
            .send()
    };
    assert_eq!(
        post(format!("ac_csrf={token}"))
            .await
            .expect("requête")
            .status(),
        403
    );
    assert_ne!(
        post(format!("__Host-ac_csrf={token}"))
            .await
            .expect("requête")
            .status(),
        403
    );

    // The session cookie too: opened as in a login, read back only under its prefixed name.
    let who = common::identity::professional(&app.db.admin, "Aline Aidante", &[]).await;
    let mut conn = app.db.admin.acquire().await.expect("connexion");
    let cookie =
        foundation::auth::session::open(&mut conn, who.id, time::OffsetDateTime::now_utc(), true)
            .await
            .expect("session");
    assert_eq!(cookie.name(), "__Host-ac_session");
    assert!(cookie.secure());
    let value = cookie.value_str().to_owned();
    let account = |cookie: String| {
        app.client
            .get(app.url("/compte"))
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(
        account(format!("__Host-ac_session={value}"))
            .await
            .expect("requête")
            .status(),
        200
    );
    assert_eq!(
        account(format!("ac_session={value}"))
            .await
            .expect("requête")
            .status(),
        303,
        "le nom sans préfixe ne vaut rien en HTTPS"
    );
}

#[tokio::test]
async fn over_plain_http_in_development_there_is_no_hsts() {
    let app = spawn_app(&[]).await;
    let resp = app.get("/connexion").await;
    assert!(resp.headers().get("strict-transport-security").is_none());
    assert!(
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().expect("cookie").starts_with("ac_csrf="))
    );
}

#[tokio::test]
async fn the_harness_reports_buttons_that_show_only_an_icon() {
    // DSFR hides the words of a `fr-btn fr-icon-…` button without `fr-btn--icon-left`: screen
    // readers still hear them (axe is satisfied), sighted newcomers see a bare icon. A local
    // file with the real DSFR stylesheet (a data: page may not load it from 127.0.0.1).
    let dsfr = test_support::stack_var("AC_WEB__DSFR_DIR");
    let html = format!(
        r#"<html lang="fr"><head><title>Essai</title>
        <link rel="stylesheet" href="file://{dsfr}/dsfr.min.css">
        <link rel="stylesheet" href="file://{dsfr}/utility/icons/icons.min.css"></head>
        <body><main>
        <button id="plus" class="fr-btn fr-icon-add-line" title="Nouveau mandat">Nouveau mandat</button>
        <button id="vide" class="fr-btn" aria-label="Supprimer"></button>
        <button id="lisible" class="fr-btn fr-icon-add-line fr-btn--icon-left">Nouveau mandat</button>
        </main></body></html>"#
    );
    let file = std::env::temp_dir().join(format!("boutons-{}.html", uuid::Uuid::new_v4()));
    std::fs::write(&file, html).expect("écriture");
    let page = format!("file://{}", file.display());
    let results = test_support::browser::axe_violations(&[page]).await;
    let _ = std::fs::remove_file(&file);
    let hidden: Vec<&String> = results[0]
        .1
        .iter()
        .filter(|v| v.starts_with("visible-text:"))
        .collect();
    assert_eq!(hidden.len(), 2, "{:?}", results[0].1);
    assert!(
        hidden.iter().any(|v| v.contains("button#plus")),
        "{hidden:?}"
    );
    assert!(
        hidden.iter().any(|v| v.contains("button#vide")),
        "{hidden:?}"
    );
}

/// Reads `stream` until the server closes it (or cuts it: an error), for at most `limit`:
/// whether it did.
async fn closed_within(stream: &mut tokio::net::tcp::OwnedReadHalf, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// A client that sends a request's head a header line at a time (« slowloris »), that connects
/// and sends nothing, or that leaves a kept-alive connection silent after a response, is cut
/// off once the head read limit (here 1 s) is past, however steadily it trickles; meanwhile
/// other clients are served.
#[tokio::test]
async fn a_slow_or_silent_client_is_cut_off_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = common::spawn_app_with(
        test_support::database::TestDatabase::with_departements(&[]).await,
        |s| s.http.head_read_timeout_ms = 1_000,
    )
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();

    let slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connexion");
    let (mut slow_read, mut slow_write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let _ = slow_write
            .write_all(b"GET /health/ready HTTP/1.1\r\nHost: test\r\n")
            .await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow_write.write_all(b"X-Lent: 1\r\n").await.is_err() {
                return;
            }
        }
    });
    assert_eq!(app.get("/health/ready").await.status(), 200);
    assert!(
        closed_within(&mut slow_read, Duration::from_secs(4)).await,
        "une en-tête envoyée ligne à ligne garde la connexion ouverte"
    );
    trickle.abort();

    let (mut silent, _silent_write) = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connexion")
        .into_split();
    assert!(
        closed_within(&mut silent, Duration::from_secs(4)).await,
        "une connexion qui n'envoie rien reste ouverte"
    );

    let idle = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connexion");
    let (mut idle_read, mut idle_write) = idle.into_split();
    idle_write
        .write_all(b"GET /health/ready HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("requête");
    let mut answer = [0u8; 64];
    let n = idle_read.read(&mut answer).await.expect("réponse");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(
        closed_within(&mut idle_read, Duration::from_secs(4)).await,
        "une connexion gardée ouverte et muette n'est jamais fermée"
    );
    assert_eq!(app.get("/health/ready").await.status(), 200);
}
