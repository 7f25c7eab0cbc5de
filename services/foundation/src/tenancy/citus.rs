//! Citus schema-based sharding: each territory's schema, whole, on one worker node.
//!
//! A database is "on Citus" when the `citus` extension is installed in it; nothing else
//! changes for the platform: it connects to the coordinator, which routes a transaction that
//! stays in one territory's schema to the worker holding it. The platform schema stays on the
//! coordinator. The migrator distributes each territory's schema once it is created
//! (`citus_schema_distribute`, in the provisioning transaction); later migrations of that
//! schema are propagated by Citus to its worker inside the same transaction, so the per-schema
//! rollback rule is unchanged.
//!
//! Two things differ from one PostgreSQL, both handled by the migrator:
//! - Citus carries no column privileges to a worker: the journal's chain columns are guarded
//!   by triggers (département migration 0026) and whole-table rights are granted there;
//! - the coordinator opens connections to a worker as the role running the statement, so the
//!   journal's sealer role (owner of a SECURITY DEFINER function) must be allowed to log in.
//!   It has no password: only the nodes' trusted Unix socket, which only the clusters' OS user
//!   may open, lets it in (see infra/lib/citus.sh and docs/OPERATIONS.md).

use std::fmt;

use sqlx::{PgConnection, PgPool};

use super::DepartementCode;
use super::migrate::{ddl, ident};

/// Whether the database of `conn` has the Citus extension.
pub async fn enabled(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
        .fetch_one(conn)
        .await
}

/// Distributes `schema` (a territory's) if it is not yet: its tables move, whole, to one
/// worker. Runs inside the caller's transaction.
pub(super) async fn distribute(conn: &mut PgConnection, schema: &str) -> Result<bool, sqlx::Error> {
    let done: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = $1::regnamespace)",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await?;
    if done {
        return Ok(false);
    }
    sqlx::query("SELECT citus_schema_distribute($1::regnamespace)")
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// A node of the cluster, as the coordinator's registry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub coordinator: bool,
    pub active: bool,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.coordinator {
            "coordinateur"
        } else {
            "nœud"
        };
        write!(f, "{role} {} ({}:{})", self.id, self.host, self.port)
    }
}

/// Where one territory's schema is: the node holding its tables, their size.
#[derive(Debug, Clone)]
pub struct Placement {
    pub departement: DepartementCode,
    pub node: Node,
    pub bytes: i64,
}

/// The registered nodes, coordinator first.
pub async fn nodes(admin: &PgPool) -> Result<Vec<Node>, sqlx::Error> {
    let rows: Vec<(i32, String, i32, i32, bool)> = sqlx::query_as(
        "SELECT nodeid, nodename::text, nodeport, groupid, isactive FROM pg_dist_node
         WHERE noderole = 'primary' ORDER BY groupid, nodeid",
    )
    .fetch_all(admin)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, host, port, group, active)| Node {
            id,
            host,
            port,
            coordinator: group == 0,
            active,
        })
        .collect())
}

/// Where each distributed territory is, by département code.
pub async fn placements(admin: &PgPool) -> Result<Vec<Placement>, sqlx::Error> {
    let nodes = nodes(admin).await?;
    // One row per schema: every table of a distributed schema is on the same node.
    let rows: Vec<(String, String, i32, i64)> = sqlx::query_as(
        "SELECT s.schema_name::text, sh.nodename::text, sh.nodeport, sum(sh.shard_size)::bigint
         FROM citus_schemas s
         JOIN citus_shards sh ON sh.colocation_id = s.colocation_id
         GROUP BY 1, 2, 3 ORDER BY 1",
    )
    .fetch_all(admin)
    .await?;
    let mut out = Vec::new();
    for (schema, host, port, bytes) in rows {
        let Some(departement) = schema
            .strip_prefix("dep_")
            .and_then(|c| DepartementCode::parse(c).ok())
        else {
            continue;
        };
        let node = nodes
            .iter()
            .find(|n| n.host == host && n.port == port)
            .cloned()
            .unwrap_or(Node {
                id: 0,
                host,
                port,
                coordinator: false,
                active: false,
            });
        out.push(Placement {
            departement,
            node,
            bytes,
        });
    }
    Ok(out)
}

