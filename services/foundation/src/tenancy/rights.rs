//! A territory's rights, as the migrator leaves them after each run of its schema: how its
//! département role logs in, and the grants on the schema's objects (the sweep).
//!
//! Both are idempotent, so the migrator used to issue them on every run. On Citus each of
//! these statements is propagated to the nodes (about 60 ms a territory, measured), which is
//! most of what one new migration costs on 101 territories. They are now skipped when they
//! would change nothing:
//! - the role's login is left alone when `pg_authid` shows the attributes, the search path
//!   and a password verifier that accepts the role's derived password (a rotated secret does
//!   not match, so the password follows it);
//! - the sweep is left alone when its statements and the catalog's privileges on every object
//!   of the schema are exactly what they were right after the last sweep (a digest kept in
//!   `platform.departement_schemas`). A migration that adds a table, a right granted or
//!   revoked by hand, a role renamed: each changes the digest, and the sweep runs. A new column
//!   does not (it has no privileges of its own, the table's cover it).
//!
//! On Citus the digest reads the coordinator's catalog; a right changed by hand on a worker
//! alone is not seen (as before: the sweep is issued on the coordinator).

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::logins::TenantLogin;
use super::migrate::{
    APPEND_ONLY_TABLES, JOURNAL_INSERT_COLUMNS, MigrateError, ddl, ident, run_sql,
};

/// The roles of one territory's rights.
pub(super) struct Grantees<'a> {
    pub schema: &'a str,
    /// The département role.
    pub role: &'a str,
    /// The database's sealer role (owner of `journal_seal`).
    pub sealer: &'a str,
    /// The application role.
    pub app: &'a str,
    /// A role of an earlier naming scheme, to strip.
    pub previous: Option<&'a str>,
}

/// What the migrator reads of the catalog before touching a territory's schema and roles, in
/// one exchange (after the schema's lock: each statement reads what was committed before it
/// started). On Citus each catalog read is a round trip through the coordinator's planner.
pub(super) struct SchemaState {
    pub sealer_exists: bool,
    /// The département role's comment: `None` when the role does not exist.
    pub role_mark: Option<Option<String>>,
    /// Whether the administrator may read `pg_authid` (the login's check, `rights`).
    pub authid_readable: bool,
    pub schema_exists: bool,
    /// Whether the application role is (still) a member of the département role.
    pub app_is_member: bool,
    pub on_citus: bool,
}

impl SchemaState {
    pub(super) async fn read(
        conn: &mut PgConnection,
        sealer: &str,
        role: &str,
        schema: &str,
        app_role: &str,
    ) -> Result<Self, sqlx::Error> {
        let row: (bool, bool, Option<String>, bool, bool, bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2),
                    (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $2),
                    has_table_privilege('pg_catalog.pg_authid', 'SELECT'),
                    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $3),
                    EXISTS (SELECT 1 FROM pg_auth_members m
                            JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                            WHERE r.rolname = $2 AND u.rolname = $4),
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
        )
        .bind(sealer)
        .bind(role)
        .bind(schema)
        .bind(app_role)
        .fetch_one(&mut *conn)
        .await?;
        let (sealer_exists, role_exists, mark, authid_readable, schema_exists, member, citus) = row;
        Ok(Self {
            sealer_exists,
            role_mark: role_exists.then_some(mark),
            authid_readable,
            schema_exists,
            app_is_member: member,
            on_citus: citus,
        })
    }
}

