//! The desk's page templates and small helpers shared by its handlers.

use askama::Template;
use foundation::web::PageResult;
use foundation::web::{NavItem, STATE, Theme, navigation};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub next: String,
    pub email: String,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    pub heading: &'a str,
    pub paragraphs: Vec<&'a str>,
    pub link: Option<(&'a str, &'a str)>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    pub heading: &'a str,
    pub explanation: &'a str,
    pub action: &'a str,
    pub button: &'a str,
    pub csrf: String,
    pub token: String,
    pub next: String,
}

#[derive(Template)]
#[template(path = "code.html")]
pub struct CodePage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    pub heading: &'a str,
    pub explanation: &'a str,
    pub action: &'a str,
    pub csrf: String,
    pub next: String,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "enrol.html")]
pub struct EnrolPage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    /// Where the code is posted: the activation link's confirmation, or the account's.
    pub action: &'a str,
    pub csrf: String,
    pub token: String,
    pub factor: String,
    pub qr_svg: String,
    pub secret: String,
    pub error: Option<&'a str>,
}

pub struct StructureChoice {
    pub id: String,
    pub name: String,
    pub roles: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub theme: &'a Theme,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub name: &'a str,
    pub email: &'a str,
    pub structures: Vec<StructureChoice>,
    pub other_roles: Vec<String>,
    pub factor: &'a str,
    pub can_manage_factors: bool,
    pub can_import_cards: bool,
    pub can_review: bool,
    pub can_open_waves: bool,
    pub follows_rollout: bool,
    pub audits: bool,
}

pub fn nav(current: &str) -> Vec<NavItem> {
    navigation(current)
}

pub const THEME: &Theme = &STATE;

/// Pages a login or a re-check may continue to. Anything else — another site, however it is
/// written, or a path of ours that is not a page — goes to the account page.
const CONTINUE_TO: &[&str] = &[
    "/compte",
    "/mandats",
    "/usagers",
    "/activite",
    "/courriers",
    "/referent",
    "/national",
    "/instruction",
    "/territoire",
    "/audit",
    "/structure",
    "/formation",
    "/oidc/authorize",
];

/// A local path to continue to after login. The value is parsed as browsers would resolve it
/// against our origin (tabs and newlines dropped, `\\` read as `/`, dot segments and
/// percent-encoding normalised), then it must stay on our origin and land on one of our pages;
/// the normalised path and query are returned, never the raw input.
pub fn safe_next(next: Option<&str>) -> String {
    const FALLBACK: &str = "/compte";
    let Some(raw) = next.filter(|n| n.len() < 2_000 && n.starts_with('/')) else {
        return FALLBACK.to_owned();
    };
    // Control characters and backslashes have no place in our links: raw anywhere, or encoded
    // in the path (the query may well hold an encoded `//`, as `redirect_uri` does).
    let path_part = raw
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if raw.chars().any(|c| c.is_control() || c == '\\')
        || ["%5c", "%09", "%0a", "%0d", "%00", "%2f"]
            .iter()
            .any(|bad| path_part.contains(bad))
    {
        return FALLBACK.to_owned();
    }
    let Ok(base) = url::Url::parse("https://plateforme.invalid/") else {
        return FALLBACK.to_owned();
    };
    let Ok(resolved) = base.join(raw) else {
        return FALLBACK.to_owned();
    };
    if resolved.origin() != base.origin() || resolved.username() != "" {
        return FALLBACK.to_owned();
    }
    let path = resolved.path();
    let ours = CONTINUE_TO.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    if !ours || path.starts_with("//") {
        return FALLBACK.to_owned();
    }
    match resolved.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// French label of a role.
pub fn role_label(role: &str) -> &'static str {
    match role {
        "aidant" => "aidant",
        "referent" => "référent",
        "territory_admin" => "administrateur de territoire",
        "national_admin" => "administrateur national",
        "trainer" => "formateur",
        "auditor" => "auditeur",
        "reviewer" => "instructeur (par délégation)",
        _ => "rôle inconnu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/compte/structure?x=1")),
            "/compte/structure?x=1"
        );
        assert_eq!(safe_next(Some("/mandats/abc")), "/mandats/abc");
        assert_eq!(
            safe_next(Some("/oidc/authorize?client_id=x&scope=openid")),
            "/oidc/authorize?client_id=x&scope=openid"
        );
        // The identity provider's request resumes with its encoded redirect URI.
        let resume =
            "/oidc/authorize?client_id=x&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=s";
        assert_eq!(safe_next(Some(resume)), resume);
        // Dot segments are resolved before the comparison.
        assert_eq!(safe_next(Some("/mandats/../compte")), "/compte");
        let hostile = [
            None,
            Some(""),
            Some("https://evil.example"),
            Some("http:evil.example"),
            Some("//evil.example"),
            Some("///evil.example"),
            Some("/\\evil.example"),
            Some("\\evil.example"),
            Some("/\\/evil.example"),
            Some("/\t/evil.example"),
            Some("/%09/evil.example"),
            Some("/\n/evil.example"),
            Some("/%0a/evil.example"),
            Some("/%5c/evil.example"),
            Some("/%5Cevil.example"),
            Some("/%2f%2fevil.example"),
            Some("/%2F/evil.example"),
            Some("/./\\evil.example"),
            Some("/ /evil.example"),
            Some("/@evil.example"),
            Some("/compte@evil.example"),
            Some("javascript:alert(1)"),
            Some("/javascript:alert(1)"),
            Some("data:text/html,x"),
            Some(" /compte"),
            Some("/mandats/../../evil.example"),
            Some("/..//evil.example"),
            Some("/deconnexion"),
            Some("/connexion/lien?jeton=x"),
            Some("/internal/documents"),
            Some("/comptebidon"),
            Some("/\u{0}/evil.example"),
        ];
        assert!(hostile.len() >= 20);
        for bad in hostile {
            let next = safe_next(bad);
            assert!(
                next == "/compte" || next.starts_with("/compte") && !next.contains("evil"),
                "{bad:?} → {next}"
            );
            assert!(
                !next.starts_with("//") && !next.contains('\\'),
                "{bad:?} → {next}"
            );
        }
    }
}

