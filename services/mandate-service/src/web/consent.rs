//! The person's side of remote consent (`/consentement/…`), reached by the link of an SMS or an
//! e-mail: the link's page (opening it consumes nothing) offers FranceConnect; starting it binds
//! the request to this device; FranceConnect's identity must be the person the aidant named;
//! the recap (`/consentement/{dep}/dossier/{id}`, on that device only) explains the mandate in
//! the language the aidant chose, reads it aloud, and takes the answer. Every refusal is a
//! French page that changes nothing.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::secrets::new_token;
use foundation::tenancy::{TenantTx, Territory};
use foundation::web::{NavItem, PageError, PageResult, Theme, html};
use poem::http::StatusCode;
use poem::web::cookie::{Cookie, SameSite};
use poem::web::{Data, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Shared, THEME, birth_text, date, notice_in, see_other};
use crate::explanation::{self, Explained};
use crate::franceconnect::FcClient;
use crate::remote_consent::{self, Accepted, BROWSER_COOKIE, RemoteConsent, State};
use crate::transfers::{self, Transferable};
use crate::web::creation::recap::transfer_text;

/// The FranceConnect client of remote consent (its own return path).
#[derive(Clone)]
pub struct ConsentFc(pub FcClient);

fn nav() -> Vec<NavItem> {
    foundation::web::navigation("/consentement")
}

fn page(status: StatusCode, heading: &str, paragraphs: Vec<String>) -> PageResult<Response> {
    notice_in(
        nav(),
        status,
        heading,
        paragraphs,
        Some(("/mes-mandats", "Mon espace « Mes mandats »")),
    )
}

fn unknown_link() -> PageResult<Response> {
    page(
        StatusCode::NOT_FOUND,
        "Ce lien n'est pas reconnu",
        vec![
            "Vérifiez que le lien est complet. Si l'aidant vous a envoyé un nouveau lien, seul le plus récent fonctionne.".into(),
            "Aucun mandat n'a été créé.".into(),
        ],
    )
}

/// The page for a request the person can no longer act on.
fn closed(state: State, structure: &str) -> PageResult<Response> {
    match state {
        State::Cancelled => page(
            StatusCode::GONE,
            "Cette demande a été annulée",
            vec![
                format!("{structure} a annulé cette demande de mandat. Le lien ne fonctionne plus."),
                "Aucun mandat n'a été créé.".into(),
            ],
        ),
        State::Consented => page(
            StatusCode::GONE,
            "Ce lien a déjà servi",
            vec![
                "Vous avez donné votre accord : le mandat est créé. Vous le retrouvez dans votre espace « Mes mandats », où vous pouvez aussi l'arrêter.".into(),
            ],
        ),
        State::Refused => page(
            StatusCode::GONE,
            "Ce lien a déjà servi",
            vec!["Vous avez refusé ce mandat. Aucun mandat n'a été créé.".into()],
        ),
        _ => page(
            StatusCode::GONE,
            "Ce lien a expiré",
            vec![
                format!("Le lien fonctionnait 24 heures. Si vous voulez ce mandat, demandez à {structure} de vous envoyer un nouveau lien."),
                "Aucun mandat n'a été créé.".into(),
            ],
        ),
    }
}

fn elsewhere(structure: &str) -> PageResult<Response> {
    page(
        StatusCode::FORBIDDEN,
        "Ce lien a été ouvert sur un autre appareil",
        vec![
            "Pour votre sécurité, une fois l'identification commencée, le lien ne fonctionne plus que sur l'appareil où elle a commencé.".into(),
            format!("Si ce n'était pas vous, prévenez {structure} : personne ne peut créer de mandat à votre place sans votre identité FranceConnect."),
            "Rien n'a été modifié.".into(),
        ],
    )
}

fn browser(req: &Request) -> Option<String> {
    req.cookie()
        .get(BROWSER_COOKIE)
        .map(|c| c.value_str().to_owned())
        .filter(|v| v.len() >= 32)
}

fn bound_here(consent: &RemoteConsent, browser: Option<&str>) -> bool {
    match (&consent.browser_hash, browser) {
        (Some(hash), Some(b)) => *hash == foundation::auth::secrets::token_hash(b),
        _ => false,
    }
}

