//! Server-side sessions. The cookie carries a random id (HttpOnly, SameSite=Lax, Secure when
//! the platform is served over HTTPS); the database keeps only its hash. A session ends at
//! logout, at deactivation of its professional, and 12 hours after login; after 15 minutes
//! without activity it requires the TOTP code again before any mandate action.

use poem::http::StatusCode;
use poem::web::Redirect;
use poem::web::cookie::{Cookie, SameSite};
use poem::{FromRequest, IntoResponse, Request, RequestBody};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::secrets::{new_token, token_hash};
use crate::app::Platform;
use crate::ids::{ProfessionalId, StructureId};

pub const SESSION_COOKIE: &str = "ac_session";
/// The name over HTTPS: the `__Host-` prefix makes browsers accept the cookie only Secure, for
/// our exact host and path `/`, so a sibling subdomain can neither plant nor overwrite it.
pub const SESSION_COOKIE_HOST: &str = "__Host-ac_session";

/// The session cookie's name: prefixed whenever cookies are Secure.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SESSION_COOKIE_HOST
    } else {
        SESSION_COOKIE
    }
}
/// Longest life of a session, whatever the activity.
pub const MAX_AGE_HOURS: i64 = 12;
/// Inactivity after which mandate actions ask for the TOTP code again.
pub const IDLE_MINUTES: i64 = 15;

/// The professional behind the request's session.
#[derive(Debug, Clone)]
pub struct Professional {
    pub id: ProfessionalId,
    pub email: String,
    pub display_name: String,
    pub session_hash: Vec<u8>,
    pub current_structure: Option<StructureId>,
    pub recheck_required: bool,
    pub totp_verified_at: OffsetDateTime,
}

/// Opens a session (the id is rotated: always a new one) and returns the cookie to set.
pub async fn open(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    totp_verified_at: OffsetDateTime,
    secure: bool,
) -> Result<Cookie, sqlx::Error> {
    let token = new_token();
    let current_structure: Option<StructureId> = sqlx::query_scalar(
        "SELECT substr(domain, 11)::uuid FROM platform.role_assignments
         WHERE professional_id = $1 AND domain LIKE 'structure:%' ORDER BY granted_at LIMIT 1",
    )
    .bind(professional)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO platform.sessions (id_hash, professional_id, totp_verified_at, current_structure)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&token))
    .bind(professional)
    .bind(totp_verified_at)
    .bind(current_structure)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE platform.professionals SET last_login_at = now() WHERE id = $1")
        .bind(professional)
        .execute(&mut *conn)
        .await?;
    Ok(session_cookie(token, secure))
}

pub fn session_cookie(value: String, secure: bool) -> Cookie {
    let mut cookie = Cookie::new_with_str(session_cookie_name(secure), value);
    cookie.set_http_only(true);
    cookie.set_secure(secure);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path("/");
    cookie
}

/// A cookie that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> Cookie {
    let mut cookie = session_cookie(String::new(), secure);
    cookie.set_max_age(std::time::Duration::ZERO);
    cookie
}

