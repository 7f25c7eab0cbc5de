//! `/usagers/{id}`: a usager with whom the structure has (or had, within a year) a mandate —
//! identity, how receipts reach them, the structure's mandates, the history of acts in this
//! territory — and `/usagers/{id}/coordonnees`, replacing or removing their mobile phone and
//! postal address for receipts (only while a mandate of the structure is live).

use crate::contact::UsagerContact;
use askama::Template;
use foundation::app::Platform;
use foundation::auth::csrf;
use foundation::auth::guard::Authorized;
use foundation::ids::UsagerId;
use foundation::outbox::Channel;
use foundation::web::{NavItem, Theme};
use foundation::web::{PageError, PageResult};
use poem::web::{Data, Form, Path, Query};
use poem::{Request, Response, handler};
use policies::Action;
use serde::Deserialize;
use time::OffsetDateTime;

use super::list::{ListRow, Row, list_rows_sql, to_row, visible_sql};
use super::{
    ContactForm, MessageQuery, THEME, birth_text, date_time, display_name, form_answer, nav,
    parse_id, see_other,
};
use crate::categories;
use crate::franceconnect::Identity;
use crate::mandates;
use crate::scope::Scope;

pub struct HistoryLine {
    pub when: String,
    pub what: String,
}

#[derive(Template)]
#[template(path = "usager.html")]
struct UsagerPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    id: String,
    usager: String,
    birth: String,
    email: String,
    /// How receipts reach the person now, in words.
    receipts: String,
    phone_known: bool,
    address_known: bool,
    /// Whether the structure holds a live mandate (contact can be changed only then).
    live: bool,
    flash: Option<(bool, String)>,
    phone: String,
    address: String,
    mandates: Vec<Row>,
    history: Vec<HistoryLine>,
}