fn browser_cookie(platform: &Platform, value: String) -> Cookie {
    let mut c = Cookie::new_with_str(BROWSER_COOKIE, value);
    c.set_http_only(true);
    c.set_secure(platform.settings.http.secure_cookies());
    // FranceConnect's return is a top-level navigation from another site: Lax is sent.
    c.set_same_site(SameSite::Lax);
    c.set_path("/consentement");
    c.set_max_age(std::time::Duration::from_secs(3600 * 25));
    c
}

/// The structure's name and the aidant's, as the person reads them.
async fn who(
    platform: &Platform,
    tx: &mut TenantTx,
    consent: &RemoteConsent,
) -> Result<(String, String), sqlx::Error> {
    let structure: String = sqlx::query_scalar("SELECT name FROM structures WHERE id = $1")
        .bind(consent.structure_id)
        .fetch_one(&mut **tx)
        .await?;
    let aidant: Option<String> =
        sqlx::query_scalar("SELECT display_name FROM platform.professionals WHERE id = $1")
            .bind(consent.aidant_id)
            .fetch_optional(platform.platform_pool())
            .await?;
    Ok((structure, aidant.unwrap_or_default()))
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    structure: String,
    aidant: String,
    /// Where the form posts: FranceConnect (link page) or the answer (recap).
    action: String,
    identified: bool,
    person: String,
    birth: String,
    duration: String,
    explained: Explained,
    audio: String,
    /// (checkbox value, what it is) of each mandate of the person this one may replace.
    offered: Vec<(String, String)>,
}

fn terms(consent: &RemoteConsent, structure: &str) -> (Explained, String) {
    let ends = date(
        OffsetDateTime::now_utc() + Duration::days(i64::from(consent.duration_days))
            - Duration::seconds(1),
    );
    let demarches = consent.demarches();
    (
        explanation::explain(&consent.language, structure, &demarches, &ends),
        crate::categories::DURATIONS
            .iter()
            .find(|(d, _)| *d == consent.duration_days)
            .map(|(_, l)| (*l).to_owned())
            .unwrap_or_default(),
    )
}

/// The consent a link names, in its territory, locked; or the page to answer.
async fn from_link(
    platform: &Platform,
    dep: &str,
    token: &str,
) -> PageResult<Result<(Territory, TenantTx, RemoteConsent), Response>> {
    let Some(territory) = remote_consent::territory(platform, dep).await else {
        return Ok(Err(unknown_link()?));
    };
    let mut tx = territory.begin().await?;
    let Some(consent) = remote_consent::by_link(&mut tx, token).await? else {
        return Ok(Err(unknown_link()?));
    };
    Ok(Ok((territory, tx, consent)))
}

/// `GET /consentement/{dep}/{token}`: what this is, and FranceConnect. Consumes nothing.
#[handler]
pub async fn open(
    req: &Request,
    platform: Data<&Platform>,
    Path((dep, token)): Path<(String, String)>,
) -> PageResult<Response> {
    let (_, mut tx, consent) = match from_link(&platform, &dep, &token).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let (structure, aidant) = who(&platform, &mut tx, &consent).await?;
    let state = consent.state(OffsetDateTime::now_utc());
    if !state.open() {
        return closed(state, &structure);
    }
    let here = browser(req);
    if consent.browser_hash.is_some() {
        if !bound_here(&consent, here.as_deref()) {
            return elsewhere(&structure);
        }
        if consent.identified_at.is_some() {
            return Ok(see_other(format!(
                "/consentement/{dep}/dossier/{}",
                consent.id
            )));
        }
    }
    remote_consent::mark_opened(&mut tx, consent.id).await?;
    tx.commit().await?;
    let (explained, duration) = terms(&consent, &structure);
    html(&ConsentPage {
        theme: THEME,
        nav: nav(),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        structure,
        aidant,
        action: format!("/consentement/{dep}/{token}"),
        identified: false,
        offered: Vec::new(),
        person: String::new(),
        birth: String::new(),
        duration,
        explained,
        audio: String::new(),
    })
}

