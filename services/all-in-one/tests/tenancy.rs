//! Per-département isolation, proven against the real database.

mod common;

use std::collections::HashSet;

use common::{spawn_app, spawn_app_with};
use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS, Migration, MigrationSet};
use foundation::tenancy::tenants::{self, TenantKind};
use foundation::tenancy::{CommuneCode, DepartementCode};
use habilitation_desk::structures::{NewStructure, create_structure};
use sqlx::postgres::PgPoolOptions;
use test_support::database::TestDatabase;

/// Role statements of a test, run again when they lose a race on a shared role row (on Citus
/// the coordinator replays them on the workers, whose roles every test database shares).
async fn role_ddl(db: &TestDatabase, sql: String, what: &str) {
    for attempt in 1.. {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&db.admin)
            .await
        {
            Ok(_) => return,
            Err(e)
                if attempt < 8
                    && (foundation::tenancy::citus::is_role_race(&e)
                        || foundation::tenancy::citus::is_deadlock_victim(&e)) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn dep(code: &str) -> DepartementCode {
    DepartementCode::parse(code).expect("code")
}

/// Provisions (creates or migrates) one territory of `db` with `set`, as `tenant-admin` does.
async fn provision(db: &TestDatabase, code: &str, set: &MigrationSet) -> migrate::SchemaReport {
    migrate::provision_departement(
        &db.admin,
        &db.app_role,
        &TestDatabase::tenant_login(),
        dep(code),
        set,
    )
    .await
    .expect("provisionnement")
}

/// Paris as the application reaches it: its own pool of one connection, logged in as the
/// territory's role.
async fn paris(db: &TestDatabase) -> foundation::tenancy::Territory {
    let app_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.app_url)
        .await
        .expect("pool");
    test_support::tenancy(app_pool)
        .await
        .unguarded(dep("75"))
        .await
        .expect("Paris servi")
}

/// Creates `count` structures named "<code>-<n>" in the département of `commune`.
async fn seed_structures(db: &TestDatabase, commune: &str, count: usize) {
    let commune = CommuneCode::parse(commune).expect("commune");
    let tenant = tenants::create_tenant(
        &db.admin,
        &TenantKind::Departement(commune.departement()),
        "Conseil",
    )
    .await
    .expect("tenant");
    let tenancy = test_support::tenancy(db.admin.clone()).await;
    let ctx = tenancy
        .unguarded(commune.departement())
        .await
        .expect("contexte");
    for n in 0..count {
        let new = NewStructure {
            tenant_id: tenant.id,
            name: format!("{}-{n}", commune.departement()),
            kind: "mairie".into(),
            commune: commune.clone(),
            // The open data leaves out places without an address.
            address: format!("{n} place de la Mairie"),
            france_services: false,
        };
        create_structure(&ctx, &new).await.expect("structure");
    }
}

fn is_permission_denied(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.code().as_deref() == Some("42501"))
}

#[tokio::test]
async fn a_departement_role_cannot_read_or_write_another_departement() {
    let db = TestDatabase::with_departements(&["75", "13"]).await;
    seed_structures(&db, "13055", 1).await;
    let app_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(app_pool.clone()).await;
    let paris = tenancy.unguarded(dep("75")).await.expect("Paris servi");

    let mut tx = paris.begin().await.expect("tx");
    let read = sqlx::query("SELECT count(*) FROM dep_13.structures")
        .execute(&mut *tx)
        .await;
    assert!(
        read.as_ref().is_err_and(is_permission_denied),
        "lecture de dep_13 depuis 75 : {read:?}"
    );
    tx.rollback().await.expect("rollback");

    let mut tx = paris.begin().await.expect("tx");
    let write = sqlx::query(
        "INSERT INTO dep_13.structures (id, tenant_id, name, kind, commune_code) VALUES (gen_random_uuid(), gen_random_uuid(), 'x', 'mairie', '13055')",
    )
    .execute(&mut *tx)
    .await;
    assert!(
        write.as_ref().is_err_and(is_permission_denied),
        "écriture dans dep_13 depuis 75 : {write:?}"
    );
    tx.rollback().await.expect("rollback");

    // The same with the role itself, whatever the search path says.
    let role_75 = migrate::role_name(&db.admin, dep("75"))
        .await
        .expect("rôle");
    let mut conn = db.admin.acquire().await.expect("connexion");
    sqlx::query("SELECT set_config('role', $1, false)")
        .bind(&role_75)
        .execute(&mut *conn)
        .await
        .expect("SET ROLE");
    let direct = sqlx::query("SELECT name FROM dep_13.structures")
        .fetch_all(&mut *conn)
        .await;
    assert!(
        direct.as_ref().is_err_and(is_permission_denied),
        "{direct:?}"
    );
    sqlx::query("RESET ROLE")
        .execute(&mut *conn)
        .await
        .expect("RESET ROLE");
    drop(conn);

    // Outside a tenant transaction the application role reaches no territory at all.
    let bare = sqlx::query("SELECT count(*) FROM dep_75.structures")
        .execute(&app_pool)
        .await;
    assert!(bare.as_ref().is_err_and(is_permission_denied), "{bare:?}");

    // While its own schema is readable and writable.
    let mut tx = paris.begin().await.expect("tx");
    let own: i64 = sqlx::query_scalar("SELECT count(*) FROM structures")
        .fetch_one(&mut *tx)
        .await
        .expect("lecture");
    assert_eq!(own, 0);
}