fn history_text(kind: &str, details: &serde_json::Value) -> String {
    let category = details["category"]
        .as_str()
        .map(categories::label)
        .unwrap_or("");
    match kind {
        "usager_identified" => "Première identification par FranceConnect".into(),
        "usager_identity_updated" => "Identité mise à jour par FranceConnect".into(),
        "mandate_created" => format!(
            "Mandat créé ({})",
            details["categories"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|c| c.as_str())
                    .map(categories::label)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        "authorisation_superseded" => {
            format!("Démarche « {category} » remplacée par un nouveau mandat")
        }
        "authorisation_revoked" => format!("Démarche « {category} » révoquée"),
        "mandate_revoked" => "Mandat entièrement révoqué".into(),
        "attestation_produced" => "Attestation produite".into(),
        "mandate_used" => format!("Mandat utilisé pour « {category} »"),
        "mandate_expiry_reminder_queued" => "Rappel d'expiration envoyé à la structure".into(),
        "usager_contact_updated" => {
            let what = |field: &str, name: &str| match details[field].as_str() {
                Some("updated") => Some(format!("{name} enregistré")),
                Some("removed") => Some(format!("{name} supprimé")),
                _ => None,
            };
            let changes: Vec<String> = [
                what("phone", "téléphone mobile"),
                what("postal_address", "adresse postale"),
            ]
            .into_iter()
            .flatten()
            .collect();
            format!(
                "Coordonnées pour les accusés de réception : {}",
                changes.join(", ")
            )
        }
        other => other.to_owned(),
    }
}

#[handler]
pub async fn usager_page(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> PageResult<Response> {
    let allowed = scope.authorize(&platform, Action::UsagerRead).await?;
    let usager: UsagerId = parse_id(&id)?;
    let flash = match q.message.as_deref() {
        Some("coordonnees") => Some((true, "Les coordonnées sont enregistrées.".to_owned())),
        Some("coordonnees-inchangees") => Some((
            true,
            "Rien n'a changé : les coordonnées étaient déjà celles-ci.".to_owned(),
        )),
        _ => None,
    };
    usager_view(
        req,
        &platform,
        &scope,
        &allowed,
        usager,
        flash,
        &ContactForm::default(),
    )
    .await
}

/// The usager's identity as FranceConnect gave it, and their e-mail.
#[derive(sqlx::FromRow)]
struct Person {
    given_name: String,
    family_name: String,
    preferred_username: Option<String>,
    birthdate: String,
    birthplace: String,
    birthcountry: String,
    email: Option<String>,
}

/// The contact the structure holds for receipts, and whether it has a live mandate.
#[derive(sqlx::FromRow)]
struct HeldContact {
    phone: Option<String>,
    postal_address: Option<String>,
    live: bool,
}

/// One entry of the territory's journal about the usager.
#[derive(sqlx::FromRow)]
struct JournalLine {
    at: OffsetDateTime,
    kind: String,
    details: String,
}

/// What the usager's page shows, read in one territory transaction.
struct UsagerRecord {
    person: Person,
    contact: HeldContact,
    mandates: Vec<ListRow>,
    events: Vec<JournalLine>,
}

/// The usager if the structure has (or had, within a year) a mandate with them; else 404.
async fn usager_record(
    scope: &Scope,
    allowed: &Authorized,
    usager: UsagerId,
) -> PageResult<UsagerRecord> {
    let mut tx = scope.tenant.begin().await?;
    let found: Option<Person> =
        sqlx::query_as(
            "SELECT given_name, family_name, preferred_username, birthdate, birthplace, birthcountry, email
             FROM usagers u WHERE u.id = $1 AND EXISTS (
                SELECT 1 FROM mandates m WHERE m.usager_id = u.id AND m.structure_id = $2
                  AND least(m.ended_at, m.expires_at) > now() - interval '1 year')",
        )
        .bind(usager)
        .bind(allowed.structure())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(person) = found else {
        return Err(PageError::not_found());
    };
    let contact: HeldContact = sqlx::query_as(
        "SELECT c.phone, c.postal_address, EXISTS (SELECT 1 FROM mandates m WHERE m.usager_id = u.id
                  AND m.structure_id = $2 AND m.ended_at IS NULL AND m.expires_at > now()) AS live
         FROM usagers u
         LEFT JOIN usager_contacts c ON c.usager_id = u.id AND c.structure_id = $2
         WHERE u.id = $1",
    )
    .bind(usager)
    .bind(allowed.structure())
    .fetch_one(&mut *tx)
    .await?;
    let mandates: Vec<ListRow> = sqlx::query_as(list_rows_sql!(
        "WHERE m.usager_id = $1 AND m.structure_id = $2 AND ",
        visible_sql!(),
        " ORDER BY m.created_at DESC"
    ))
    .bind(usager)
    .bind(allowed.structure())
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<JournalLine> = sqlx::query_as(
        "SELECT at, kind, details FROM journal WHERE usager_id = $1 AND structure_id = $2 ORDER BY id DESC LIMIT 200",
    )
    .bind(usager)
    .bind(allowed.structure())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UsagerRecord {
        person,
        contact,
        mandates,
        events,
    })
}

/// How receipts reach the person, in words (the channel `outbox` would choose).
fn receipts_text(contact: &UsagerContact) -> String {
    match contact.route() {
        Some((Channel::Email, _)) => {
            "par courriel, à l'adresse donnée par FranceConnect".to_owned()
        }
        Some((Channel::Sms, number)) => {
            // The end of the number is enough to recognise it.
            let end: String = number
                .chars()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("par SMS, au numéro de téléphone mobile enregistré (se terminant par {end})")
        }
        Some((Channel::Letter, _)) => {
            "par courrier, à l'adresse postale enregistrée (votre structure l'imprime)".to_owned()
        }
        None => {
            "aucun : ni adresse électronique, ni téléphone mobile, ni adresse postale".to_owned()
        }
    }
}