/// `POST /consentement/{dep}/{token}`: binds the request to this device, then FranceConnect.
#[handler]
pub async fn start(
    req: &Request,
    platform: Data<&Platform>,
    fc: Data<&ConsentFc>,
    Path((dep, token)): Path<(String, String)>,
) -> PageResult<Response> {
    let (_, mut tx, consent) = match from_link(&platform, &dep, &token).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let (structure, _) = who(&platform, &mut tx, &consent).await?;
    let state = consent.state(OffsetDateTime::now_utc());
    if !state.open() {
        return closed(state, &structure);
    }
    let here = browser(req);
    if consent.browser_hash.is_some() && !bound_here(&consent, here.as_deref()) {
        return elsewhere(&structure);
    }
    let device = here.unwrap_or_else(new_token);
    let fc_state = format!("{dep}.{}", new_token());
    let nonce = new_token();
    remote_consent::start_identification(&mut tx, &consent, &device, &fc_state, &nonce).await?;
    match fc.0.0.authorize_url(&fc_state, &nonce).await {
        Ok(url) => {
            tx.commit().await?;
            req.cookie().add(browser_cookie(&platform, device));
            Ok(see_other(url))
        }
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "FranceConnect n'est pas disponible",
            vec![
                e.to_string(),
                "Réessayez plus tard avec le même lien.".into(),
            ],
        ),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The territory a FranceConnect state or logout state (`{dep}.{random}`) belongs to.
async fn territory_of(platform: &Platform, state: &str) -> Option<(String, Territory)> {
    let (dep, _) = state.split_once('.')?;
    let territory = remote_consent::territory(platform, dep).await?;
    Some((dep.to_owned(), territory))
}

fn unknown_return() -> PageResult<Response> {
    page(
        StatusCode::BAD_REQUEST,
        "Retour de FranceConnect non reconnu",
        vec![
            "Ce retour de FranceConnect a déjà servi, a expiré ou ne vient pas de cet appareil. Rouvrez le lien reçu par SMS ou par e-mail pour recommencer.".into(),
            "Rien n'a été modifié.".into(),
        ],
    )
}

/// `GET /consentement/franceconnect/retour`: the identity, checked against the person named.
#[handler]
pub async fn callback(
    req: &Request,
    platform: Data<&Platform>,
    fc: Data<&ConsentFc>,
    Query(q): Query<CallbackQuery>,
) -> PageResult<Response> {
    if q.error.is_some() {
        return page(
            StatusCode::BAD_REQUEST,
            "Identification annulée",
            vec!["Vous ne vous êtes pas identifié : aucun mandat n'a été créé. Vous pouvez rouvrir le lien pour recommencer.".into()],
        );
    }
    let (Some(code), Some(state), Some(device)) =
        (q.code.as_deref(), q.state.as_deref(), browser(req))
    else {
        return unknown_return();
    };
    let Some((dep, territory)) = territory_of(&platform, state).await else {
        return unknown_return();
    };
    let mut tx = territory.begin().await?;
    let Some(waiting) = remote_consent::waiting(&mut tx, state, &device).await? else {
        return unknown_return();
    };
    let Some(consent) = remote_consent::by_device(&mut tx, waiting.consent, &device).await? else {
        return unknown_return();
    };
    let (identity, id_token) = match fc.0.0.identify(code, &waiting.nonce).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "remote consent franceconnect identification refused");
            remote_consent::drop_draft(&mut tx, waiting.draft).await?;
            tx.commit().await?;
            return page(
                StatusCode::BAD_GATEWAY,
                "L'identification FranceConnect n'a pas abouti",
                vec![e.to_string(), "Rouvrez le lien pour recommencer.".into()],
            );
        }
    };
    if !remote_consent::matches(&consent.named(), &identity) {
        // Nothing of the identity is kept or logged; the draft ends, the request stays open.
        tracing::info!(consent = %consent.id, "remote consent identity does not match");
        remote_consent::drop_draft(&mut tx, waiting.draft).await?;
        let (structure, _) = who(&platform, &mut tx, &consent).await?;
        tx.commit().await?;
        return page(
            StatusCode::FORBIDDEN,
            "Cette identité ne correspond pas à la personne attendue",
            vec![
                format!("Le mandat a été préparé par {structure} pour une autre personne : le nom, le prénom ou la date de naissance donnés par FranceConnect ne correspondent pas."),
                "Votre accord ne peut pas être enregistré et rien n'a été créé. Si c'est bien vous, demandez à la structure de vérifier votre nom et votre date de naissance.".into(),
            ],
        );
    }
    let logout_state = format!("{dep}.{}", new_token());
    remote_consent::keep_identity(&mut tx, &waiting, &identity, &logout_state).await?;
    tx.commit().await?;
    // The person is then logged out of FranceConnect (franceconnect.md §A).
    match fc.0.0.logout_url(&id_token, &logout_state).await {
        Ok(url) => Ok(see_other(url)),
        Err(_) => Ok(see_other(format!(
            "/consentement/{dep}/dossier/{}",
            consent.id
        ))),
    }
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    state: Option<String>,
}

