//! What the platform knows of the browser a login comes from.
//!
//! - A login link works only in the browser that asked for it: the login form sets a random
//!   cookie (`ac_demande`, 10 minutes) whose hash is stored with the link, and the link's POST
//!   needs it. A link forwarded, intercepted or opened on another device opens nothing.
//! - A browser where a professional completed a login is *known* for them (`ac_appareil`, one
//!   year, hash in `platform.known_browsers`). Wrong codes typed in a known browser, or within
//!   a session, count toward the factor's lock; wrong codes from any other browser only delay
//!   other unknown browsers, so whoever knows an aidant's e-mail cannot lock their factor.

use crate::ids::ProfessionalId;
use poem::Request;
use poem::web::cookie::{Cookie, SameSite};
use sqlx::PgConnection;

use super::secrets::{new_token, token_hash};

pub const LOGIN_REQUEST_COOKIE: &str = "ac_demande";
pub const KNOWN_BROWSER_COOKIE: &str = "ac_appareil";
/// Over HTTPS both carry the `__Host-` prefix, like the session and CSRF cookies: a sibling
/// host or a plain-HTTP page cannot set them.
const LOGIN_REQUEST_COOKIE_HOST: &str = "__Host-ac_demande";
const KNOWN_BROWSER_COOKIE_HOST: &str = "__Host-ac_appareil";

fn login_request_name(secure: bool) -> &'static str {
    if secure {
        LOGIN_REQUEST_COOKIE_HOST
    } else {
        LOGIN_REQUEST_COOKIE
    }
}

fn known_browser_name(secure: bool) -> &'static str {
    if secure {
        KNOWN_BROWSER_COOKIE_HOST
    } else {
        KNOWN_BROWSER_COOKIE
    }
}
/// Life of the login-request cookie: longer than a login link (5 minutes).
pub const LOGIN_REQUEST_MINUTES: u64 = 10;
/// A browser stays known this long after its last completed login.
pub const KNOWN_BROWSER_DAYS: u64 = 365;

fn cookie(name: &'static str, value: String, secure: bool, max_age_seconds: u64) -> Cookie {
    let mut cookie = Cookie::new_with_str(name, value);
    cookie.set_http_only(true);
    cookie.set_secure(secure);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path("/");
    cookie.set_max_age(std::time::Duration::from_secs(max_age_seconds));
    cookie
}

fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.cookie()
        .get(name)
        .map(|c| c.value_str().to_owned())
        .filter(|v| v.len() >= 32 && v.len() <= 64)
}

/// The hash binding a login link to this browser, and the cookie to (re)set. A browser that
/// already asked keeps its value, so two links asked in a row both work there.
pub fn login_request(req: &Request, secure: bool) -> (Vec<u8>, Cookie) {
    let value = cookie_value(req, login_request_name(secure)).unwrap_or_else(new_token);
    let hash = token_hash(&value);
    (
        hash,
        cookie(
            login_request_name(secure),
            value,
            secure,
            LOGIN_REQUEST_MINUTES * 60,
        ),
    )
}

/// The hash of this browser's login-request cookie, if it has one.
pub fn login_request_of(req: &Request, secure: bool) -> Option<Vec<u8>> {
    cookie_value(req, login_request_name(secure)).map(|v| token_hash(&v))
}

/// Whether `professional` completed a login in this browser within the last year.
pub async fn is_known(
    conn: &mut PgConnection,
    req: &Request,
    professional: ProfessionalId,

    secure: bool,
) -> Result<bool, sqlx::Error> {
    let Some(value) = cookie_value(req, known_browser_name(secure)) else {
        return Ok(false);
    };
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.known_browsers
                        WHERE token_hash = $1 AND professional_id = $2
                          AND last_seen_at > now() - make_interval(days => $3))",
    )
    .bind(token_hash(&value))
    .bind(professional)
    .bind(KNOWN_BROWSER_DAYS as i32)
    .fetch_one(&mut *conn)
    .await
}

/// Records a completed login in this browser; returns the cookie to set. The browser keeps
/// its value (several professionals may share a counter's computer); a new browser gets one.
pub async fn remember(
    conn: &mut PgConnection,
    req: &Request,
    professional: ProfessionalId,

    secure: bool,
) -> Result<Cookie, sqlx::Error> {
    let value = cookie_value(req, known_browser_name(secure)).unwrap_or_else(new_token);
    sqlx::query(
        "INSERT INTO platform.known_browsers (token_hash, professional_id) VALUES ($1, $2)
         ON CONFLICT (token_hash, professional_id) DO UPDATE SET last_seen_at = now()",
    )
    .bind(token_hash(&value))
    .bind(professional)
    .execute(&mut *conn)
    .await?;
    Ok(cookie(
        known_browser_name(secure),
        value,
        secure,
        KNOWN_BROWSER_DAYS * 24 * 3600,
    ))
}
