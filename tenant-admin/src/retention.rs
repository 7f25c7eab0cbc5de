//! `tenant-admin retention` and `tenant-admin usagers erase`: what the retention job will do in
//! each territory (before it runs), running it now, a tenant's periods, and the erasure of a
//! person at their request. The same functions as the scheduled job
//! (`mandate_service::retention`).

use clap::Subcommand;
use foundation::ids::{TenantId, UsagerId};
use foundation::tenancy::{DepartementCode, Tenancy};
use mandate_service::retention::{self, Context};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Ce que la tâche de conservation ferait maintenant, territoire par territoire (rien n'est
    /// modifié).
    Plan {
        /// Un département (tous ceux servis sinon).
        #[arg(long)]
        departement: Option<String>,
    },
    /// Archive, purge et efface maintenant ce qui est dû (comme la tâche quotidienne).
    Run {
        #[arg(long)]
        departement: Option<String>,
    },
    /// Durées de conservation des mandats d'un tenant : archivage puis purge, en années.
    Set {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        archive_years: i32,
        #[arg(long)]
        purge_years: i32,
    },
}

#[derive(Subcommand)]
pub enum UsagersCommand {
    /// Efface l'identité d'une personne à sa demande (aucun mandat en cours) ; le journal
    /// garde ses entrées, qui ne portent qu'un identifiant.
    Erase {
        #[arg(long)]
        departement: String,
        #[arg(long)]
        usager: UsagerId,
    },
}

fn departements(tenancy: &Tenancy, only: Option<&str>) -> anyhow::Result<Vec<DepartementCode>> {
    Ok(match only {
        Some(code) => vec![DepartementCode::parse(code)?],
        None => tenancy.served(),
    })
}

pub async fn run(pool: &PgPool, command: &RetentionCommand) -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let key = settings.security.idp_subject_key.expose_secret();
    let cx = Context {
        pool,
        subject_key: key,
    };
    let tenancy = crate::tenancy(pool).await?;
    let now = OffsetDateTime::now_utc();
    match command {
        RetentionCommand::Plan { departement } => {
            for code in departements(&tenancy, departement.as_deref())? {
                let territory = tenancy.unguarded(code).await?;
                let p = retention::plan(&cx, &territory, now).await?;
                println!(
                    "{} : {} mandat(s) à archiver, {} à purger, {} personne(s) à effacer, {} document(s) à supprimer du stockage",
                    code.as_str(),
                    p.to_archive,
                    p.to_purge,
                    p.usagers_to_erase,
                    p.documents_due
                );
            }
        }
        RetentionCommand::Run { departement } => {
            for code in departements(&tenancy, departement.as_deref())? {
                let territory = tenancy.unguarded(code).await?;
                let d = retention::run(&cx, &territory, now).await?;
                println!(
                    "{} : {} mandat(s) archivé(s), {} purgé(s), {} personne(s) effacée(s)",
                    code.as_str(),
                    d.archived,
                    d.purged,
                    d.erased
                );
            }
        }
        RetentionCommand::Set {
            tenant,
            archive_years,
            purge_years,
        } => {
            if !(1..=10).contains(archive_years) || !(1..=30).contains(purge_years) {
                anyhow::bail!(
                    "durées refusées : l'archivage dure de 1 à 10 ans, la purge vient de 1 à 30 ans après"
                );
            }
            let updated = sqlx::query(
                "UPDATE platform.tenants SET mandate_archive_years = $2, mandate_purge_years = $3 WHERE id = $1",
            )
            .bind(tenant)
            .bind(archive_years)
            .bind(purge_years)
            .execute(pool)
            .await?
            .rows_affected();
            if updated == 0 {
                anyhow::bail!("tenant inconnu : {tenant}");
            }
            println!(
                "tenant {tenant} : mandats archivés {archive_years} an(s) après leur fin, purgés {purge_years} an(s) plus tard"
            );
        }
    }
    Ok(())
}

pub async fn usagers(pool: &PgPool, command: &UsagersCommand) -> anyhow::Result<()> {
    let settings = foundation::config::Settings::load()?;
    let key = settings.security.idp_subject_key.expose_secret();
    let cx = Context {
        pool,
        subject_key: key,
    };
    let tenancy = crate::tenancy(pool).await?;
    match command {
        UsagersCommand::Erase {
            departement,
            usager,
        } => {
            let territory = tenancy
                .unguarded(DepartementCode::parse(departement)?)
                .await?;
            retention::erase(&cx, &territory, *usager, OffsetDateTime::now_utc())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("identité de la personne {usager} effacée ; le journal est inchangé");
        }
    }
    Ok(())
}