/// Sets the département role's login (password verifier, attributes, search path) unless it
/// is already exactly that. `authid_readable`: whether the administrator may read
/// `pg_authid` (read with the schema's other state, [`SchemaState`]); when it may not,
/// the login is set on every run, as it always was. Returns whether it issued anything.
pub(super) async fn set_login(
    conn: &mut PgConnection,
    login: &TenantLogin,
    role: &str,
    schema: &str,
    authid_readable: bool,
) -> Result<bool, MigrateError> {
    if authid_readable && login_is_current(conn, login, role, schema).await? {
        return Ok(false);
    }
    let (role_id, schema_id) = (ident(role)?, ident(schema)?);
    let verifier = login.scram_verifier(role);
    sqlx::raw_sql(ddl(format!(
        "ALTER ROLE {role_id} WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{verifier}';
         ALTER ROLE {role_id} SET search_path = {schema_id}, pg_temp;"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Whether the role already logs in as `set_login` would set it (the caller has checked that
/// `pg_authid` may be read).
async fn login_is_current(
    conn: &mut PgConnection,
    login: &TenantLogin,
    role: &str,
    schema: &str,
) -> Result<bool, sqlx::Error> {
    let row: Option<(bool, Option<String>)> = sqlx::query_as(
        "SELECT a.rolcanlogin AND NOT a.rolinherit AND NOT a.rolsuper AND NOT a.rolcreatedb
                AND NOT a.rolcreaterole
                AND (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                     WHERE s.setrole = a.oid AND s.setdatabase = 0)
                    IS NOT DISTINCT FROM ARRAY[format('search_path=%s, pg_temp', quote_ident($2))],
                a.rolpassword
         FROM pg_catalog.pg_authid a WHERE a.rolname = $1",
    )
    .bind(role)
    .bind(schema)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some((true, Some(stored))) => login.verifier_accepts(role, &stored),
        _ => false,
    })
}

/// The statement (its parameter `$1`: the schema) reading everything the sweep reads or
/// writes, as the catalog holds it: the schema's privileges; each table, view and sequence with
/// its privileges and the privileges of its columns that have some (a new column has none:
/// adding one changes nothing the sweep would set); each function with its owner, settings and
/// privileges.
///
/// The schema's objects are read through their dependency on it (pg_depend's index), not
/// by scanning pg_class: that holds every relation of the 101 territories (20,000 rows),
/// and on Citus each row is first checked for being a shard (60 ms a scan, measured).
macro_rules! snapshot_sql {
    () => {
        "WITH ns AS MATERIALIZED (SELECT oid, nspacl FROM pg_namespace WHERE nspname = $1),
              members AS MATERIALIZED (
                SELECT d.classid, d.objid FROM ns JOIN pg_depend d
                  ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ns.oid
                 AND d.refobjsubid = 0)
         SELECT concat_ws(E'\\n',
           (SELECT coalesce(nspacl::text, '-') FROM ns),
           (SELECT string_agg(format('%s %s %s [%s]', c.relname, c.relkind,
                                     coalesce(c.relacl::text, '-'),
                                     (SELECT string_agg(format('%s=%s', a.attname, a.attacl),
                                                        ',' ORDER BY a.attnum)
                                      FROM pg_attribute a
                                      WHERE a.attrelid = c.oid AND a.attnum > 0
                                        AND NOT a.attisdropped AND a.attacl IS NOT NULL)),
                              E'\\n' ORDER BY c.relname)
            FROM members m JOIN pg_class c
              ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')),
           (SELECT string_agg(format('%s %s %s %s', p.oid::regprocedure, p.proowner::regrole,
                                     coalesce(p.proconfig::text, '-'),
                                     coalesce(p.proacl::text, '-')),
                              E'\\n' ORDER BY p.oid::regprocedure::text)
            FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid))"
    };
}

/// Grants the territory's roles what they may do in its schema, narrowed for append-only
/// tables, unless nothing changed since the last sweep (see the module). Runs inside the
/// caller's transaction; returns whether the sweep ran.
pub(super) async fn sweep(
    conn: &mut PgConnection,
    who: &Grantees<'_>,
    on_citus: bool,
) -> Result<bool, MigrateError> {
    // What the statements depend on, the digest kept and the catalog's privileges: one
    // exchange (on Citus each is a round trip through the coordinator's planner).
    let (append_only, sealing, stored, before): (Vec<String>, bool, Option<Vec<u8>>, String) =
        sqlx::query_as(concat!(
            "SELECT coalesce((SELECT array_agg(tablename::text ORDER BY 1) FROM pg_tables
                              WHERE schemaname = $1 AND tablename = ANY($2)), '{}'),
                    EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'journal_seal'
                            AND pronamespace = $1::regnamespace),
                    (SELECT rights_digest FROM platform.departement_schemas
                     WHERE schema_name = $1),
                    (",
            snapshot_sql!(),
            ")"
        ))
        .bind(who.schema)
        .bind(APPEND_ONLY_TABLES)
        .fetch_one(&mut *conn)
        .await?;
    let statements = statements(conn, who, on_citus, &append_only, sealing).await?;
    if who.previous.is_none() && stored.as_deref() == Some(&digest(&statements, &before)[..]) {
        return Ok(false);
    }
    run_sql(conn, &statements, on_citus).await?;
    let after: String = sqlx::query_scalar(concat!("SELECT (", snapshot_sql!(), ")"))
        .bind(who.schema)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE platform.departement_schemas SET rights_digest = $2 WHERE schema_name = $1",
    )
    .bind(who.schema)
    .bind(&digest(&statements, &after)[..])
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// The sweep's statements, given the schema's append-only tables and whether it has the
/// sealing function. The département role gets nothing outside its schema; the application
/// role only sees the schema's names, to call the sealing function.
async fn statements(
    conn: &mut PgConnection,
    who: &Grantees<'_>,
    on_citus: bool,
    append_only: &[String],
    sealing: bool,
) -> Result<String, MigrateError> {
    let schema_id = ident(who.schema)?;
    let (role_id, sealer_id, app_id) = (ident(who.role)?, ident(who.sealer)?, ident(who.app)?);
    let mut grants = format!(
        "REVOKE ALL ON SCHEMA {schema_id} FROM PUBLIC;
         GRANT USAGE ON SCHEMA {schema_id} TO {role_id}, {sealer_id}, {app_id};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema_id} TO {role_id};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema_id} TO {role_id};
         REVOKE INSERT, UPDATE, DELETE ON {schema_id}.schema_migrations FROM {role_id};"
    );
    for table in append_only {
        let table_id = ident(table)?;
        grants.push_str(&format!(
            "REVOKE UPDATE, DELETE, TRUNCATE ON {schema_id}.{table_id} FROM {role_id};"
        ));
        if table == "journal" && on_citus {
            // Citus keeps no column privileges: whole-table rights, the chain columns being
            // guarded by the journal's triggers (migration 0026).
            grants.push_str(&format!(
                "GRANT INSERT ON {schema_id}.journal TO {role_id};
                 GRANT SELECT, UPDATE ON {schema_id}.journal TO {sealer_id};"
            ));
        } else if table == "journal" {
            // Table-level REVOKE also drops column privileges granted by earlier versions.
            grants.push_str(&format!(
                "REVOKE INSERT ON {schema_id}.journal FROM {role_id};
                 GRANT INSERT ({JOURNAL_INSERT_COLUMNS}) ON {schema_id}.journal TO {role_id};
                 GRANT SELECT, UPDATE (seq, prev_hash, hash) ON {schema_id}.journal TO {sealer_id};"
            ));
        }
    }
    if sealing {
        // SECURITY DEFINER with a fixed search path, pg_temp last (PostgreSQL's advice).
        grants.push_str(&format!(
            "ALTER FUNCTION {schema_id}.journal_seal(integer) OWNER TO {sealer_id};
             ALTER FUNCTION {schema_id}.journal_seal(integer) SET search_path = {schema_id}, pg_temp;
             REVOKE ALL ON FUNCTION {schema_id}.journal_seal(integer) FROM PUBLIC;
             GRANT EXECUTE ON FUNCTION {schema_id}.journal_seal(integer) TO {role_id}, {app_id};"
        ));
    }
    if let Some(previous) = who.previous {
        let previous_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(previous)
                .fetch_one(&mut *conn)
                .await?;
        if previous_exists {
            let old = ident(previous)?;
            grants.push_str(&format!(
                "REVOKE ALL ON ALL TABLES IN SCHEMA {schema_id} FROM {old};
                 REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_id} FROM {old};
                 REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema_id} FROM {old};
                 REVOKE ALL ON SCHEMA {schema_id} FROM {old};
                 REVOKE {old} FROM {app_id};"
            ));
        }
    }
    Ok(grants)
}

fn digest(statements: &str, snapshot: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((statements.len() as u64).to_be_bytes());
    hasher.update(statements.as_bytes());
    hasher.update(snapshot.as_bytes());
    hasher.finalize().into()
}
