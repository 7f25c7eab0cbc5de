//! The desk's page templates and small helpers shared by its handlers.

use askama::Template;
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
}

pub fn nav(current: &str) -> Vec<NavItem> {
    navigation(current)
}

pub const THEME: &Theme = &STATE;

/// A database failure in a page handler: logged once here, answered with the French 503 page.
pub fn db_error(e: sqlx::Error) -> poem::Error {
    tracing::error!(error = %e, "desk: database error");
    poem::Error::from_status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
}

/// A local path to continue to after login; anything else (other sites, `//host`) is ignored.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() < 2_000 =>
        {
            p.to_owned()
        }
        _ => "/compte".to_owned(),
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
        for bad in [
            None,
            Some(""),
            Some("https://evil.example"),
            Some("//evil.example"),
            Some("/\\evil.example"),
        ] {
            assert_eq!(safe_next(bad), "/compte", "{bad:?}");
        }
    }
}