/// `GET /consentement/franceconnect/deconnexion`: back from FranceConnect's logout, to the recap.
#[handler]
pub async fn logged_out(
    req: &Request,
    platform: Data<&Platform>,
    Query(q): Query<LogoutQuery>,
) -> PageResult<Response> {
    let state = q.state.unwrap_or_default();
    let (Some((dep, territory)), Some(device)) =
        (territory_of(&platform, &state).await, browser(req))
    else {
        return unknown_return();
    };
    let mut tx = territory.begin().await?;
    let found = remote_consent::after_logout(&mut tx, &state, &device).await?;
    tx.commit().await?;
    match found {
        Some(id) => Ok(see_other(format!("/consentement/{dep}/dossier/{id}"))),
        None => unknown_return(),
    }
}

/// The consent this device holds, open and identified, with its identity; or the page to answer.
async fn on_this_device(
    req: &Request,
    platform: &Platform,
    dep: &str,
    id: &str,
) -> PageResult<
    Result<
        (
            Territory,
            TenantTx,
            RemoteConsent,
            crate::franceconnect::Identity,
            String,
            String,
        ),
        Response,
    >,
> {
    let id: Uuid = id.parse().map_err(|_| PageError::not_found())?;
    let (Some(territory), Some(device)) =
        (remote_consent::territory(platform, dep).await, browser(req))
    else {
        return Ok(Err(unknown_link()?));
    };
    let mut tx = territory.begin().await?;
    let Some(consent) = remote_consent::by_device(&mut tx, id, &device).await? else {
        return Ok(Err(unknown_link()?));
    };
    let (structure, aidant) = who(platform, &mut tx, &consent).await?;
    let state = consent.state(OffsetDateTime::now_utc());
    if !state.open() {
        return Ok(Err(closed(state, &structure)?));
    }
    let Some(identity) = remote_consent::identity(&mut tx, &consent).await? else {
        return Ok(Err(page(
            StatusCode::CONFLICT,
            "Identifiez-vous d'abord",
            vec![
                "Rouvrez le lien reçu par SMS ou par e-mail et identifiez-vous avec FranceConnect."
                    .into(),
            ],
        )?));
    };
    Ok(Ok((territory, tx, consent, identity, structure, aidant)))
}

