//! The request's territory: the professional's current structure and its département's
//! territory, resolved once per request. Handlers of every service that act in the current
//! structure (the mandate service's pages, the mailer's letters) receive it in their signature;
//! they never see a bare pool for territory data.

use super::assignments::structure_departement;
use super::session::{Professional, RecentlyVerified};
use crate::app::Platform;
use crate::ids::{StructureId, TenantId};
use crate::tenancy::Territory;
use crate::web::{PageError, PageResult};
use poem::http::StatusCode;
use poem::web::Redirect;
use poem::{FromRequest, IntoResponse, Request, RequestBody};

/// The current structure as pages show it.
#[derive(Debug, Clone)]
pub struct StructureInfo {
    pub id: StructureId,
    pub tenant_id: TenantId,
    pub name: String,
    pub commune: String,
    pub address: String,
    pub demarches: Vec<String>,
    /// A guardian service (mandataire judiciaire, association tutélaire): it records judicial
    /// protection measures.
    pub guardian_service: bool,
}

/// A professional acting in their current structure, with that territory's context.
#[derive(Debug, Clone)]
pub struct Scope {
    pub me: Professional,
    pub structure: StructureInfo,
    pub tenant: Territory,
}

/// The same, for mandate actions: the session must have been active recently (else the TOTP
/// code is asked again first).
#[derive(Debug, Clone)]
pub struct VerifiedScope(pub Scope);

async fn resolve(req: &Request, me: Professional) -> PageResult<Scope> {
    let platform = req
        .data::<Platform>()
        .ok_or_else(|| PageError::status(StatusCode::INTERNAL_SERVER_ERROR))?;
    Scope::acting(platform, me).await
}

impl Scope {
    /// The scope of `me` in their current structure, resolved outside a request of theirs: an
    /// act they prepared that completes later (a remote consent given by the person). The
    /// structure must still be active; the caller still asks the guard for the act.
    pub async fn acting(platform: &Platform, me: Professional) -> PageResult<Scope> {
        resolve_in(platform, me).await
    }
}

async fn resolve_in(platform: &Platform, me: Professional) -> PageResult<Scope> {
    let Some(structure) = me.current_structure else {
        return Err(
            poem::Error::from_response(Redirect::see_other("/compte").into_response()).into(),
        );
    };
    let departement = structure_departement(platform.platform_pool(), structure)
        .await?
        .ok_or_else(PageError::forbidden)?;
    let tenant = platform.tenancy.territory(departement).await?;
    // One statement, its own transaction.
    let mut conn = tenant.autocommit().await?;
    type StructureRow = (TenantId, String, String, String, Vec<String>, bool, bool);
    let row: Option<StructureRow> = sqlx::query_as(
        "SELECT tenant_id, name, commune_code, address, demarches, active, guardian_service
         FROM structures WHERE id = $1",
    )
    .bind(structure)
    .fetch_optional(&mut *conn)
    .await?;
    drop(conn);
    let (tenant_id, name, commune, address, demarches, active, guardian_service) =
        row.ok_or_else(PageError::not_found)?;
    // A deactivated structure acts no more: no page of its space, no mandate made or used.
    if !active {
        return Err(PageError::forbidden());
    }
    Ok(Scope {
        me,
        structure: StructureInfo {
            id: structure,
            tenant_id,
            name,
            commune,
            address,
            demarches,
            guardian_service,
        },
        tenant,
    })
}

impl<'a> FromRequest<'a> for Scope {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let me = Professional::from_request(req, body).await?;
        Ok(resolve(req, me).await?)
    }
}

impl<'a> FromRequest<'a> for VerifiedScope {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let RecentlyVerified(me) = RecentlyVerified::from_request(req, body).await?;
        Ok(VerifiedScope(resolve(req, me).await?))
    }
}

impl Scope {
    /// Asks the guard for `action` in the current structure: the proof the territory's data
    /// functions take.
    pub async fn authorize(
        &self,
        platform: &Platform,
        action: policies::Action,
    ) -> PageResult<super::guard::Authorized> {
        super::guard::require_in_current_structure(platform, &self.me, action).await
    }
}
