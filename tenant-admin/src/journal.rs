//! `tenant-admin journal`: verify a territory's journal or the security journal (reports the
//! first broken entry, and refuses a journal whose auditor's checkpoints are gone or whose
//! newest checkpoint is too old), seal it with a checkpoint, or export it for an auditor (JSON
//! lines, with the checkpoints and the public key that checks them).

use clap::{Args, Subcommand};
use foundation::journal::{self, Anchor, AnchorPoint, CheckpointKey, CheckpointPublicKey};
use foundation::tenancy::DepartementCode;
use secrecy::ExposeSecret;
use sqlx::PgPool;

/// Which journal: one territory's, or the national security journal (none with `--file`).
#[derive(Args)]
#[group(required = false, multiple = false)]
pub struct Which {
    /// Journal du territoire (code INSEE du département).
    #[arg(long)]
    departement: Option<String>,
    /// Journal de sécurité national (connexions, facteurs, comptes).
    #[arg(long)]
    securite: bool,
}

#[derive(Subcommand)]
pub enum JournalCommand {
    /// Recalcule toute la chaîne et vérifie les points de scellement signés, ceux de
    /// l'auditeur et l'âge du dernier.
    Verify {
        #[command(flatten)]
        which: Which,
        /// Vérifie hors ligne un export (`journal export`), sans base de données : toute la
        /// chaîne et chaque point de scellement, avec la clé publique donnée (obligatoire,
        /// jamais lue dans le fichier).
        #[arg(long, value_name = "EXPORT", conflicts_with_all = ["departement", "securite", "anchor", "checkpoint_seq"])]
        file: Option<std::path::PathBuf>,
        /// Clé publique de scellement (hexadécimal) ; par défaut celle de la configuration.
        #[arg(long)]
        public_key: Option<String>,
        /// Export remis à l'auditeur (`journal export`) : chacun de ses points de scellement
        /// doit encore figurer dans le journal.
        #[arg(long, value_name = "FICHIER")]
        anchor: Option<std::path::PathBuf>,
        /// Dernier point de scellement connu de l'auditeur : numéro d'entrée…
        #[arg(long, requires_all = ["checkpoint_hash", "checkpoint_at"])]
        checkpoint_seq: Option<i64>,
        /// … son empreinte (hexadécimal)…
        #[arg(long, requires = "checkpoint_seq")]
        checkpoint_hash: Option<String>,
        /// … et sa date (RFC 3339, telle qu'exportée, par exemple 2026-11-30T02:15:16.123456Z).
        #[arg(long, requires = "checkpoint_seq")]
        checkpoint_at: Option<String>,
        /// Âge maximal du dernier point de scellement : 30m, 24h, 7d… (le travail planifié
        /// en signe un toutes les 10 minutes si le journal a grandi, toutes les 6 h sinon).
        #[arg(long, default_value = "24h", value_parser = parse_age)]
        max_age: time::Duration,
    },
    /// Chaîne les entrées en attente puis scelle la chaîne (point de scellement signé).
    Checkpoint {
        #[command(flatten)]
        which: Which,
    },
    /// Exporte le journal pour un auditeur (une ligne JSON par entrée et par point de
    /// scellement) : l'auditeur le garde et le redonne à `journal verify --anchor`.
    Export {
        #[command(flatten)]
        which: Which,
        /// Fichier de sortie (écrasé s'il existe).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Affiche la clé publique de scellement à remettre aux auditeurs.
    PublicKey,
}

/// `30s`, `90m`, `24h`, `7d`.
fn parse_age(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let bad = || format!("durée invalide « {text} » : un nombre suivi de s, m, h ou d (24h, 7d)");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n <= 0 {
        return Err(bad());
    }
    match unit {
        "s" => Ok(time::Duration::seconds(n)),
        "m" => Ok(time::Duration::minutes(n)),
        "h" => Ok(time::Duration::hours(n)),
        "d" => Ok(time::Duration::days(n)),
        _ => Err(bad()),
    }
}

pub(crate) fn key() -> anyhow::Result<CheckpointKey> {
    let settings = foundation::config::Settings::load()?;
    CheckpointKey::from_base64(settings.security.journal_signing_key.expose_secret())
}

/// The name of the journal in exports and signatures, and its territory if it is one.
fn target(which: &Which) -> anyhow::Result<(String, Option<DepartementCode>)> {
    match &which.departement {
        Some(code) => {
            let code = DepartementCode::parse(code)?;
            Ok((code.schema_name(), Some(code)))
        }
        None if which.securite => Ok((foundation::auth::journal::CHECKPOINT_NAME.to_owned(), None)),
        None => anyhow::bail!(
            "quel journal ? indiquez --departement CODE ou --securite (ou, pour vérifier un export hors ligne, --file EXPORT --public-key CLÉ)"
        ),
    }
}

fn anchor(
    name: &str,
    file: Option<&std::path::Path>,
    seq: Option<i64>,
    hash: Option<&str>,
    at: Option<&str>,
    max_age: time::Duration,
) -> anyhow::Result<Anchor> {
    let mut points = Vec::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            anyhow::anyhow!("export de l'auditeur illisible ({}) : {e}", file.display())
        })?;
        points.extend(Anchor::from_export(&text, name)?);
    }
    if let (Some(seq), Some(hash), Some(at)) = (seq, hash, at) {
        points.push(AnchorPoint {
            seq,
            hash: hex::decode(hash.trim())
                .map_err(|_| anyhow::anyhow!("--checkpoint-hash : hexadécimal attendu"))?,
            at: time::OffsetDateTime::parse(
                at.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| {
                anyhow::anyhow!("--checkpoint-at : date RFC 3339 attendue, telle qu'exportée")
            })?,
            signature: None,
        });
    }
    Ok(Anchor {
        points,
        max_age: Some(max_age),
    })
}