/// SQL run inside a tenant transaction cannot leave its territory: not by switching role (to
/// another département's, or back to the application's), not by changing the session's
/// identity, not with temporary objects that would shadow the territory's tables.
#[tokio::test]
async fn sql_inside_a_tenant_transaction_cannot_switch_role_or_create_temporary_objects() {
    let db = TestDatabase::with_departements(&["75", "13"]).await;
    seed_structures(&db, "13055", 1).await;
    let role_13 = migrate::role_name(&db.admin, dep("13"))
        .await
        .expect("rôle");
    let paris = paris(&db).await;
    let escapes = [
        format!("SET ROLE {role_13}"),
        format!("SET LOCAL ROLE {role_13}"),
        format!("SELECT set_config('role', '{role_13}', true)"),
        format!("SELECT set_config('role', '{role_13}', false)"),
        "RESET ROLE".to_owned(),
        "SET ROLE NONE".to_owned(),
        format!("SET SESSION AUTHORIZATION {role_13}"),
        format!("SET SESSION AUTHORIZATION {}", db.app_role),
    ];
    for escape in &escapes {
        for read in [
            "SELECT count(*) FROM dep_13.structures",
            "SELECT count(*) FROM platform.sessions",
        ] {
            // Whether the statement itself is refused or not, afterwards neither another
            // territory nor the platform schema is readable.
            let mut tx = paris.begin().await.expect("tx");
            let switched = sqlx::query(sqlx::AssertSqlSafe(escape.clone()))
                .execute(&mut *tx)
                .await;
            if switched.is_err() {
                tx.rollback().await.expect("rollback");
                tx = paris.begin().await.expect("tx");
            }
            let result = sqlx::query(read).execute(&mut *tx).await;
            assert!(
                result.as_ref().is_err_and(is_permission_denied),
                "{escape} puis {read} : {result:?}"
            );
        }
    }
    // The switches to another role are refused outright.
    for escape in [
        &escapes[0],
        &escapes[1],
        &escapes[2],
        &escapes[6],
        &escapes[7],
    ] {
        let mut tx = paris.begin().await.expect("tx");
        let result = sqlx::query(sqlx::AssertSqlSafe(escape.clone()))
            .execute(&mut *tx)
            .await;
        assert!(
            result.as_ref().is_err_and(is_permission_denied),
            "{escape} : {result:?}"
        );
    }
    // No temporary object, and temporary objects never come first in the search path.
    for create in [
        "CREATE TEMPORARY TABLE structures (name text)",
        "CREATE TEMPORARY VIEW structures AS SELECT 'x'::text AS name",
    ] {
        let mut tx = paris.begin().await.expect("tx");
        let result = sqlx::query(create).execute(&mut *tx).await;
        assert!(
            result.as_ref().is_err_and(is_permission_denied),
            "{create} : {result:?}"
        );
    }
    let mut tx = paris.begin().await.expect("tx");
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *tx)
        .await
        .expect("search_path");
    assert_eq!(path, "dep_75, pg_temp");
}

