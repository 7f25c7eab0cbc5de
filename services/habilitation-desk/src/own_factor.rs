//! A professional replacing their own authenticator app (a new phone): the current code proves
//! it is them, a new seed is shown as a QR code, and its first code confirms it; the previous
//! factor is revoked at that moment, not before.

use foundation::app::Platform;
use foundation::auth::session::{self, Professional};
use foundation::auth::{csrf, factors};
use foundation::web::html;
use foundation::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::{Data, Form};
use poem::{Request, Response, handler};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::enrolment::{Pending, enrol_page};
use crate::views::{CodePage, MessagePage, THEME, nav};

const WRONG_CODE: &str = "Code incorrect ou déjà utilisé. Saisissez le code affiché en ce moment ; \
    après plusieurs erreurs, patientez quelques minutes.";

fn code_page(req: &Request, platform: &Platform, error: Option<&str>) -> PageResult<Response> {
    html(&CodePage {
        theme: THEME,
        nav: nav("/compte"),
        heading: "Changer d'application d'authentification",
        explanation: "Pour confirmer qu'il s'agit bien de vous, saisissez le code de votre application ou carte actuelle. \
            Si vous ne l'avez plus, demandez au référent de votre structure de vous envoyer un lien d'activation.",
        action: "/compte/second-facteur",
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        next: String::new(),
        error,
    })
}

const ACTION: &str = "/compte/second-facteur/confirmation";

#[handler]
pub async fn form(
    req: &Request,
    platform: Data<&Platform>,
    _me: Professional,
) -> PageResult<Response> {
    code_page(req, &platform, None)
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

#[handler]
pub async fn start(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<CodeForm>,
) -> PageResult<Response> {
    let mut tx = platform.platform_pool().begin().await?;
    if factors::check_code(
        &mut tx,
        &platform.cipher,
        me.id,
        &f.code,
        OffsetDateTime::now_utc(),
        factors::Trust::Known,
    )
    .await
    .is_err()
    {
        // Failure counters and delays are kept.
        tx.commit().await?;
        let mut resp = code_page(req, &platform, Some(WRONG_CODE))?;
        resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
        return Ok(resp);
    }
    let (factor, seed) = factors::start_app_enrolment(&mut tx, &platform.cipher, me.id).await?;
    tx.commit().await?;
    let pending = Pending {
        factor,
        seed: &seed,
        email: &me.email,
    };
    enrol_page(
        req,
        &platform,
        "/compte",
        ACTION,
        String::new(),
        pending,
        None,
    )
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    facteur: String,
    code: String,
}

#[handler]
pub async fn confirm(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<ConfirmForm>,
) -> PageResult<Response> {
    let factor =
        Uuid::parse_str(&f.facteur).map_err(|_| poem::Error::from_status(StatusCode::NOT_FOUND))?;
    let mut tx = platform.platform_pool().begin().await?;
    match factors::confirm_enrolment(
        &mut tx,
        &platform.cipher,
        me.id,
        factor,
        &f.code,
        OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(()) => {
            // Replacing the factor ended every session of the professional (a trigger): this
            // browser, which just proved the new code, gets a new one.
            let secure = platform.settings.http.secure_cookies();
            let cookie = session::open(&mut tx, me.id, OffsetDateTime::now_utc(), secure).await?;
            tx.commit().await?;
            req.cookie().add(cookie);
            csrf::rotate(req, secure);
            html(&MessagePage {
                theme: THEME,
                nav: nav("/compte"),
                heading: "Nouvelle application enregistrée",
                paragraphs: vec![
                    "Utilisez désormais les codes de votre nouvelle application. L'ancienne ne fonctionne plus.",
                ],
                link: Some(("/compte", "Retour à mon compte")),
            })
        }
        Err(factors::FactorError::NoFactor) => Err(PageError::not_found()),
        Err(_) => {
            tx.rollback().await?;
            let seed =
                factors::pending_seed(platform.platform_pool(), &platform.cipher, me.id, factor)
                    .await?;
            let Some(seed) = seed else {
                return Err(PageError::not_found());
            };
            let pending = Pending {
                factor,
                seed: &seed,
                email: &me.email,
            };
            let mut resp = enrol_page(
                req,
                &platform,
                "/compte",
                ACTION,
                String::new(),
                pending,
                Some(WRONG_CODE),
            )?;
            resp.set_status(StatusCode::UNPROCESSABLE_ENTITY);
            Ok(resp)
        }
    }
}
