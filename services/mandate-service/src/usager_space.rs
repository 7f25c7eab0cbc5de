//! The usager's own space (`/mes-mandats`, product.md §2): a person signs in with FranceConnect
//! on their own device and sees every mandate they hold, in every structure and département,
//! with the uses made of it.
//!
//! Finding a person's mandates across the territories' schemas goes through
//! `platform.usager_index`, which holds no identity: a keyed hash of the FranceConnect subject
//! (HMAC-SHA-256 with a key derived from `security.idp_subject_key`, labelled for this use
//! only) and the départements to look in. The index is written when a mandate is created and
//! rebuilt every hour from the territories' usager rows (`reindex` job), so a row missed by a
//! failure is found again. The session keeps the subject sealed with the platform's key (it
//! is what the territories' usager rows are found by) and its keyed hash; the cookie's value is
//! stored only as its SHA-256.
//!
//! The subject is FranceConnect's pairwise identifier for this platform's client: the usager
//! signs in through the same client as the aidant used at the counter, so it is the same.

use foundation::app::Platform;
use foundation::auth::secrets::{new_token, token_hash};
use foundation::ids::{MandateId, StructureId, TenantId, UsagerId};
use foundation::jobs::Job;
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::{DepartementCode, Territory};
use foundation::web::PageError;
use hmac::{Hmac, Mac};
use poem::http::StatusCode;
use poem::web::Redirect;
use poem::web::cookie::{Cookie, SameSite};
use poem::{FromRequest, IntoResponse, Request, RequestBody};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;

pub const COOKIE: &str = "ac_usager";
/// The name over HTTPS (`__Host-`: Secure, our exact host, path `/`).
pub const COOKIE_HOST: &str = "__Host-ac_usager";
/// A usager session ends after this long without a page (a shared or public computer).
pub const IDLE_MINUTES: i32 = 30;
/// A FranceConnect login must come back within this long.
pub const LOGIN_MINUTES: i32 = 10;

/// The keyed hash of a FranceConnect subject, as the index and the sessions hold it.
pub fn subject_hash(platform: &Platform, sub: &str) -> Vec<u8> {
    subject_hash_with(
        platform.settings.security.idp_subject_key.expose_secret(),
        sub,
    )
}