/// The offline verification of an export, if that is what is asked (no database needed).
pub fn offline(command: &JournalCommand) -> Option<anyhow::Result<()>> {
    let JournalCommand::Verify {
        file: Some(file),
        public_key,
        ..
    } = command
    else {
        return None;
    };
    Some(verify_file(file, public_key.as_deref()))
}

fn verify_file(file: &std::path::Path, public_key: Option<&str>) -> anyhow::Result<()> {
    let public = CheckpointPublicKey::from_hex(public_key.ok_or_else(|| {
        anyhow::anyhow!(
            "--public-key est obligatoire hors ligne : la clé publique vous est remise à part, elle n'est jamais lue dans l'export"
        )
    })?)?;
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{} : {e}", file.display())))
    };
    let total = std::io::BufRead::lines(open()?).count() as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entrées ({eta})")
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let started = std::time::Instant::now();
    let found = journal::offline::verify_file(open, &public, |n| bar.set_position(n));
    bar.finish_and_clear();
    let found = found?;
    let v = &found.verification;
    match (&v.first_broken, &v.problem) {
        (None, None) => {
            println!(
                "export intact ({}) : {} entrées, {} point(s) de scellement vérifiés avec la clé {} ({:.2} s)",
                found.schema,
                v.checked,
                v.checkpoints_checked,
                public.key_id(),
                started.elapsed().as_secs_f64()
            );
            if let Some(at) = found.newest_checkpoint {
                println!(
                    "dernier point de scellement : {}",
                    foundation::paris::date_time(at)
                );
            }
            if found.redacted > 0 {
                println!(
                    "{} entrée(s) masquée(s) (d'autres collectivités) : leur chaînage est vérifié, pas leur contenu",
                    found.redacted
                );
            }
            if found.unsealed_tail > 0 {
                println!(
                    "{} entrée(s) après le dernier point de scellement : chaînées, mais aucune signature ne les couvre encore",
                    found.unsealed_tail
                );
            }
            Ok(())
        }
        (Some(seq), problem) => anyhow::bail!(
            "export altéré à partir de l'entrée n° {seq} : {} ({} entrées intactes avant)",
            problem.clone().unwrap_or_default(),
            v.checked
        ),
        (None, problem) => {
            anyhow::bail!("export refusé : {}", problem.clone().unwrap_or_default())
        }
    }
}

