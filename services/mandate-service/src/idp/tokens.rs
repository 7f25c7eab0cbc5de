//! Token, userinfo and end-session endpoints. Errors follow RFC 6749 §5.2 / RFC 6750 §3
//! (JSON `{"error", "error_description"}`, `Cache-Control: no-store`); end-session errors are
//! pages, never redirects.

use foundation::app::Platform;
use foundation::auth::secrets::token_hash;
use foundation::auth::session;
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox;
use foundation::web::{PageError, PageResult};
use poem::http::{StatusCode, header};
use poem::web::{Data, Redirect};
use poem::{Body, IntoResponse, Request, Response, handler};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::clients::{self, Credentials};
use super::errors::OAuthError;
use super::request::{Params, with_query};
use super::{
    ACCESS_TOKEN_SECONDS, AMR, ID_TOKEN_SECONDS, IDENTITY_CLAIMS, Provider, grant_of, grant_token,
};
use crate::categories;
use crate::jws;
use crate::web::notice;

fn is_form(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// PKCE S256: BASE64URL(SHA-256(verifier)) == challenge.
fn pkce_ok(challenge: Option<&str>, verifier: Option<&str>) -> bool {
    use base64::Engine;
    match (challenge, verifier) {
        (None, None) => true,
        (Some(c), Some(v)) if (43..=128).contains(&v.len()) => {
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(v.as_bytes()));
            foundation::auth::secrets::constant_time_eq(&computed, c)
        }
        _ => false,
    }
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    client_id: String,
    redirect_uri: String,
    nonce: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    structure_id: StructureId,
    aidant_id: ProfessionalId,
    auth_time: OffsetDateTime,
    usager_id: UsagerId,
    mandate_id: MandateId,
    category: String,
    redeemed: bool,
    revoked: bool,
    fresh: bool,
    live: bool,
    fc_sub: String,
    email: Option<String>,
    phone: Option<String>,
    postal_address: Option<String>,
    receipts: String,
    structure_name: String,
    retry_key_hash: Option<Vec<u8>>,
    retry_response: Option<Vec<u8>>,
    within_retry: bool,
}

