//! Schema migrations and provisioning. Runs with the administrator connection (owner of every
//! schema), never with the application's. The platform schema and each département schema keep
//! their own `schema_migrations` table; one migration set is applied to all département schemas.
//! This is the only place where SQL is assembled at run time, for DDL on validated identifiers.

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use super::logins::{self, TenantLogin};
use super::territories::{DEPARTEMENTS, DepartementCode, REGIONS};

/// One migration: a version, a name and its SQL, applied once per schema in a transaction.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// An ordered migration set.
#[derive(Debug, Clone)]
pub struct MigrationSet(pub Vec<Migration>);

impl MigrationSet {
    pub fn latest_version(&self) -> i64 {
        self.0.iter().map(|m| m.version).max().unwrap_or(0)
    }
}

/// A migration of `$owner` (owner of the tables it creates, docs/TABLES.md), read from its
/// `migrations/$dir/` folder. One sequence per schema kind: services build on each other.
macro_rules! migration {
    ($owner:literal, $dir:literal, $version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(
                "../../../",
                $owner,
                "/migrations/",
                $dir,
                "/",
                $name,
                ".sql"
            )),
        }
    };
}

pub static PLATFORM_MIGRATIONS: std::sync::LazyLock<MigrationSet> =
    std::sync::LazyLock::new(|| {
        MigrationSet(vec![
            migration!("foundation", "platform", 1, "0001_territories_and_tenancy"),
            migration!(
                "foundation",
                "platform",
                2,
                "0002_professionals_and_sessions"
            ),
            migration!("foundation", "platform", 3, "0003_totp_cards"),
            migration!("document-vault-bridge", "platform", 4, "0004_tenant_keys"),
            migration!("foundation", "platform", 5, "0005_job_runs"),
            migration!("notification-mailer", "platform", 6, "0006_outbox_sending"),
            migration!("foundation", "platform", 7, "0007_name_search"),
            migration!("foundation", "platform", 8, "0008_activity"),
            migration!("mandate-service", "platform", 9, "0009_identity_provider"),
            migration!(
                "document-vault-bridge",
                "platform",
                10,
                "0010_internal_callers"
            ),
            migration!("habilitation-desk", "platform", 11, "0011_request_digests"),
            migration!("foundation", "platform", 12, "0012_login_hardening"),
            migration!(
                "mandate-service",
                "platform",
                13,
                "0013_oidc_client_allowances"
            ),
            migration!(
                "foundation",
                "platform",
                14,
                "0014_security_journal_checkpoints"
            ),
            migration!(
                "document-vault-bridge",
                "platform",
                15,
                "0015_internal_caller_territories"
            ),
            migration!(
                "foundation",
                "platform",
                16,
                "0016_sessions_end_on_withdrawal"
            ),
            migration!(
                "foundation",
                "platform",
                17,
                "0017_security_journal_retention"
            ),
            migration!(
                "foundation",
                "platform",
                18,
                "0018_values_bound_to_their_row"
            ),
            migration!(
                "habilitation-desk",
                "platform",
                19,
                "0019_habilitation_requests"
            ),
            migration!("habilitation-desk", "platform", 20, "0020_training"),
            migration!("habilitation-desk", "platform", 21, "0021_pix_results"),
            migration!(
                "habilitation-desk",
                "platform",
                22,
                "0022_charter_and_activation"
            ),
            migration!(
                "habilitation-desk",
                "platform",
                23,
                "0023_training_registered_by_issuer"
            ),
            migration!(
                "habilitation-desk",
                "platform",
                24,
                "0024_journal_verifications"
            ),
            migration!("habilitation-desk", "platform", 25, "0025_statistics"),
            migration!("habilitation-desk", "platform", 26, "0026_alert_settings"),
            migration!(
                "habilitation-desk",
                "platform",
                27,
                "0027_statistics_live_mandates"
            ),
            migration!("mandate-service", "platform", 28, "0028_usager_space"),
            migration!(
                "mandate-service",
                "platform",
                29,
                "0029_usager_login_browser"
            ),
            migration!("foundation", "platform", 30, "0030_tenant_retention"),
            migration!("mandate-service", "platform", 31, "0031_usager_index_marks"),
            migration!("foundation", "platform", 32, "0032_rights_digest"),
            migration!("foundation", "platform", 33, "0033_communes_digest"),
        ])
    });