/// Roles are cluster-wide: a role that another database of the cluster marked as its own is
/// never taken over (the territory is left unserved with a clear error instead).
#[tokio::test]
async fn a_role_marked_by_another_database_is_never_shared() {
    let db = TestDatabase::create().await;
    let role = migrate::role_name(&db.admin, dep("75"))
        .await
        .expect("rôle");
    let other = foundation::tenancy::logins::database_mark("une_autre_base");
    role_ddl(
        &db,
        format!("CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS '{other}'"),
        "rôle d'une autre base",
    )
    .await;
    let report = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
    let error = report.result.expect_err("rôle partagé");
    assert!(
        error.contains(&format!(
            "le rôle {role} appartient à une autre base de données"
        )),
        "{error}"
    );
    let status: String = sqlx::query_scalar(
        "SELECT status FROM platform.departement_schemas WHERE departement_code = '75'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!(status, "failed");
    // The foreign role was left as it was: no login, no password, still the other's.
    let (login, password, mark): (bool, bool, Option<String>) = sqlx::query_as(
        "SELECT rolcanlogin, rolpassword IS NOT NULL, shobj_description(oid, 'pg_authid')
         FROM pg_authid WHERE rolname = $1",
    )
    .bind(&role)
    .fetch_one(&db.admin)
    .await
    .expect("rôle");
    assert_eq!((login, password, mark), (false, false, Some(other)));
    role_ddl(&db, format!("DROP ROLE {role}"), "DROP ROLE").await;
}

/// A database provisioned before the département roles logged in themselves (the application
/// role a member of each, the roles NOLOGIN and unmarked) is brought to the new scheme by the
/// next migration.
#[tokio::test]
async fn migrating_an_older_database_removes_the_application_roles_memberships() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let role = migrate::role_name(&db.admin, dep("75"))
        .await
        .expect("rôle");
    role_ddl(&db, format!(
        "GRANT {role} TO {app}; ALTER ROLE {role} NOLOGIN PASSWORD NULL; COMMENT ON ROLE {role} IS NULL",
        app = db.app_role
    ), "état d'avant").await;
    let report = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let (member, login, marked): (bool, bool, bool) = sqlx::query_as(
        "SELECT pg_has_role($2, r.oid, 'MEMBER'), r.rolcanlogin,
                shobj_description(r.oid, 'pg_authid') IS NOT NULL
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(&role)
    .bind(&db.app_role)
    .fetch_one(&db.admin)
    .await
    .expect("rôle");
    assert_eq!((member, login, marked), (false, true, true));
    let mut tx = paris(&db).await.begin().await.expect("tx");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *tx)
        .await
        .expect("utilisateur");
    assert_eq!(user, role);
}

/// A migration run that applies nothing skips the rights it would only repeat, but never
/// those changed since: rights and a login altered by hand are set back by the next run.
#[tokio::test]
async fn a_run_with_nothing_to_apply_still_restores_rights_changed_by_hand() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let role = migrate::role_name(&db.admin, dep("75"))
        .await
        .expect("rôle");
    let rights = "SELECT has_table_privilege($1, 'dep_75.journal', 'UPDATE'),
                          has_table_privilege($1, 'dep_75.mandates', 'SELECT'),
                          has_table_privilege($1, 'dep_75.structures', 'DELETE'),
                          has_schema_privilege($1, 'dep_75', 'USAGE'),
                          r.rolcreatedb
                   FROM pg_roles r WHERE r.rolname = $1";
    let read = || async {
        sqlx::query_as::<_, (bool, bool, bool, bool, bool)>(rights)
            .bind(&role)
            .fetch_one(&db.admin)
            .await
            .expect("droits")
    };
    let migrated = read().await;
    assert_eq!(migrated, (false, true, true, true, false));
    let run_again = || async {
        let report = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
        assert!(report.result.is_ok(), "{:?}", report.result);
        assert_eq!(report.applied, 0);
    };
    // Each change alone, then the run that must undo it.
    let changes = [
        format!("GRANT UPDATE ON dep_75.journal TO {role}"),
        format!("REVOKE SELECT ON dep_75.mandates FROM {role}"),
        format!("REVOKE DELETE ON ALL TABLES IN SCHEMA dep_75 FROM {role}"),
        format!("REVOKE USAGE ON SCHEMA dep_75 FROM {role}"),
        format!("ALTER ROLE {role} CREATEDB"),
        format!("ALTER ROLE {role} PASSWORD 'changé à la main'"),
    ];
    for change in changes {
        role_ddl(&db, change.clone(), "changement à la main").await;
        run_again().await;
        assert_eq!(read().await, migrated, "après « {change} »");
        // The territory's login still works: the password follows the derived one.
        let mut tx = paris(&db)
            .await
            .begin()
            .await
            .unwrap_or_else(|e| panic!("connexion du territoire après « {change} » : {e}"));
        let structures: i64 = sqlx::query_scalar("SELECT count(*) FROM structures")
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("lecture après « {change} » : {e}"));
        assert_eq!(structures, 0);
    }
    // A migration adding a column skips nothing it needs; one adding a table gets it swept.
    let mut next = DEPARTEMENT_MIGRATIONS.clone();
    next.0.push(Migration {
        version: 9_001,
        name: "9001_column_and_table",
        sql: "ALTER TABLE structures ADD COLUMN phone text;
              CREATE TABLE structure_phones (structure_id uuid PRIMARY KEY, phone text);",
    });
    let report = provision(&db, "75", &next).await;
    assert_eq!((report.applied, report.result.is_ok()), (1, true));
    let new_table: (bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege($1, 'dep_75.structure_phones', 'SELECT, INSERT'),
                has_column_privilege($1, 'dep_75.structures', 'phone', 'UPDATE')",
    )
    .bind(&role)
    .fetch_one(&db.admin)
    .await
    .expect("droits");
    assert_eq!(new_table, (true, true));
}