/// `POST /oidc/token`.
#[handler]
pub async fn token(
    req: &Request,
    body: Body,
    platform: Data<&Platform>,
    provider: Data<&Provider>,
) -> Result<Response, OAuthError> {
    if !is_form(req) {
        return Err(OAuthError::InvalidRequest(
            "corps attendu en application/x-www-form-urlencoded",
        ));
    }
    let bytes = body
        .into_bytes_limit(16 * 1024)
        .await
        .map_err(|_| OAuthError::InvalidRequest("corps illisible"))?;
    let params = Params::parse(std::str::from_utf8(&bytes).unwrap_or_default());
    let basic_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let basic = basic_header.and_then(clients::parse_basic);
    let invalid_client =
        |description, client: Option<&str>, reason: Option<String>| OAuthError::InvalidClient {
            description,
            basic: basic_header.is_some(),
            client: client.map(str::to_owned),
            reason,
        };
    if basic_header.is_some() && basic.is_none() {
        return Err(invalid_client(
            "en-tête Authorization illisible",
            None,
            None,
        ));
    }
    let creds = Credentials {
        basic,
        client_id: params.get("client_id").map(str::to_owned),
        client_secret: params.get("client_secret").map(str::to_owned),
        client_assertion_type: params.get("client_assertion_type").map(str::to_owned),
        client_assertion: params.get("client_assertion").map(str::to_owned),
    };
    let client_id = creds
        .claimed_client()
        .ok_or_else(|| invalid_client("client non identifié", None, None))?;
    let client = provider
        .clients
        .get(&client_id)
        .await
        .map_err(OAuthError::unavailable)?
        .ok_or_else(|| invalid_client("client inconnu", None, None))?;
    let token_endpoint = provider.url("/oidc/token");
    clients::authenticate(
        platform.platform_pool(),
        &client,
        &creds,
        &[token_endpoint.as_str(), provider.issuer.as_str()],
    )
    .await
    .map_err(|e| {
        invalid_client(
            "authentification du client refusée",
            Some(&client.client_id),
            Some(e.to_string()),
        )
    })?;
    match params.get("grant_type") {
        Some("authorization_code") => {}
        None => return Err(OAuthError::InvalidRequest("grant_type manquant")),
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    let (Some(code), Some(redirect_uri)) = (params.get("code"), params.get("redirect_uri")) else {
        return Err(OAuthError::InvalidRequest(
            "code et redirect_uri sont obligatoires",
        ));
    };
    // A client that may retry names its request (idempotent redemption, `retry`).
    let retry_key = match req.headers().get(super::retry::HEADER) {
        None => None,
        Some(v) => Some(v.to_str().ok().filter(|k| super::retry::valid(k)).ok_or(
            OAuthError::InvalidRequest("Idempotency-Key : de 16 à 255 caractères ASCII visibles"),
        )?),
    };
    let refused = |reason| OAuthError::InvalidGrant {
        client: client.client_id.clone(),
        reason,
    };
    let (departement, grant) = grant_of(code).ok_or_else(|| refused("code inconnu"))?;
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(|_| refused("code inconnu"))?;
    let body = redeem(&Redemption {
        tenant: &tenant,
        tenancy: &platform.tenancy,
        provider: &provider,
        code,
        grant,
        client: &client,
        redirect_uri,
        verifier: params.get("code_verifier"),
        retry_key,
    })
    .await
    .map_err(OAuthError::unavailable)?
    .map_err(refused)?;
    Ok(Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .body(body.to_string()))
}

/// What one reading of the grant came to: an answer, or the claim lost to another request.
enum Attempt {
    Answered(Result<Value, &'static str>),
    /// Another request redeemed or revoked the code after this one read it.
    Lost,
}

/// Redeems a code. `Ok(Err(reason))` is an `invalid_grant`.
///
/// No transaction is held over the redemption: the grant is read, the checks made and the
/// tokens signed; then one statement, its own transaction, claims the code — its update applies
/// only while the code is neither redeemed nor revoked, which is what makes the code's use
/// single — and, only if it did, journals the use and writes the receipt. That statement is the
/// flow's one durable commit and one exchange with the database. A request that loses the claim
/// (the same code redeemed at once by another) reads the grant again and is answered as the
/// later of the two: the first answer for a retry with its key, else a replay, refused and
/// revoking what the code gave.
async fn redeem(r: &Redemption<'_>) -> Result<Result<Value, &'static str>, anyhow::Error> {
    if let Attempt::Answered(answer) = attempt(r).await? {
        return Ok(answer);
    }
    match attempt(r).await? {
        Attempt::Answered(answer) => Ok(answer),
        // Once its claim is lost, the grant reads redeemed or revoked and nothing claims it
        // again: not reached. Should it be, the code is refused and dies.
        Attempt::Lost => {
            let mut conn = r.tenant.autocommit().await?;
            sqlx::query(
                "UPDATE oidc_grants SET revoked_at = now()
                 WHERE id = $1 AND code_hash = $2 AND revoked_at IS NULL",
            )
            .bind(r.grant)
            .bind(token_hash(r.code))
            .execute(&mut *conn)
            .await?;
            Ok(Err("code déjà utilisé"))
        }
    }
}

/// A token request's code and the grant it names, where it is redeemed, and what it presented.
struct Redemption<'a> {
    tenant: &'a foundation::tenancy::Territory,
    tenancy: &'a foundation::tenancy::Tenancy,
    provider: &'a Provider,
    code: &'a str,
    grant: Uuid,
    client: &'a clients::Client,
    redirect_uri: &'a str,
    verifier: Option<&'a str>,
    retry_key: Option<&'a str>,
}

async fn attempt(r: &Redemption<'_>) -> Result<Attempt, anyhow::Error> {
    let Redemption {
        tenant,
        tenancy,
        provider,
        code,
        grant,
        client,
        redirect_uri,
        verifier,
        retry_key,
    } = *r;
    // One statement, its own transaction.
    let mut conn = tenant.autocommit().await?;
    let row: Option<GrantRow> = sqlx::query_as(
        "SELECT g.client_id, g.redirect_uri, g.nonce, g.scopes, g.code_challenge,
                g.structure_id, g.aidant_id, g.auth_time, g.usager_id, g.mandate_id, g.category,
                g.redeemed_at IS NOT NULL AS redeemed, g.revoked_at IS NOT NULL AS revoked,
                g.code_expires_at > now() AS fresh,
                (EXISTS (SELECT 1 FROM live_authorisations l WHERE l.id = g.authorisation_id)
                 AND s.active) AS live,
                u.fc_sub, coalesce(u.own_email, u.email) AS email,
                coalesce(u.own_phone, c.phone) AS phone,
                coalesce(u.own_postal_address, c.postal_address) AS postal_address,
                u.receipts, s.name AS structure_name,
                g.retry_key_hash, g.retry_response,
                coalesce(g.redeemed_at > now() - make_interval(secs => $2), false) AS within_retry
         FROM oidc_grants g
         JOIN usagers u ON u.id = g.usager_id
         JOIN structures s ON s.id = g.structure_id
         LEFT JOIN usager_contacts c ON c.usager_id = g.usager_id AND c.structure_id = g.structure_id
         WHERE g.id = $3 AND g.code_hash = $1",
    )
    .bind(token_hash(code))
    .bind(super::retry::RETRY_SECONDS as f64)
    .bind(grant)
    .fetch_optional(&mut *conn)
    .await?;
    drop(conn);
    let Some(GrantRow {
        client_id,
        redirect_uri: grant_redirect,
        nonce,
        scopes,
        code_challenge: challenge,
        structure_id: structure,
        aidant_id: aidant,
        auth_time,
        usager_id: usager,
        mandate_id: mandate,
        category,
        redeemed,
        revoked,
        fresh,
        live,
        fc_sub,
        email,
        phone,
        postal_address,
        receipts,
        structure_name,
        retry_key_hash,
        retry_response,
        within_retry,
    }) = row
    else {
        return Ok(Attempt::Answered(Err("code inconnu")));
    };
    // The same request again, with its idempotency key, within the minute: the first answer,
    // nothing done twice.
    if redeemed
        && !revoked
        && within_retry
        && client_id == client.client_id
        && grant_redirect == redirect_uri
        && pkce_ok(challenge.as_deref(), verifier)
        && let (Some(key), Some(hash), Some(sealed)) = (
            retry_key,
            retry_key_hash.as_deref(),
            retry_response.as_deref(),
        )
        && hash == super::retry::key_hash(key).as_slice()
        && let Some(answer) = super::retry::open(key, code, sealed)
    {
        return Ok(Attempt::Answered(Ok(answer)));
    }
    // A withdrawn habilitation stops a flow in progress: the aidant must still be an aidant of
    // the structure when the code is redeemed.
    let habilitated = foundation::auth::assignments::holds_now(
        tenancy,
        aidant,
        policies::Role::Aidant,
        &structure.domain(),
    )
    .await?;
    let refusal = if redeemed {
        Some("code déjà utilisé : les jetons qu'il a donnés sont révoqués")
    } else if revoked {
        Some("code révoqué")
    } else if client_id != client.client_id {
        Some("code émis pour un autre client")
    } else if grant_redirect != redirect_uri {
        Some("redirect_uri différente de celle de la demande")
    } else if !fresh {
        Some("code expiré")
    } else if !pkce_ok(challenge.as_deref(), verifier) {
        Some("code_verifier incorrect")
    } else if !live {
        Some("le mandat ne couvre plus cette démarche")
    } else if !habilitated {
        Some("l'aidant n'est plus habilité dans cette structure")
    } else {
        None
    };
    if let Some(why) = refusal {
        // Whatever the reason, the code is dead, and so is anything it gave.
        let mut conn = tenant.autocommit().await?;
        sqlx::query(
            "UPDATE oidc_grants SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(grant)
        .execute(&mut *conn)
        .await?;
        return Ok(Attempt::Answered(Err(why)));
    }
    let access_token = grant_token(tenant.departement(), grant);
    let now = OffsetDateTime::now_utc();
    let cat = categories::by_code(&category);
    let iat = now.unix_timestamp();
    let id_token = json!({
        "iss": provider.issuer,
        "aud": client.client_id,
        "sub": provider.subject(&client.client_id, &fc_sub),
        "iat": iat,
        "exp": iat + ID_TOKEN_SECONDS,
        "auth_time": auth_time.unix_timestamp(),
        "nonce": nonce,
        "acr": "eidas1",
        "amr": AMR,
        "rep_scope": [cat.map(|c| c.fc_label).unwrap_or_default()],
        "sid": format!("{}.{grant}", tenant.departement().as_str()),
    });
    let signer = provider.keys.signer(client.signing_alg).await?;
    let answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "id_token": signer.sign(&id_token)?,
        "scope": scopes.join(" "),
    });
    // With an idempotency key, the answer is kept for a retry, sealed (`retry`).
    let (retry_hash, retry_sealed) = match retry_key {
        Some(key) => (
            Some(super::retry::key_hash(key)),
            Some(super::retry::seal(key, code, &answer)),
        ),
        None => (None, None),
    };
    let contact = crate::contact::UsagerContact {
        email,
        phone,
        postal_address,
    }
    .chosen(&receipts);
    let receipt = crate::contact::usager_receipt(
        &contact,
        "mandate_used",
        json!({
            "structure": structure_name,
            "demarche": cat.map(|c| c.label).unwrap_or_default(),
            "date": crate::web::date_time(now),
        }),
    );
    let mut statement = tenant.single_statement().await?;
    let receipt = outbox::Staged::new(&mut statement, receipt.as_ref(), Some(structure));
    // The claim of the code, its receipt and its journal entry in one statement (one exchange,
    // the flow's one durable commit); the receipt and the entry are written only if the claim
    // updated the grant.
    let claimed: Vec<(i64,)> = journal::append_with(
        &mut statement,
        NewEntry::new(Event::MandateUsed)
            .structure(structure)
            .professional(aidant)
            .usager(usager)
            .mandate(mandate)
            .details(json!({ "category": category, "client": client.client_id, "grant": grant })),
        foundation::journal_with_claim!(
            concat!(
                "used AS (UPDATE oidc_grants SET redeemed_at = $9, access_token_hash = $10,
                 access_expires_at = $9 + make_interval(secs => $11),
                 retry_key_hash = $12, retry_response = $13
                 WHERE id = $8 AND redeemed_at IS NULL AND revoked_at IS NULL RETURNING id),
                 receipt AS (",
                foundation::outbox_insert!(from "used"; "$14", "$15", "$16", "$17", "$18", "$19"),
                ")"
            ),
            "used",
            "SELECT id FROM entry"
        ),
        |q| {
            receipt.bind(
                q.bind(grant)
                    .bind(now)
                    .bind(token_hash(&access_token))
                    .bind(ACCESS_TOKEN_SECONDS as f64)
                    .bind(retry_hash)
                    .bind(retry_sealed),
            )
        },
    )
    .await?;
    if claimed.is_empty() {
        return Ok(Attempt::Lost);
    }
    statement.done();
    Ok(Attempt::Answered(Ok(answer)))
}

type UserinfoRow = (
    String,
    Vec<String>,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    ProfessionalId,
    StructureId,
);

/// `GET|POST /oidc/userinfo` with a Bearer access token: a signed JWT of the identity captured
/// when the mandate was made — while the grant and the mandate are both still valid.
#[handler]
pub async fn userinfo(
    req: &Request,
    platform: Data<&Platform>,
    provider: Data<&Provider>,
) -> Result<Response, OAuthError> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let bearer = bearer
        .filter(|t| !t.is_empty())
        .ok_or(OAuthError::NoToken)?;
    let (departement, grant) = grant_of(bearer).ok_or(OAuthError::InvalidToken)?;
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(|_| OAuthError::InvalidToken)?;
    let row: Result<Option<UserinfoRow>, sqlx::Error> = async {
        // One statement, its own transaction.
        let mut conn = tenant.autocommit().await?;
        sqlx::query_as(
            "SELECT g.client_id, g.scopes, u.fc_sub, u.given_name, u.family_name,
                    u.preferred_username, u.birthdate, u.gender, u.birthplace, u.birthcountry,
                    u.email, g.aidant_id, g.structure_id
             FROM oidc_grants g
             JOIN live_authorisations a ON a.id = g.authorisation_id
             JOIN usagers u ON u.id = g.usager_id
             JOIN structures s ON s.id = g.structure_id
             WHERE g.id = $2 AND g.access_token_hash = $1 AND g.revoked_at IS NULL
               AND g.access_expires_at > now()
               AND s.active",
        )
        .bind(token_hash(bearer))
        .bind(grant)
        .fetch_optional(&mut *conn)
        .await
    }
    .await;
    let (
        client_id,
        scopes,
        fc_sub,
        given,
        family,
        usage,
        birthdate,
        gender,
        place,
        country,
        email,
        aidant,
        structure,
    ) = row
        .map_err(OAuthError::unavailable)?
        .ok_or(OAuthError::InvalidToken)?;
    // Answered only while the aidant is still habilitated in the structure.
    let habilitated = foundation::auth::assignments::holds_now(
        &platform.tenancy,
        aidant,
        policies::Role::Aidant,
        &structure.domain(),
    )
    .await
    .map_err(OAuthError::unavailable)?;
    if !habilitated {
        return Err(OAuthError::InvalidToken);
    }
    let client = provider
        .clients
        .get(&client_id)
        .await
        .map_err(OAuthError::unavailable)?
        .ok_or(OAuthError::InvalidToken)?;
    let values: [(&str, Option<String>); 8] = [
        ("given_name", Some(given)),
        ("family_name", Some(family)),
        ("preferred_username", usage.filter(|u| !u.is_empty())),
        ("birthdate", Some(birthdate)),
        ("gender", Some(gender)),
        ("birthplace", Some(place)),
        ("birthcountry", Some(country)),
        ("email", email.filter(|e| !e.is_empty())),
    ];
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": provider.issuer,
        "aud": client_id,
        "sub": provider.subject(&client_id, &fc_sub),
        "iat": now,
    });
    for (name, value) in values {
        let released = IDENTITY_CLAIMS
            .iter()
            .find(|(c, _)| *c == name)
            .is_some_and(|(_, by)| scopes.iter().any(|s| by.contains(&s.as_str())));
        if let (true, Some(v)) = (released, value) {
            claims[name] = Value::String(v);
        }
    }
    let signed = provider
        .keys
        .signer(client.signing_alg)
        .await
        .and_then(|signer| signer.sign(&claims))
        .map_err(OAuthError::unavailable)?;
    Ok(Response::builder()
        .content_type("application/jwt")
        .header(header::CACHE_CONTROL, "no-store")
        .body(signed))
}