pub static DEPARTEMENT_MIGRATIONS: std::sync::LazyLock<MigrationSet> =
    std::sync::LazyLock::new(|| {
        MigrationSet(vec![
            migration!("foundation", "departement", 1, "0001_structures_and_outbox"),
            migration!("document-vault-bridge", "departement", 2, "0002_documents"),
            migration!(
                "notification-mailer",
                "departement",
                3,
                "0003_outbox_sending"
            ),
            migration!("mandate-service", "departement", 4, "0004_mandates"),
            migration!(
                "mandate-service",
                "departement",
                5,
                "0005_identity_provider"
            ),
            migration!(
                "mandate-service",
                "departement",
                6,
                "0006_usager_contacts_and_letters"
            ),
            migration!(
                "habilitation-desk",
                "departement",
                7,
                "0007_structure_requests"
            ),
            migration!(
                "mandate-service",
                "departement",
                8,
                "0008_usager_contacts_per_structure"
            ),
            migration!("foundation", "departement", 9, "0009_journal_sealing"),
            migration!(
                "habilitation-desk",
                "departement",
                10,
                "0010_habilitation_requests"
            ),
            migration!(
                "habilitation-desk",
                "departement",
                11,
                "0011_habilitation_withdrawals"
            ),
            migration!(
                "habilitation-desk",
                "departement",
                12,
                "0012_structure_deactivation"
            ),
            migration!("habilitation-desk", "departement", 13, "0013_statistics"),
            migration!(
                "habilitation-desk",
                "departement",
                14,
                "0014_anomaly_alerts"
            ),
            migration!(
                "habilitation-desk",
                "departement",
                15,
                "0015_statistics_by_tenant"
            ),
            migration!(
                "mandate-service",
                "departement",
                16,
                "0016_live_authorisations"
            ),
            migration!(
                "mandate-service",
                "departement",
                17,
                "0017_usager_own_contact"
            ),
            migration!("mandate-service", "departement", 18, "0018_remote_consents"),
            migration!(
                "mandate-service",
                "departement",
                19,
                "0019_mandate_transfers"
            ),
            migration!(
                "mandate-service",
                "departement",
                20,
                "0020_mandate_language"
            ),
            migration!("mandate-service", "departement", 21, "0021_retention"),
            migration!(
                "mandate-service",
                "departement",
                22,
                "0022_judicial_measures"
            ),
            migration!(
                "mandate-service",
                "departement",
                23,
                "0023_measure_caseloads"
            ),
            migration!("mandate-service", "departement", 24, "0024_act_keys"),
            migration!("mandate-service", "departement", 25, "0025_idp_retries"),
            migration!("foundation", "departement", 26, "0026_journal_chain_guard"),
            migration!(
                "mandate-service",
                "departement",
                27,
                "0027_mandates_due_plpgsql"
            ),
            migration!("mandate-service", "departement", 28, "0028_usager_names"),
            migration!("mandate-service", "departement", 29, "0029_ref_indexes"),
            migration!("mandate-service", "departement", 30, "0030_auth_usager"),
            migration!("mandate-service", "departement", 31, "0031_usagers_created"),
            migration!("mandate-service", "departement", 32, "0032_structure_names"),
            migration!(
                "foundation",
                "departement",
                33,
                "0033_journal_audit_indexes"
            ),
            migration!(
                "habilitation-desk",
                "departement",
                34,
                "0034_alert_page_indexes"
            ),
            migration!("foundation", "departement", 35, "0035_professional_acts"),
            migration!("mandate-service", "departement", 36, "0036_activity_months"),
            migration!("mandate-service", "departement", 37, "0037_shown_identity"),
            migration!("mandate-service", "departement", 38, "0038_paris_months"),
            migration!("mandate-service", "departement", 39, "0039_grants_by_id"),
        ])
    });