/// A run reloads a territory's communes (reference data in the platform schema) when a row is
/// missing or when the reference differs from the one recorded at the last load; otherwise it
/// skips them (one new migration on 101 territories, load-tests/README.md).
#[tokio::test]
async fn a_run_loads_the_communes_again_when_rows_are_missing_or_the_reference_changed() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let state = || async {
        sqlx::query_as::<_, (i64, Option<String>, bool)>(
            "SELECT (SELECT count(*) FROM platform.communes WHERE departement_code = '75'),
                    (SELECT name FROM platform.communes WHERE code = '75056'),
                    (SELECT communes_digest IS NOT NULL FROM platform.departement_schemas
                     WHERE departement_code = '75')",
        )
        .fetch_one(&db.admin)
        .await
        .expect("communes")
    };
    let loaded = state().await;
    assert!(loaded.0 > 20, "{loaded:?}");
    assert_eq!((loaded.1.as_deref(), loaded.2), (Some("Paris"), true));
    let run_again = || async {
        let report = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
        assert!(report.result.is_ok(), "{:?}", report.result);
    };
    // A row deleted by hand: the count differs.
    sqlx::query("DELETE FROM platform.communes WHERE code = '75056'")
        .execute(&db.admin)
        .await
        .expect("suppression");
    run_again().await;
    assert_eq!(state().await, loaded);
    // A reference other than the one recorded (as after an update of communes.tsv).
    sqlx::query("UPDATE platform.communes SET name = 'Lutèce' WHERE code = '75056'")
        .execute(&db.admin)
        .await
        .expect("nom");
    sqlx::query(
        "UPDATE platform.departement_schemas SET communes_digest = '\\x00'
         WHERE departement_code = '75'",
    )
    .execute(&db.admin)
    .await
    .expect("empreinte");
    run_again().await;
    assert_eq!(state().await, loaded);
}

/// A territory recorded with a role of an earlier naming scheme moves to the current one: the
/// old role loses its rights and the application role its membership.
#[tokio::test]
async fn a_role_of_an_earlier_naming_scheme_is_stripped_of_its_rights() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let legacy = format!("{}_ancien_dep_75", db.name);
    role_ddl(
        &db,
        format!(
            "CREATE ROLE {legacy} NOLOGIN NOINHERIT;
             GRANT USAGE ON SCHEMA dep_75 TO {legacy};
             GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA dep_75 TO {legacy};
             GRANT {legacy} TO {app};
             UPDATE platform.departement_schemas SET role_name = '{legacy}' WHERE departement_code = '75';",
            app = db.app_role
        ),
        "état d'avant",
    )
    .await;
    let report = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    let (member, usage, select, recorded): (bool, bool, bool, String) = sqlx::query_as(
        "SELECT pg_has_role($2, $1, 'MEMBER'), has_schema_privilege($1, 'dep_75', 'USAGE'),
                has_table_privilege($1, 'dep_75.structures', 'SELECT'),
                (SELECT role_name FROM platform.departement_schemas WHERE departement_code = '75')",
    )
    .bind(&legacy)
    .bind(&db.app_role)
    .fetch_one(&db.admin)
    .await
    .expect("droits");
    let current = migrate::role_name(&db.admin, dep("75"))
        .await
        .expect("rôle");
    assert_eq!(
        (member, usage, select, recorded),
        (false, false, false, current)
    );
    role_ddl(&db, format!("DROP ROLE {legacy}"), "DROP ROLE").await;
}