/// `GET /oidc/session/end`: checks the id_token hint (signed here) and the post-logout URI
/// (registered for the hint's client), ends the aidant's session of that flow — only when it is
/// the caller's own session (this browser's cookie) and the hint's client and subject are the
/// flow's — and sends the browser back with `state`. A hint presented from another browser
/// ends nothing.
#[handler]
pub async fn end_session(
    req: &Request,
    platform: Data<&Platform>,
    provider: Data<&Provider>,
) -> PageResult<Response> {
    let params = Params::parse(req.uri().query().unwrap_or_default());
    let refuse = |why: &str| {
        notice(
            StatusCode::BAD_REQUEST,
            "Déconnexion impossible",
            vec![
                why.to_owned(),
                "Fermez cette page ; si vous utilisez un poste partagé, déconnectez-vous d'Aidants Connect depuis le menu.".into(),
            ],
            Some(("/", "Revenir à l'accueil d'Aidants Connect")),
        )
    };
    let Some(hint) = params.get("id_token_hint") else {
        return refuse("La demande de déconnexion ne dit pas de quelle connexion il s'agit.");
    };
    let keys = provider.keys.jwks().await.map_err(PageError::unavailable)?;
    let Ok(claims) = jws::verify(hint, &keys.keys) else {
        return refuse("La demande de déconnexion n'a pas été émise par Aidants Connect.");
    };
    if claims["iss"].as_str() != Some(provider.issuer.as_str()) {
        return refuse("La demande de déconnexion n'a pas été émise par Aidants Connect.");
    }
    let client_id = claims["aud"].as_str().unwrap_or_default();
    let client = provider.clients.get(client_id).await?;
    let Some(client) = client else {
        return refuse("Le service qui demande la déconnexion n'est pas reconnu.");
    };
    if params
        .get("client_id")
        .is_some_and(|c| c != client.client_id)
    {
        return refuse("La demande de déconnexion est incohérente.");
    }
    let target = match params.get("post_logout_redirect_uri") {
        Some(uri)
            if client.post_logout_redirect_uris.iter().any(|u| u == uri)
                && super::clients::check_uri(uri, provider.environment).is_ok() =>
        {
            Some(uri.to_owned())
        }
        Some(_) => {
            return refuse("L'adresse de retour demandée n'est pas enregistrée pour ce service.");
        }
        None => None,
    };
    // The flow's grant names the aidant's session: end it if it is this browser's.
    let caller = req
        .cookie()
        .get(foundation::auth::session::session_cookie_name(
            platform.settings.http.secure_cookies(),
        ))
        .map(|c| c.value_str().to_owned())
        .filter(|v| !v.is_empty())
        .map(|v| token_hash(&v));
    let flow = claims["sid"]
        .as_str()
        .and_then(|sid| sid.split_once('.'))
        .and_then(|(dep, grant)| {
            Some((
                foundation::tenancy::DepartementCode::parse(dep).ok()?,
                Uuid::parse_str(grant).ok()?,
            ))
        });
    let ended = match (flow, caller, claims["sub"].as_str()) {
        (Some((dep, grant)), Some(caller), Some(sub)) => {
            let hint = Hint {
                client_id: &client.client_id,
                sub,
                caller_session: &caller,
            };
            end_flow_session(&platform, &provider, dep, grant, &hint).await?
        }
        _ => false,
    };
    let mut resp = match target {
        Some(uri) => {
            let state = params.get("state").unwrap_or_default();
            let to = if state.is_empty() {
                uri
            } else {
                with_query(&uri, &[("state", state)])
            };
            Redirect::see_other(to).into_response()
        }
        None if ended => notice(
            StatusCode::OK,
            "Vous êtes déconnecté",
            vec!["La session Aidants Connect de cette démarche est terminée.".into()],
            Some(("/", "Revenir à l'accueil d'Aidants Connect")),
        )?,
        None => notice(
            StatusCode::OK,
            "Aucune session terminée",
            vec!["Ce navigateur n'a pas de session Aidants Connect ouverte pour cette démarche : rien n'a été terminé.".into()],
            Some(("/", "Revenir à l'accueil d'Aidants Connect")),
        )?,
    };
    if ended
        && let Some(cookie) = req.cookie().get(session::session_cookie_name(
            platform.settings.http.secure_cookies(),
        ))
        && !cookie.value_str().is_empty()
    {
        resp.headers_mut().append(
            header::SET_COOKIE,
            session::cleared_cookie(platform.settings.http.secure_cookies())
                .to_string()
                .parse()
                .map_err(PageError::internal)?,
        );
    }
    Ok(resp)
}