/// `GET /consentement/{dep}/dossier/{id}`: the recap, explained, and the answer.
#[handler]
pub async fn recap(
    req: &Request,
    platform: Data<&Platform>,
    Path((dep, id)): Path<(String, String)>,
) -> PageResult<Response> {
    let (_, tx, consent, identity, structure, aidant) =
        match on_this_device(req, &platform, &dep, &id).await? {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
    tx.commit().await?;
    let (explained, duration) = terms(&consent, &structure);
    let offered = offered(&platform, &consent, &identity).await?;
    html(&ConsentPage {
        theme: THEME,
        nav: nav(),
        csrf: csrf::token(req, platform.settings.http.secure_cookies()),
        offered: offered.iter().map(transfer_text).collect(),
        action: format!("/consentement/{dep}/dossier/{}", consent.id),
        audio: format!("/consentement/{dep}/dossier/{}/explication.wav", consent.id),
        structure,
        aidant,
        identified: true,
        person: identity.display_name(),
        birth: birth_text(&identity),
        duration,
        explained,
    })
}

/// `GET /consentement/{dep}/dossier/{id}/explication.wav`: the explanation read aloud.
#[handler]
pub async fn audio(
    req: &Request,
    platform: Data<&Platform>,
    Path((dep, id)): Path<(String, String)>,
) -> PageResult<Response> {
    let (_, tx, consent, _, structure, _) = match on_this_device(req, &platform, &dep, &id).await? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    tx.commit().await?;
    let (explained, _) = terms(&consent, &structure);
    wav(&explained).await
}

/// A WAV answer of the explanation, or a French 503 when speech cannot be made.
pub async fn wav(explained: &Explained) -> PageResult<Response> {
    match explanation::read_aloud(explained).await {
        Ok(bytes) => Ok(bytes
            .with_content_type("audio/wav")
            .with_header("cache-control", "private, max-age=300")
            .into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "explanation not read aloud");
            Err(PageError::status(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// For a transfer: the person's mandates with other structures this one may replace.
async fn offered(
    platform: &Platform,
    consent: &RemoteConsent,
    identity: &crate::franceconnect::Identity,
) -> Result<Vec<Transferable>, sqlx::Error> {
    if !consent.transfer {
        return Ok(Vec::new());
    }
    transfers::transferable(platform, &identity.sub, consent.structure_id).await
}

/// `POST /consentement/{dep}/dossier/{id}`: the person's answer ([`remote_consent::accept`]).
#[handler]
pub async fn decide(
    req: &Request,
    platform: Data<&Platform>,
    shared: Data<&Shared>,
    Path((dep, id)): Path<(String, String)>,
    body: String,
) -> PageResult<Response> {
    let form = super::FormFields::parse(&body);
    let decision = form.all("decision", 1).into_iter().next();
    let (territory, mut tx, consent, identity, structure, _) =
        match on_this_device(req, &platform, &dep, &id).await? {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
    match decision.as_deref() {
        Some("refuser") => {
            remote_consent::refuse(&mut tx, &consent).await?;
            tx.commit().await?;
            return page(
                StatusCode::OK,
                "Vous avez refusé le mandat",
                vec![format!(
                    "Aucun mandat n'a été créé. {structure} voit votre réponse."
                )],
            );
        }
        Some("accepter") => {}
        _ => {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choisissez votre réponse",
                vec!["Revenez à la page précédente et choisissez « J'accepte » ou « Je refuse ». Rien n'a été enregistré.".into()],
            );
        }
    }
    let offered = offered(&platform, &consent, &identity).await?;
    let taken_over = transfers::chosen(&offered, &form.all("transferer", usize::MAX));
    let accepted = remote_consent::accept(
        &platform,
        &shared.documents,
        &shared.public_origin,
        (&territory, tx),
        &consent,
        &identity,
        &taken_over,
    )
    .await?;
    match accepted {
        Accepted::Mandate(_) => {}
        Accepted::Gone => return unknown_link(),
        Accepted::NotAllowed => {
            return page(
                StatusCode::CONFLICT,
                "Le mandat ne peut pas être créé",
                vec![
                    format!(
                        "La personne qui a préparé ce mandat ne peut plus créer de mandat pour {structure}. Rien n'a été créé."
                    ),
                    "Contactez la structure : elle vous enverra une nouvelle demande si besoin."
                        .into(),
                ],
            );
        }
        Accepted::Refused(why) => {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Le mandat ne peut pas être créé",
                vec![why, "Rien n'a été créé.".into()],
            );
        }
    }
    page(
        StatusCode::OK,
        "Merci, votre mandat est créé",
        vec![
            format!("{structure} peut maintenant faire pour vous les démarches que vous avez acceptées."),
            "Vous recevez une confirmation. Vous retrouvez ce mandat dans votre espace « Mes mandats » : vous pouvez l'arrêter quand vous voulez.".into(),
        ],
    )
}