/// [`subject_hash`] under the given `security.idp_subject_key` (for the operators' tools).
pub fn subject_hash_with(key: &str, sub: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"aidants-connect usager index\0");
    mac.update(sub.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Records that `departement` holds a usager row for `sub` (idempotent).
pub async fn index(
    platform: &Platform,
    departement: DepartementCode,
    sub: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO platform.usager_index (subject_hash, departement_code) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(subject_hash(platform, sub))
    .bind(departement.as_str())
    // A lone statement: a request's platform connection (no return check by sqlx's pool).
    .execute(&mut *platform.tenancy.request_connection().await?)
    .await?;
    Ok(())
}

/// Usagers read per statement when completing the index.
pub const REINDEX_BATCH: i64 = 5_000;

/// Adds to the index the usagers of `territory` it lacks among those created since the
/// territory's mark (all of them when there is none), reading `batch` at a time; then moves the
/// mark to this run's start. Returns how many were added. Creating a usager indexes it at once
/// (`index`); this completes what a failure in between left out.
pub async fn reindex(
    platform: &Platform,
    territory: &Territory,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let departement = territory.departement().as_str();
    // By the database clock, which sets `created_at` (at its transaction's start: a usager
    // committed after the mark was taken may carry an earlier time, hence the hour's overlap).
    let (mark, started): (Option<OffsetDateTime>, OffsetDateTime) = sqlx::query_as(
        "SELECT (SELECT through - interval '1 hour' FROM platform.usager_index_marks
                 WHERE departement_code = $1), now()",
    )
    .bind(departement)
    .fetch_one(platform.platform_pool())
    .await?;
    let mut after = (
        mark.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        UsagerId::from_uuid(uuid::Uuid::nil()),
    );
    let mut added = 0;
    loop {
        let mut tx = territory.begin().await?;
        let rows: Vec<(OffsetDateTime, UsagerId, String)> = sqlx::query_as(
            "SELECT created_at, id, fc_sub FROM usagers WHERE (created_at, id) > ($1, $2)
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let Some(&(at, id, _)) = rows.last() else {
            break;
        };
        after = (at, id);
        let hashes: Vec<Vec<u8>> = rows
            .iter()
            .map(|(_, _, sub)| subject_hash(platform, sub))
            .collect();
        added += sqlx::query(
            "INSERT INTO platform.usager_index (subject_hash, departement_code)
             SELECT h, $2 FROM unnest($1::bytea[]) h ON CONFLICT DO NOTHING",
        )
        .bind(&hashes)
        .bind(departement)
        .execute(platform.platform_pool())
        .await?
        .rows_affected();
        if (rows.len() as i64) < batch {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO platform.usager_index_marks (departement_code, through) VALUES ($1, $2)
         ON CONFLICT (departement_code) DO UPDATE SET through = excluded.through",
    )
    .bind(departement)
    .bind(started)
    .execute(platform.platform_pool())
    .await?;
    Ok(added)
}

/// Every hour: the index completed from every served territory, and the ended or idle usager
/// sessions and abandoned logins deleted.
pub fn reindex_job() -> Job {
    Job::new(
        "usager_index",
        std::time::Duration::from_secs(3600),
        |platform: Platform| async move {
            let platform = &platform;
            let added = foundation::jobs::each_territory(platform, |departement| async move {
                let territory = platform.tenancy.unguarded(departement).await?;
                Ok(reindex(platform, &territory, REINDEX_BATCH).await?)
            })
            .await;
            sqlx::query(
                "DELETE FROM platform.usager_sessions
                 WHERE ended_at IS NOT NULL OR last_seen_at < now() - make_interval(mins => $1)",
            )
            .bind(IDLE_MINUTES)
            .execute(platform.platform_pool())
            .await?;
            sqlx::query(
                "DELETE FROM platform.usager_logins WHERE created_at < now() - make_interval(mins => $1)",
            )
            .bind(LOGIN_MINUTES)
            .execute(platform.platform_pool())
            .await?;
            added
        },
    )
}

fn cookie_name(platform: &Platform) -> &'static str {
    if platform.settings.http.secure_cookies() {
        COOKIE_HOST
    } else {
        COOKIE
    }
}

/// The session cookie (an empty value with a zero age removes it).
pub fn cookie(platform: &Platform, value: String) -> Cookie {
    let secure = platform.settings.http.secure_cookies();
    let mut c = Cookie::new_with_str(cookie_name(platform), value);
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(SameSite::Lax);
    c.set_path("/");
    c
}

/// The cookie binding a FranceConnect login to the browser that started it.
pub const LOGIN_COOKIE: &str = "ac_usager_connexion";

/// A FranceConnect login started: its state and nonce, and the value of the cookie that binds
/// it to this browser (state and cookie are stored only as hashes).
pub struct Login {
    pub state: String,
    pub nonce: String,
    pub browser: String,
}

pub async fn start_login(platform: &Platform) -> Result<Login, sqlx::Error> {
    let login = Login {
        state: new_token(),
        nonce: new_token(),
        browser: new_token(),
    };
    sqlx::query(
        "INSERT INTO platform.usager_logins (state_hash, browser_hash, nonce) VALUES ($1, $2, $3)",
    )
    .bind(token_hash(&login.state))
    .bind(token_hash(&login.browser))
    .bind(&login.nonce)
    .execute(platform.platform_pool())
    .await?;
    Ok(login)
}

/// The login cookie (an empty value with a zero age removes it).
pub fn login_cookie(platform: &Platform, value: String) -> Cookie {
    let mut c = Cookie::new_with_str(LOGIN_COOKIE, value);
    c.set_http_only(true);
    c.set_secure(platform.settings.http.secure_cookies());
    // FranceConnect's return is a top-level navigation from another site: Lax is sent.
    c.set_same_site(SameSite::Lax);
    c.set_path("/mes-mandats");
    c.set_max_age(std::time::Duration::from_secs(60 * LOGIN_MINUTES as u64));
    c
}

/// The nonce of a login started within [`LOGIN_MINUTES`] in this browser (`browser`: the
/// login cookie's value), consumed: a state works once, and only where it was started.
pub async fn take_login(
    platform: &Platform,
    state: &str,
    browser: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM platform.usager_logins
         WHERE state_hash = $1 AND browser_hash = $2
           AND created_at > now() - make_interval(mins => $3)
         RETURNING nonce",
    )
    .bind(token_hash(state))
    .bind(token_hash(browser))
    .bind(LOGIN_MINUTES)
    .fetch_optional(platform.platform_pool())
    .await
}

