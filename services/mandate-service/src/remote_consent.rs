//! Remote consent (product.md §6): the aidant prepares a mandate for a person who is not at the
//! counter; the person receives a single-use link by SMS or e-mail, valid
//! [`LINK_HOURS`] hours, identifies with FranceConnect on their own device, reads the recap and
//! consents or refuses. Nothing exists in `mandates` before the consent: the mandate is created
//! by the consent itself, through the same draft confirmation as at the counter
//! ([`crate::mandates::confirm_draft`]), in the name of the aidant who prepared it, after the
//! guard checked that aidant may still create mandates in the structure.
//!
//! The link's secret is stored as a hash; opening it (GET) consumes nothing. Starting the
//! identification binds the consent to that browser (a random cookie, kept as a hash): a link
//! forwarded afterwards to another device is refused. FranceConnect's identity must match the
//! person the aidant named (birth date and names, [`matches`]). The aidant sees the state
//! ([`State`]) and may send the link once more (a new secret; the old one dies) or cancel.

use foundation::auth::secrets::{new_token, token_hash};
use foundation::ids::{MandateId, ProfessionalId, StructureId};
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::{DepartementCode, TenantTx};
use serde_json::json;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::categories::{self, Category};
use crate::franceconnect::Identity;
use crate::mandates::search_key;
use crate::scope::Scope;

/// The person's side: the link, FranceConnect, the answer.
mod person;
pub use person::*;

/// How long a link is valid after it is sent.
pub const LINK_HOURS: i64 = 24;
/// A link is sent at most this many times (the first sending and one more).
pub const MAX_SENDS: i32 = 2;
/// The cookie binding a consent to the device that started its identification.
pub const BROWSER_COOKIE: &str = "ac_consentement";

/// Where a remote consent stands, as the aidant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Sent,
    Opened,
    Identified,
    Consented,
    Refused,
    Cancelled,
    Expired,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Sent => "Lien envoyé",
            State::Opened => "Lien ouvert",
            State::Identified => "Personne identifiée, en attente de sa réponse",
            State::Consented => "Consentement donné : mandat créé",
            State::Refused => "Refusé par la personne",
            State::Cancelled => "Annulé",
            State::Expired => "Lien expiré",
        }
    }
    pub fn badge(self) -> &'static str {
        match self {
            State::Consented => "fr-badge--success",
            State::Refused | State::Expired => "fr-badge--error",
            State::Cancelled => "",
            _ => "fr-badge--info",
        }
    }
    /// Whether the person may still act on the link.
    pub fn open(self) -> bool {
        matches!(self, State::Sent | State::Opened | State::Identified)
    }
}

/// A remote consent as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RemoteConsent {
    pub id: Uuid,
    pub structure_id: StructureId,
    pub aidant_id: ProfessionalId,
    pub categories: Vec<String>,
    pub duration_days: i32,
    pub renewal_of: Option<MandateId>,
    pub given_name: String,
    pub family_name: String,
    pub birthdate: Date,
    pub channel: String,
    pub destination: String,
    pub language: String,
    pub link_expires_at: OffsetDateTime,
    pub sends: i32,
    pub browser_hash: Option<Vec<u8>>,
    pub draft_id: Option<Uuid>,
    pub opened_at: Option<OffsetDateTime>,
    pub identified_at: Option<OffsetDateTime>,
    pub outcome: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub mandate_id: Option<MandateId>,
    pub created_at: OffsetDateTime,
    /// The person may choose mandates of theirs this one replaces.
    pub transfer: bool,
}

impl RemoteConsent {
    pub fn state(&self, now: OffsetDateTime) -> State {
        match self.outcome.as_deref() {
            Some("consented") => State::Consented,
            Some("refused") => State::Refused,
            Some("cancelled") => State::Cancelled,
            _ if self.link_expires_at <= now => State::Expired,
            _ if self.identified_at.is_some() => State::Identified,
            _ if self.opened_at.is_some() => State::Opened,
            _ => State::Sent,
        }
    }
    pub fn named(&self) -> Named {
        Named {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            birthdate: self.birthdate,
        }
    }
    pub fn demarches(&self) -> Vec<&str> {
        self.categories
            .iter()
            .map(|c| categories::label(c))
            .collect()
    }
}

/// The person as the aidant named them.
#[derive(Debug, Clone)]
pub struct Named {
    pub given_name: String,
    pub family_name: String,
    pub birthdate: Date,
}