/// Tables the département role may read and append to, never change: tamper evidence starts
/// with the database refusing UPDATE, DELETE and TRUNCATE.
pub const APPEND_ONLY_TABLES: &[&str] = &["journal", "journal_checkpoints"];

/// The journal's columns the département role may insert. The chain columns (`seq`,
/// `prev_hash`, `hash`) are written only by the sealing function `journal_seal`, owned by the
/// database's sealer role, the one role with UPDATE on them.
pub const JOURNAL_INSERT_COLUMNS: &str =
    "at, kind, structure_id, professional_id, usager_id, mandate_id, details";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "la migration {version} ({name}) a été modifiée après avoir été appliquée au schéma {schema}"
    )]
    ChecksumMismatch {
        schema: String,
        version: i64,
        name: String,
    },
    #[error("nom de rôle applicatif invalide « {0} »")]
    InvalidRoleName(String),
    #[error(
        "le rôle {0} appartient à une autre base de données de ce serveur : choisissez un autre nom de base"
    )]
    RoleOfAnotherDatabase(String),
    #[error("le rôle {0} manque : migrez d'abord le schéma national (tenant-admin migrate)")]
    MissingRole(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Outcome of migrating one département schema.
#[derive(Debug)]
pub struct SchemaReport {
    pub departement: DepartementCode,
    pub applied: usize,
    pub result: Result<i64, String>,
}

/// Marks DDL assembled here as audited: every identifier in it went through `ident`, which
/// accepts only `[a-z0-9_]` names we generated from validated codes.
pub(super) fn ddl(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// Quotes an identifier we generated ourselves; anything else is a programming error.
pub(super) fn ident(name: &str) -> Result<String, MigrateError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(MigrateError::InvalidRoleName(name.into()))
    }
}

async fn current_database(conn: impl sqlx::PgExecutor<'_>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(conn)
        .await
}

/// The Postgres role owning a département's rights in this database (see `tenancy::logins`
/// for the naming scheme that keeps two databases of one cluster apart).
pub async fn role_name(
    admin: &PgPool,
    departement: DepartementCode,
) -> Result<String, sqlx::Error> {
    Ok(logins::departement_role(
        &current_database(admin).await?,
        departement,
    ))
}

/// The comment on `role`: `None` when the role does not exist, `Some(None)` when it has none.
async fn role_mark(
    conn: &mut PgConnection,
    role: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *conn)
    .await
}