/// How a move copies a territory's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// Logical replication: reads and writes go on during the copy, writes wait only for the
    /// final switch (every table needs a replica identity; all of ours have a primary key).
    Online,
    /// Writes wait for the whole copy.
    BlockWrites,
}

impl TransferMode {
    fn as_citus(self) -> &'static str {
        match self {
            TransferMode::Online => "force_logical",
            TransferMode::BlockWrites => "block_writes",
        }
    }
}

/// Moves a territory's schema, whole, to `node`. Citus copies it, catches up, switches the
/// coordinator's routing in one step and drops the old copy; a move that fails leaves the
/// territory where it was (the copy is cleaned up by Citus).
///
/// The copy an earlier move left on `node` (Citus drops the old copy once the queries that
/// were using it are done) must be gone first: it is cleaned up before the move, and a move
/// refused because it could not be yet (« orphaned shard … could not be cleaned up »: nothing
/// was done) is tried again, up to 10 times a second apart.
pub async fn move_schema(
    admin: &PgPool,
    departement: DepartementCode,
    node: &Node,
    mode: TransferMode,
) -> Result<(), sqlx::Error> {
    let mut attempt = 0;
    loop {
        sqlx::query("CALL citus_cleanup_orphaned_resources()")
            .execute(admin)
            .await?;
        let moved = sqlx::query(
            "SELECT citus_schema_move($1::regnamespace, $2, $3, $4::citus.shard_transfer_mode)",
        )
        .bind(departement.schema_name())
        .bind(&node.host)
        .bind(node.port)
        .bind(mode.as_citus())
        .execute(admin)
        .await;
        match moved {
            Err(sqlx::Error::Database(e))
                if attempt < 10 && e.message().contains("could not be cleaned up") =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// The progress of the moves running now, as Citus reports it: (table, bytes on the source,
/// bytes copied so far to the target).
pub async fn move_progress(admin: &PgPool) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT table_name::text, coalesce(source_shard_size, 0)::bigint,
                coalesce(target_shard_size, 0)::bigint
         FROM get_rebalance_progress() ORDER BY 1",
    )
    .fetch_all(admin)
    .await
}

/// Makes a new database of a Citus cluster a distributed one: the extension, the coordinator's
/// own address and the workers (each must already have the database and the extension).
/// `host` is how the nodes reach each other (the nodes' socket directory, or a host name).
pub async fn attach(
    admin: &PgPool,
    host: &str,
    coordinator_port: u16,
    worker_ports: &[u16],
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS citus")
        .execute(admin)
        .await?;
    sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
        .bind(host)
        .bind(i32::from(coordinator_port))
        .execute(admin)
        .await?;
    for port in worker_ports {
        sqlx::query(
            "SELECT citus_add_node($1, $2)
             WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodename = $1 AND nodeport = $2)",
        )
        .bind(host)
        .bind(i32::from(*port))
        .execute(admin)
        .await?;
    }
    // A move's replication slots, publications and roles are named after its operation number,
    // and slots and roles belong to the node, not to one of its databases: a database counting
    // from 1 like another on the same nodes would name its moves alike (« replication slot …
    // already exists » while the other's half-done move is not cleaned up). Each database
    // starts its count at its own random point, once.
    sqlx::query(
        "SELECT setval('pg_catalog.pg_dist_operationid_seq', 1 + floor(random() * 2^40)::bigint)
         FROM pg_catalog.pg_dist_operationid_seq WHERE NOT is_called",
    )
    .execute(admin)
    .await?;
    Ok(())
}