/// Whether FranceConnect's identity is the person the aidant named: the same birth date (a
/// month or day FranceConnect does not know, `00`, is not compared), the family name equal to
/// the birth or the usage name, and the given name equal to all the given names or to the first
/// one; compared without case, accents, hyphens or apostrophes.
pub fn matches(named: &Named, identity: &Identity) -> bool {
    let birth = |s: &str| -> Option<(i32, u8, u8)> {
        let mut parts = s.split('-');
        let y = parts.next()?.parse().ok()?;
        let m = parts.next()?.parse().ok()?;
        let d = parts.next()?.parse().ok()?;
        Some((y, m, d))
    };
    let Some((y, m, d)) = birth(&identity.birthdate) else {
        return false;
    };
    let date_ok = y == named.birthdate.year()
        && (m == 0 || m == u8::from(named.birthdate.month()))
        && (d == 0 || (m != 0 && d == named.birthdate.day()));
    let key = |s: &str| search_key(&s.replace(['-', '\'', '’'], " "));
    let family = key(&named.family_name);
    let family_ok = family == key(&identity.family_name)
        || identity
            .preferred_username
            .as_deref()
            .is_some_and(|u| key(u) == family);
    let given = key(&named.given_name);
    let all_given = key(&identity.given_name);
    let given_ok = given == all_given
        || all_given
            .split(' ')
            .next()
            .is_some_and(|first| first == given);
    date_ok && family_ok && given_ok
}

/// What the aidant prepares.
pub struct Prepared {
    pub categories: Vec<Category>,
    pub duration_days: i32,
    pub renewal_of: Option<MandateId>,
    pub named: Named,
    pub channel: Channel,
    /// An E.164 mobile number or an e-mail address, already checked.
    pub destination: String,
    pub language: String,
    pub transfer: bool,
}

/// Why an aidant's act on a remote consent is refused.
#[derive(Debug, thiserror::Error)]
pub enum AidantError {
    #[error("Cette demande de consentement n'existe pas dans votre structure.")]
    NotFound,
    #[error(
        "Cette demande est close (consentement donné, refusé, annulé) : elle ne peut plus changer."
    )]
    Closed,
    #[error(
        "Le lien a déjà été renvoyé une fois : préparez une nouvelle demande si la personne ne l'a toujours pas reçu."
    )]
    ResentAlready,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The link's address.
pub fn link(origin: &str, departement: DepartementCode, token: &str) -> String {
    format!("{origin}/consentement/{}/{token}", departement.as_str())
}

/// Queues the link to the person by the channel the aidant chose.
async fn send_link(
    tx: &mut TenantTx,
    scope: &Scope,
    consent: Uuid,
    channel: Channel,
    destination: &str,
    url: &str,
    expires: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let message = OutboxMessage {
        channel,
        recipient: destination.to_owned(),
        template: "remote_consent_link",
        payload: json!({
            "structure": scope.structure.name,
            "aidant": scope.me.display_name,
            "url": url,
            "expires": foundation::paris::date_time(expires),
        }),
    };
    outbox::enqueue_for_structure(tx, &message, scope.structure.id).await?;
    tracing::info!(%consent, channel = channel.as_str(), "remote consent link queued");
    Ok(())
}