#[tokio::test]
async fn interleaved_requests_of_two_departements_over_two_connections_never_mix() {
    let db = TestDatabase::with_departements(&["75", "2A"]).await;
    seed_structures(&db, "75056", 3).await;
    seed_structures(&db, "2A004", 2).await;
    let app = spawn_app_with(db, |s| {
        s.database.max_connections = 2;
        // Correctness under interleaving is tested here, not latency: let requests queue.
        s.database.acquire_timeout_ms = 30_000;
    })
    .await;

    let mut requests = Vec::new();
    for i in 0..1000 {
        let code = if i % 2 == 0 { "75" } else { "2A" };
        let client = app.client.clone();
        let url = app.url(&format!("/api/habilitation/departements/{code}/lieux"));
        requests.push(tokio::spawn(async move {
            let resp = client.get(url).send().await.expect("requête");
            (
                code,
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }));
    }
    let (mut ok, mut leaks) = (0, 0);
    for request in requests {
        let (code, status, body) = request.await.expect("tâche");
        assert_eq!(status, 200, "{body}");
        let places = body.as_array().expect("places");
        let names: Vec<&str> = places.iter().filter_map(|p| p["nom"].as_str()).collect();
        let expected = if code == "75" { 3 } else { 2 };
        if places.iter().all(|p| {
            p["code_insee"]
                .as_str()
                .is_some_and(|c| c.starts_with(code))
        }) && names.len() == expected
            && names.iter().all(|n| n.starts_with(&format!("{code}-")))
        {
            ok += 1;
        } else {
            leaks += 1;
        }
    }
    assert_eq!((ok, leaks), (1000, 0));
}

#[tokio::test]
async fn a_pooled_connection_keeps_nothing_of_a_tenant_transaction() {
    let db = TestDatabase::with_departements(&["75", "13"]).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(pool.clone()).await;
    let app_role = db.app_role.clone();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let tenancy = tenancy.clone();
        let (code, pool, app_role) = (
            if i % 2 == 0 { "75" } else { "13" },
            pool.clone(),
            app_role.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let ctx = tenancy.unguarded(dep(code)).await.expect("contexte");
            let mut tx = ctx.begin().await.expect("tx");
            let (path, user): (String, String) =
                sqlx::query_as("SELECT current_setting('search_path'), current_user::text")
                    .fetch_one(&mut *tx)
                    .await
                    .expect("réglages");
            let inside_ok = path == format!("{}, pg_temp", dep(code).schema_name())
                && user.ends_with(&dep(code).schema_name());
            // Half the transactions fail and roll back: they must not leave anything either.
            if i % 4 < 2 {
                let _ = sqlx::query("SELECT 1/0").execute(&mut *tx).await;
                drop(tx);
            } else {
                tx.commit().await.expect("commit");
            }
            let (path, user): (String, String) =
                sqlx::query_as("SELECT current_setting('search_path'), current_user::text")
                    .fetch_one(&pool)
                    .await
                    .expect("réglages");
            inside_ok && user == app_role && !path.contains("dep_")
        }));
    }
    let mut clean = 0;
    for t in tasks {
        clean += usize::from(t.await.expect("tâche"));
    }
    assert_eq!(clean, 1000);
}

/// The server process behind a connection.
async fn pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// A territory's connection given back clean is handed out again at once, without going
/// through sqlx's pool (and its round trip); a transaction dropped without its end (an error, a
/// cancelled request) leaves no lock behind: its `ROLLBACK` reaches the server straight away,
/// not at the connection's next use.
#[tokio::test]
async fn a_released_connection_serves_again_at_once_and_a_dropped_transaction_frees_its_locks() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let ctx = paris(&db).await;
    let mut tx = ctx.begin().await.expect("tx");
    let first = pid(&mut tx).await.expect("pid");
    tx.commit().await.expect("commit");
    for round in 0..20 {
        let mut conn = ctx.autocommit().await.expect("connexion");
        assert_eq!(pid(&mut conn).await.expect("pid"), first, "tour {round}");
        drop(conn);
        let mut tx = ctx.begin().await.expect("tx");
        assert_eq!(pid(&mut tx).await.expect("pid"), first, "tour {round}");
        tx.commit().await.expect("commit");
    }

    let mut tx = ctx.begin().await.expect("tx");
    sqlx::query("SELECT pg_advisory_xact_lock(4242)")
        .execute(&mut *tx)
        .await
        .expect("verrou");
    drop(tx);
    // Nothing uses the territory meanwhile: only the dropped transaction's own end frees it.
    let mut freed = false;
    for _ in 0..40 {
        freed = sqlx::query_scalar("SELECT pg_try_advisory_lock(4242)")
            .fetch_one(&db.admin)
            .await
            .expect("essai");
        if freed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        freed,
        "le verrou de la transaction abandonnée est toujours tenu après 2 s"
    );
}

/// The platform's connection for the statements of every request (the session's look-up, the
/// identity provider's habilitation checks) is handed out again at once once given back,
/// without sqlx's round trip, and those checks run on it.
#[tokio::test]
async fn the_platform_request_connection_serves_again_at_once_and_carries_the_habilitation_check() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(pool).await;
    let mut conn = tenancy.request_connection().await.expect("connexion");
    let first = pid(&mut conn).await.expect("pid");
    drop(conn);
    let domain = policies::Domain::Structure(uuid::Uuid::new_v4());
    for round in 0..20 {
        let holds = foundation::auth::assignments::holds_now(
            &tenancy,
            foundation::ids::ProfessionalId::new_v7(),
            policies::Role::Aidant,
            &domain,
        )
        .await
        .expect("habilitation");
        assert!(!holds, "un inconnu n'est habilité nulle part");
        let last: String = sqlx::query_scalar("SELECT query FROM pg_stat_activity WHERE pid = $1")
            .bind(first)
            .fetch_one(&db.admin)
            .await
            .expect("activité");
        assert!(
            last.contains("platform.role_assignments"),
            "tour {round} : la vérification n'est pas passée par la connexion des requêtes ({last})"
        );
        let mut conn = tenancy.request_connection().await.expect("connexion");
        assert_eq!(pid(&mut conn).await.expect("pid"), first, "tour {round}");
    }
}