/// Creates `role` if it does not exist (marked as this database's), refuses it if another
/// database marked it, else marks it (roles older than the mark); `existing`: its `role_mark`.
async fn claim_role(
    conn: &mut PgConnection,
    database: &str,
    role: &str,
    existing: Option<Option<String>>,
    create: &str,
) -> Result<(), MigrateError> {
    let role_id = ident(role)?;
    let mark = logins::database_mark(database);
    match existing {
        Some(Some(comment)) if comment == mark => return Ok(()),
        Some(Some(_)) => return Err(MigrateError::RoleOfAnotherDatabase(role.into())),
        Some(None) => {}
        None => {
            sqlx::raw_sql(ddl(format!("CREATE ROLE {role_id} {create}")))
                .execute(&mut *conn)
                .await?;
        }
    }
    // The mark is 64 hex digits: a literal needing no escaping.
    sqlx::raw_sql(ddl(format!("COMMENT ON ROLE {role_id} IS '{mark}'")))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates the platform schema, applies its migrations, loads the reference territories and
/// grants the application role what it may do there.
pub async fn migrate_platform(admin: &PgPool, app_role: &str) -> Result<usize, MigrateError> {
    let app = ident(app_role)?;
    let mut tx = admin.begin().await?;
    // Serialise concurrent migrators of this database (two deploys, two CLI runs).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aidants-connect:platform-migrations'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS platform")
        .execute(&mut *tx)
        .await?;
    let on_citus = super::citus::enabled(&mut tx).await?;
    let applied = apply(&mut tx, "platform", &PLATFORM_MIGRATIONS, on_citus).await?;
    seed_territories(&mut tx).await?;
    // The owner of the journals' sealing functions: one per database, never logs in.
    let database = current_database(&mut *tx).await?;
    let sealer = logins::sealer_role(&database);
    let existing = role_mark(&mut tx, &sealer).await?;
    claim_role(&mut tx, &database, &sealer, existing, "NOLOGIN NOINHERIT").await?;
    // Giving the sealing functions to that role needs membership, unless a superuser migrates.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *tx)
            .await?;
    if on_citus {
        super::citus::sealer_may_log_in(&mut tx, &sealer).await?;
    }
    if !superuser {
        let sealer_id = ident(&sealer)?;
        sqlx::raw_sql(ddl(format!("GRANT {sealer_id} TO CURRENT_USER")))
            .execute(&mut *tx)
            .await?;
    }
    // The application role logs in and owns nothing; it is a member of no département role
    // (each logs in itself, see `tenancy::logins`) and inherits nothing.
    // Roles are cluster-wide: altering one concurrently from two databases fails ("tuple
    // concurrently updated"), so it is altered only when it needs to be.
    let inherits: Option<bool> =
        sqlx::query_scalar("SELECT rolinherit FROM pg_roles WHERE rolname = $1")
            .bind(app_role)
            .fetch_optional(&mut *tx)
            .await?;
    if inherits != Some(false) {
        sqlx::raw_sql(ddl(format!("ALTER ROLE {app} NOINHERIT")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql(ddl(format!(
        "GRANT USAGE ON SCHEMA platform TO {app};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA platform TO {app};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA platform TO {app};
         REVOKE INSERT, UPDATE, DELETE ON platform.departement_schemas, platform.regions,
             platform.departements FROM {app};
         REVOKE UPDATE, DELETE, TRUNCATE ON platform.security_journal,
             platform.security_journal_checkpoints FROM {app};"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(applied)
}

async fn seed_territories(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for r in &REGIONS {
        sqlx::query(
            "INSERT INTO platform.regions (code, name) VALUES ($1, $2)
             ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name",
        )
        .bind(r.code)
        .bind(r.name)
        .execute(&mut *conn)
        .await?;
    }
    let codes: Vec<&str> = DEPARTEMENTS.iter().map(|d| d.code).collect();
    let names: Vec<&str> = DEPARTEMENTS.iter().map(|d| d.name).collect();
    let regions: Vec<&str> = DEPARTEMENTS.iter().map(|d| d.region_code).collect();
    sqlx::query(
        "INSERT INTO platform.departements (code, name, region_code)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
         ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, region_code = EXCLUDED.region_code",
    )
    .bind(&codes)
    .bind(&names)
    .bind(&regions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Runs SQL of the migrator (a migration, the grants) in the caller's transaction; on Citus
/// statement by statement, since a worker refuses several commands in one forwarded text.
pub(super) async fn run_sql(
    conn: &mut PgConnection,
    sql: &str,
    on_citus: bool,
) -> Result<(), sqlx::Error> {
    if on_citus {
        for statement in super::citus::statements(sql) {
            sqlx::raw_sql(ddl(statement.to_owned()))
                .execute(&mut *conn)
                .await?;
        }
    } else {
        sqlx::raw_sql(ddl(sql.to_owned()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Applies the pending migrations of `set` to `schema` inside the caller's transaction.
async fn apply(
    conn: &mut PgConnection,
    schema: &str,
    set: &MigrationSet,
    on_citus: bool,
) -> Result<usize, MigrateError> {
    use sqlx::Row;
    let schema_id = ident(schema)?;
    // One exchange: the search path, the table of applied versions, and what it holds.
    let done = sqlx::raw_sql(ddl(format!(
        "SET LOCAL search_path = {schema_id};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         SELECT version, checksum FROM schema_migrations;"
    )))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let mut pending = Vec::new();
    for m in &set.0 {
        match done.iter().find(|(v, _)| *v == m.version) {
            Some((_, checksum)) if *checksum == m.checksum() => continue,
            Some(_) => {
                return Err(MigrateError::ChecksumMismatch {
                    schema: schema.into(),
                    version: m.version,
                    name: m.name.into(),
                });
            }
            None => pending.push(m),
        }
    }
    if pending.is_empty() {
        return Ok(0);
    }
    // The pending migrations in one text, in order (a schema made from empty takes them all:
    // one exchange with the server instead of one per migration); on Citus statement by
    // statement anyway. They share the schema's transaction, so running them together changes
    // nothing to what is rolled back.
    let text: String = pending.iter().map(|m| format!("{}\n;\n", m.sql)).collect();
    run_sql(conn, &text, on_citus).await?;
    // Their versions in one statement.
    let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
    let names: Vec<&str> = pending.iter().map(|m| m.name).collect();
    let checksums: Vec<String> = pending.iter().map(|m| m.checksum()).collect();
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, checksum)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])",
    )
    .bind(&versions)
    .bind(&names)
    .bind(&checksums)
    .execute(&mut *conn)
    .await?;
    Ok(pending.len())
}

/// Creates (if needed) and migrates one département's schema and role, recording the outcome
/// in `platform.departement_schemas`. A failure is recorded there, not raised: the schema
/// stays unserved and the other territories carry on.
pub async fn provision_departement(
    admin: &PgPool,
    app_role: &str,
    login: &TenantLogin,
    departement: DepartementCode,
    set: &MigrationSet,
) -> Result<SchemaReport, MigrateError> {
    let schema = departement.schema_name();
    let database = current_database(admin).await?;
    let role = logins::departement_role(&database, departement);
    // The territory's row (created if new) with what it records of the last run: the role's
    // name (a role named by an earlier scheme is stripped of its rights once the new one has
    // them) and the communes loaded. The insert's row is not visible to the same statement's
    // read, hence the union; a row another migrator inserted meanwhile is read again.
    let provisioning = "WITH inserted AS (
             INSERT INTO platform.departement_schemas (departement_code, schema_name, role_name, status)
             VALUES ($1, $2, $3, 'provisioning')
             ON CONFLICT (departement_code) DO NOTHING
             RETURNING role_name)
         SELECT role_name, NULL::bytea, 0::bigint FROM inserted
         UNION ALL
         SELECT s.role_name, s.communes_digest,
                (SELECT count(*) FROM platform.communes c WHERE c.departement_code = $1)
         FROM platform.departement_schemas s WHERE s.departement_code = $1";
    let mut recorded: Option<(String, Option<Vec<u8>>, i64)> = None;
    for _ in 0..2 {
        recorded = sqlx::query_as(provisioning)
            .bind(departement.as_str())
            .bind(&schema)
            .bind(&role)
            .fetch_optional(admin)
            .await?;
        if recorded.is_some() {
            break;
        }
    }
    let Some((recorded, communes_digest, communes_rows)) = recorded else {
        return Err(MigrateError::Database(sqlx::Error::RowNotFound));
    };
    let previous = (recorded != role).then_some(recorded.as_str());
    let mut outcome = migrate_schema(
        admin, app_role, login, &database, &schema, &role, previous, set,
    )
    .await;
    // On Citus, granting rights makes the coordinator re-create the grantee roles on the
    // workers, and roles are shared by every database of a node: two schemas migrated at once
    // may touch the same role row there; or a deadlock chose it (see `is_deadlock_victim`).
    // The whole schema transaction rolled back; run it again.
    let mut attempts = 1;
    while attempts < super::citus::CATALOG_RACE_ATTEMPTS
        && outcome.as_ref().is_err_and(super::citus::is_catalog_race)
    {
        let pause = rand::random_range(20..200u64) * attempts;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        outcome = migrate_schema(
            admin, app_role, login, &database, &schema, &role, previous, set,
        )
        .await;
        attempts += 1;
    }
    // The territory's communes of the reference data (a platform table), unless the rows
    // loaded by a previous run are still there and the reference has not changed since.
    let reference = super::communes::Reference::of(departement);
    let communes_current = communes_digest.as_deref() == Some(&reference.digest[..])
        && u64::try_from(communes_rows).ok() == Some(reference.rows);
    if outcome.is_ok() && !communes_current {
        let mut conn = admin.acquire().await?;
        if let Err(e) = super::communes::load(&mut conn, departement).await {
            outcome = Err(e.into());
        }
    }
    let (status, version, error, applied) = match &outcome {
        Ok(applied) => ("ready", set.latest_version(), None, *applied),
        Err(e) => ("failed", 0, Some(e.to_string()), 0),
    };
    // On failure the previous version stays recorded: the schema is simply not served.
    sqlx::query(
        "UPDATE platform.departement_schemas
         SET status = $2, version = CASE WHEN $2 = 'ready' THEN $3 ELSE version END,
             last_error = $4, updated_at = now(),
             role_name = CASE WHEN $2 = 'ready' THEN $5 ELSE role_name END,
             communes_digest = CASE WHEN $2 = 'ready' THEN $6 ELSE communes_digest END
         WHERE departement_code = $1",
    )
    .bind(departement.as_str())
    .bind(status)
    .bind(version)
    .bind(&error)
    .bind(&role)
    .bind(&reference.digest[..])
    .execute(admin)
    .await?;
    Ok(SchemaReport {
        departement,
        applied,
        result: outcome
            .map(|_| set.latest_version())
            .map_err(|e| e.to_string()),
    })
}

#[allow(clippy::too_many_arguments)]
async fn migrate_schema(
    admin: &PgPool,
    app_role: &str,
    login: &TenantLogin,
    database: &str,
    schema: &str,
    role: &str,
    previous_role: Option<&str>,
    set: &MigrationSet,
) -> Result<usize, MigrateError> {
    let (schema_id, role_id, app_id) = (ident(schema)?, ident(role)?, ident(app_role)?);
    let mut tx = admin.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("aidants-connect:schema:{schema}"))
        .execute(&mut *tx)
        .await?;
    let sealer = logins::sealer_role(database);
    let state = super::rights::SchemaState::read(&mut tx, &sealer, role, schema, app_role).await?;
    if !state.sealer_exists {
        return Err(MigrateError::MissingRole(sealer));
    }
    claim_role(
        &mut tx,
        database,
        role,
        state.role_mark,
        "NOLOGIN NOINHERIT",
    )
    .await?;
    // The département role logs in with its derived password (stored as a SCRAM verifier), its
    // search path holds its schema then pg_temp (never shadowed by temporary objects, which it
    // may not create anyway), and the application role is no longer a member of it.
    super::rights::set_login(&mut tx, login, role, schema, state.authid_readable).await?;
    if !state.schema_exists {
        // On Citus even `IF NOT EXISTS` on an existing schema is forwarded to the workers.
        sqlx::raw_sql(ddl(format!("CREATE SCHEMA {schema_id}")))
            .execute(&mut *tx)
            .await?;
    }
    if state.app_is_member {
        sqlx::raw_sql(ddl(format!("REVOKE {role_id} FROM {app_id}")))
            .execute(&mut *tx)
            .await?;
    }
    let on_citus = state.on_citus;
    let applied = apply(&mut tx, schema, set, on_citus).await?;
    // Rights are swept after every migration so new tables are covered, then narrowed for
    // append-only tables (skipped when that would change nothing: see `rights`).
    let grantees = super::rights::Grantees {
        schema,
        role,
        sealer: &sealer,
        app: app_role,
        previous: previous_role,
    };
    super::rights::sweep(&mut tx, &grantees, on_citus).await?;
    if on_citus {
        super::citus::distribute(&mut tx, schema).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// Provisions and migrates the given départements, `concurrency` at a time, calling
/// `on_done` after each. Returns one report per département, in completion order.
pub async fn migrate_departements(
    admin: &PgPool,
    app_role: &str,
    login: &TenantLogin,
    departements: Vec<DepartementCode>,
    set: &MigrationSet,
    concurrency: usize,
    on_done: impl Fn(&SchemaReport),
) -> Result<Vec<SchemaReport>, MigrateError> {
    let mut stream = futures::stream::iter(departements)
        .map(|d| provision_departement(admin, app_role, login, d, set))
        .buffer_unordered(concurrency.max(1));
    let mut reports = Vec::new();
    while let Some(report) = stream.next().await {
        let report = report?;
        on_done(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// Connects with the administrator URL, failing fast when the database is unreachable.
pub async fn connect_admin(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}
