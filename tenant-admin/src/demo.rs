//! `tenant-admin demo`: the demo territory (Gironde), its council, a commune tenant and a few
//! structures, so a newcomer has something to look at after `infra/run up`. Idempotent.

use foundation::tenancy::tenants::{self, TenantError, TenantKind};
use foundation::tenancy::{CommuneCode, DepartementCode, Tenancy};
use habilitation_desk::structures::{NewStructure, create_structure};
use sqlx::PgPool;
use uuid::Uuid;

pub const DEMO_DEPARTEMENT: &str = "33";

async fn ensure_tenant(pool: &PgPool, kind: TenantKind, name: &str) -> anyhow::Result<Uuid> {
    match tenants::create_tenant(pool, &kind, name).await {
        Ok(t) => Ok(t.id),
        Err(TenantError::Duplicate(_)) => {
            let all = tenants::list_tenants(pool).await?;
            let code = match &kind {
                TenantKind::Departement(d) => d.to_string(),
                TenantKind::Commune(c) => c.to_string(),
            };
            all.into_iter()
                .find(|t| t.commune_code.as_deref().unwrap_or(&t.departement_code) == code)
                .map(|t| t.id)
                .ok_or_else(|| anyhow::anyhow!("tenant de démonstration introuvable"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn run(pool: &PgPool, app_role: &str) -> anyhow::Result<()> {
    let gironde = DepartementCode::parse(DEMO_DEPARTEMENT)?;
    foundation::tenancy::migrate::migrate_platform(pool, app_role).await?;
    let report = foundation::tenancy::migrate::provision_departement(
        pool,
        app_role,
        gironde,
        &foundation::tenancy::migrate::DEPARTEMENT_MIGRATIONS,
    )
    .await?;
    report
        .result
        .map_err(|e| anyhow::anyhow!("schéma de la Gironde : {e}"))?;

    let council = ensure_tenant(
        pool,
        TenantKind::Departement(gironde),
        "Conseil départemental de la Gironde",
    )
    .await?;
    let bordeaux = CommuneCode::parse("33063")?;
    let city = ensure_tenant(
        pool,
        TenantKind::Commune(bordeaux.clone()),
        "Ville de Bordeaux",
    )
    .await?;

    let tenancy = Tenancy::load(pool.clone()).await?;
    let tenant = tenancy.context(gironde).await?;
    let structures = [
        (
            city,
            "France Services Bordeaux Bastide",
            "france_services",
            "33063",
            "2 rue de la Benauge",
            true,
        ),
        (
            city,
            "CCAS de Bordeaux",
            "ccas",
            "33063",
            "4 rue Claude Bonnier",
            false,
        ),
        (
            council,
            "Maison du Département des Solidarités de Mérignac",
            "departement",
            "33281",
            "12 avenue de la Somme",
            false,
        ),
        (
            council,
            "Mairie de Pessac",
            "mairie",
            "33318",
            "Place de la Cinquième République",
            false,
        ),
    ];
    for (tenant_id, name, kind, commune, address, france_services) in structures {
        create_structure(
            &tenant,
            &NewStructure {
                tenant_id,
                name: name.into(),
                kind: kind.into(),
                commune: CommuneCode::parse(commune)?,
                address: address.into(),
                france_services,
            },
        )
        .await?;
    }
    println!(
        "territoire de démonstration prêt : Gironde (33), 2 tenants, {} structures",
        structures.len()
    );
    Ok(())
}