/// Eight times more requests than a territory's connections, each taking one for a moment,
/// none waiting past the acquire timeout (2 s): a connection put back while all are out goes
/// to whoever waits for one.
#[tokio::test]
async fn more_requests_than_connections_each_get_one_in_turn() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(pool).await;
    let ctx = tenancy.unguarded(dep("75")).await.expect("contexte");
    let max = test_support::database::TestDatabase::tenant_login().max_connections() as usize;
    let tasks: Vec<_> = (0..8 * max)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for round in 0..25 {
                    if (i + round) % 2 == 0 {
                        let mut conn = ctx.autocommit().await?;
                        sqlx::query("SELECT pg_sleep(0.002)")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        let mut tx = ctx.begin().await?;
                        sqlx::query("SELECT pg_sleep(0.002)")
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                    }
                }
                Ok::<(), sqlx::Error>(())
            })
        })
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("tâche") {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} échecs : {:?}",
        failed.len(),
        failed.first()
    );
}

/// `Territory::begin_unflushed`: the transaction commits without waiting for the disk — where
/// its statements run, on the worker too on Citus — and leaves the connection's later
/// transactions and statements as durable as before.
#[tokio::test]
async fn an_unflushed_transaction_is_the_only_one_to_skip_the_flush() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let ctx = paris(&db).await;
    // The pool takes a connection back asynchronously: the next request finds it again most
    // of the time, not always; ten rounds.
    for round in 0..10 {
        let mut tx = ctx.begin_unflushed().await.expect("tx");
        let unflushed = commit_mode(&mut tx).await;
        tx.commit().await.expect("commit");
        let mut tx = ctx.begin().await.expect("tx");
        let next = commit_mode(&mut tx).await;
        tx.commit().await.expect("commit");
        let alone = commit_mode(&mut ctx.autocommit().await.expect("connexion")).await;
        assert_eq!(
            [unflushed.as_str(), next.as_str(), alone.as_str()],
            ["off", "on", "on"],
            "sans attente du disque, transaction suivante, instruction hors transaction ({round})"
        );
    }
}

/// `Territory::begin_custom_plans`: the transaction's statements are planned for their values
/// each time — where they run, on the worker too on Citus — and the connection's later
/// transactions and statements plan as PostgreSQL chooses again.
#[tokio::test]
async fn a_custom_plans_transaction_is_the_only_one_to_force_them() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let ctx = paris(&db).await;
    for round in 0..10 {
        let mut tx = ctx.begin_custom_plans().await.expect("tx");
        let custom = plan_mode(&mut tx).await;
        tx.commit().await.expect("commit");
        let mut tx = ctx.begin().await.expect("tx");
        let next = plan_mode(&mut tx).await;
        tx.commit().await.expect("commit");
        let alone = plan_mode(&mut ctx.autocommit().await.expect("connexion")).await;
        assert_eq!(
            [custom.as_str(), next.as_str(), alone.as_str()],
            ["force_custom_plan", "auto", "auto"],
            "plans sur mesure, transaction suivante, instruction hors transaction ({round})"
        );
    }
}

/// `plan_cache_mode` read with the territory's table (on Citus, on the worker).
async fn plan_mode(conn: &mut sqlx::PgConnection) -> String {
    let (mode, _): (String, i64) =
        sqlx::query_as("SELECT current_setting('plan_cache_mode'), count(*) FROM structures")
            .fetch_one(conn)
            .await
            .expect("réglage");
    mode
}

/// `synchronous_commit` read with the territory's table, so that on Citus the statement runs
/// on the worker.
async fn commit_mode(conn: &mut sqlx::PgConnection) -> String {
    let (mode, _): (String, i64) =
        sqlx::query_as("SELECT current_setting('synchronous_commit'), count(*) FROM structures")
            .fetch_one(conn)
            .await
            .expect("réglage");
    mode
}

/// `Territory::autocommit`: single statements outside a transaction, on the territory's own
/// connections, whose search path is set when they open. Interleaved with transactions of the
/// same pools, each reads its own territory's rows only, and never another schema.
#[tokio::test]
async fn a_territorys_autocommit_statements_read_its_own_schema_only() {
    let db = TestDatabase::with_departements(&["75", "13"]).await;
    seed_structures(&db, "75056", 3).await;
    seed_structures(&db, "13055", 2).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(pool).await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let tenancy = tenancy.clone();
        let (code, other) = if i % 2 == 0 {
            ("75", "13")
        } else {
            ("13", "75")
        };
        tasks.push(tokio::spawn(async move {
            let ctx = tenancy.unguarded(dep(code)).await.expect("contexte");
            if i % 3 == 0 {
                // A transaction of the same pool sets its path locally in between.
                let mut tx = ctx.begin().await.expect("tx");
                sqlx::query("SELECT count(*) FROM structures")
                    .execute(&mut *tx)
                    .await
                    .expect("lecture");
                tx.commit().await.expect("commit");
            }
            let mut conn = ctx.autocommit().await.expect("connexion");
            let (path, user, names): (String, String, Vec<String>) = sqlx::query_as(
                "SELECT current_setting('search_path'), current_user::text,
                        ARRAY(SELECT name FROM structures ORDER BY name)",
            )
            .fetch_one(&mut *conn)
            .await
            .expect("lecture");
            let own = path.replace(' ', "") == format!("{},pg_temp", dep(code).schema_name())
                && user.ends_with(&dep(code).schema_name())
                && names.len() == if code == "75" { 3 } else { 2 }
                && names.iter().all(|n| n.starts_with(&format!("{code}-")));
            let foreign = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {}.structures",
                dep(other).schema_name()
            )))
            .execute(&mut *conn)
            .await;
            own && foreign.as_ref().is_err_and(is_permission_denied)
        }));
    }
    let mut clean = 0;
    for t in tasks {
        clean += usize::from(t.await.expect("tâche"));
    }
    assert_eq!(clean, 400);
}

