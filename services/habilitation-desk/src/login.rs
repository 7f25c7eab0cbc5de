//! Login: e-mail + current TOTP code in one form; when both are valid, a single-use link is
//! mailed (5 minutes). Opening the link (GET) consumes nothing; its button (POST) does and opens
//! a new session. Errors never say whether an account exists.

use foundation::app::Platform;
use foundation::auth::journal::{self, SecurityEvent};
use foundation::auth::secrets::{new_token, token_hash};
use foundation::auth::{csrf, factors, ratelimit, session, totp};
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform};
use foundation::web::html;
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::views::{ConfirmPage, LoginPage, MessagePage, THEME, db_error, nav, safe_next};

/// Lifetime of a login link.
pub const LOGIN_LINK_MINUTES: i32 = 5;
/// Login attempts allowed per account and per client address in `RATE_WINDOW_SECONDS`.
pub const ACCOUNT_ATTEMPTS: i32 = 10;
pub const ADDRESS_ATTEMPTS: i32 = 30;
pub const RATE_WINDOW_SECONDS: i64 = 15 * 60;

const GENERIC_ERROR: &str = "L'adresse e-mail ou le code est incorrect, ou le compte est temporairement bloqué. \
    Vérifiez votre saisie et utilisez le code affiché en ce moment ; après plusieurs erreurs, patientez quelques minutes.";
const TOO_MANY: &str =
    "Trop de tentatives de connexion en peu de temps. Patientez 15 minutes puis réessayez.";

#[derive(Deserialize)]
pub struct NextQuery {
    suite: Option<String>,
    deconnecte: Option<String>,
}

fn secure(platform: &Platform) -> bool {
    platform.settings.http.secure_cookies()
}

fn login_page(
    req: &Request,
    platform: &Platform,
    next: String,
    email: String,
    error: Option<&str>,
    notice: Option<&str>,
) -> poem::Result<Response> {
    html(&LoginPage {
        theme: THEME,
        nav: nav("/compte"),
        csrf: csrf::token(req, secure(platform)),
        next,
        email,
        error,
        notice,
    })
}