pub async fn run(pool: &PgPool, command: &JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Verify {
            which,
            file: _,
            public_key,
            anchor: file,
            checkpoint_seq,
            checkpoint_hash,
            checkpoint_at,
            max_age,
        } => {
            let (name, departement) = target(which)?;
            let public = match public_key {
                Some(hex) => CheckpointPublicKey::from_hex(hex)?,
                None => key()?.public(),
            };
            let anchor = anchor(
                &name,
                file.as_deref(),
                *checkpoint_seq,
                checkpoint_hash.as_deref(),
                checkpoint_at.as_deref(),
                *max_age,
            )?;
            let started = std::time::Instant::now();
            let v = match departement {
                Some(code) => {
                    let tenant = crate::tenancy(pool).await?.unguarded(code).await?;
                    let mut tx = tenant.begin().await?;
                    let v = journal::verify(&mut tx, Some(&public), &anchor).await?;
                    tx.commit().await?;
                    v
                }
                None => {
                    let mut conn = pool.acquire().await?;
                    foundation::auth::journal::verify_anchored(&mut conn, Some(&public), &anchor)
                        .await?
                }
            };
            match (&v.first_broken, &v.problem) {
                (None, None) => println!(
                    "journal intact : {} entrées, {} point(s) de scellement vérifiés, {} de l'auditeur retrouvés, {} en attente de chaînage ({:.2} s)",
                    v.checked,
                    v.checkpoints_checked,
                    anchor.points.len(),
                    v.pending,
                    started.elapsed().as_secs_f64()
                ),
                (Some(seq), problem) => anyhow::bail!(
                    "journal altéré à partir de l'entrée n° {seq} : {} ({} entrées intactes avant)",
                    problem.clone().unwrap_or_default(),
                    v.checked
                ),
                (None, problem) => {
                    anyhow::bail!("journal refusé : {}", problem.clone().unwrap_or_default())
                }
            }
        }
        JournalCommand::Checkpoint { which } => {
            let key = key()?;
            let sealed = match target(which)?.1 {
                Some(code) => {
                    let tenancy = crate::tenancy(pool).await?;
                    let chained = journal::seal_from_platform(&tenancy, code).await?;
                    if chained > 0 {
                        println!("{chained} entrée(s) chaînée(s)");
                    }
                    let mut tx = tenancy.unguarded(code).await?.begin().await?;
                    let sealed = journal::checkpoint(&mut tx, &key).await?;
                    tx.commit().await?;
                    sealed
                }
                None => {
                    let mut tx = pool.begin().await?;
                    let sealed = foundation::auth::journal::checkpoint(&mut tx, &key).await?;
                    tx.commit().await?;
                    sealed
                }
            };
            match sealed {
                Some(seq) => println!("journal scellé jusqu'à l'entrée n° {seq}"),
                None => println!("rien à sceller : aucune entrée depuis le dernier point"),
            }
        }
        JournalCommand::Export { which, out } => {
            let public = key()?.public();
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            let lines = match target(which)?.1 {
                Some(code) => {
                    let tenant = crate::tenancy(pool).await?.unguarded(code).await?;
                    let mut tx = tenant.begin().await?;
                    let lines = journal::export(&mut tx, &public, None, &mut file).await?;
                    tx.commit().await?;
                    lines
                }
                None => {
                    let mut conn = pool.acquire().await?;
                    foundation::auth::journal::export(&mut conn, &public, &mut file).await?
                }
            };
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