/// Records the prepared mandate and queues its link; journaled. Returns the consent's id.
pub async fn prepare(
    scope: &Scope,
    origin: &str,
    prepared: &Prepared,
    now: OffsetDateTime,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let token = new_token();
    let expires = now + time::Duration::hours(LINK_HOURS);
    let codes: Vec<&str> = prepared.categories.iter().map(|c| c.code).collect();
    let mut tx = scope.tenant.begin().await?;
    sqlx::query(
        "INSERT INTO remote_consents (id, structure_id, aidant_id, categories, duration_days, renewal_of,
                                      given_name, family_name, birthdate, channel, destination, language,
                                      link_hash, link_expires_at, transfer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(id)
    .bind(scope.structure.id)
    .bind(scope.me.id)
    .bind(&codes)
    .bind(prepared.duration_days)
    .bind(prepared.renewal_of)
    .bind(prepared.named.given_name.trim())
    .bind(prepared.named.family_name.trim())
    .bind(prepared.named.birthdate)
    .bind(prepared.channel.as_str())
    .bind(&prepared.destination)
    .bind(&prepared.language)
    .bind(token_hash(&token))
    .bind(expires)
    .bind(prepared.transfer)
    .execute(&mut *tx)
    .await?;
    let url = link(origin, scope.tenant.departement(), &token);
    send_link(
        &mut tx,
        scope,
        id,
        prepared.channel,
        &prepared.destination,
        &url,
        expires,
    )
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::RemoteConsentSent)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .details(json!({
                "remote_consent": id,
                "categories": codes,
                "duration_days": prepared.duration_days,
                "renewal_of": prepared.renewal_of,
                "channel": prepared.channel.as_str(),
                "expires_at": expires.unix_timestamp(),
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The structure's remote consents, newest first.
pub async fn list(scope: &Scope) -> Result<Vec<RemoteConsent>, sqlx::Error> {
    let mut tx = scope.tenant.begin().await?;
    let rows = sqlx::query_as::<_, RemoteConsent>(
        "SELECT id, structure_id, aidant_id, categories, duration_days, renewal_of, given_name, family_name, birthdate, channel, destination, language, link_expires_at, sends, browser_hash, draft_id, opened_at, identified_at, outcome, decided_at, mandate_id, created_at, transfer
         FROM remote_consents WHERE structure_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(scope.structure.id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// One of the structure's remote consents.
pub async fn one(scope: &Scope, id: Uuid) -> Result<Option<RemoteConsent>, sqlx::Error> {
    let mut tx = scope.tenant.begin().await?;
    let row = locked(&mut tx, scope.structure.id, id).await?;
    tx.commit().await?;
    Ok(row)
}

async fn locked(
    tx: &mut TenantTx,
    structure: StructureId,
    id: Uuid,
) -> Result<Option<RemoteConsent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, structure_id, aidant_id, categories, duration_days, renewal_of, given_name, family_name, birthdate, channel, destination, language, link_expires_at, sends, browser_hash, draft_id, opened_at, identified_at, outcome, decided_at, mandate_id, created_at, transfer
         FROM remote_consents WHERE id = $1 AND structure_id = $2 FOR UPDATE",
    )
    .bind(id)
    .bind(structure)
    .fetch_optional(&mut **tx)
    .await
}

/// Sends the link once more: a new secret (the first link dies, and a device bound to it is
/// forgotten), valid [`LINK_HOURS`] hours from now. Journaled.
pub async fn resend(
    scope: &Scope,
    origin: &str,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(), AidantError> {
    let mut tx = scope.tenant.begin().await?;
    let consent = locked(&mut tx, scope.structure.id, id)
        .await?
        .ok_or(AidantError::NotFound)?;
    if consent.outcome.is_some() {
        return Err(AidantError::Closed);
    }
    if consent.sends >= MAX_SENDS {
        return Err(AidantError::ResentAlready);
    }
    let token = new_token();
    let expires = now + time::Duration::hours(LINK_HOURS);
    sqlx::query(
        "UPDATE remote_consents SET link_hash = $2, link_expires_at = $3, sends = sends + 1,
                browser_hash = NULL, draft_id = NULL, identified_at = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(token_hash(&token))
    .bind(expires)
    .execute(&mut *tx)
    .await?;
    if let Some(draft) = consent.draft_id {
        drop_draft(&mut tx, draft).await?;
    }
    let channel = if consent.channel == "sms" {
        Channel::Sms
    } else {
        Channel::Email
    };
    let url = link(origin, scope.tenant.departement(), &token);
    send_link(
        &mut tx,
        scope,
        id,
        channel,
        &consent.destination,
        &url,
        expires,
    )
    .await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::RemoteConsentResent)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .details(json!({ "remote_consent": id, "expires_at": expires.unix_timestamp() })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Cancels an open consent: its link answers that the aidant cancelled it. Journaled.
pub async fn cancel(scope: &Scope, id: Uuid) -> Result<(), AidantError> {
    let mut tx = scope.tenant.begin().await?;
    let consent = locked(&mut tx, scope.structure.id, id)
        .await?
        .ok_or(AidantError::NotFound)?;
    if consent.outcome.is_some() {
        return Err(AidantError::Closed);
    }
    sqlx::query(
        "UPDATE remote_consents SET outcome = 'cancelled', decided_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if let Some(draft) = consent.draft_id {
        drop_draft(&mut tx, draft).await?;
    }
    journal::append(
        &mut tx,
        NewEntry::new(Event::RemoteConsentCancelled)
            .structure(scope.structure.id)
            .professional(scope.me.id)
            .details(json!({ "remote_consent": id })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn angela() -> Identity {
        Identity {
            sub: "s".into(),
            given_name: "Angela Claire Louise".into(),
            family_name: "DUBOIS".into(),
            preferred_username: None,
            birthdate: "1962-08-24".into(),
            gender: "female".into(),
            birthplace: "75107".into(),
            birthcountry: "99100".into(),
            email: None,
        }
    }

    fn named(given: &str, family: &str, y: i32, m: u8, d: u8) -> Named {
        Named {
            given_name: given.into(),
            family_name: family.into(),
            birthdate: Date::from_calendar_date(y, time::Month::try_from(m).expect("mois"), d)
                .expect("date"),
        }
    }

    #[test]
    fn the_named_person_matches_without_case_accents_or_second_given_names() {
        assert!(matches(&named("Angela", "Dubois", 1962, 8, 24), &angela()));
        assert!(matches(
            &named("angéla claire-louise", "DUBOIS", 1962, 8, 24),
            &angela()
        ));
        assert!(!matches(&named("Claire", "Dubois", 1962, 8, 24), &angela()));
        assert!(!matches(&named("Angela", "Dupont", 1962, 8, 24), &angela()));
        assert!(!matches(&named("Angela", "Dubois", 1962, 8, 25), &angela()));
    }

    #[test]
    fn a_usage_name_and_an_unknown_birth_day_are_understood() {
        let mut pierre = angela();
        pierre.given_name = "Pierre".into();
        pierre.family_name = "MERCIER".into();
        pierre.preferred_username = Some("DUBOIS".into());
        pierre.birthdate = "1969-00-00".into();
        assert!(matches(&named("Pierre", "Dubois", 1969, 3, 17), &pierre));
        assert!(matches(&named("Pierre", "Mercier", 1969, 1, 1), &pierre));
        assert!(!matches(&named("Pierre", "Mercier", 1970, 3, 17), &pierre));
    }
}