#[tokio::test]
async fn a_schema_that_fails_to_migrate_is_reported_and_not_served() {
    let db = TestDatabase::with_departements(&["13"]).await;
    let mut broken = DEPARTEMENT_MIGRATIONS.clone();
    broken.0.push(Migration {
        version: 9_999,
        name: "9999_broken",
        sql: "CREATE TABLE oops (",
    });
    let report = provision(&db, "75", &broken).await;
    assert!(
        report.result.is_err(),
        "une migration invalide doit échouer"
    );
    let status: String = sqlx::query_scalar(
        "SELECT status FROM platform.departement_schemas WHERE departement_code = '75'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!(status, "failed");
    // Nothing of the failed run is left half-applied.
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'dep_75'")
            .fetch_one(&db.admin)
            .await
            .expect("tables");
    assert_eq!(tables, 0);

    let app = spawn_app_with(db, |_| {}).await;
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.expect("json");
    assert_eq!(ready["unserved_departements"], serde_json::json!(["75"]));
    let resp = app.get("/api/habilitation/departements/75/lieux").await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unavailable");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("territoire 75"),
        "{body}"
    );
    assert_eq!(
        app.get("/api/habilitation/departements/13/lieux")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn migrations_are_tracked_per_schema_and_never_edited() {
    let db = TestDatabase::with_departements(&["75", "13"]).await;
    let again = provision(&db, "75", &DEPARTEMENT_MIGRATIONS).await;
    assert_eq!(
        (again.applied, again.result.clone()),
        (0, Ok(DEPARTEMENT_MIGRATIONS.latest_version()))
    );

    // A new migration reaches only the schema it is applied to, recorded in that schema.
    let mut next = DEPARTEMENT_MIGRATIONS.clone();
    next.0.push(Migration {
        version: 9_001,
        name: "9001_notes",
        sql: "CREATE TABLE notes (id bigint PRIMARY KEY)",
    });
    let report = provision(&db, "75", &next).await;
    assert_eq!(report.applied, 1);
    let versions = |schema: &'static str| {
        let admin = db.admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT version FROM {schema}.schema_migrations ORDER BY version"
            )))
            .fetch_all(&admin)
            .await
            .expect("versions")
        }
    };
    let base: Vec<i64> = DEPARTEMENT_MIGRATIONS.0.iter().map(|m| m.version).collect();
    let mut with_new = base.clone();
    with_new.push(9_001);
    assert_eq!(versions("dep_75").await, with_new);
    assert_eq!(versions("dep_13").await, base);

    // Editing an applied migration is refused and the schema is no longer served.
    let mut edited = next.clone();
    edited.0.last_mut().expect("migration").sql =
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text)";
    let report = provision(&db, "75", &edited).await;
    let err = report.result.expect_err("somme de contrôle différente");
    assert!(err.contains("modifiée après avoir été appliquée"), "{err}");
}

#[tokio::test]
async fn lists_never_contain_foreign_rows_and_unknown_codes_are_404() {
    let app = spawn_app(&["75", "13"]).await;
    let db = &app.db;
    seed_structures(db, "75056", 2).await;
    seed_structures(db, "13055", 4).await;
    let body: serde_json::Value = app
        .get("/api/habilitation/departements/13/lieux")
        .await
        .json()
        .await
        .expect("json");
    let names: HashSet<&str> = body
        .as_array()
        .expect("places")
        .iter()
        .filter_map(|p| p["nom"].as_str())
        .collect();
    assert_eq!(names, HashSet::from(["13-0", "13-1", "13-2", "13-3"]));

    let resp = app.get("/api/habilitation/departements/20/lieux").await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("code de département inconnu « 20 »"),
        "{body}"
    );
}