#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<NextQuery>,
) -> poem::Result<Response> {
    let notice = q.deconnecte.is_some().then_some("Vous êtes déconnecté.");
    login_page(
        req,
        &platform,
        safe_next(q.suite.as_deref()),
        String::new(),
        None,
        notice,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    code: String,
    suite: Option<String>,
}

fn client_address(req: &Request) -> String {
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

#[handler]
pub async fn submit(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<LoginForm>,
) -> poem::Result<Response> {
    let next = safe_next(f.suite.as_deref());
    let email = f.email.trim().to_lowercase();
    let mut tx = platform.platform_pool().begin().await.map_err(db_error)?;
    let address_ok = ratelimit::hit(
        &mut tx,
        "login-address",
        &client_address(req),
        ADDRESS_ATTEMPTS,
        RATE_WINDOW_SECONDS,
    )
    .await
    .map_err(db_error)?;
    let account_ok = ratelimit::hit(
        &mut tx,
        "login-account",
        &email,
        ACCOUNT_ATTEMPTS,
        RATE_WINDOW_SECONDS,
    )
    .await
    .map_err(db_error)?;
    if !(address_ok && account_ok) {
        journal::append(
            &mut tx,
            SecurityEvent::RateLimited,
            None,
            None,
            json!({ "scope": if address_ok { "account" } else { "address" } }),
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let mut resp = login_page(req, &platform, next, email, Some(TOO_MANY), None)?;
        resp.set_status(StatusCode::TOO_MANY_REQUESTS);
        return Ok(resp);
    }
    let professional: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1 AND active")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
    let now = OffsetDateTime::now_utc();
    let outcome = match professional {
        Some(id) => factors::check_code(&mut tx, &platform.cipher, id, &f.code, now)
            .await
            .map(|_| id),
        None => {
            // Same work as for a real account, so that timing says nothing either.
            let _ = totp::verify(
                &totp::new_seed(),
                30,
                &f.code,
                now.unix_timestamp() as u64,
                0,
            );
            Err(factors::FactorError::NoFactor)
        }
    };
    match outcome {
        Ok(id) => {
            let token = new_token();
            sqlx::query(
                "INSERT INTO platform.email_links (token_hash, purpose, professional_id, totp_verified_at, expires_at)
                 VALUES ($1, 'login', $2, $3, now() + make_interval(mins => $4))",
            )
            .bind(token_hash(&token))
            .bind(id)
            .bind(now)
            .bind(LOGIN_LINK_MINUTES)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let base = platform.settings.http.public_url.trim_end_matches('/');
            let mut url = format!("{base}/connexion/lien?jeton={token}");
            if next != "/compte" {
                url.push_str("&suite=");
                url.push_str(&session::url_escape(&next));
            }
            let message = OutboxMessage {
                channel: Channel::Email,
                recipient: email,
                template: "login_link",
                payload: json!({ "url": url }),
            };
            enqueue_platform(&mut tx, &message)
                .await
                .map_err(db_error)?;
            journal::append(
                &mut tx,
                SecurityEvent::LoginLinkSent,
                Some(id),
                None,
                json!({}),
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            html(&MessagePage {
                theme: THEME,
                nav: nav("/compte"),
                heading: "Consultez votre messagerie",
                paragraphs: vec![
                    "Un lien de connexion vient de vous être envoyé par e-mail. Il est valable 5 minutes et ne fonctionne qu'une fois.",
                    "Ouvrez-le sur cet appareil puis cliquez sur « Me connecter ».",
                ],
                link: None,
            })
        }
        Err(e) => {
            let reason = match e {
                factors::FactorError::NoFactor => "no_account_or_factor",
                factors::FactorError::Blocked(_) => "blocked",
                factors::FactorError::Locked => "locked",
                factors::FactorError::Replayed => "replayed",
                factors::FactorError::Wrong => "wrong_code",
                factors::FactorError::Cipher => "cipher",
            };
            journal::append(
                &mut tx,
                SecurityEvent::LoginFailed,
                professional,
                None,
                json!({ "reason": reason }),
            )
            .await
            .map_err(db_error)?;
            // Committed so that failure counters and delays hold.
            tx.commit().await.map_err(db_error)?;
            let mut resp = login_page(req, &platform, next, email, Some(GENERIC_ERROR), None)?;
            resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            Ok(resp)
        }
    }
}

#[derive(Deserialize)]
pub struct LinkQuery {
    jeton: Option<String>,
    suite: Option<String>,
}

/// Opening the link shows a button: nothing is consumed, so a mail scanner cannot burn it.
#[handler]
pub async fn link(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<LinkQuery>,
) -> poem::Result<Response> {
    html(&ConfirmPage {
        theme: THEME,
        nav: nav("/compte"),
        heading: "Confirmer la connexion",
        explanation: "Cliquez sur le bouton pour ouvrir votre session sur cet appareil.",
        action: "/connexion/lien",
        button: "Me connecter",
        csrf: csrf::token(req, secure(&platform)),
        token: q.jeton.unwrap_or_default(),
        next: safe_next(q.suite.as_deref()),
    })
}

#[derive(Deserialize)]
pub struct LinkForm {
    jeton: String,
    suite: Option<String>,
}

#[handler]
pub async fn consume_link(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<LinkForm>,
) -> poem::Result<Response> {
    let mut tx = platform.platform_pool().begin().await.map_err(db_error)?;
    let consumed: Option<(Uuid, Option<OffsetDateTime>)> = sqlx::query_as(
        "UPDATE platform.email_links l SET consumed_at = now()
         FROM platform.professionals p
         WHERE l.token_hash = $1 AND l.purpose = 'login' AND l.consumed_at IS NULL AND l.expires_at > now()
           AND p.id = l.professional_id AND p.active
         RETURNING l.professional_id, l.totp_verified_at",
    )
    .bind(token_hash(f.jeton.trim()))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let Some((professional, totp_verified_at)) = consumed else {
        tx.rollback().await.map_err(db_error)?;
        let mut resp = html(&MessagePage {
            theme: THEME,
            nav: nav("/compte"),
            heading: "Ce lien n'est plus valable",
            paragraphs: vec![
                "Un lien de connexion ne sert qu'une fois et expire au bout de 5 minutes.",
                "Demandez un nouveau lien en vous connectant à nouveau.",
            ],
            link: Some(("/connexion", "Se connecter")),
        })?;
        resp.set_status(StatusCode::BAD_REQUEST);
        return Ok(resp);
    };
    // A session already open in this browser ends: the id always changes at login.
    if let Some(old) = req
        .cookie()
        .get(session::session_cookie_name(secure(&platform)))
    {
        session::end(&mut tx, &token_hash(old.value_str()), "replaced")
            .await
            .map_err(db_error)?;
    }
    let cookie = session::open(
        &mut tx,
        professional,
        totp_verified_at.unwrap_or_else(OffsetDateTime::now_utc),
        secure(&platform),
    )
    .await
    .map_err(db_error)?;
    journal::append(
        &mut tx,
        SecurityEvent::LoginSucceeded,
        Some(professional),
        Some(professional),
        json!({}),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    req.cookie().add(cookie);
    csrf::rotate(req, secure(&platform));
    Ok(Redirect::see_other(safe_next(f.suite.as_deref())).into_response())
}

#[handler]
pub async fn logout(
    req: &Request,
    platform: Data<&Platform>,
    professional: session::Professional,
) -> poem::Result<Response> {
    let mut tx = platform.platform_pool().begin().await.map_err(db_error)?;
    session::end(&mut tx, &professional.session_hash, "logout")
        .await
        .map_err(db_error)?;
    journal::append(
        &mut tx,
        SecurityEvent::Logout,
        Some(professional.id),
        Some(professional.id),
        json!({}),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    req.cookie().add(session::cleared_cookie(secure(&platform)));
    csrf::rotate(req, secure(&platform));
    Ok(Redirect::see_other("/connexion?deconnecte=1").into_response())
}
