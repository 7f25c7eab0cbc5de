//! Accepting a request (product.md §4.2). In one transaction of the request's territory: the
//! request is locked and must be under review, then the structure (linked to the tenant of its
//! commune, else of its département), one habilitation file per listed aidant (and for the
//! référent when they are also an aidant), the decision, its journal entries and the issuer's
//! notification are written. A second acceptance finds the request decided and creates nothing.
//!
//! The référent's account lives in the platform schema, which a territory transaction cannot
//! write: `finish_accounts` does it next, idempotently (`platform.request_acceptances` holds one
//! row per request, written with the account, the role and the activation mail), then marks the
//! request done. The job `finish_accepted_requests` completes any acceptance whose second step
//! was interrupted.

use std::time::Duration;

use foundation::app::Platform;
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use foundation::jobs::Job;
use foundation::journal::{self, Event};
use foundation::outbox::{Channel, OutboxMessage, enqueue_platform};
use foundation::tenancy::DepartementCode;
use policies::Role;
use serde_json::json;
use uuid::Uuid;

use super::{Actor, RequestError, Status, entry, issuer_url, load, mail, public_url};
use crate::accounts;

/// What an acceptance created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub structure: StructureId,
    pub files: usize,
}

/// The tenant a structure of this commune belongs to: the commune's own (or its parent
/// commune's, for a municipal arrondissement), else the département council.
async fn tenant_for(
    platform: &Platform,
    departement: DepartementCode,
    commune: &str,
) -> Result<Option<TenantId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT t.id FROM platform.tenants t
         LEFT JOIN platform.communes c ON c.code = $1
         WHERE t.departement_code = $2
           AND ((t.kind = 'commune' AND (t.commune_code = $1 OR t.commune_code = c.parent_code))
                OR t.kind = 'departement')
         ORDER BY t.kind = 'commune' DESC LIMIT 1",
    )
    .bind(commune)
    .bind(departement.as_str())
    .fetch_optional(platform.platform_pool())
    .await
}

