//! Backup and restore of one territory: its whole schema and the platform rows it needs, read
//! in one repeatable-read snapshot with `COPY … (FORMAT binary)`, written into an encrypted
//! archive (`archive`), and restored in one transaction: into an empty database (the schema is
//! created at the archive's migration version, filled, then migrated forward) or in place of
//! a damaged territory (`replace`). The restore never touches another territory's schema, and
//! writes platform rows only where the target database does not know the territory yet, so a
//! role withdrawn since the backup is not given back.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::archive::{ArchiveError, ArchiveReader, ArchiveWriter};
use super::logins::TenantLogin;
use super::migrate::{self, DEPARTEMENT_MIGRATIONS, MigrateError, MigrationSet, ddl, ident};
use super::territories::DepartementCode;

const FORMAT: u32 = 1;
/// COPY data is cut into frames of at most this many bytes.
const DATA_FRAME: usize = 1024 * 1024;

/// The platform rows a territory needs to be served from another database, in an order where
/// each row's references come before it. `{dep}` is the département's code, a literal of
/// `[0-9AB]` from the static list of départements.
const PLATFORM_ROWS: &[(&str, &str)] = &[
    (
        "issuers",
        "id IN (SELECT issuer_id FROM platform.request_index WHERE departement_code = '{dep}')",
    ),
    (
        "professionals",
        "id IN (SELECT professional_id FROM platform.role_assignments WHERE departement_code = '{dep}')",
    ),
    (
        "second_factors",
        "professional_id IN (SELECT professional_id FROM platform.role_assignments WHERE departement_code = '{dep}')",
    ),
    ("tenants", "departement_code = '{dep}'"),
    (
        "tenant_keys",
        "tenant_id IN (SELECT id FROM platform.tenants WHERE departement_code = '{dep}')",
    ),
    (
        "alert_settings",
        "tenant_id IN (SELECT id FROM platform.tenants WHERE departement_code = '{dep}')",
    ),
    ("role_assignments", "departement_code = '{dep}'"),
    ("request_index", "departement_code = '{dep}'"),
    ("habilitation_file_index", "departement_code = '{dep}'"),
    ("stats_territory_months", "departement_code = '{dep}'"),
    ("stats_territory_snapshots", "departement_code = '{dep}'"),
];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("base de données : {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("le territoire {0} n'a pas de schéma prêt dans cette base")]
    NotProvisioned(DepartementCode),
    #[error("cette sauvegarde est celle du territoire {archive}, pas du {asked}")]
    OtherTerritory { archive: String, asked: String },
    #[error(
        "cette sauvegarde vient d'une version plus récente (schéma {archive}, cette version s'arrête à {latest}) : restaurez-la avec une version au moins aussi récente"
    )]
    NewerVersion { archive: i64, latest: i64 },
    #[error(
        "le schéma du territoire est à la version {target} et la sauvegarde à la version {archive} : restaurez-la dans une base vide (elle y sera migrée ensuite)"
    )]
    VersionMismatch { archive: i64, target: i64 },
    #[error(
        "le territoire {0} contient des données : ajoutez --replace pour les remplacer par la sauvegarde"
    )]
    NotEmpty(DepartementCode),
    #[error("sauvegarde incohérente : {0}")]
    Inconsistent(String),
    #[error("échec de la création du schéma : {0}")]
    Provision(String),
}

/// The journal checkpoint an archive was taken at: what the restored journal is verified
/// against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointMark {
    pub seq: i64,
    /// SHA-256 of the entry sealed, hex.
    pub hash: String,
    /// RFC 3339, as `tenant-admin journal verify --checkpoint-at` reads it.
    pub at: String,
    pub key_id: String,
}

