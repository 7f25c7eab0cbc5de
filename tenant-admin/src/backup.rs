//! `tenant-admin territory backup | restore | backup-key`: an encrypted, consistent copy of one
//! territory (its schema and the platform rows it needs, headed by a journal checkpoint), and
//! its restore into an empty database or in place of a damaged territory, followed by the
//! journal's verification against the checkpoint the backup was taken at
//! (`foundation::tenancy::backup`, docs/OPERATIONS.md).

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use foundation::journal::{self, Anchor, AnchorPoint, Event, NewEntry};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::archive::{ArchiveReader, ArchiveWriter, BackupKey};
use foundation::tenancy::backup::{self, BackupHeader};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Cli, connect};

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Crée une clé de chiffrement des sauvegardes (à garder hors de la base et des sauvegardes).
    BackupKey {
        /// Fichier à créer (jamais écrasé).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sauvegarde chiffrée et cohérente d'un territoire, avec son point de scellement du journal.
    Backup {
        #[arg(long)]
        departement: String,
        /// Fichier de la clé de sauvegarde (backup-key).
        #[arg(long)]
        key_file: PathBuf,
        /// Fichier de sauvegarde à créer (jamais écrasé).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restaure un territoire depuis sa sauvegarde, puis vérifie son journal.
    Restore {
        #[arg(long)]
        departement: String,
        #[arg(long)]
        key_file: PathBuf,
        /// Fichier de sauvegarde.
        #[arg(long)]
        file: PathBuf,
        /// Remplace les données présentes du territoire (sinon refusé s'il en contient).
        #[arg(long)]
        replace: bool,
    },
}

fn read_key(path: &Path) -> anyhow::Result<BackupKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "clé de sauvegarde illisible ({}) : {e} ; créez-en une avec « tenant-admin territory backup-key --out FICHIER »",
            path.display()
        )
    })?;
    Ok(BackupKey::from_base64(&text)?)
}

/// A file created for writing, refused if it exists, readable by its owner only.
fn create_new(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{} existe déjà : il n'est jamais écrasé", path.display())
        }
        _ => anyhow::anyhow!("{} : {e}", path.display()),
    })
}

fn bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} lignes — {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar
}

fn print_checkpoint(header: &BackupHeader) {
    match &header.checkpoint {
        Some(c) => {
            println!(
                "point de scellement du journal : n° {}, empreinte {}, le {} (clé {})",
                c.seq, c.hash, c.at, c.key_id
            );
            println!(
                "à conserver à part, pour vérifier le journal restauré : tenant-admin journal verify --departement {} --checkpoint-seq {} --checkpoint-hash {} --checkpoint-at {}",
                header.departement, c.seq, c.hash, c.at
            );
        }
        None => println!("aucun point de scellement du journal dans cette sauvegarde"),
    }
}

pub async fn run(cli: &Cli, command: &BackupCommand) -> anyhow::Result<()> {
    match command {
        BackupCommand::BackupKey { out } => {
            let key = BackupKey::generate();
            let mut file = create_new(out)?;
            writeln!(file, "{}", key.to_base64())?;
            file.sync_all()?;
            println!(
                "clé de sauvegarde {} écrite dans {} : gardez-la hors de la base et des sauvegardes, sans elle rien ne se restaure",
                key.id(),
                out.display()
            );
            Ok(())
        }
        BackupCommand::Backup {
            departement,
            key_file,
            out,
        } => {
            let code = DepartementCode::parse(departement)?;
            let key = read_key(key_file)?;
            let pool = connect(cli).await?;
            seal_now(&pool, code).await?;
            let part = out.with_extension("partiel");
            let file = create_new(&part)?;
            if out.exists() {
                let _ = std::fs::remove_file(&part);
                anyhow::bail!("{} existe déjà : il n'est jamais écrasé", out.display());
            }
            let started = std::time::Instant::now();
            let bar = bar();
            let written = async {
                let mut writer = ArchiveWriter::new(BufWriter::new(file), &key)?;
                let summary = backup::backup(&pool, code, &mut writer, |table, rows| {
                    bar.inc(rows);
                    bar.set_message(table.to_owned());
                })
                .await?;
                let (out, size) = writer.finish()?;
                out.into_inner()?.sync_all()?;
                anyhow::Ok((summary, size))
            }
            .await;
            bar.finish_and_clear();
            let (summary, size) = match written {
                Ok(done) => done,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            };
            std::fs::rename(&part, out)?;
            println!(
                "territoire {} sauvegardé dans {} : {} tables, {} lignes, {} lignes nationales, {} octets chiffrés avec la clé {} ({:.1} s)",
                code,
                out.display(),
                summary.tables,
                summary.rows,
                summary.platform_rows,
                size,
                key.id(),
                started.elapsed().as_secs_f64()
            );
            print_checkpoint(&summary.header);
            Ok(())
        }
        BackupCommand::Restore {
            departement,
            key_file,
            file,
            replace,
        } => {
            let code = DepartementCode::parse(departement)?;
            let key = read_key(key_file)?;
            let archive_hash = {
                let mut f = std::fs::File::open(file)
                    .map_err(|e| anyhow::anyhow!("{} : {e}", file.display()))?;
                let mut hasher = Sha256::new();
                std::io::copy(&mut f, &mut hasher)?;
                hex::encode(hasher.finalize())
            };
            let input = std::fs::File::open(file)?;
            let mut reader = ArchiveReader::new(BufReader::new(input), &key)?;
            let header = backup::read_header(&mut reader)?;
            println!(
                "sauvegarde du territoire {} prise le {} (schéma à la version {})",
                header.departement, header.taken_at, header.schema_version
            );
            let pool = connect(cli).await?;
            let started = std::time::Instant::now();
            let bar = bar();
            let restored = backup::restore(
                &pool,
                &cli.app_role,
                &crate::tenant_login()?,
                code,
                header,
                &mut reader,
                *replace,
                |table, rows| {
                    bar.inc(rows);
                    bar.set_message(table.to_owned());
                },
            )
            .await;
            bar.finish_and_clear();
            let summary = restored?;
            println!(
                "territoire {code} restauré : {} tables, {} lignes ({:.1} s)",
                summary.tables,
                summary.rows,
                started.elapsed().as_secs_f64()
            );
            if summary.platform_kept {
                println!(
                    "données nationales du territoire (tenants, comptes, rôles) laissées telles qu'elles sont dans cette base"
                );
            } else {
                println!(
                    "{} lignes nationales du territoire restaurées (tenants, clés, comptes, rôles)",
                    summary.platform_rows
                );
            }
            if let Some(version) = summary.migrated_to {
                println!("schéma migré ensuite à la version {version}");
            }
            verify_and_record(&pool, code, &summary.header, &archive_hash).await
        }
    }
}

