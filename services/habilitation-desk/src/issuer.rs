//! Issuers ("demandeurs"): anyone may file a structure's request, with no account. Their address
//! is verified first by a single-use link (24 hours, SHA-256 stored, sealed in the outbox): its
//! GET shows a button and consumes nothing (mail scanners cannot burn it), its POST consumes it
//! and opens an issuer session — a cookie of its own (`ac_demandeur`, `__Host-` over HTTPS),
//! server-side, 12 hours at most — which opens their requests. The answer to an address is the
//! same whether it was known or not.

use foundation::app::Platform;
use foundation::auth::secrets::{new_token, token_hash};
use foundation::auth::{client, csrf, ratelimit};
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform_sealed};
use foundation::web::html;
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::cookie::{Cookie, SameSite};
use poem::web::{Data, Form, Query, Redirect};
use poem::{FromRequest, IntoResponse, Request, RequestBody, Response, handler};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::accounts::normalize_email;
use crate::requests::IssuerRef;
use crate::views::{ConfirmPage, MessagePage, THEME, nav};

pub const ISSUER_COOKIE: &str = "ac_demandeur";
pub const ISSUER_COOKIE_HOST: &str = "__Host-ac_demandeur";
/// Lifetime of an address-verification link.
pub const LINK_HOURS: i32 = 24;
/// Longest life of an issuer session.
pub const SESSION_HOURS: i32 = 12;
/// Links asked per address and per client address in an hour.
const PER_EMAIL: i32 = 5;
const PER_CLIENT: i32 = 30;

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        ISSUER_COOKIE_HOST
    } else {
        ISSUER_COOKIE
    }
}

fn secure(platform: &Platform) -> bool {
    platform.settings.http.secure_cookies()
}

fn cookie(value: String, secure: bool) -> Cookie {
    let mut c = Cookie::new_with_str(cookie_name(secure), value);
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c
}

/// The issuer behind the request's issuer session.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub id: Uuid,
    pub email: String,
    session_hash: Vec<u8>,
}

impl Issuer {
    pub fn as_ref(&self) -> IssuerRef {
        IssuerRef {
            id: self.id,
            email: self.email.clone(),
        }
    }
}

/// Reads the issuer session of a request, if any.
pub async fn lookup(req: &Request, platform: &Platform) -> Result<Option<Issuer>, sqlx::Error> {
    let Some(token) = req
        .cookie()
        .get(cookie_name(secure(platform)))
        .map(|c| c.value_str().to_owned())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let hash = token_hash(&token);
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT i.id, i.email FROM platform.issuer_sessions s JOIN platform.issuers i ON i.id = s.issuer_id
         WHERE s.id_hash = $1 AND s.ended_at IS NULL AND s.created_at > now() - make_interval(hours => $2)",
    )
    .bind(&hash)
    .bind(SESSION_HOURS)
    .fetch_optional(platform.platform_pool())
    .await?;
    Ok(row.map(|(id, email)| Issuer {
        id,
        email,
        session_hash: hash,
    }))
}

impl<'a> FromRequest<'a> for Issuer {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let platform = req
            .data::<Platform>()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
        match lookup(req, platform).await {
            Ok(Some(issuer)) => Ok(issuer),
            Ok(None) => Err(poem::Error::from_response(
                Redirect::see_other("/demande?session=expiree").into_response(),
            )),
            Err(e) => Err(PageError::from(e).into()),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "issuer_start.html")]
struct StartPage<'a> {
    theme: &'a foundation::web::Theme,
    nav: Vec<foundation::web::NavItem>,
    csrf: String,
    email: String,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    signed_in: bool,
}

fn start_page(
    req: &Request,
    platform: &Platform,
    email: String,
    error: Option<&str>,
    notice: Option<&str>,
    signed_in: bool,
) -> PageResult<Response> {
    html(&StartPage {
        theme: THEME,
        nav: nav("/demande"),
        csrf: csrf::token(req, secure(platform)),
        email,
        error,
        notice,
        signed_in,
    })
}

#[derive(Deserialize)]
pub struct StartQuery {
    session: Option<String>,
}

/// `GET /demande`: what the request involves, and the address form.
#[handler]
pub async fn start(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<StartQuery>,
) -> PageResult<Response> {
    let signed_in = lookup(req, &platform).await?.is_some();
    let notice = q.session.is_some().then_some(
        "Votre session a expiré ou vous n'êtes pas identifié : indiquez votre adresse e-mail pour recevoir un nouveau lien d'accès à vos demandes.",
    );
    start_page(req, &platform, String::new(), None, notice, signed_in)
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    email: String,
}

