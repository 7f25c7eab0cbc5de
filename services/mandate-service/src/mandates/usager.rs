//! The usager's identity row: found by FranceConnect `sub`, created or updated with what
//! FranceConnect asserts, with the names each structure's list sorts them by.

use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::TenantTx;
use serde_json::json;

use super::{MandateError, search_key};
use crate::franceconnect::Identity;

fn usager_search_name(identity: &Identity) -> String {
    search_key(&format!(
        "{} {} {}",
        identity.family_name,
        identity.preferred_username.as_deref().unwrap_or(""),
        identity.given_name
    ))
}

/// Id, given names, family name, usage name, birth date, gender, birthplace, country, e-mail.
type StoredIdentity = (
    UsagerId,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
);

/// Finds the usager by FranceConnect `sub`, creating them or updating the identity FranceConnect
/// asserted (journaled), and locks their row for the rest of the transaction.
pub async fn upsert_usager(
    tx: &mut TenantTx,
    identity: &Identity,
    structure: StructureId,
    by: ProfessionalId,
) -> Result<UsagerId, MandateError> {
    let mut existing = known(tx, &identity.sub).await?;
    if existing.is_none() {
        match insert_new(tx, identity, structure, by).await? {
            Some(id) => return Ok(id),
            // Inserted meanwhile by another transaction, now ended: known from here on.
            None => existing = known(tx, &identity.sub).await?,
        }
    }
    if let Some((id, given, family, usage, birthdate, gender, place, country, email)) = &existing
        && *given == identity.given_name
        && *family == identity.family_name
        && *usage == identity.preferred_username
        && *birthdate == identity.birthdate
        && *gender == identity.gender
        && *place == identity.birthplace
        && *country == identity.birthcountry
        && *email == identity.email
    {
        return Ok(*id);
    }
    // New, or FranceConnect asserts a different identity than last time.
    let id: UsagerId = sqlx::query_scalar(
        "INSERT INTO usagers (id, fc_sub, given_name, family_name, preferred_username, birthdate, gender,
                              birthplace, birthcountry, email, search_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (fc_sub) DO UPDATE SET
             given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
             preferred_username = EXCLUDED.preferred_username, birthdate = EXCLUDED.birthdate,
             gender = EXCLUDED.gender, birthplace = EXCLUDED.birthplace,
             birthcountry = EXCLUDED.birthcountry, email = EXCLUDED.email,
             search_name = EXCLUDED.search_name, updated_at = EXCLUDED.updated_at
         RETURNING id",
    )
    .bind(UsagerId::new_v7())
    .bind(&identity.sub)
    .bind(&identity.given_name)
    .bind(&identity.family_name)
    .bind(&identity.preferred_username)
    .bind(&identity.birthdate)
    .bind(&identity.gender)
    .bind(&identity.birthplace)
    .bind(&identity.birthcountry)
    .bind(&identity.email)
    .bind(usager_search_name(identity))
    .fetch_one(&mut **tx)
    .await?;
    if existing.is_some() {
        follow_identity(
            tx,
            id,
            &identity.family_name,
            &identity.given_name,
            identity.preferred_username.as_deref(),
            &identity.birthdate,
        )
        .await?;
    }
    let kind = if existing.is_some() {
        Event::UsagerIdentityUpdated
    } else {
        Event::UsagerIdentified
    };
    journal::append(
        tx,
        NewEntry::new(kind)
            .structure(structure)
            .professional(by)
            .usager(id)
            .details(json!({ "source": "franceconnect" })),
    )
    .await?;
    Ok(id)
}

/// The person FranceConnect's `sub` names, if known, their row locked until the transaction ends.
async fn known(tx: &mut TenantTx, sub: &str) -> Result<Option<StoredIdentity>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, given_name, family_name, preferred_username, birthdate, gender, birthplace, birthcountry, email
         FROM usagers WHERE fc_sub = $1 FOR UPDATE",
    )
    .bind(sub)
    .fetch_optional(&mut **tx)
    .await
}