/// The archive's first frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: u32,
    pub departement: String,
    pub schema_version: i64,
    pub taken_at: String,
    pub checkpoint: Option<CheckpointMark>,
    pub release: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableFrame {
    platform: bool,
    table: String,
    columns: Vec<String>,
    rows: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SequenceValue {
    name: String,
    last_value: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    tables: u64,
    rows: u64,
}

#[derive(Debug)]
pub struct BackupSummary {
    pub header: BackupHeader,
    pub tables: u64,
    pub rows: u64,
    pub platform_rows: u64,
}

#[derive(Debug)]
pub struct RestoreSummary {
    pub header: BackupHeader,
    pub tables: u64,
    pub rows: u64,
    /// Platform rows written (0 when the database already knew the territory).
    pub platform_rows: u64,
    pub platform_kept: bool,
    /// The schema was created at the archive's version, then migrated to this one.
    pub migrated_to: Option<i64>,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn parse<T: for<'a> Deserialize<'a>>(bytes: &[u8], what: &str) -> Result<T, BackupError> {
    serde_json::from_slice(bytes).map_err(|e| BackupError::Inconsistent(format!("{what} : {e}")))
}

async fn tables_of(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = $1 AND tablename <> 'schema_migrations' ORDER BY tablename",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
}

/// The table's stored columns (generated ones are recomputed), in order.
async fn columns_of(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = to_regclass(format('%I.%I', $1::text, $2::text))
           AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
         ORDER BY attnum",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(conn)
    .await
}

fn column_list(columns: &[String]) -> Result<String, MigrateError> {
    Ok(columns
        .iter()
        .map(|c| ident(c))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

async fn schema_version(conn: &mut PgConnection, schema: &str) -> Result<Option<i64>, BackupError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(None);
    }
    let sql = format!(
        "SELECT max(version) FROM {}.schema_migrations",
        ident(schema)?
    );
    let version: Option<i64> = sqlx::query_scalar(ddl(sql)).fetch_one(&mut *conn).await?;
    Ok(version)
}

/// Streams one `COPY … TO STDOUT` into frames.
async fn copy_out<W: Write>(
    conn: &mut PgConnection,
    statement: &str,
    writer: &mut ArchiveWriter<W>,
) -> Result<(), BackupError> {
    let mut stream = conn.copy_out_raw(statement).await?;
    let mut pending: Vec<u8> = Vec::with_capacity(DATA_FRAME);
    while let Some(bytes) = stream.try_next().await? {
        pending.extend_from_slice(&bytes);
        if pending.len() >= DATA_FRAME {
            writer.frame(b'D', &pending)?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        writer.frame(b'D', &pending)?;
    }
    writer.frame(b'E', &[])?;
    Ok(())
}

/// Writes a consistent copy of `departement`'s territory into `writer`: its schema's tables
/// and sequences and the platform rows it needs, all read in one snapshot, headed by the
/// newest journal checkpoint of that snapshot. `progress` is told each table and its rows.
pub async fn backup<W: Write>(
    admin: &PgPool,
    departement: DepartementCode,
    writer: &mut ArchiveWriter<W>,
    mut progress: impl FnMut(&str, u64),
) -> Result<BackupSummary, BackupError> {
    let schema = departement.schema_name();
    let schema_id = ident(&schema)?;
    let mut tx = admin.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let ready: Option<String> = sqlx::query_scalar(
        "SELECT status FROM platform.departement_schemas WHERE departement_code = $1",
    )
    .bind(departement.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let version = schema_version(&mut tx, &schema).await?;
    let (Some("ready"), Some(version)) = (ready.as_deref(), version) else {
        return Err(BackupError::NotProvisioned(departement));
    };
    let checkpoint: Option<(i64, Vec<u8>, OffsetDateTime, String)> = sqlx::query_as(ddl(format!(
        "SELECT seq, hash, at, key_id FROM {schema_id}.journal_checkpoints ORDER BY seq DESC, at DESC LIMIT 1"
    )))
    .fetch_optional(&mut *tx)
    .await?;
    let header = BackupHeader {
        format: FORMAT,
        departement: departement.as_str().to_owned(),
        schema_version: version,
        taken_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        checkpoint: checkpoint.map(|(seq, hash, at, key_id)| CheckpointMark {
            seq,
            hash: hex::encode(hash),
            at: at.format(&Rfc3339).unwrap_or_default(),
            key_id,
        }),
        release: env!("CARGO_PKG_VERSION").to_owned(),
    };
    writer.frame(b'H', &json(&header))?;
    let mut totals = Totals::default();
    for table in tables_of(&mut tx, &schema).await? {
        let columns = columns_of(&mut tx, &schema, &table).await?;
        let (table_id, list) = (ident(&table)?, column_list(&columns)?);
        let rows: i64 =
            sqlx::query_scalar(ddl(format!("SELECT count(*) FROM {schema_id}.{table_id}")))
                .fetch_one(&mut *tx)
                .await?;
        writer.frame(
            b'T',
            &json(&TableFrame {
                platform: false,
                table: table.clone(),
                columns,
                rows,
            }),
        )?;
        copy_out(
            &mut tx,
            &format!("COPY {schema_id}.{table_id} ({list}) TO STDOUT (FORMAT binary)"),
            writer,
        )
        .await?;
        progress(&table, rows as u64);
        totals.tables += 1;
        totals.rows += rows as u64;
    }
    let sequences: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT sequencename::text, last_value FROM pg_sequences WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&mut *tx)
    .await?;
    let sequences: Vec<SequenceValue> = sequences
        .into_iter()
        .map(|(name, last_value)| SequenceValue { name, last_value })
        .collect();
    writer.frame(b'S', &json(&sequences))?;
    let mut platform_rows = 0u64;
    for (table, filter) in PLATFORM_ROWS {
        let columns = columns_of(&mut tx, "platform", table).await?;
        let (table_id, list) = (ident(table)?, column_list(&columns)?);
        let filter = filter.replace("{dep}", departement.as_str());
        let rows: i64 = sqlx::query_scalar(ddl(format!(
            "SELECT count(*) FROM platform.{table_id} WHERE {filter}"
        )))
        .fetch_one(&mut *tx)
        .await?;
        writer.frame(
            b'T',
            &json(&TableFrame {
                platform: true,
                table: (*table).to_owned(),
                columns,
                rows,
            }),
        )?;
        copy_out(
            &mut tx,
            &format!(
                "COPY (SELECT {list} FROM platform.{table_id} WHERE {filter}) TO STDOUT (FORMAT binary)"
            ),
            writer,
        )
        .await?;
        progress(&format!("platform.{table}"), rows as u64);
        platform_rows += rows as u64;
    }
    writer.frame(b'Z', &json(&totals))?;
    tx.commit().await?;
    Ok(BackupSummary {
        header,
        tables: totals.tables,
        rows: totals.rows,
        platform_rows,
    })
}

fn next<R: Read>(reader: &mut ArchiveReader<R>) -> Result<(u8, Vec<u8>), BackupError> {
    reader.next_frame()?.ok_or(ArchiveError::Truncated.into())
}

/// Reads one archive's header, to show an operator what it holds before restoring it.
pub fn read_header<R: Read>(reader: &mut ArchiveReader<R>) -> Result<BackupHeader, BackupError> {
    match next(reader)? {
        (b'H', payload) => {
            let header: BackupHeader = parse(&payload, "en-tête")?;
            if header.format != FORMAT {
                return Err(BackupError::Inconsistent(format!(
                    "format {} inconnu",
                    header.format
                )));
            }
            Ok(header)
        }
        _ => Err(BackupError::Inconsistent("en-tête absent".into())),
    }
}

/// Restores `departement` from an archive whose header was read with [`read_header`]. See the
/// module's documentation for what is written where.
#[allow(clippy::too_many_arguments)]
pub async fn restore<R: Read>(
    admin: &PgPool,
    app_role: &str,
    login: &TenantLogin,
    departement: DepartementCode,
    header: BackupHeader,
    reader: &mut ArchiveReader<R>,
    replace: bool,
    mut progress: impl FnMut(&str, u64),
) -> Result<RestoreSummary, BackupError> {
    if header.departement != departement.as_str() {
        return Err(BackupError::OtherTerritory {
            archive: header.departement.clone(),
            asked: departement.as_str().to_owned(),
        });
    }
    let latest = DEPARTEMENT_MIGRATIONS.latest_version();
    if header.schema_version > latest {
        return Err(BackupError::NewerVersion {
            archive: header.schema_version,
            latest,
        });
    }
    let schema = departement.schema_name();
    let schema_id = ident(&schema)?;
    migrate::migrate_platform(admin, app_role).await?;
    let mut conn = admin.acquire().await?;
    let created = match schema_version(&mut conn, &schema).await? {
        None => {
            let at_archive = MigrationSet(
                DEPARTEMENT_MIGRATIONS
                    .0
                    .iter()
                    .filter(|m| m.version <= header.schema_version)
                    .cloned()
                    .collect(),
            );
            let report =
                migrate::provision_departement(admin, app_role, login, departement, &at_archive)
                    .await?;
            report.result.map_err(BackupError::Provision)?;
            true
        }
        Some(v) if v != header.schema_version => {
            return Err(BackupError::VersionMismatch {
                archive: header.schema_version,
                target: v,
            });
        }
        Some(_) => false,
    };
    let tables = tables_of(&mut conn, &schema).await?;
    if !replace && !created {
        for table in &tables {
            let any: bool = sqlx::query_scalar(ddl(format!(
                "SELECT EXISTS (SELECT 1 FROM {schema_id}.{})",
                ident(table)?
            )))
            .fetch_one(&mut *conn)
            .await?;
            if any {
                return Err(BackupError::NotEmpty(departement));
            }
        }
    }
    drop(conn);
    let platform_kept: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.tenants WHERE departement_code = $1)",
    )
    .bind(departement.as_str())
    .fetch_one(admin)
    .await?;

    let mut tx = admin.begin().await?;
    // The lock migrations take on this schema, then no trigger (the journal's append-only one,
    // the foreign keys: the archive is one snapshot of this very schema) while the rows load.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("aidants-connect:schema:{schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    if !tables.is_empty() {
        let list = tables
            .iter()
            .map(|t| Ok(format!("{schema_id}.{}", ident(t)?)))
            .collect::<Result<Vec<_>, MigrateError>>()?
            .join(", ");
        sqlx::raw_sql(ddl(format!("TRUNCATE {list}")))
            .execute(&mut *tx)
            .await?;
    }
    let known: HashSet<&String> = tables.iter().collect();
    let mut totals = Totals::default();
    let mut platform_rows = 0u64;
    let mut in_platform = false;
    let expected: Totals = loop {
        let (tag, payload) = next(reader)?;
        match tag {
            b'T' => {
                let frame: TableFrame = parse(&payload, "table")?;
                let table_id = ident(&frame.table)?;
                let list = column_list(&frame.columns)?;
                let target = if frame.platform {
                    if !in_platform {
                        // Platform rows load with their foreign keys checked.
                        sqlx::query("SET LOCAL session_replication_role = origin")
                            .execute(&mut *tx)
                            .await?;
                        in_platform = true;
                    }
                    if platform_kept || !PLATFORM_ROWS.iter().any(|(t, _)| *t == frame.table) {
                        skip_data(reader)?;
                        continue;
                    }
                    sqlx::raw_sql(ddl(format!(
                        "CREATE TEMP TABLE restore_rows (LIKE platform.{table_id}) ON COMMIT DROP"
                    )))
                    .execute(&mut *tx)
                    .await?;
                    "restore_rows".to_owned()
                } else {
                    if !known.contains(&frame.table) {
                        return Err(BackupError::Inconsistent(format!(
                            "la table {} n'existe pas dans ce schéma",
                            frame.table
                        )));
                    }
                    format!("{schema_id}.{table_id}")
                };
                let loaded = copy_in(
                    &mut tx,
                    &format!("COPY {target} ({list}) FROM STDIN (FORMAT binary)"),
                    reader,
                )
                .await?;
                if loaded != frame.rows as u64 {
                    return Err(BackupError::Inconsistent(format!(
                        "{} : {loaded} lignes lues, {} annoncées",
                        frame.table, frame.rows
                    )));
                }
                if frame.platform {
                    let inserted = sqlx::raw_sql(ddl(format!(
                        "INSERT INTO platform.{table_id} ({list}) SELECT {list} FROM restore_rows ON CONFLICT DO NOTHING;
                         DROP TABLE restore_rows;"
                    )))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    platform_rows += inserted;
                    progress(&format!("platform.{}", frame.table), inserted);
                } else {
                    totals.tables += 1;
                    totals.rows += loaded;
                    progress(&frame.table, loaded);
                }
            }
            b'S' => {
                let sequences: Vec<SequenceValue> = parse(&payload, "séquences")?;
                for s in sequences {
                    sqlx::query(
                        "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, $4)",
                    )
                    .bind(&schema)
                    .bind(&s.name)
                    .bind(s.last_value.unwrap_or(1))
                    .bind(s.last_value.is_some())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            b'Z' => break parse(&payload, "fin")?,
            other => {
                return Err(BackupError::Inconsistent(format!(
                    "bloc inattendu « {} »",
                    char::from(other)
                )));
            }
        }
    };
    if reader.next_frame()?.is_some() {
        return Err(BackupError::Inconsistent("des blocs suivent la fin".into()));
    }
    if (expected.tables, expected.rows) != (totals.tables, totals.rows) {
        return Err(BackupError::Inconsistent(format!(
            "{} tables et {} lignes restaurées, {} et {} annoncées",
            totals.tables, totals.rows, expected.tables, expected.rows
        )));
    }
    // The restored usagers keep their creation times: the usager index job, which reads only
    // those created since its territory's mark, reads this territory whole again.
    sqlx::query("DELETE FROM platform.usager_index_marks WHERE departement_code = $1")
        .bind(departement.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let migrated_to = if created && header.schema_version < latest {
        let report = migrate::provision_departement(
            admin,
            app_role,
            login,
            departement,
            &DEPARTEMENT_MIGRATIONS,
        )
        .await?;
        Some(report.result.map_err(BackupError::Provision)?)
    } else {
        None
    };
    Ok(RestoreSummary {
        header,
        tables: totals.tables,
        rows: totals.rows,
        platform_rows,
        platform_kept,
        migrated_to,
    })
}

fn skip_data<R: Read>(reader: &mut ArchiveReader<R>) -> Result<(), BackupError> {
    loop {
        match next(reader)?.0 {
            b'D' => continue,
            b'E' => return Ok(()),
            _ => return Err(BackupError::Inconsistent("fin de table absente".into())),
        }
    }
}

/// Feeds a table's data frames to `COPY … FROM STDIN`; returns the rows loaded.
async fn copy_in<R: Read>(
    conn: &mut PgConnection,
    statement: &str,
    reader: &mut ArchiveReader<R>,
) -> Result<u64, BackupError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    loop {
        match next(reader) {
            Ok((b'D', data)) => {
                copy.send(data).await?;
            }
            Ok((b'E', _)) => return Ok(copy.finish().await?),
            Ok(_) => {
                copy.abort("sauvegarde incohérente").await?;
                return Err(BackupError::Inconsistent("fin de table absente".into()));
            }
            Err(e) => {
                copy.abort("sauvegarde illisible").await?;
                return Err(e);
            }
        }
    }
}

/// Rows per table of a schema, for a report or a test comparing two moments.
pub async fn row_counts(
    admin: &PgPool,
    departement: DepartementCode,
) -> Result<BTreeMap<String, i64>, BackupError> {
    let schema = departement.schema_name();
    let schema_id = ident(&schema)?;
    let mut conn = admin.acquire().await?;
    let mut counts = BTreeMap::new();
    for table in tables_of(&mut conn, &schema).await? {
        let n: i64 = sqlx::query_scalar(ddl(format!(
            "SELECT count(*) FROM {schema_id}.{}",
            ident(&table)?
        )))
        .fetch_one(&mut *conn)
        .await?;
        counts.insert(table, n);
    }
    Ok(counts)
}