/// Opens a session for `sub`; returns the cookie's value.
pub async fn open_session(platform: &Platform, sub: &str) -> Result<String, sqlx::Error> {
    let token = new_token();
    let id_hash = token_hash(&token);
    let sealed = platform.cipher.seal(sub.as_bytes(), &id_hash);
    sqlx::query(
        "INSERT INTO platform.usager_sessions (id_hash, subject_hash, subject_sealed) VALUES ($1, $2, $3)",
    )
    .bind(&id_hash)
    .bind(subject_hash(platform, sub))
    .bind(sealed)
    .execute(platform.platform_pool())
    .await?;
    Ok(token)
}

/// The person behind a usager session.
#[derive(Clone)]
pub struct Usager {
    sub: String,
    subject_hash: Vec<u8>,
    session_hash: Vec<u8>,
}

impl std::fmt::Debug for Usager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Usager(…)")
    }
}

/// Reads the request's usager session, if live, and records the activity.
pub async fn lookup(req: &Request, platform: &Platform) -> Result<Option<Usager>, sqlx::Error> {
    let Some(token) = req
        .cookie()
        .get(cookie_name(platform))
        .map(|c| c.value_str().to_owned())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let hash = token_hash(&token);
    let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "UPDATE platform.usager_sessions SET last_seen_at = now()
         WHERE id_hash = $1 AND ended_at IS NULL AND last_seen_at > now() - make_interval(mins => $2)
         RETURNING subject_hash, subject_sealed",
    )
    .bind(&hash)
    .bind(IDLE_MINUTES)
    .fetch_optional(platform.platform_pool())
    .await?;
    Ok(row.and_then(|(subject_hash, sealed)| {
        let sub = String::from_utf8(platform.cipher.open(&sealed, &hash)?).ok()?;
        Some(Usager {
            sub,
            subject_hash,
            session_hash: hash,
        })
    }))
}

impl<'a> FromRequest<'a> for Usager {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let platform = req
            .data::<Platform>()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
        match lookup(req, platform).await {
            Ok(Some(usager)) => Ok(usager),
            Ok(None) => Err(poem::Error::from_response(
                Redirect::see_other("/mes-mandats?session=expiree").into_response(),
            )),
            Err(e) => Err(PageError::from(e).into()),
        }
    }
}

