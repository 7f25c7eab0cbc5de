//! `tenant-admin measures import`: a guardian service's CSV of measures imported from the
//! command line, with a progress bar and the line report — the same reading and the same
//! transaction as the page (`mandate_service::judicial`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Subcommand;
use foundation::ids::{ProfessionalId, StructureId};
use foundation::tenancy::DepartementCode;
use indicatif::{ProgressBar, ProgressStyle};
use mandate_service::judicial::csv;
use mandate_service::judicial::import::{self, Context, Outcome, Report};
use sqlx::PgPool;

#[derive(Subcommand)]
pub enum MeasuresCommand {
    /// Importe le fichier CSV des mesures d'un service mandataire (colonnes : docs/MEASURES.md).
    Import {
        #[arg(long)]
        departement: String,
        #[arg(long)]
        structure: StructureId,
        /// L'adresse du référent ou de l'aidant du service au nom duquel l'import est journalisé.
        #[arg(long)]
        par: String,
        /// Le fichier CSV.
        fichier: PathBuf,
    },
}

pub async fn run(pool: &PgPool, command: &MeasuresCommand) -> anyhow::Result<()> {
    let MeasuresCommand::Import {
        departement,
        structure,
        par,
        fichier,
    } = command;
    let code = DepartementCode::parse(departement)?;
    let tenancy = crate::tenancy(pool).await?;
    let territory = tenancy.unguarded(code).await?;
    let bytes = std::fs::read(fichier)
        .map_err(|e| anyhow::anyhow!("fichier illisible ({}) : {e}", fichier.display()))?;
    let report = import_file(pool, &territory, *structure, par, &bytes, true).await?;
    println!(
        "{} importée(s), {} mise(s) à jour, {} déjà à jour, {} refusée(s)",
        report.imported, report.updated, report.unchanged, report.refused
    );
    for l in report
        .lines
        .iter()
        .filter(|l| l.outcome == Outcome::Refused)
    {
        println!(
            "ligne {} (dossier {}) refusée : {}",
            l.line, l.case_number, l.reason
        );
    }
    Ok(())
}

/// Reads and applies a file for a structure in a territory (the demo uses it too).
pub async fn import_file(
    pool: &PgPool,
    territory: &foundation::tenancy::Territory,
    structure: StructureId,
    by_email: &str,
    bytes: &[u8],
    show_progress: bool,
) -> anyhow::Result<Report> {
    let mut tx = territory.begin().await?;
    let found: Option<(bool, Vec<String>)> =
        sqlx::query_as("SELECT guardian_service, demarches FROM structures WHERE id = $1")
            .bind(structure)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    let Some((guardian, demarches)) = found else {
        anyhow::bail!("structure inconnue dans ce département : {structure}");
    };
    if !guardian {
        anyhow::bail!(
            "cette structure n'est pas un service mandataire : `tenant-admin structures guardian` d'abord"
        );
    }
    let delegates = import::delegates(pool, structure).await?;
    let Some(by) = delegates.get(&by_email.trim().to_lowercase()).copied() else {
        anyhow::bail!("« {by_email} » n'est ni aidant ni référent actif de cette structure");
    };
    let by: ProfessionalId = by;
    let today = foundation::paris::today();
    let lines = csv::decode(bytes)
        .and_then(|text| csv::parse(text, today))
        .map_err(|e| anyhow::anyhow!("fichier refusé, rien n'a été importé. {e}"))?;
    let total = lines.len() as u64;
    let progress = Arc::new(AtomicUsize::new(0));
    let bar = if show_progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lignes ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ctx = Context {
        platform: pool,
        territory,
        structure,
        demarches: &demarches,
        by,
    };
    let work = import::apply(&ctx, bytes, lines, &progress);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let report = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => bar.set_position(progress.load(Ordering::Relaxed) as u64),
        }
    };
    bar.set_position(progress.load(Ordering::Relaxed) as u64);
    bar.finish();
    Ok(report?)
}