/// The usager's page: identity, how receipts reach them, the structure's mandates, history.
/// Only for a usager with whom the structure has (or had, within a year) a mandate.
async fn usager_view(
    req: &Request,
    platform: &Platform,
    scope: &Scope,
    allowed: &Authorized,
    usager: UsagerId,
    flash: Option<(bool, String)>,

    typed: &ContactForm,
) -> PageResult<Response> {
    let UsagerRecord {
        person: p,
        contact: held,
        mandates,
        events,
    } = usager_record(scope, allowed, usager).await?;
    let contact = UsagerContact {
        email: p.email.clone(),
        phone: held.phone.clone(),
        postal_address: held.postal_address.clone(),
    };
    let identity = Identity {
        sub: String::new(),
        given_name: p.given_name.clone(),
        family_name: p.family_name.clone(),
        preferred_username: p.preferred_username.clone(),
        birthdate: p.birthdate,
        gender: String::new(),
        birthplace: p.birthplace,
        birthcountry: p.birthcountry,
        email: p.email.clone(),
    };
    let now = OffsetDateTime::now_utc();
    let failed = flash.as_ref().is_some_and(|(ok, _)| !ok);
    form_answer(
        &UsagerPage {
            theme: THEME,
            nav: nav("/mandats"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            id: usager.to_string(),
            usager: display_name(
                &p.given_name,
                &p.family_name,
                p.preferred_username.as_deref(),
            ),
            birth: birth_text(&identity),
            email: p.email.unwrap_or_else(|| "aucune".into()),
            receipts: receipts_text(&contact),
            phone_known: held.phone.is_some(),
            address_known: held.postal_address.is_some(),
            live: held.live,
            flash,
            phone: typed.telephone.clone().unwrap_or_default(),
            address: typed.adresse.clone().unwrap_or_default(),
            mandates: mandates.into_iter().map(|r| to_row(r, now)).collect(),
            history: events
                .into_iter()
                .map(|e| HistoryLine {
                    when: date_time(e.at),
                    what: history_text(
                        &e.kind,
                        &serde_json::from_str(&e.details).unwrap_or_default(),
                    ),
                })
                .collect(),
        },
        failed,
    )
}

#[derive(Deserialize)]
pub struct ContactChangeForm {
    telephone: Option<String>,
    adresse: Option<String>,
    supprimer_telephone: Option<String>,
    supprimer_adresse: Option<String>,
}

fn change<'a>(remove: &Option<String>, value: Option<&'a str>) -> mandates::Change<'a> {
    if remove.as_deref() == Some("oui") {
        mandates::Change::Remove
    } else {
        mandates::Change::typed(value)
    }
}

/// Replaces or removes the usager's mobile phone and postal address (a wrong number would send
/// receipts to a stranger), for a usager of a live mandate of the structure.
#[handler]
pub async fn usager_contact(
    req: &Request,
    platform: Data<&Platform>,
    scope: Scope,
    Path(id): Path<String>,
    Form(form): Form<ContactChangeForm>,
) -> PageResult<Response> {
    let allowed = scope
        .authorize(&platform, Action::UsagerContactUpdate)
        .await?;
    let usager: UsagerId = parse_id(&id)?;
    let typed = ContactForm {
        telephone: form.telephone.clone(),
        adresse: form.adresse.clone(),
    };
    let (phone, address) = match crate::contact::typed_contact(
        typed.telephone.as_deref().unwrap_or_default(),
        typed.adresse.as_deref().unwrap_or_default(),
    ) {
        Ok(contact) => contact,
        Err(e) => {
            let flash = Some((false, e.to_string()));
            return usager_view(req, &platform, &scope, &allowed, usager, flash, &typed).await;
        }
    };
    let mut tx = scope.tenant.begin().await?;
    let live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM mandates WHERE usager_id = $1 AND structure_id = $2
                          AND ended_at IS NULL AND expires_at > now())",
    )
    .bind(usager)
    .bind(allowed.structure())
    .fetch_one(&mut *tx)
    .await?;
    if !live {
        return Err(PageError::not_found());
    }
    let changed = mandates::set_contact(
        &mut tx,
        usager,
        allowed.structure(),
        scope.me.id,
        change(&form.supprimer_telephone, phone.as_deref()),
        change(&form.supprimer_adresse, address.as_deref()),
    )
    .await
    .map_err(PageError::unavailable)?;
    tx.commit().await?;
    let message = if changed {
        "coordonnees"
    } else {
        "coordonnees-inchangees"
    };
    Ok(see_other(format!("/usagers/{usager}?message={message}")))
}