/// Ends one session.
pub async fn end(
    conn: &mut PgConnection,
    session_hash: &[u8],
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE platform.sessions SET ended_at = now(), end_reason = $2 WHERE id_hash = $1 AND ended_at IS NULL")
        .bind(session_hash)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends every session of a professional (withdrawal, deactivation).
pub async fn end_all(
    conn: &mut PgConnection,
    professional: ProfessionalId,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE platform.sessions SET ended_at = now(), end_reason = $2 WHERE professional_id = $1 AND ended_at IS NULL",
    )
    .bind(professional)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

type SessionRow = (
    ProfessionalId,
    String,
    String,
    Option<StructureId>,
    bool,
    OffsetDateTime,
);
/// A session row as read, plus whether its activity must be written.
type ReadRow = (
    ProfessionalId,
    String,
    String,
    Option<StructureId>,
    bool,
    OffsetDateTime,
    bool,
);

/// Activity is recorded at most this often per session (a write per page would cost a commit
/// per request); idleness is thus measured to within this much.
pub const ACTIVITY_RESOLUTION_SECONDS: i32 = 30;

/// Finds the live session of a cookie value and records the activity.
pub async fn lookup(platform: &Platform, token: &str) -> Result<Option<Professional>, sqlx::Error> {
    let hash = token_hash(token);
    let mut conn = platform.tenancy.request_connection().await?;
    // Read first; write only when the recorded activity is older than the resolution or the
    // session just became idle.
    let read: Option<ReadRow> =
        sqlx::query_as(
            "SELECT p.id, p.email, p.display_name, s.current_structure, s.recheck_required, s.totp_verified_at,
                    s.last_seen_at < now() - make_interval(secs => $4)
                    OR (NOT s.recheck_required AND s.last_seen_at < now() - make_interval(mins => $2))
             FROM platform.sessions s JOIN platform.professionals p ON p.id = s.professional_id
             WHERE s.id_hash = $1 AND p.active AND s.ended_at IS NULL
               AND s.created_at > now() - make_interval(hours => $3)",
        )
        .bind(&hash)
        .bind(IDLE_MINUTES as i32)
        .bind(MAX_AGE_HOURS as i32)
        .bind(f64::from(ACTIVITY_RESOLUTION_SECONDS))
        .fetch_optional(&mut *conn)
        .await?;
    let Some((
        id,
        email,
        display_name,
        current_structure,
        recheck_required,
        totp_verified_at,
        stale,
    )) = read
    else {
        return Ok(None);
    };
    if !stale {
        return Ok(Some(Professional {
            id,
            email,
            display_name,
            session_hash: hash,
            current_structure,
            recheck_required,
            totp_verified_at,
        }));
    }
    let row: Option<SessionRow> = sqlx::query_as(
        "UPDATE platform.sessions s
         SET last_seen_at = now(),
             recheck_required = s.recheck_required OR s.last_seen_at < now() - make_interval(mins => $2)
         FROM platform.professionals p
         WHERE s.id_hash = $1 AND p.id = s.professional_id AND p.active AND s.ended_at IS NULL
           AND s.created_at > now() - make_interval(hours => $3)
         RETURNING p.id, p.email, p.display_name, s.current_structure, s.recheck_required, s.totp_verified_at",
    )
    .bind(&hash)
    .bind(IDLE_MINUTES as i32)
    .bind(MAX_AGE_HOURS as i32)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(
        |(id, email, display_name, current_structure, recheck_required, totp_verified_at)| {
            Professional {
                id,
                email,
                display_name,
                session_hash: hash,
                current_structure,
                recheck_required,
                totp_verified_at,
            }
        },
    ))
}

/// Where to send someone who must log in first, remembering where they were going.
pub fn login_redirect(req: &Request) -> poem::Error {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let encoded: String = url_escape(target);
    poem::Error::from_response(
        Redirect::see_other(format!("/connexion?suite={encoded}")).into_response(),
    )
}

/// Percent-encodes a local path for a query string (`/` kept).
pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl<'a> FromRequest<'a> for Professional {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let platform = req
            .data::<Platform>()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
        let token = req
            .cookie()
            .get(session_cookie_name(platform.settings.http.secure_cookies()))
            .map(|c| c.value_str().to_owned());
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(login_redirect(req));
        };
        match lookup(platform, &token).await {
            Ok(Some(professional)) => {
                crate::telemetry::record_professional(professional.id);
                Ok(professional)
            }
            Ok(None) => Err(login_redirect(req)),
            Err(e) => Err(crate::web::PageError::from(e).into()),
        }
    }
}

/// A professional whose session has been active recently enough for mandate actions; otherwise
/// the request is sent to the activity re-check page.
#[derive(Debug, Clone)]
pub struct RecentlyVerified(pub Professional);

/// The path and query of the Referer when it is a page of this platform.
fn referer_path(req: &Request) -> Option<String> {
    let platform = req.data::<Platform>()?;
    let origin = platform.settings.http.public_origin();
    let referer = req.headers().get("referer")?.to_str().ok()?;
    let rest = referer.strip_prefix(origin.as_str())?;
    rest.starts_with('/').then(|| rest.to_owned())
}

impl<'a> FromRequest<'a> for RecentlyVerified {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let professional = Professional::from_request(req, body).await?;
        if professional.recheck_required {
            // After the code, back where the person was: the page itself for a GET; for a
            // form (whose action has no page), the page that showed the form, when it is ours.
            let target = if req.method() == poem::http::Method::GET {
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".to_owned())
            } else {
                referer_path(req).unwrap_or_else(|| "/compte".to_owned())
            };
            return Err(poem::Error::from_response(
                Redirect::see_other(format!(
                    "/compte/verification?suite={}",
                    url_escape(&target)
                ))
                .into_response(),
            ));
        }
        Ok(RecentlyVerified(professional))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_httponly_lax_and_secure_over_https() {
        let over_https = session_cookie("v".into(), true).to_string();
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(over_https.contains(attribute), "{over_https}");
        }
        assert!(
            !session_cookie("v".into(), false)
                .to_string()
                .contains("Secure")
        );
        assert!(cleared_cookie(true).to_string().contains("Max-Age=0"));
    }
}
