//! Login: e-mail + current TOTP code in one form; when both are valid, a single-use link is
//! mailed (5 minutes). Opening the link (GET) consumes nothing; its button (POST) does and opens
//! a new session. Errors never say whether an account exists.

use foundation::app::Platform;
use foundation::auth::journal::{self, SecurityEvent};
use foundation::auth::secrets::{new_token, token_hash};
use foundation::auth::{browsers, client, csrf, delays, factors, ratelimit, session, totp};
use foundation::ids::ProfessionalId;
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform_sealed};
use foundation::web::PageResult;
use foundation::web::html;
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::views::{ConfirmPage, LoginPage, MessagePage, THEME, nav, safe_next};

/// The professional an address without an account is checked as, for the same work.
const NOBODY: ProfessionalId = ProfessionalId::from_uuid(Uuid::nil());

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
) -> PageResult<Response> {
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
) -> PageResult<Response> {
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

/// The key of the per-address limit: the client's address as the trusted proxies name it.
fn address_key(req: &Request, platform: &Platform) -> String {
    client::client_address(req, &platform.settings.http.trusted_proxies)
        .map(client::limit_key)
        .unwrap_or_default()
}

#[handler]
pub async fn submit(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<LoginForm>,
) -> PageResult<Response> {
    let next = safe_next(f.suite.as_deref());
    let email = f.email.trim().to_lowercase();
    let mut tx = platform.platform_pool().begin().await?;
    let address = ratelimit::hit(
        &mut tx,
        "login-address",
        &address_key(req, &platform),
        ADDRESS_ATTEMPTS,
        RATE_WINDOW_SECONDS,
    )
    .await?;
    let account = ratelimit::hit(
        &mut tx,
        "login-account",
        &email,
        ACCOUNT_ATTEMPTS,
        RATE_WINDOW_SECONDS,
    )
    .await?;
    if !(address.allowed() && account.allowed()) {
        // Refused attempts are counted by the limit itself; the journal records only the first
        // refusal of each window, so a flood writes nothing more.
        let first = if !address.allowed() {
            address.first_refusal()
        } else {
            account.first_refusal()
        };
        if first {
            journal::append(
                &mut tx,
                SecurityEvent::RateLimited,
                None,
                None,
                json!({ "scope": if address.allowed() { "account" } else { "address" } }),
            )
            .await?;
        }
        tx.commit().await?;
        let mut resp = login_page(req, &platform, next, email, Some(TOO_MANY), None)?;
        resp.set_status(StatusCode::TOO_MANY_REQUESTS);
        return Ok(resp);
    }
    let professional: Option<ProfessionalId> =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1 AND active")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let now = OffsetDateTime::now_utc();
    // Codes typed in a browser where this professional never logged in are "unknown": their
    // failures are delayed per address and never lock the factor. An address without an
    // account takes the same path, with the same reads and writes.
    // An address without an account asks the same question (of nobody), for the same work.
    let known = browsers::is_known(
        &mut tx,
        req,
        professional.unwrap_or(NOBODY),
        secure(&platform),
    )
    .await?
        && professional.is_some();
    let trust = if known {
        factors::Trust::Known
    } else {
        factors::Trust::Unknown
    };
    let waiting = if known {
        None
    } else {
        delays::blocked_until(&mut tx, &email, now).await?
    };
    let outcome = match (waiting, professional) {
        (Some(until), _) => Err(factors::FactorError::Blocked(until)),
        (None, Some(id)) => factors::check_code(&mut tx, &platform.cipher, id, &f.code, now, trust)
            .await
            .map(|_| id),
        (None, None) => {
            // The factor lookup (of nobody) and a code check, as for a real account.
            let _ =
                factors::check_code(&mut tx, &platform.cipher, NOBODY, &f.code, now, trust).await;
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
    if !known {
        match &outcome {
            Ok(_) => delays::clear(&mut tx, &email).await?,
            Err(
                factors::FactorError::Wrong
                | factors::FactorError::Replayed
                | factors::FactorError::NoFactor,
            ) => {
                delays::record_failure(&mut tx, &email, now).await?;
            }
            Err(_) => {}
        }
    }
    match outcome {
        Ok(id) => {
            let token = new_token();
            let (browser_hash, browser_cookie) = browsers::login_request(req, secure(&platform));
            sqlx::query(
                "INSERT INTO platform.email_links (token_hash, purpose, professional_id, totp_verified_at, expires_at, browser_hash)
                 VALUES ($1, 'login', $2, $3, now() + make_interval(mins => $4), $5)",
            )
            .bind(token_hash(&token))
            .bind(id)
            .bind(now)
            .bind(LOGIN_LINK_MINUTES)
            .bind(browser_hash)
            .execute(&mut *tx)
            .await?;
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
            enqueue_platform_sealed(&mut tx, &platform.cipher, &message).await?;
            journal::append(
                &mut tx,
                SecurityEvent::LoginLinkSent,
                Some(id),
                None,
                json!({}),
            )
            .await?;
            tx.commit().await?;
            req.cookie().add(browser_cookie);
            html(&MessagePage {
                theme: THEME,
                nav: nav("/compte"),
                heading: "Consultez votre messagerie",
                paragraphs: vec![
                    "Un lien de connexion vient de vous être envoyé par e-mail. Il est valable 5 minutes et ne fonctionne qu'une fois.",
                    "Ouvrez-le dans ce navigateur, sur cet appareil, puis cliquez sur « Me connecter » : il ne fonctionne pas ailleurs.",
                ],
                link: None,
            })
        }
        Err(e) => {
            // In a known browser, a wrong or replayed code was journaled by the factor check
            // itself; every other refusal is journaled here: one entry per failed attempt.
            let reason = match e {
                factors::FactorError::NoFactor => "no_account_or_factor",
                factors::FactorError::Blocked(_) => "blocked",
                factors::FactorError::Locked => "locked",
                factors::FactorError::Replayed => "replayed",
                factors::FactorError::Wrong => "wrong_code",
                factors::FactorError::Cipher => "cipher",
            };
            let journaled_by_factor = known
                && matches!(
                    e,
                    factors::FactorError::Wrong | factors::FactorError::Replayed
                );
            if !journaled_by_factor {
                journal::append(
                    &mut tx,
                    SecurityEvent::LoginFailed,
                    professional,
                    None,
                    json!({ "reason": reason }),
                )
                .await?;
            }
            // Committed so that failure counters and delays hold.
            tx.commit().await?;
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
) -> PageResult<Response> {
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
) -> PageResult<Response> {
    let mut tx = platform.platform_pool().begin().await?;
    let token = token_hash(f.jeton.trim());
    // The link opens a session only in the browser that asked for it: checked before anything
    // is consumed, so the right browser can still use it.
    let bound: Option<Option<Vec<u8>>> = sqlx::query_scalar(
        "SELECT browser_hash FROM platform.email_links
         WHERE token_hash = $1 AND purpose = 'login' AND consumed_at IS NULL AND expires_at > now()",
    )
    .bind(&token)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(Some(expected)) = bound {
        let here = browsers::login_request_of(req, secure(&platform));
        let same = here.is_some_and(|h| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                h.as_slice(),
                expected.as_slice(),
            ))
        });
        if !same {
            tx.rollback().await?;
            let mut resp = html(&MessagePage {
                theme: THEME,
                nav: nav("/compte"),
                heading: "Ouvrez le lien dans le bon navigateur",
                paragraphs: vec![
                    "Pour votre sécurité, un lien de connexion ne fonctionne que dans le navigateur où vous avez demandé la connexion.",
                    "Ouvrez le lien dans le navigateur où vous avez demandé la connexion, sur le même appareil, ou demandez un nouveau lien depuis ce navigateur-ci.",
                ],
                link: Some(("/connexion", "Demander un nouveau lien")),
            })?;
            resp.set_status(StatusCode::FORBIDDEN);
            return Ok(resp);
        }
    }
    let consumed: Option<(ProfessionalId, Option<OffsetDateTime>)> = sqlx::query_as(

        "UPDATE platform.email_links l SET consumed_at = now()
         FROM platform.professionals p
         WHERE l.token_hash = $1 AND l.purpose = 'login' AND l.consumed_at IS NULL AND l.expires_at > now()
           AND p.id = l.professional_id AND p.active
         RETURNING l.professional_id, l.totp_verified_at",
    )
    .bind(&token)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((professional, totp_verified_at)) = consumed else {
        tx.rollback().await?;
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
        session::end(&mut tx, &token_hash(old.value_str()), "replaced").await?;
    }
    let cookie = session::open(
        &mut tx,
        professional,
        totp_verified_at.unwrap_or_else(OffsetDateTime::now_utc),
        secure(&platform),
    )
    .await?;
    let known = browsers::remember(&mut tx, req, professional, secure(&platform)).await?;
    journal::append(
        &mut tx,
        SecurityEvent::LoginSucceeded,
        Some(professional),
        Some(professional),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    req.cookie().add(cookie);
    req.cookie().add(known);
    csrf::rotate(req, secure(&platform));
    let next = safe_next(f.suite.as_deref());
    // A new version of the aidant's charter is accepted before anything else.
    let email: String =
        sqlx::query_scalar("SELECT email FROM platform.professionals WHERE id = $1")
            .bind(professional)
            .fetch_one(platform.platform_pool())
            .await?;
    if crate::activation::must_accept(&platform, professional, &email).await? {
        return Ok(Redirect::see_other(format!(
            "/compte/charte?suite={}",
            session::url_escape(&next)
        ))
        .into_response());
    }
    Ok(Redirect::see_other(next).into_response())
}

#[handler]
pub async fn logout(
    req: &Request,
    platform: Data<&Platform>,
    professional: session::Professional,
) -> PageResult<Response> {
    let mut tx = platform.platform_pool().begin().await?;
    session::end(&mut tx, &professional.session_hash, "logout").await?;
    journal::append(
        &mut tx,
        SecurityEvent::Logout,
        Some(professional.id),
        Some(professional.id),
        json!({}),
    )
    .await?;
    tx.commit().await?;
    req.cookie().add(session::cleared_cookie(secure(&platform)));
    csrf::rotate(req, secure(&platform));
    Ok(Redirect::see_other("/connexion?deconnecte=1").into_response())
}
