//! The logs against docs/LOGGING.md, with every event of the process captured at debug level:
//! a login, a use of a mandate through the identity provider (authorization, token, userinfo),
//! a refused code and a page whose query fails leave none of the secrets or personal data they
//! handled in the logs, and each failure is logged once.

mod common;

use std::sync::{Arc, Mutex};

use common::identity::page;
use common::idp::{angela, choose, fixture, register};
use common::spawn_app;
use mandate_service::idp::clients::AuthMethod;
use mandate_service::idp::keys::Alg;
use serde_json::Value;

const CALLBACK: &str = "http://127.0.0.1:9/api/v2/oidc-callback";

/// Every log line the process writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }

    fn lines_since(&self, mark: usize) -> Vec<String> {
        self.text()[mark..].lines().map(str::to_owned).collect()
    }
}

fn param(url: &str, name: &str) -> String {
    common::idp::param(url, name).unwrap_or_else(|| panic!("{name} absent de {url}"))
}

#[tokio::test]
async fn logs_hold_no_secret_and_no_personal_data_and_each_failure_is_logged_once() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(capture.clone())
        .init();
    let app = spawn_app(&["33"]).await;
    let mut identity = angela("fc-sub-journaux-7d1c");
    identity.given_name = "Zélie Canarine".into();
    identity.family_name = "ZZJOURNAUX".into();
    identity.birthdate = "1929-04-17".into();
    identity.email = Some("zelie.canarine@usagers.test".into());
    // A login (link, TOTP code, session), a mandate of that person.
    let fx = fixture(&app, &identity, &["logement"]).await;
    let secret = register(
        &app,
        "fc-journaux",
        AuthMethod::ClientSecretPost,
        CALLBACK,
        &[],
        Alg::Es256,
        None,
    )
    .await
    .expect("client");
    let authorize = format!(
        "{}?{}",
        app.url("/oidc/authorize"),
        serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", "fc-journaux"),
            ("redirect_uri", CALLBACK),
            ("scope", "openid profile birth email"),
            ("state", "etat-journaux-123"),
            ("nonce", "nonce-journaux-123"),
            ("acr_values", "eidas1"),
        ])
        .expect("query")
    );
    let back = choose(&fx, &app, &authorize, fx.usager, "logement").await;
    let code = param(&back, "code");
    let token = |code: String| {
        let secret = secret.clone();
        let app = &app;
        async move {
            let resp = app
                .client
                .post(app.url("/oidc/token"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", CALLBACK),
                    ("client_id", "fc-journaux"),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .expect("token");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = token(code.clone()).await;
    assert_eq!(status, 200, "{body}");
    let access_token = body["access_token"].as_str().expect("jeton").to_owned();
    let id_token = body["id_token"].as_str().expect("id_token").to_owned();
    let resp = app
        .client
        .get(app.url("/oidc/userinfo"))
        .bearer_auth(&access_token)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 200);

    // The same code again: refused, and logged once, at info, with its reason.
    let mark = capture.text().len();
    let (status, body) = token(code.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let refused: Vec<String> = capture
        .lines_since(mark)
        .into_iter()
        .filter(|l| l.contains("code refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(refused[0].contains("\"level\":\"INFO\""), "{}", refused[0]);

    // A page whose query fails: the French 503 page, and one error line with the cause.
    sqlx::raw_sql("ALTER TABLE dep_33.mandates RENAME TO mandates_hidden")
        .execute(&app.db.admin)
        .await
        .expect("rename");
    let mark = capture.text().len();
    let (status, html) = page(&fx.aidant, &app.url("/mandats")).await;
    sqlx::raw_sql("ALTER TABLE dep_33.mandates_hidden RENAME TO mandates")
        .execute(&app.db.admin)
        .await
        .expect("rename back");
    assert_eq!(status, 503, "{html}");
    assert!(html.contains("Service momentanément indisponible"));
    let errors: Vec<String> = capture
        .lines_since(mark)
        .into_iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("request failed") && errors[0].contains("mandates"),
        "{}",
        errors[0]
    );
    // A page that does not exist is no failure: nothing at error level.
    let mark = capture.text().len();
    let (status, _) = page(&fx.aidant, &app.url("/mandats/pas-un-mandat")).await;
    assert_eq!(status, 404);
    assert!(
        !capture
            .lines_since(mark)
            .iter()
            .any(|l| l.contains("\"level\":\"ERROR\"")),
    );

    // Nothing of what was handled: the professional's address, seed and session, the person's
    // identity, the client's secret, the code and the tokens.
    let logs = capture.text();
    assert!(logs.lines().count() > 10, "rien n'a été capturé : {logs}");
    let session: Vec<String> = fx
        .aidant
        .cookies()
        .into_iter()
        .filter(|(name, _)| name.contains("session"))
        .map(|(_, v)| v)
        .collect();
    assert!(!session.is_empty());
    let mut secrets: Vec<String> = vec![
        fx.who.email.clone(),
        hex::encode(&fx.who.seed),
        "Zélie Canarine".into(),
        "ZZJOURNAUX".into(),
        "1929-04-17".into(),
        "zelie.canarine@usagers.test".into(),
        "fc-sub-journaux-7d1c".into(),
        secret.clone(),
        code,
        access_token,
        id_token,
    ];
    secrets.extend(session);
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "« {s} » apparaît dans les journaux"
        );
    }
}
