//! `tenant-admin pix import --file résultats.csv`: imports Pix certification results as a
//! stream, with a progress bar, then prints the line report (what the national page shows).

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

#[derive(Subcommand)]
pub enum PixCommand {
    /// Importe un fichier CSV de résultats Pix (en-tête « identifiant;score;date ») ; rapport
    /// ligne à ligne. Un en-tête invalide refuse tout le fichier.
    Import {
        #[arg(long)]
        file: std::path::PathBuf,
        /// N'affiche que le bilan et les lignes non importées.
        #[arg(long)]
        quiet: bool,
    },
}

pub async fn run(pool: &PgPool, command: &PixCommand) -> anyhow::Result<()> {
    let PixCommand::Import { file, quiet } = command;
    let open = || {
        std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("fichier illisible {} ({e})", file.display()))
    };
    // A first pass counts the lines for the progress bar (the import itself streams).
    let total = std::io::BufRead::lines(std::io::BufReader::new(open()?)).count() as u64;
    let bar = ProgressBar::new(total.saturating_sub(1));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lignes ({eta})")
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let report = habilitation_desk::pix::import(pool, open()?, None, |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    let report = match report {
        Ok(r) => r,
        Err(habilitation_desk::pix::ImportError::Database(e)) => return Err(e.into()),
        Err(e) => anyhow::bail!("{e}"),
    };
    for line in &report.lines {
        let imported = matches!(line.outcome, habilitation_desk::pix::Outcome::Imported(_));
        if !(*quiet && imported) {
            println!(
                "ligne {} ({}) : {}",
                line.line,
                line.identifier,
                line.outcome.label()
            );
        }
    }
    println!(
        "{} ligne(s) importée(s), {} ligne(s) non importée(s)",
        report.imported, report.refused
    );
    Ok(())
}
