//! `tenant-admin professionals` and `tenant-admin structures`: accounts and structures, created
//! by operators until the habilitation desk's request flow exists.

use clap::{Args, Subcommand};
use foundation::ids::{ProfessionalId, StructureId, TenantId};
use foundation::tenancy::{CommuneCode, DepartementCode};
use habilitation_desk::accounts;
use habilitation_desk::structures::{NewStructure, create_structure};
use policies::{Domain, Role};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum ProfessionalsCommand {
    /// Ouvre un compte et envoie le lien d'activation (second facteur) par e-mail.
    Create(CreateProfessional),
    /// Désactive un compte : toutes ses sessions se terminent immédiatement.
    Deactivate {
        #[arg(long)]
        email: String,
        /// Motif, inscrit au journal.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
pub struct CreateProfessional {
    #[arg(long)]
    email: String,
    /// Prénom et nom affichés.
    #[arg(long)]
    name: String,
    /// Rôle : aidant, referent, territory_admin, national_admin, trainer, auditor.
    #[arg(long)]
    role: String,
    /// Structure (identifiant) pour aidant et referent.
    #[arg(long)]
    structure: Option<StructureId>,
    /// Département de la structure.
    #[arg(long)]
    departement: Option<String>,
    /// Tenant (identifiant) pour territory_admin et auditor.
    #[arg(long)]
    tenant: Option<TenantId>,
    /// Organisme de formation (identifiant) pour trainer.
    #[arg(long)]
    organisation: Option<Uuid>,
    /// Adresse publique de la plateforme, pour le lien envoyé.
    #[arg(
        long,
        env = "AC_HTTP__PUBLIC_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    public_url: String,
}

/// The role and its domain, checked before anything is written.
fn role_and_domain(args: &CreateProfessional) -> anyhow::Result<(Role, Domain, Option<String>)> {
    let role = Role::parse(&args.role).ok_or_else(|| {
        anyhow::anyhow!("rôle inconnu « {} » : aidant, referent, territory_admin, national_admin, trainer, auditor ou reviewer", args.role)
    })?;
    let missing = |what: &str| anyhow::anyhow!("le rôle {} demande --{what}", args.role);
    Ok(match role {
        Role::Aidant | Role::Referent => {
            let structure = args.structure.ok_or_else(|| missing("structure"))?;
            let departement = DepartementCode::parse(
                args.departement
                    .as_deref()
                    .ok_or_else(|| missing("departement"))?,
            )?;
            (role, structure.domain(), Some(departement.to_string()))
        }
        Role::TerritoryAdmin | Role::Auditor | Role::Reviewer => (
            role,
            Domain::Tenant(args.tenant.ok_or_else(|| missing("tenant"))?.as_uuid()),
            None,
        ),
        Role::Trainer => (
            role,
            Domain::Organisation(args.organisation.ok_or_else(|| missing("organisation"))?),
            None,
        ),
        Role::NationalAdmin => (role, Domain::National, None),
    })
}

pub async fn run(pool: &PgPool, command: &ProfessionalsCommand) -> anyhow::Result<()> {
    match command {
        ProfessionalsCommand::Create(args) => {
            let (role, domain, departement) = role_and_domain(args)?;
            if let (Domain::Structure(id), Some(code)) = (domain, departement.as_deref()) {
                let tenancy = crate::tenancy(pool).await?;
                let mut tx = tenancy
                    .unguarded(DepartementCode::parse(code)?)
                    .await?
                    .begin()
                    .await?;
                let exists: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM structures WHERE id = $1)")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                anyhow::ensure!(exists, "aucune structure {id} dans le département {code}");
            }
            let mut tx = pool.begin().await?;
            let id = accounts::create_professional(&mut tx, &args.email, &args.name).await?;
            accounts::grant_role(&mut tx, id, role, domain, departement.as_deref()).await?;
            // The link is sealed in the outbox with the platform's key: the worker opens it.
            let settings = foundation::config::Settings::load()?;
            let cipher = foundation::auth::secrets::SeedCipher::new(
                &settings.security.totp_key,
                settings.security.totp_key_version,
            )?;
            accounts::send_enrolment_link(&mut tx, &cipher, id, &args.public_url).await?;
            tx.commit().await?;
            println!(
                "compte {id} ouvert ; lien d'activation envoyé à {}",
                args.email.trim().to_lowercase()
            );
        }
        ProfessionalsCommand::Deactivate { email, reason } => {
            let email = accounts::normalize_email(email)?;
            let mut tx = pool.begin().await?;
            let id: Option<ProfessionalId> = sqlx::query_scalar(
                "SELECT id FROM platform.professionals WHERE email = $1 AND active",
            )
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
            let id = id.ok_or_else(|| anyhow::anyhow!("aucun compte actif pour {email}"))?;
            accounts::deactivate(&mut tx, id, None, reason).await?;
            tx.commit().await?;
            println!("compte {id} désactivé");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum StructuresCommand {
    /// Crée une structure dans le schéma de son département.
    Create {
        /// Tenant de rattachement (identifiant).
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        name: String,

        /// Type : mairie, ccas, france_services, departement, association…
        #[arg(long)]
        kind: String,
        /// Code INSEE de la commune.
        #[arg(long)]
        commune: String,
        #[arg(long, default_value = "")]
        address: String,
        #[arg(long)]
        france_services: bool,
    },
    /// Marque une structure comme service mandataire judiciaire (mesures de protection), ou
    /// retire la marque avec --non.
    Guardian {
        #[arg(long)]
        departement: String,
        #[arg(long)]
        structure: foundation::ids::StructureId,
        #[arg(long)]
        non: bool,
    },
}

pub async fn run_structures(pool: &PgPool, command: &StructuresCommand) -> anyhow::Result<()> {
    let (tenant, name, kind, commune, address, france_services) = match command {
        StructuresCommand::Create {
            tenant,
            name,
            kind,
            commune,
            address,
            france_services,
        } => (tenant, name, kind, commune, address, france_services),
        StructuresCommand::Guardian {
            departement,
            structure,
            non,
        } => return set_guardian(pool, departement, *structure, !*non).await,
    };
    let commune = CommuneCode::parse(commune)?;
    let tenant_departement: Option<String> =
        sqlx::query_scalar("SELECT departement_code FROM platform.tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    let tenant_departement =
        tenant_departement.ok_or_else(|| anyhow::anyhow!("tenant inconnu {tenant}"))?;
    anyhow::ensure!(
        tenant_departement == commune.departement().as_str(),
        "la commune {commune} n'est pas dans le département du tenant ({tenant_departement})"
    );
    let tenancy = crate::tenancy(pool).await?;
    let ctx = tenancy.unguarded(commune.departement()).await?;
    let new = NewStructure {
        tenant_id: *tenant,
        name: name.trim().to_owned(),
        kind: kind.trim().to_owned(),
        commune,
        address: address.trim().to_owned(),
        france_services: *france_services,
    };
    let id = create_structure(&ctx, &new).await?;
    println!("structure créée : {id}");
    Ok(())
}

/// Flags (or unflags) a structure as a guardian service, which records judicial measures;
/// journaled in its territory.
async fn set_guardian(
    pool: &PgPool,
    departement: &str,
    structure: foundation::ids::StructureId,
    on: bool,
) -> anyhow::Result<()> {
    let tenancy = crate::tenancy(pool).await?;
    let ctx = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(departement)?)
        .await?;
    let mut tx = ctx.begin().await?;
    let updated = sqlx::query("UPDATE structures SET guardian_service = $2 WHERE id = $1")
        .bind(structure)
        .bind(on)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    anyhow::ensure!(
        updated == 1,
        "aucune structure {structure} dans le département {departement}"
    );
    foundation::journal::append(
        &mut tx,
        foundation::journal::NewEntry::new(foundation::journal::Event::StructureDetailsUpdated)
            .structure(structure)
            .details(serde_json::json!({ "guardian_service": on })),
    )
    .await?;
    tx.commit().await?;
    println!(
        "structure {structure} : {}",
        if on {
            "service mandataire judiciaire (mesures de protection)"
        } else {
            "n'enregistre plus de mesures de protection"
        }
    );
    Ok(())
}
