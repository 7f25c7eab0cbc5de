//! `tenant-admin journal`: verify a territory's journal (reports the first broken entry), seal
//! it with a checkpoint, or export it for an auditor (JSON lines, with the checkpoints and the
//! public key that checks them).

use clap::Subcommand;
use foundation::journal::{self, CheckpointKey, CheckpointPublicKey};
use foundation::tenancy::{DepartementCode, Tenancy};
use secrecy::ExposeSecret;
use sqlx::PgPool;

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Recalcule toute la chaîne et vérifie les points de scellement signés.
    Verify {
        #[arg(long)]
        departement: String,
        /// Clé publique de scellement (hexadécimal) ; par défaut celle de la configuration.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Chaîne les entrées en attente puis scelle la chaîne (point de scellement signé).
    Checkpoint {
        #[arg(long)]
        departement: String,
    },
    /// Exporte le journal pour un auditeur (une ligne JSON par entrée).
    Export {
        #[arg(long)]
        departement: String,
        /// Fichier de sortie (écrasé s'il existe).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Affiche la clé publique de scellement à remettre aux auditeurs.
    PublicKey,
}

fn key() -> anyhow::Result<CheckpointKey> {
    let settings = foundation::config::Settings::load()?;
    CheckpointKey::from_base64(settings.security.journal_signing_key.expose_secret())
}

pub async fn run(pool: &PgPool, command: &JournalCommand) -> anyhow::Result<()> {
    let tenancy = Tenancy::load(pool.clone()).await?;
    let context = |d: &str| {
        let tenancy = tenancy.clone();
        let d = d.to_owned();
        async move {
            let code = DepartementCode::parse(&d)?;
            anyhow::Ok(tenancy.context(code).await?)
        }
    };
    match command {
        JournalCommand::Verify {
            departement,
            public_key,
        } => {
            let public = match public_key {
                Some(hex) => CheckpointPublicKey::from_hex(hex)?,
                None => key()?.public(),
            };
            let tenant = context(departement).await?;
            let mut tx = tenant.begin().await?;
            let started = std::time::Instant::now();
            let v = journal::verify(&mut tx, Some(&public)).await?;
            tx.commit().await?;
            match (&v.first_broken, &v.problem) {
                (None, None) => println!(
                    "journal intact : {} entrées, {} point(s) de scellement vérifiés, {} en attente de chaînage ({:.2} s)",
                    v.checked,
                    v.checkpoints_checked,
                    v.pending,
                    started.elapsed().as_secs_f64()
                ),
                _ => anyhow::bail!(
                    "journal altéré à partir de l'entrée n° {} : {} ({} entrées intactes avant)",
                    v.first_broken.unwrap_or_default(),
                    v.problem.clone().unwrap_or_default(),
                    v.checked
                ),
            }
        }
        JournalCommand::Checkpoint { departement } => {
            let tenant = context(departement).await?;
            let chained = journal::seal_all(&tenant).await?;
            if chained > 0 {
                println!("{chained} entrée(s) chaînée(s)");
            }
            let mut tx = tenant.begin().await?;
            let sealed = journal::checkpoint(&mut tx, &key()?).await?;
            tx.commit().await?;
            match sealed {
                Some(seq) => println!("journal scellé jusqu'à l'entrée n° {seq}"),
                None => println!("rien à sceller : aucune entrée depuis le dernier point"),
            }
        }
        JournalCommand::Export { departement, out } => {
            let tenant = context(departement).await?;
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            let mut tx = tenant.begin().await?;
            let lines = journal::export(&mut tx, &key()?.public(), None, &mut file).await?;
            tx.commit().await?;
            std::io::Write::flush(&mut file)?;
            println!("{lines} entrées exportées dans {}", out.display());
        }
        JournalCommand::PublicKey => {
            let public = key()?.public();
            println!("{}\t(identifiant {})", public.to_hex(), public.key_id());
        }
    }
    Ok(())
}