/// `POST /demande`: mails a verification link to the address.
#[handler]
pub async fn send_link(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<StartForm>,
) -> PageResult<Response> {
    let Ok(email) = normalize_email(&f.email) else {
        let mut resp = start_page(
            req,
            &platform,
            f.email.trim().to_owned(),
            Some(
                "Cette adresse e-mail n'est pas valide : elle doit avoir la forme nom@domaine.fr.",
            ),
            None,
            false,
        )?;
        resp.set_status(StatusCode::BAD_REQUEST);
        return Ok(resp);
    };
    let mut tx = platform.platform_pool().begin().await?;
    let address = client::client_address(req, &platform.settings.http.trusted_proxies)
        .map(client::limit_key)
        .unwrap_or_default();
    let by_client = ratelimit::hit(&mut tx, "issuer-client", &address, PER_CLIENT, 3600).await?;
    let by_email = ratelimit::hit(&mut tx, "issuer-email", &email, PER_EMAIL, 3600).await?;
    if !(by_client.allowed() && by_email.allowed()) {
        tx.commit().await?;
        let mut resp = start_page(
            req,
            &platform,
            email,
            Some(
                "Trop de liens demandés en peu de temps. Utilisez le dernier lien reçu, ou réessayez dans une heure.",
            ),
            None,
            false,
        )?;
        resp.set_status(StatusCode::TOO_MANY_REQUESTS);
        return Ok(resp);
    }
    let issuer: Uuid = sqlx::query_scalar(
        "INSERT INTO platform.issuers (id, email) VALUES ($1, $2)
         ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(&email)
    .fetch_one(&mut *tx)
    .await?;
    let token = new_token();
    sqlx::query(
        "INSERT INTO platform.issuer_links (token_hash, issuer_id, expires_at)
         VALUES ($1, $2, now() + make_interval(hours => $3))",
    )
    .bind(token_hash(&token))
    .bind(issuer)
    .bind(LINK_HOURS)
    .execute(&mut *tx)
    .await?;
    let url = format!(
        "{}/demande/acces?jeton={token}",
        crate::requests::public_url(&platform)
    );
    enqueue_platform_sealed(
        &mut tx,
        &platform.cipher,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: email.clone(),
            template: "issuer_link",
            payload: json!({ "url": url }),
        },
    )
    .await?;
    tx.commit().await?;
    html(&MessagePage {
        theme: THEME,
        nav: nav("/demande"),
        heading: "Consultez votre messagerie",
        paragraphs: vec![
            "Un lien d'accès vient d'être envoyé à l'adresse indiquée. Il est valable 24 heures et ne sert qu'une fois.",
            "Ouvrez-le pour commencer ou retrouver vos demandes d'habilitation. Si rien n'arrive d'ici quelques minutes, vérifiez les courriers indésirables, puis demandez un nouveau lien.",
        ],
        link: Some(("/demande", "Demander un nouveau lien")),
    })
}

#[derive(Deserialize)]
pub struct LinkQuery {
    jeton: Option<String>,
}

fn invalid_link() -> PageResult<Response> {
    let mut resp = html(&MessagePage {
        theme: THEME,
        nav: nav("/demande"),
        heading: "Ce lien n'est plus valable",
        paragraphs: vec![
            "Ce lien d'accès a déjà servi, a expiré (il vaut 24 heures) ou est incomplet.",
            "Demandez un nouveau lien : vous retrouverez vos demandes telles que vous les avez laissées.",
        ],
        link: Some(("/demande", "Recevoir un nouveau lien")),
    })?;
    resp.set_status(StatusCode::BAD_REQUEST);
    Ok(resp)
}

/// `GET /demande/acces`: the link's page; consumes nothing.
#[handler]
pub async fn link(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<LinkQuery>,
) -> PageResult<Response> {
    let Some(token) = q.jeton.filter(|t| !t.is_empty() && t.len() < 200) else {
        return invalid_link();
    };
    let valid: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.issuer_links
                        WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now())",
    )
    .bind(token_hash(&token))
    .fetch_one(platform.platform_pool())
    .await?;
    if !valid {
        return invalid_link();
    }
    html(&ConfirmPage {
        theme: THEME,
        nav: nav("/demande"),
        heading: "Accéder à vos demandes d'habilitation",
        explanation: "Votre adresse e-mail est confirmée dès que vous cliquez sur le bouton ci-dessous. Ce lien ne sert qu'une fois.",
        action: "/demande/acces",
        button: "Accéder à mes demandes",
        csrf: csrf::token(req, secure(&platform)),
        token,
        next: String::new(),
    })
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    jeton: String,
}

/// `POST /demande/acces`: consumes the link, verifies the address and opens the session.
#[handler]
pub async fn consume(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<LinkForm>,
) -> PageResult<Response> {
    if f.jeton.is_empty() || f.jeton.len() >= 200 {
        return invalid_link();
    }
    let mut tx = platform.platform_pool().begin().await?;
    let issuer: Option<Uuid> = sqlx::query_scalar(
        "UPDATE platform.issuer_links SET consumed_at = now()
         WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now() RETURNING issuer_id",
    )
    .bind(token_hash(&f.jeton))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(issuer) = issuer else {
        tx.rollback().await?;
        return invalid_link();
    };
    sqlx::query(
        "UPDATE platform.issuers SET verified_at = COALESCE(verified_at, now()) WHERE id = $1",
    )
    .bind(issuer)
    .execute(&mut *tx)
    .await?;
    let token = new_token();
    sqlx::query("INSERT INTO platform.issuer_sessions (id_hash, issuer_id) VALUES ($1, $2)")
        .bind(token_hash(&token))
        .bind(issuer)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let secure = secure(&platform);
    req.cookie().add(cookie(token, secure));
    csrf::rotate(req, secure);
    Ok(Redirect::see_other("/demande/mes-demandes").into_response())
}

/// `POST /demande/deconnexion`: ends the issuer session.
#[handler]
pub async fn logout(
    req: &Request,
    platform: Data<&Platform>,
    issuer: Issuer,
) -> PageResult<Response> {
    sqlx::query("UPDATE platform.issuer_sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL")
        .bind(&issuer.session_hash)
        .execute(platform.platform_pool())
        .await?;
    let secure = secure(&platform);
    let mut gone = cookie(String::new(), secure);
    gone.set_max_age(std::time::Duration::ZERO);
    req.cookie().add(gone);
    csrf::rotate(req, secure);
    Ok(Redirect::see_other("/demande").into_response())
}
