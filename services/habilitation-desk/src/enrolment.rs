//! Enrolling an authenticator app from the single-use link mailed at account opening. Opening
//! the link shows a button (GET consumes nothing); the button shows the QR code of a new seed;
//! the first valid code confirms the factor and consumes the link, in one transaction.

use foundation::app::Platform;
use foundation::auth::secrets::token_hash;
use foundation::auth::{csrf, factors, totp};
use foundation::ids::ProfessionalId;
use foundation::web::PageResult;
use foundation::web::html;
use poem::http::StatusCode;
use poem::web::{Data, Form, Query};
use poem::{Request, Response, handler};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::views::{ConfirmPage, EnrolPage, MessagePage, THEME, nav};

fn invalid_link() -> PageResult<Response> {
    let mut resp = html(&MessagePage {
        theme: THEME,
        nav: nav(""),
        heading: "Ce lien d'activation n'est plus valable",
        paragraphs: vec![
            "Un lien d'activation ne sert qu'une fois et expire au bout de 72 heures.",
            "Demandez-en un nouveau au référent de votre structure.",
        ],
        link: Some(("/", "Page d'accueil")),
    })?;
    resp.set_status(StatusCode::BAD_REQUEST);
    Ok(resp)
}

/// The professional and e-mail of a live enrolment link.
async fn live_link(
    platform: &Platform,
    token: &str,
) -> Result<Option<(ProfessionalId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.email FROM platform.email_links l JOIN platform.professionals p ON p.id = l.professional_id
         WHERE l.token_hash = $1 AND l.purpose = 'enrolment' AND l.consumed_at IS NULL AND l.expires_at > now() AND p.active",
    )
    .bind(token_hash(token))
    .fetch_optional(platform.platform_pool())
    .await
}

#[derive(Deserialize)]
pub struct TokenQuery {
    jeton: Option<String>,
}

#[handler]
pub async fn start_page(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<TokenQuery>,
) -> PageResult<Response> {
    html(&ConfirmPage {
        theme: THEME,
        nav: nav(""),
        heading: "Activer votre compte",
        explanation: "Pour activer votre compte, enregistrez une application d'authentification sur votre téléphone. Gardez-le à portée de main.",
        action: "/activation",
        button: "Commencer",
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        token: q.jeton.unwrap_or_default(),
        next: String::new(),
    })
}

#[derive(Deserialize)]
pub struct StartForm {
    jeton: String,
}

fn qr_svg(uri: &str) -> String {
    QrCode::new(uri.as_bytes())
        .map(|code| code.render::<svg::Color>().min_dimensions(220, 220).build())
        .map(|svg| {
            svg.find("<svg")
                .map(|i| svg[i..].to_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// A seed being enrolled, shown as a QR code with its base32 key.
pub(crate) struct Pending<'a> {
    pub factor: Uuid,
    pub seed: &'a [u8],
    pub email: &'a str,
}

/// The QR page of an enrolment, posting its first code to `action` (the activation link's
/// confirmation, with its token, or the account's).
pub(crate) fn enrol_page(
    req: &Request,
    platform: &Platform,
    current: &str,
    action: &str,
    token: String,
    pending: Pending<'_>,
    error: Option<&str>,
) -> PageResult<Response> {
    html(&EnrolPage {
        theme: THEME,
        nav: nav(current),
        action,
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        token,
        factor: pending.factor.to_string(),
        qr_svg: qr_svg(&totp::otpauth_uri(pending.seed, pending.email)),
        secret: totp::seed_base32(pending.seed),
        error,
    })
}

#[handler]
pub async fn start(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<StartForm>,
) -> PageResult<Response> {
    let Some((professional, email)) = live_link(&platform, f.jeton.trim()).await? else {
        return invalid_link();
    };
    let mut tx = platform.platform_pool().begin().await?;
    let (factor, seed) =
        factors::start_app_enrolment(&mut tx, &platform.cipher, professional).await?;
    tx.commit().await?;
    let pending = Pending {
        factor,
        seed: &seed,
        email: &email,
    };
    enrol_page(
        req,
        &platform,
        "",
        "/activation/confirmation",
        f.jeton,
        pending,
        None,
    )
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    jeton: String,
    facteur: String,
    code: String,
}

#[handler]
pub async fn confirm(
    req: &Request,
    platform: Data<&Platform>,
    Form(f): Form<ConfirmForm>,
) -> PageResult<Response> {
    let Some((professional, email)) = live_link(&platform, f.jeton.trim()).await? else {
        return invalid_link();
    };
    let Ok(factor) = Uuid::parse_str(&f.facteur) else {
        return invalid_link();
    };
    let mut tx = platform.platform_pool().begin().await?;
    let consumed = sqlx::query(
        "UPDATE platform.email_links SET consumed_at = now()
         WHERE token_hash = $1 AND purpose = 'enrolment' AND consumed_at IS NULL AND expires_at > now()",
    )
    .bind(token_hash(f.jeton.trim()))
    .execute(&mut *tx)
    .await?;
    if consumed.rows_affected() != 1 {
        return invalid_link();
    }
    match factors::confirm_enrolment(
        &mut tx,
        &platform.cipher,
        professional,
        factor,
        &f.code,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(()) => {
            tx.commit().await?;
            html(&MessagePage {
                theme: THEME,
                nav: nav(""),
                heading: "Votre compte est activé",
                paragraphs: vec![
                    "Votre application d'authentification est enregistrée. Vous pouvez maintenant vous connecter.",
                ],
                link: Some(("/connexion", "Se connecter")),
            })
        }
        Err(_) => {
            // The link stays usable: show the same seed again with the error.
            tx.rollback().await?;
            let seed = factors::pending_seed(
                platform.platform_pool(),
                &platform.cipher,
                professional,
                factor,
            )
            .await?;
            let Some(seed) = seed else {
                return invalid_link();
            };
            let pending = Pending {
                factor,
                seed: &seed,
                email: &email,
            };
            let mut resp = enrol_page(
                req,
                &platform,
                "",
                "/activation/confirmation",
                f.jeton,
                pending,
                Some(
                    "Code incorrect. Vérifiez que l'heure de votre téléphone est juste et saisissez le code affiché en ce moment.",
                ),
            )?;
            resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            Ok(resp)
        }
    }
}