impl Usager {
    /// Ends the session.
    pub async fn end(&self, platform: &Platform) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE platform.usager_sessions SET ended_at = now() WHERE id_hash = $1")
            .bind(&self.session_hash)
            .execute(platform.platform_pool())
            .await?;
        Ok(())
    }

    /// The départements where this person holds a usager row: the only territories their
    /// session reaches (the usager's own session is the authority over their own mandates).
    async fn departements(&self, platform: &Platform) -> Result<Vec<DepartementCode>, PageError> {
        let codes: Vec<String> = sqlx::query_scalar(
            "SELECT departement_code FROM platform.usager_index WHERE subject_hash = $1
             ORDER BY departement_code",
        )
        .bind(&self.subject_hash)
        .fetch_all(platform.platform_pool())
        .await?;
        Ok(codes
            .iter()
            .filter_map(|c| DepartementCode::parse(c).ok())
            .collect())
    }

    async fn territories(&self, platform: &Platform) -> Result<Vec<Territory>, PageError> {
        let mut territories = Vec::new();
        for departement in self.departements(platform).await? {
            territories.push(platform.tenancy.unguarded(departement).await?);
        }
        Ok(territories)
    }

    /// How the person chose to receive receipts, and the contact they gave themselves (from
    /// the first territory holding them; every one holds the same once they chose).
    pub async fn own_contact(&self, platform: &Platform) -> Result<OwnContact, PageError> {
        for territory in self.territories(platform).await? {
            let mut tx = territory.begin().await?;
            let row: Option<OwnContact> = sqlx::query_as(
                "SELECT receipts, own_email AS email, own_phone AS phone,
                        own_postal_address AS postal_address
                 FROM usagers WHERE fc_sub = $1",
            )
            .bind(&self.sub)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            if let Some(row) = row {
                return Ok(row);
            }
        }
        Ok(OwnContact::default())
    }

    /// Records the person's choice in every territory holding them; returns how many usager
    /// rows were updated. The values are already checked (`contact` rules).
    pub async fn set_own_contact(
        &self,
        platform: &Platform,
        own: &OwnContact,
    ) -> Result<u64, PageError> {
        let mut updated = 0;
        for territory in self.territories(platform).await? {
            let mut tx = territory.begin().await?;
            let usager: Option<UsagerId> = sqlx::query_scalar(
                "UPDATE usagers SET receipts = $2, own_email = $3, own_phone = $4, own_postal_address = $5
                 WHERE fc_sub = $1 RETURNING id",
            )
            .bind(&self.sub)
            .bind(&own.receipts)
            .bind(&own.email)
            .bind(&own.phone)
            .bind(&own.postal_address)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(usager) = usager {
                journal::append(
                    &mut tx,
                    NewEntry::new(Event::UsagerContactUpdated)
                        .usager(usager)
                        .details(json!({
                            "by": "usager",
                            "receipts": own.receipts,
                            "email": own.email.is_some(),
                            "phone": own.phone.is_some(),
                            "postal_address": own.postal_address.is_some(),
                        })),
                )
                .await?;
                updated += 1;
            }
            tx.commit().await?;
        }
        Ok(updated)
    }

    /// One of this person's own mandates: in a territory of their index, held by the usager
    /// row of their own subject. Anything else is `None` (the page answers 404).
    pub async fn own_mandate(
        &self,
        platform: &Platform,
        departement: DepartementCode,
        mandate: MandateId,
    ) -> Result<Option<Owned>, PageError> {
        if !self.departements(platform).await?.contains(&departement) {
            return Ok(None);
        }
        let territory = platform.tenancy.unguarded(departement).await?;
        let mut tx = territory.begin().await?;
        let row: Option<OwnedRow> = sqlx::query_as(
            "SELECT m.structure_id, s.tenant_id, s.name, m.expires_at,
                    ARRAY(SELECT la.category FROM live_authorisations la WHERE la.mandate_id = m.id
                          ORDER BY la.category) AS live
             FROM mandates m JOIN usagers u ON u.id = m.usager_id
             JOIN structures s ON s.id = m.structure_id
             WHERE m.id = $1 AND u.fc_sub = $2",
        )
        .bind(mandate)
        .bind(&self.sub)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(|row| Owned {
            territory,
            mandate,
            row,
        }))
    }

    /// Every mandate the person holds, newest first, with its uses.
    pub async fn mandates(&self, platform: &Platform) -> Result<Vec<HeldMandate>, PageError> {
        let mut held = Vec::new();
        for territory in self.territories(platform).await? {
            let mut tx = territory.begin().await?;
            let rows: Vec<MandateRow> = sqlx::query_as(
                "SELECT m.id, s.name AS structure, s.commune_code, m.created_at, m.expires_at, m.ended_reason,
                        ARRAY(SELECT a.category FROM authorisations a WHERE a.mandate_id = m.id
                              ORDER BY a.category) AS categories,
                        ARRAY(SELECT la.category FROM live_authorisations la WHERE la.mandate_id = m.id
                              ORDER BY la.category) AS live
                 FROM usagers u JOIN mandates m ON m.usager_id = u.id
                 JOIN structures s ON s.id = m.structure_id
                 WHERE u.fc_sub = $1 ORDER BY m.created_at DESC",
            )
            .bind(&self.sub)
            .fetch_all(&mut *tx)
            .await?;
            let ids: Vec<MandateId> = rows.iter().map(|r| r.id).collect();
            let uses: Vec<UseRow> = sqlx::query_as(
                "SELECT j.mandate_id, j.at, j.details::jsonb->>'category' AS category,
                        j.details::jsonb->>'client' AS client
                 FROM journal j
                 WHERE j.kind = 'mandate_used' AND j.mandate_id = ANY($1)
                 ORDER BY j.at DESC LIMIT 500",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            // The online services' names are national (the territory's role does not read them).
            let clients: Vec<String> = uses.iter().filter_map(|u| u.client.clone()).collect();
            let names: std::collections::HashMap<String, String> = sqlx::query_as(
                "SELECT client_id, name FROM platform.oidc_clients WHERE client_id = ANY($1)",
            )
            .bind(&clients)
            .fetch_all(platform.platform_pool())
            .await?
            .into_iter()
            .collect();
            for row in rows {
                let row_uses = uses
                    .iter()
                    .filter(|u| u.mandate_id == row.id)
                    .map(|u| Use {
                        at: u.at,
                        category: u.category.clone().unwrap_or_default(),
                        service: u
                            .client
                            .as_ref()
                            .and_then(|c| names.get(c).cloned())
                            .unwrap_or_else(|| "service en ligne".to_owned()),
                    })
                    .collect();
                held.push(HeldMandate {
                    departement: territory.departement(),
                    row,
                    uses: row_uses,
                });
            }
        }
        held.sort_by_key(|m| std::cmp::Reverse(m.row.created_at));
        Ok(held)
    }
}