/// One form field, rendered by `_field.html` with its error and what was typed.
#[derive(Debug, Clone)]
pub struct FieldView {
    pub name: &'static str,
    pub label: String,
    pub hint: Option<String>,
    pub value: String,
    pub error: Option<String>,
    /// `text`, `email`, `tel`, `date`, `textarea`, `select` or `checkbox`.
    pub kind: &'static str,
    pub options: Vec<(String, String)>,
    pub checked: bool,
    pub autocomplete: Option<&'static str>,
    pub inputmode: Option<&'static str>,
}

impl FieldView {
    pub fn new(name: &'static str, kind: &'static str, label: impl Into<String>) -> Self {
        FieldView {
            name,
            label: label.into(),
            hint: None,
            value: String::new(),
            error: None,
            kind,
            options: Vec::new(),
            checked: false,
            autocomplete: None,
            inputmode: None,
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }
    pub fn checked(mut self, checked: bool) -> Self {
        self.checked = checked;
        self
    }
    pub fn options(mut self, options: &[(&str, &str)]) -> Self {
        self.options = options
            .iter()
            .map(|(c, l)| ((*c).to_owned(), (*l).to_owned()))
            .collect();
        self
    }
    pub fn autocomplete(mut self, a: &'static str) -> Self {
        self.autocomplete = Some(a);
        self
    }
    pub fn inputmode(mut self, m: &'static str) -> Self {
        self.inputmode = Some(m);
        self
    }
    /// Attaches the error of this field, if any.
    pub fn errors(mut self, errors: &crate::requests::form::FieldErrors) -> Self {
        self.error = errors.get(self.name).map(str::to_owned);
        self
    }
}

/// A page answering a state conflict or a missing thing, with a status.
pub fn message_page(
    status: poem::http::StatusCode,
    current: &str,
    heading: &str,
    paragraphs: Vec<&str>,
    link: Option<(&str, &str)>,
) -> PageResult<poem::Response> {
    let mut resp = foundation::web::html(&MessagePage {
        theme: THEME,
        nav: nav(current),
        heading,
        paragraphs,
        link,
    })?;
    resp.set_status(status);
    Ok(resp)
}
