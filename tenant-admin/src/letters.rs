//! `tenant-admin letters`: the printable letter batches of a territory — make the batches now
//! (the mailer does it daily), list them, and write one batch's PDF to a file for printing.

use clap::Subcommand;
use foundation::tenancy::DepartementCode;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum LettersCommand {
    /// Rassemble maintenant les courriers en attente, un lot PDF par structure.
    Batch {
        #[arg(long)]
        departement: String,
    },
    /// Liste les lots de courriers du territoire, du plus récent au plus ancien.
    List {
        #[arg(long)]
        departement: String,
    },
    /// Écrit le PDF d'un lot dans un fichier, pour l'imprimer.
    Download {
        #[arg(long)]
        departement: String,
        #[arg(long)]
        batch: Uuid,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

pub async fn run(pool: &PgPool, command: &LettersCommand) -> anyhow::Result<()> {
    let tenancy = crate::tenancy(pool).await?;
    let settings = foundation::config::Settings::load()?;
    let vault = document_vault_bridge::vault_from_settings(&settings).await?;
    match command {
        LettersCommand::Batch { departement } => {
            let departement = DepartementCode::parse(departement)?;
            let batches =
                notification_mailer::letters::batch_territory(&tenancy, &vault, departement)
                    .await?;
            for b in &batches {
                println!(
                    "lot {}\tstructure {}\t{} courrier(s)",
                    b.id, b.structure_id, b.letters
                );
            }
            println!("{} lot(s) préparé(s)", batches.len());
        }
        LettersCommand::List { departement } => {
            let ctx = tenancy
                .unguarded(DepartementCode::parse(departement)?)
                .await?;
            let mut tx = ctx.begin().await?;
            let rows: Vec<(Uuid, String, i32, time::OffsetDateTime)> = sqlx::query_as(
                "SELECT b.id, s.name, b.letter_count, b.created_at FROM letter_batches b
                 JOIN structures s ON s.id = b.structure_id ORDER BY b.created_at DESC",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for (id, structure, count, at) in rows {
                println!("{id}\t{at}\t{count} courrier(s)\t{structure}");
            }
        }
        LettersCommand::Download {
            departement,
            batch,
            out,
        } => {
            let ctx = tenancy
                .unguarded(DepartementCode::parse(departement)?)
                .await?;
            let mut tx = ctx.begin().await?;
            let document: Option<Uuid> =
                sqlx::query_scalar("SELECT document_id FROM letter_batches WHERE id = $1")
                    .bind(batch)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            let document = document.ok_or_else(|| anyhow::anyhow!("lot inconnu {batch}"))?;
            let mut conn = pool.acquire().await?;
            let (_, pdf) = vault
                .get(&ctx, &mut conn, document)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(out, &pdf)
                .map_err(|e| anyhow::anyhow!("écriture impossible de {} ({e})", out.display()))?;
            println!(
                "lot {batch} écrit dans {} ({} octets)",
                out.display(),
                pdf.len()
            );
        }
    }
    Ok(())
}