/// Lets the journal's sealer role log in (without a password) so that the coordinator can run
/// the sealing function's statements on the workers as that role.
pub(super) async fn sealer_may_log_in(
    conn: &mut PgConnection,
    sealer: &str,
) -> Result<(), sqlx::Error> {
    let can: Option<bool> =
        sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
            .bind(sealer)
            .fetch_optional(&mut *conn)
            .await?;
    if can == Some(false) {
        let id = ident(sealer).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        sqlx::raw_sql(ddl(format!("ALTER ROLE {id} LOGIN PASSWORD NULL")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How many times a schema transaction is run when it lost a race on a shared catalog row or
/// was a deadlock's victim.
pub(super) const CATALOG_RACE_ATTEMPTS: u64 = 8;

/// PostgreSQL's answer when two transactions change the same shared catalog row at once (a
/// role, on a Citus worker, whose roles every database of the node shares): nothing was
/// written, the transaction may run again. The worker's « tuple concurrently updated » reaches
/// the coordinator as such, or as « failure on connection marked as essential » when it
/// happens in a command Citus cannot do without.
pub fn is_role_race(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.message().contains("tuple concurrently updated")
                || db.message().contains("marked as essential")
        }
        _ => false,
    }
}

/// A transaction cancelled as a deadlock's victim (`40P01`): PostgreSQL's own detector, or
/// Citus's distributed one. Citus's builds one wait graph of every database of a node and
/// counts every local session as one transaction, so two migrations of different databases on
/// the same nodes (tests do this all the time) can be taken for a cycle. Either way the
/// transaction rolled back whole and may run again.
pub fn is_deadlock_victim(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// A schema transaction that wrote nothing and may run again: a lost race on a shared role
/// row, or a deadlock's victim.
pub(super) fn is_catalog_race(e: &super::migrate::MigrateError) -> bool {
    matches!(e, super::migrate::MigrateError::Database(e) if is_role_race(e) || is_deadlock_victim(e))
}

/// Splits a migration's SQL into its statements (on `;` outside quotes, dollar-quoted bodies
/// and comments). Citus forwards some statements to the workers as the text it received, and a
/// worker refuses several commands in one forwarded text: on Citus, each statement of a
/// migration is sent on its own, in the same transaction.
pub(super) fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // A dollar-quote tag: `$$` or `$name$` (a parameter `$1` is not one).
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                if let Some(end) = tag_end
                    && bytes[end] == b'$'
                    && !bytes[i + 1..end].first().is_some_and(u8::is_ascii_digit)
                {
                    let tag = &sql[i..=end];
                    match sql[end + 1..].find(tag) {
                        Some(close) => i = end + 1 + close + tag.len() - 1,
                        None => i = bytes.len(),
                    }
                }
            }
            b';' => {
                out.push(&sql[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.retain(|s| {
        // Keep statements with something besides blanks and comments.
        s.lines()
            .map(|l| l.split("--").next().unwrap_or("").trim())
            .any(|l| !l.is_empty() && l != ";")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_split_outside_quotes_bodies_and_comments() {
        let sql = "-- a comment; not a statement\n\
                   CREATE TABLE t (a text DEFAULT 'x;y');\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\n\
                   BEGIN PERFORM 1; RETURN 2; END $$;\n\
                   CREATE FUNCTION g() RETURNS text LANGUAGE sql AS $body$ SELECT 'a;b' $body$;\n\
                   /* block; comment */ SELECT $1::int;\n\
                   COMMENT ON TABLE t IS 'it''s; fine'";
        let parts = statements(sql);
        assert_eq!(parts.len(), 5, "{parts:#?}");
        assert!(parts[0].contains("DEFAULT 'x;y')"));
        assert!(parts[1].contains("RETURN 2; END $$;"));
        assert!(parts[2].contains("$body$ SELECT 'a;b' $body$;"));
        assert!(parts[3].contains("SELECT $1::int;"));
        assert!(parts[4].trim().ends_with("'it''s; fine'"));
    }

    #[test]
    fn every_migration_splits_into_statements_that_end_where_they_should() {
        for m in &crate::tenancy::migrate::DEPARTEMENT_MIGRATIONS.0 {
            let parts = statements(m.sql);
            assert!(!parts.is_empty(), "{}", m.name);
            // Put back together, the statements are the migration, minus blank tails.
            assert_eq!(parts.concat().trim(), m.sql.trim(), "{}", m.name);
        }
    }
}
