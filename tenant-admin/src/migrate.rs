//! `tenant-admin migrate`: the platform schema, then every département schema with a progress
//! bar. A schema that fails is reported (and left unserved); the exit code says so.

use std::time::Instant;

use clap::Args;
use foundation::tenancy::DepartementCode;
use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Cli, connect};

#[derive(Args)]
pub struct MigrateArgs {
    /// Ne migrer que ces départements (codes INSEE) ; par défaut les 101.
    #[arg(long = "only", value_name = "CODE")]
    only: Vec<String>,
    /// Schémas migrés en parallèle.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

pub async fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<()> {
    let departements: Vec<DepartementCode> = if args.only.is_empty() {
        DepartementCode::all().collect()
    } else {
        args.only
            .iter()
            .map(|c| DepartementCode::parse(c))
            .collect::<Result<_, _>>()?
    };
    let pool = connect(cli).await?;
    let started = Instant::now();
    let applied = migrate::migrate_platform(&pool, &cli.app_role).await?;
    println!("schéma national : {applied} migration(s) appliquée(s)");
    let bar = ProgressBar::new(departements.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} schémas départementaux {msg}",
    )?);
    let reports = migrate::migrate_departements(
        &pool,
        &cli.app_role,
        &crate::tenant_login()?,
        departements,
        &DEPARTEMENT_MIGRATIONS,
        args.concurrency,
        |report| {
            bar.set_message(report.departement.to_string());
            bar.inc(1);
        },
    )
    .await?;
    bar.finish_and_clear();
    let failed: Vec<_> = reports.iter().filter(|r| r.result.is_err()).collect();
    let applied: usize = reports.iter().map(|r| r.applied).sum();
    println!(
        "{} schémas départementaux à la version {} ({applied} migration(s) appliquée(s)) en {:.1} s",
        reports.len() - failed.len(),
        DEPARTEMENT_MIGRATIONS.latest_version(),
        started.elapsed().as_secs_f64()
    );
    for report in &failed {
        if let Err(e) = &report.result {
            eprintln!("échec du schéma {} : {e}", report.departement.schema_name());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} schéma(s) en échec, non servis tant qu'ils ne sont pas migrés",
            failed.len()
        )
    }
}