/// A schema transaction chosen as a deadlock's victim wrote nothing and runs again. The test
/// makes a real one: another session creates the territory's schema (uncommitted), the
/// migration then waits for it at its own `CREATE SCHEMA`, and that session asks for the
/// migration's schema lock. The migration waited first, so its deadlock check runs first
/// (the other session's is pushed back to a minute) and cancels it. On Citus the cluster's
/// detector may be the one to cancel it: the answer is the same `40P01`. That detector may also
/// pick the other session as its victim (seen once in a CI run on the cluster): such a round
/// proves nothing about the migration, so it is run again, on a new database, up to three
/// times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_cancelled_by_a_deadlock_runs_again_and_succeeds() {
    for _ in 0..3 {
        if migration_as_deadlock_victim().await {
            return;
        }
    }
    panic!("le détecteur d'interblocages n'a jamais annulé la migration en trois essais");
}

/// One round of the test above; false when the other session was the one cancelled (the
/// migration then still succeeds).
async fn migration_as_deadlock_victim() -> bool {
    let db = TestDatabase::create().await;
    let mut other = db.admin.begin().await.expect("transaction");
    sqlx::query("SET LOCAL deadlock_timeout = '60s'")
        .execute(&mut *other)
        .await
        .expect("délai");
    sqlx::raw_sql("CREATE SCHEMA dep_2a")
        .execute(&mut *other)
        .await
        .expect("schéma concurrent");
    let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *other)
        .await
        .expect("xid");

    let migration = {
        let db_admin = db.admin.clone();
        let app_role = db.app_role.clone();
        tokio::spawn(async move {
            migrate::provision_departement(
                &db_admin,
                &app_role,
                &TestDatabase::tenant_login(),
                dep("2A"),
                &DEPARTEMENT_MIGRATIONS,
            )
            .await
            .expect("provisionnement")
        })
    };
    // The migration holds its schema lock and waits for the other session's transaction.
    let mut waited = false;
    for _ in 0..600 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'transactionid' AND transactionid::text = $1 AND NOT granted",
        )
        .bind(&xid)
        .fetch_one(&db.admin)
        .await
        .expect("verrous");
        if waiting > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        waited,
        "la migration n'a jamais attendu la session concurrente"
    );
    // Closing the cycle: this returns only once the migration's transaction has ended, and it
    // cannot have committed while it waited for this one.
    let other_cancelled = match sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('aidants-connect:schema:dep_2a'))",
    )
    .execute(&mut *other)
    .await
    {
        Ok(_) => false,
        Err(e) if foundation::tenancy::citus::is_deadlock_victim(&e) => true,
        Err(e) => panic!("le verrou de la migration, une fois celle-ci annulée : {e}"),
    };
    other.rollback().await.expect("annulation");

    let report = migration.await.expect("tâche");
    if other_cancelled {
        assert!(
            report.result.is_ok(),
            "la migration doit aboutir une fois l'autre session annulée : {:?}",
            report.result
        );
        return false;
    }
    assert!(
        report.result.is_ok(),
        "la migration annulée par l'interblocage doit être refaite : {:?}",
        report.result
    );
    let status: String = sqlx::query_scalar(
        "SELECT status FROM platform.departement_schemas WHERE departement_code = '2A'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("état");
    assert_eq!(status, "ready");
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'dep_2a'")
            .fetch_one(&db.admin)
            .await
            .expect("tables");
    assert!(tables > 10, "{tables} tables");
    true
}

/// A territory's connections close once no request reached for it during the idle period
/// (10 s), so that a process holds connections only to the territories it is serving, and a
/// territory used again opens a new one (`Tenancy::close_unused_territory_connections`, run
/// by the registry's own task; the pools have no idle timeout of sqlx's, see
/// `tenancy::request_pool_options`).
#[tokio::test]
async fn an_unused_territorys_connections_close_and_reopen_when_it_is_used_again() {
    let db = TestDatabase::with_departements(&["75"]).await;
    let app_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.app_url)
        .await
        .expect("pool");
    let tenancy = test_support::tenancy(app_pool).await;
    let role: String = sqlx::query_scalar(
        "SELECT role_name FROM platform.departement_schemas WHERE departement_code = '75'",
    )
    .fetch_one(&db.admin)
    .await
    .expect("rôle de Paris");
    let open = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = $1",
        )
        .bind(&role)
        .fetch_one(&db.admin)
        .await
        .expect("connexions")
    };
    let use_paris = || async {
        let paris = tenancy.unguarded(dep("75")).await.expect("Paris servi");
        let mut conn = paris.autocommit().await.expect("connexion");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .expect("requête");
        assert_eq!(one, 1);
    };

    use_paris().await;
    assert_eq!(open().await, 1);
    // Just used: nothing to close.
    assert_eq!(tenancy.close_unused_territory_connections().await, 0);
    assert_eq!(open().await, 1);

    // After the idle period, the registry's task (every 5 s) closes it.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let started = std::time::Instant::now();
    while open().await > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "la connexion de Paris reste ouverte"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    use_paris().await;
    assert_eq!(open().await, 1);
}
