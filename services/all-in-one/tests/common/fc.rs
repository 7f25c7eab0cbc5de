//! Driving the FranceConnect stand-in like a person would: its login form, its consent, its
//! logout form — plain HTTP with the test browser's cookie jar.

use super::TestApp;
use super::identity::Browser;

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        let origin: String = base.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{location}")
    }
}

fn attribute_after<'a>(html: &'a str, anchor: &str, attribute: &str) -> Option<&'a str> {
    let from = html.find(anchor)?;
    let rest = &html[from..];
    let marker = format!("{attribute}=\"");
    let start = rest.find(&marker)? + marker.len();
    rest[start..].split('"').next()
}

/// Follows redirects from `url` through the stand-in, logging in as `login` when asked, until
/// the browser is sent back to the platform; returns that URL (not requested).
pub async fn through_franceconnect(
    client: &Browser,
    app: &TestApp,
    url: &str,
    login: &str,
) -> String {
    let mut url = url.to_owned();
    for _ in 0..20 {
        if url.starts_with(&app.address) {
            return url;
        }
        let resp = client.get(&url).await;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let location = resp.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            url = absolute(&url, &location);
            continue;
        }
        let html = resp.text().await.expect("page FranceConnect");
        if html.contains("name=\"login\"") {
            let action = attribute_after(&html, "<form", "action").expect("formulaire");
            let resp = client
                .post(
                    &absolute(&url, action),
                    &[("login", login), ("password", "x")],
                )
                .await;
            assert!(
                resp.status().is_redirection(),
                "connexion FranceConnect refusée"
            );
            let location = resp.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            url = absolute(&url, &location);
            continue;
        }
        if html.contains("op.logoutForm") {
            let action = attribute_after(&html, "op.logoutForm", "action").expect("action");
            let xsrf = attribute_after(&html, "name=\"xsrf\"", "value").expect("xsrf");
            let resp = client
                .post(
                    &absolute(&url, action),
                    &[("xsrf", xsrf), ("logout", "yes")],
                )
                .await;
            let location = resp.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            url = absolute(&url, &location);
            continue;
        }
        panic!("page FranceConnect inattendue ({status}) : {html}");
    }
    panic!("trop de redirections FranceConnect");
}

/// From the platform's redirect to FranceConnect, the whole identification and logout; returns
/// the platform's recap path (`/mandats/preparation/<id>`).
pub async fn identify(client: &Browser, app: &TestApp, authorize: &str, login: &str) -> String {
    let callback = through_franceconnect(client, app, authorize, login).await;
    assert!(
        callback.contains("/mandats/franceconnect/retour"),
        "{callback}"
    );
    let resp = client.get(&callback).await;
    assert_eq!(
        resp.status(),
        303,
        "retour FranceConnect : {}",
        resp.text().await.unwrap_or_default()
    );
    let logout = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        logout.contains("/session/end") && logout.contains("id_token_hint"),
        "{logout}"
    );
    let back = through_franceconnect(client, app, &logout, login).await;
    assert!(
        back.contains("/mandats/franceconnect/deconnexion"),
        "{back}"
    );
    let resp = client.get(&back).await;
    assert_eq!(resp.status(), 303);
    let recap = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(recap.starts_with("/mandats/preparation/"), "{recap}");
    recap
}