/// Chains what is pending and signs a checkpoint, so the backup's snapshot ends on a sealed
/// entry. Without the signing key, the newest checkpoint already there is the reference.
async fn seal_now(pool: &sqlx::PgPool, code: DepartementCode) -> anyhow::Result<()> {
    let Ok(key) = crate::journal::key() else {
        eprintln!(
            "clé de scellement du journal absente : la sauvegarde portera le dernier point de scellement existant"
        );
        return Ok(());
    };
    let tenancy = crate::tenancy(pool).await?;
    journal::seal_from_platform(&tenancy, code).await?;
    let territory = match tenancy.unguarded(code).await {
        Ok(territory) => territory,
        Err(e) => {
            eprintln!(
                "pas de nouveau point de scellement ({e}) : la sauvegarde portera le dernier existant"
            );
            return Ok(());
        }
    };
    let mut tx = territory.begin().await?;
    journal::checkpoint(&mut tx, &key).await?;
    tx.commit().await?;
    Ok(())
}

/// Verifies the restored journal against the backup's checkpoint, then records the restore
/// in it (after the verified entries).
async fn verify_and_record(
    pool: &sqlx::PgPool,
    code: DepartementCode,
    header: &BackupHeader,
    archive_hash: &str,
) -> anyhow::Result<()> {
    let mut anchor = Anchor {
        points: Vec::new(),
        max_age: None,
    };
    if let Some(c) = &header.checkpoint {
        anchor.points.push(AnchorPoint {
            seq: c.seq,
            hash: hex::decode(&c.hash)?,
            at: time::OffsetDateTime::parse(&c.at, &time::format_description::well_known::Rfc3339)?,
            signature: None,
        });
    }
    let public = crate::journal::key().ok().map(|k| k.public());
    let tenancy = crate::tenancy(pool).await?;
    let territory = tenancy.unguarded(code).await?;
    let mut tx = territory.begin().await?;
    let v = journal::verify(&mut tx, public.as_ref(), &anchor).await?;
    tx.commit().await?;
    if let Some(problem) = v.problem {
        anyhow::bail!(
            "journal restauré refusé{} : {problem}",
            v.first_broken
                .map(|s| format!(" à partir de l'entrée n° {s}"))
                .unwrap_or_default()
        );
    }
    println!(
        "journal restauré intact : {} entrées, {} point(s) de scellement vérifiés, dont celui de la sauvegarde",
        v.checked, v.checkpoints_checked
    );
    let mut tx = territory.begin().await?;
    journal::append(
        &mut tx,
        NewEntry::new(Event::TerritoryRestored).details(json!({
            "taken_at": header.taken_at,
            "checkpoint_seq": header.checkpoint.as_ref().map(|c| c.seq),
            "archive_sha256": archive_hash,
        })),
    )
    .await?;
    tx.commit().await?;
    journal::seal_from_platform(&tenancy, code).await?;
    Ok(())
}