/// A person FranceConnect names for the first time: their row and its journal entry, in one
/// statement; the row is locked by its insert until the transaction ends. `None` when a
/// concurrent transaction inserted the same `sub` first (its insert waited for that one's end):
/// nothing was written, and the caller goes the way of a person already known.
async fn insert_new(
    tx: &mut TenantTx,
    identity: &Identity,
    structure: StructureId,
    by: ProfessionalId,
) -> Result<Option<UsagerId>, sqlx::Error> {
    let id = UsagerId::new_v7();
    let entry = NewEntry::new(Event::UsagerIdentified)
        .structure(structure)
        .professional(by)
        .usager(id)
        .details(json!({ "source": "franceconnect" }));
    let inserted: Vec<(i64,)> = journal::append_with(
        tx,
        entry,
        foundation::journal_with_claim!(
            "person AS (INSERT INTO usagers (id, fc_sub, given_name, family_name,
                 preferred_username, birthdate, gender, birthplace, birthcountry, email, search_name)
             VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
             ON CONFLICT (fc_sub) DO NOTHING RETURNING id)",
            "person",
            "SELECT id FROM entry"
        ),
        |q| {
            q.bind(id)
                .bind(identity.sub.clone())
                .bind(identity.given_name.clone())
                .bind(identity.family_name.clone())
                .bind(identity.preferred_username.clone())
                .bind(identity.birthdate.clone())
                .bind(identity.gender.clone())
                .bind(identity.birthplace.clone())
                .bind(identity.birthcountry.clone())
                .bind(identity.email.clone())
                .bind(usager_search_name(identity))
        },
    )
    .await?;
    Ok((!inserted.is_empty()).then_some(id))
}

/// Writes a person's new identity into each structure's list of its usagers
/// (`structure_usagers`): the name it sorts them by, and what a row shows (département
/// migration 0037). Called wherever a person's identity changes, in that transaction.
pub async fn follow_identity(
    tx: &mut TenantTx,
    usager: UsagerId,
    family_name: &str,
    given_name: &str,
    preferred_username: Option<&str>,
    birthdate: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE structure_usagers
         SET family_name = $2, given_name = $3, preferred_username = $4, birthdate = $5
         WHERE usager_id = $1
           AND (family_name, given_name, preferred_username, birthdate)
               IS DISTINCT FROM ($2, $3, $4, $5)",
    )
    .bind(usager)
    .bind(family_name)
    .bind(given_name)
    .bind(preferred_username)
    .bind(birthdate)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The insert of [`widen`] (and of a mandate's creation, which widens in its own statement)
/// up to the rows it inserts: a structure, a person, their names, démarches and end.
macro_rules! widen_insert {
    () => {
        "INSERT INTO structure_usagers
             (structure_id, usager_id, family_name, given_name, preferred_username, birthdate,
              categories, live_until)"
    };
}
pub(crate) use widen_insert;

/// How [`widen`] merges a row into the one it finds: the démarches joined, the later end kept.
macro_rules! widen_merge {
    () => {
        "ON CONFLICT (structure_id, usager_id) DO UPDATE SET
             categories = ARRAY(SELECT DISTINCT c
                                FROM unnest(structure_usagers.categories || EXCLUDED.categories) c
                                ORDER BY 1),
             live_until = greatest(structure_usagers.live_until, EXCLUDED.live_until)"
    };
}
pub(crate) use widen_merge;

/// Adds `mandate`'s live authorisations to its structure's row of the person in
/// `structure_usagers` (département migration 0032), creating it: the démarches join the
/// row's, its end pushes the row's back. Called by every write that makes an authorisation
/// live (a new mandate, a judicial measure extended or given a démarche), in its transaction.
pub async fn widen(tx: &mut TenantTx, mandate: MandateId) -> Result<(), sqlx::Error> {
    sqlx::query(concat!(
        widen_insert!(),
        " SELECT a.structure_id, a.usager_id, u.family_name, u.given_name, u.preferred_username,
                u.birthdate, array_agg(DISTINCT a.category ORDER BY a.category), max(a.expires_at)
         FROM authorisations a
         JOIN usagers u ON u.id = a.usager_id
         WHERE a.mandate_id = $1 AND a.revoked_at IS NULL AND a.superseded_at IS NULL
         GROUP BY a.structure_id, a.usager_id, u.family_name, u.given_name, u.preferred_username,
                  u.birthdate ",
        widen_merge!()
    ))
    .bind(mandate)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
