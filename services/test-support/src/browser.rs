//! The browser harness: headless Debian Chromium driven by playwright-core, with axe-core.
//! Node scripts live in `infra/browser/`; they read a JSON request on stdin and print a JSON
//! result on stdout, which tests assert on.

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::stack_var;

/// Runs `infra/browser/<script>` with `request` on stdin and returns its JSON output.
pub async fn run(script: &str, request: &Value) -> Value {
    let dir = stack_var("AC_BROWSER_HARNESS");
    let mut child = tokio::process::Command::new("node")
        .arg(format!("{dir}/{script}"))
        .env("AC_CHROMIUM", stack_var("AC_CHROMIUM"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node introuvable");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .expect("écriture stdin");
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .expect("script du navigateur");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} a échoué : {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{script} : sortie JSON illisible ({e}) ; stderr : {stderr}"))
}

/// Loads each URL in Chromium and runs axe-core (WCAG 2.1 A and AA rules). Returns, per URL,
/// the violations found (empty when the page passes) as "rule: target" strings.
pub async fn axe_violations(urls: &[String]) -> Vec<(String, Vec<String>)> {
    axe_violations_with_cookies(urls, &[]).await
}

/// The same, with cookies (name, value) set for the URLs' site, e.g. a session.
pub async fn axe_violations_with_cookies(
    urls: &[String],
    cookies: &[(String, String)],
) -> Vec<(String, Vec<String>)> {
    let site = urls
        .first()
        .map(|u| u.split('/').take(3).collect::<Vec<_>>().join("/"))
        .unwrap_or_default();
    let cookies: Vec<_> = cookies
        .iter()
        .map(|(name, value)| serde_json::json!({ "name": name, "value": value, "url": site }))
        .collect();
    let result = run(
        "axe.mjs",
        &serde_json::json!({ "urls": urls, "cookies": cookies }),
    )
    .await;
    result["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|page| {
            let url = page["url"].as_str().unwrap_or_default().to_owned();
            // A page that redirected elsewhere (to the login page, say) was not the one checked.
            assert_eq!(
                page["final"].as_str(),
                Some(url.as_str()),
                "redirigé : {page}"
            );
            let violations = page["violations"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (url, violations)
        })
        .collect()
}