/// What the logout request proves: the hint's client and subject, and the caller's session.
struct Hint<'a> {
    client_id: &'a str,
    sub: &'a str,
    caller_session: &'a [u8],
}

/// Ends the session of the flow `grant` if it is the caller's and the hint names that flow's
/// client and subject; returns whether it did.
async fn end_flow_session(
    platform: &Platform,
    provider: &Provider,
    departement: foundation::tenancy::DepartementCode,
    grant: Uuid,
    hint: &Hint<'_>,
) -> Result<bool, sqlx::Error> {
    let Ok(tenant) = platform.tenancy.unguarded(departement).await else {
        return Ok(false);
    };
    let mut tx = tenant.begin().await?;
    let flow: Option<(Vec<u8>, String, String)> = sqlx::query_as(
        "SELECT g.session_hash, g.client_id, u.fc_sub
         FROM oidc_grants g JOIN usagers u ON u.id = g.usager_id
         WHERE g.id = $1 FOR UPDATE OF g",
    )
    .bind(grant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((session_hash, client_id, fc_sub)) = flow else {
        return Ok(false);
    };
    let own = session_hash.as_slice() == hint.caller_session
        && client_id == hint.client_id
        && provider.subject(&client_id, &fc_sub) == hint.sub;
    if !own {
        tracing::info!("identity provider: end session for another browser's flow, nothing ended");
        return Ok(false);
    }
    // Checked at compile time against the reference territory schema (docs/TENANCY.md).
    sqlx::query!(
        "UPDATE oidc_grants SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
        grant
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut conn = platform.platform_pool().acquire().await?;
    session::end(&mut conn, &session_hash, "oidc_end_session").await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_ok(Some(challenge), Some(verifier)));
        assert!(!pkce_ok(Some(challenge), Some("x".repeat(43).as_str())));
        assert!(!pkce_ok(Some(challenge), None));
        assert!(!pkce_ok(None, Some(verifier)));
        assert!(pkce_ok(None, None));
    }
}