/// Accepts a request under review; then opens the référent's account.
pub async fn accept(
    platform: &Platform,
    departement: DepartementCode,
    reviewer: ProfessionalId,
    reference: &str,
) -> Result<Accepted, RequestError> {
    let tenant = platform.tenancy.unguarded(departement).await?;
    let mut tx = tenant.begin().await?;
    let request = load(&mut tx, reference, true)
        .await?
        .filter(|r| r.status() != Status::Draft)
        .ok_or(RequestError::NotFound)?;
    if !request.status().reviewable() {
        return Err(RequestError::NotReviewable(request.status()));
    }
    let tenant_id = tenant_for(platform, departement, &request.commune_code)
        .await?
        .ok_or(RequestError::NoTenant)?;
    let structure = StructureId::new_v7();
    sqlx::query(
        "INSERT INTO structures (id, tenant_id, name, kind, siret, address, commune_code, postal_code,
             france_services, france_services_number, mission, opening_hours, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(structure)
    .bind(tenant_id)
    .bind(&request.structure_name)
    .bind(&request.structure_kind)
    .bind(&request.siret)
    .bind(&request.address)
    .bind(&request.commune_code)
    .bind(&request.postal_code)
    .bind(request.france_services)
    .bind(&request.france_services_number)
    .bind(&request.mission)
    .bind(&request.opening_hours)
    .bind(request.id)
    .execute(&mut *tx)
    .await?;
    let mut files = sqlx::query(
        "INSERT INTO habilitation_files (id, structure_id, request_id, first_name, last_name, email,
             profession, employment, employer)
         SELECT gen_random_uuid(), $1, request_id, first_name, last_name, email, profession, employment, employer
         FROM request_aidants WHERE request_id = $2",
    )
    .bind(structure)
    .bind(request.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if request.referent_is_aidant == Some(true) {
        files += sqlx::query(
            "INSERT INTO habilitation_files (id, structure_id, request_id, first_name, last_name, email,
                 profession, employment, employer)
             VALUES ($1, $2, $3, $4, $5, $6, 'Référent de la structure', 'employee', $7)
             ON CONFLICT (structure_id, email) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(structure)
        .bind(request.id)
        .bind(request.referent_first_name.as_deref().unwrap_or_default())
        .bind(request.referent_last_name.as_deref().unwrap_or_default())
        .bind(request.referent_email.as_deref().unwrap_or_default())
        .bind(&request.structure_name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    sqlx::query(
        "UPDATE structure_requests SET status = 'accepted', structure_id = $2, decided_at = now(),
             decided_by = $3, updated_at = now()
         WHERE id = $1",
    )
    .bind(request.id)
    .bind(structure)
    .bind(reviewer)
    .execute(&mut *tx)
    .await?;
    let mut accepted = request.clone();
    accepted.structure_id = Some(structure);
    journal::append(
        &mut tx,
        entry(Event::RequestAccepted, &accepted, Actor::Reviewer(reviewer)),
    )
    .await?;
    let mut created = entry(
        Event::StructureCreated,
        &accepted,
        Actor::Reviewer(reviewer),
    );
    created.details["tenant"] = json!(tenant_id);
    journal::append(&mut tx, created).await?;
    let mut filed = entry(
        Event::HabilitationFilesCreated,
        &accepted,
        Actor::Reviewer(reviewer),
    );
    filed.details["files"] = json!(files);
    journal::append(&mut tx, filed).await?;
    mail(
        &mut tx,
        &request.issuer_email,
        "request_accepted",
        json!({
            "reference": request.reference,
            "structure": request.structure_name,
            "url": issuer_url(platform, &request.reference),
        }),
    )
    .await?;
    tx.commit().await?;
    // The platform part; if it fails now, the job finishes it.
    if let Err(e) = finish_accounts(platform, departement, request.id).await {
        tracing::warn!(error = %e, "acceptance: referent account deferred to the job");
    }
    Ok(Accepted {
        structure,
        files: files as usize,
    })
}

/// Opens the référent's account of an accepted request (or gives an existing account the
/// role), mails the activation link (a new account, or one without a second factor) or the
/// appointment, and marks the request done. Idempotent. Returns whether it did the work now.
pub async fn finish_accounts(
    platform: &Platform,
    departement: DepartementCode,
    request_id: Uuid,
) -> Result<bool, RequestError> {
    let tenant = platform.tenancy.unguarded(departement).await?;
    let mut dep = tenant.begin().await?;
    let found: Option<(String, StructureId, String, String, String, String)> = sqlx::query_as(
        "SELECT reference, structure_id, referent_first_name, referent_last_name, referent_email, structure_name
         FROM structure_requests
         WHERE id = $1 AND status = 'accepted' AND accounts_done_at IS NULL AND referent_email IS NOT NULL",
    )
    .bind(request_id)
    .fetch_optional(&mut *dep)
    .await?;
    let Some((reference, structure, first, last, email, structure_name)) = found else {
        dep.rollback().await?;
        return Ok(false);
    };
    let files: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, email, first_name || ' ' || last_name FROM habilitation_files WHERE structure_id = $1",
    )
    .bind(structure)
    .fetch_all(&mut *dep)
    .await?;
    dep.rollback().await?;
    let mut tx = platform.platform_pool().begin().await?;
    // Where each file lives, for the national steps (training, Pix, charter).
    for (file, file_email, name) in &files {
        sqlx::query(
            "INSERT INTO platform.habilitation_file_index (file_id, departement_code, structure_id, email, display_name)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(file)
        .bind(departement.as_str())
        .bind(structure)
        .bind(file_email)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    let claimed = sqlx::query(
        "INSERT INTO platform.request_acceptances (request_id, departement_code) VALUES ($1, $2)
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(departement.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let professional = if claimed == 1 {
        let existing: Option<ProfessionalId> =
            sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created) = match existing {
            Some(id) => (id, false),
            None => (
                accounts::create_professional(&mut tx, &email, &format!("{first} {last}"))
                    .await
                    .map_err(|e| match e {
                        accounts::AccountError::Database(e) => RequestError::Database(e),
                        other => RequestError::Database(sqlx::Error::Protocol(other.to_string())),
                    })?,
                true,
            ),
        };
        accounts::grant_role(
            &mut tx,
            id,
            Role::Referent,
            structure.domain(),
            Some(departement.as_str()),
        )
        .await?;
        let has_factor: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM platform.second_factors
                            WHERE professional_id = $1 AND confirmed_at IS NOT NULL AND revoked_at IS NULL)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if created || !has_factor {
            accounts::send_enrolment_link(&mut tx, &platform.cipher, id, &public_url(platform))
                .await?;
        } else {
            enqueue_platform(
                &mut tx,
                &OutboxMessage {
                    channel: Channel::Email,
                    recipient: email.clone(),
                    template: "referent_appointed",
                    payload: json!({
                        "structure": structure_name,
                        "url": format!("{}/connexion", public_url(platform)),
                    }),
                },
            )
            .await?;
        }
        sqlx::query(
            "UPDATE platform.request_acceptances SET professional_id = $2 WHERE request_id = $1",
        )
        .bind(request_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        id
    } else {
        sqlx::query_scalar(
            "SELECT professional_id FROM platform.request_acceptances WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_one(&mut *tx)
        .await?
    };
    tx.commit().await?;
    let mut dep = tenant.begin().await?;
    let marked = sqlx::query(
        "UPDATE structure_requests SET referent_id = $2, accounts_done_at = now()
         WHERE id = $1 AND accounts_done_at IS NULL",
    )
    .bind(request_id)
    .bind(professional)
    .execute(&mut *dep)
    .await?
    .rows_affected();
    if marked == 1 {
        let mut e = foundation::journal::NewEntry::new(Event::ReferentAppointed)
            .structure(structure)
            .professional(professional)
            .details(json!({ "request": request_id, "reference": reference }));
        e.details["role"] = json!("referent");
        journal::append(&mut dep, e).await?;
    }
    dep.commit().await?;
    Ok(claimed == 1)
}

/// The job: finishes acceptances whose platform part did not happen (a crash, the database
/// unreachable at that moment).
pub fn finish_accepted() -> Job {
    Job::new(
        "finish_accepted_requests",
        Duration::from_secs(60),
        |platform: Platform| async move {
            let platform = &platform;
            foundation::jobs::each_territory(platform, |departement| async move {
                let mut done = 0u64;
                let tenant = platform.tenancy.unguarded(departement).await?;
                let mut tx = tenant.begin().await?;
                let pending: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM structure_requests
                     WHERE status = 'accepted' AND accounts_done_at IS NULL AND decided_at < now() - interval '30 seconds'",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.rollback().await?;
                for id in pending {
                    if finish_accounts(platform, departement, id).await? {
                        done += 1;
                    }
                }
                Ok(done)
            })
            .await
        },
    )
}