/// Tells the référents of the mandate's structure, by e-mail, that the person stopped it (or
/// some of its démarches) in their own space.
pub async fn tell_structure(
    platform: &Platform,
    owned: &Owned,
    revoked: &[String],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let mut tx = platform.platform_pool().begin().await?;
    let referents: Vec<String> = sqlx::query_scalar(
        "SELECT p.email FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.role = 'referent' AND a.domain = $1 AND p.active ORDER BY p.email",
    )
    .bind(owned.row.structure_id.domain().to_string())
    .fetch_all(&mut *tx)
    .await?;
    let demarches: Vec<&str> = revoked
        .iter()
        .map(|c| crate::categories::label(c))
        .collect();
    let url = format!(
        "{}/mandats/{}",
        platform.settings.http.public_origin(),
        owned.mandate
    );
    for email in referents {
        outbox::enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: email,
                template: "mandate_revoked_by_usager",
                payload: json!({
                    "structure": owned.row.name,
                    "demarches": demarches,
                    "date": foundation::paris::date_time(now),
                    "url": url,
                }),
            },
        )
        .await?;
    }
    tx.commit().await
}

/// How the person wants receipts, and the contact they gave themselves.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnContact {
    /// `auto`, `email`, `sms`, `letter` or `none` (`contact::RECEIPTS`).
    pub receipts: String,
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    pub postal_address: Option<String>,
}

impl Default for OwnContact {
    fn default() -> Self {
        OwnContact {
            receipts: "auto".to_owned(),
            email: None,
            phone: None,
            postal_address: None,
        }
    }
}

/// A mandate of the signed-in person, with its territory.
pub struct Owned {
    pub territory: Territory,
    pub mandate: MandateId,
    pub row: OwnedRow,
}

#[derive(sqlx::FromRow)]
pub struct OwnedRow {
    pub structure_id: StructureId,
    pub tenant_id: TenantId,
    pub name: String,
    pub expires_at: OffsetDateTime,
    /// The démarches still usable.
    pub live: Vec<String>,
}

/// A mandate as its holder sees it.
#[derive(sqlx::FromRow)]
pub struct MandateRow {
    pub id: MandateId,
    pub structure: String,
    pub commune_code: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub ended_reason: Option<String>,
    pub categories: Vec<String>,
    /// The démarches still usable.
    pub live: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct UseRow {
    mandate_id: MandateId,
    at: OffsetDateTime,
    category: Option<String>,
    client: Option<String>,
}

/// One use of a mandate: when, for which démarche, on which online service.
pub struct Use {
    pub at: OffsetDateTime,
    pub category: String,
    pub service: String,
}

pub struct HeldMandate {
    pub departement: DepartementCode,
    pub row: MandateRow,
    pub uses: Vec<Use>,
}
