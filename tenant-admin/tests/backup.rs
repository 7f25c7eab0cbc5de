//! The restore drill: a territory backed up (`tenant-admin territory backup`), damaged, then
//! restored in place and into an empty database; each time its journal verifies against the
//! checkpoint printed at backup time, and no other territory is touched. Bad archives and
//! mistaken commands are refused with nothing written.

use std::process::Output;

use foundation::journal::{self, Event, NewEntry};
use foundation::tenancy::DepartementCode;
use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS, MigrationSet};
use serde_json::json;
use test_support::database::TestDatabase;
use uuid::Uuid;

async fn tenant_admin(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        .env("AC_ENVIRONMENT", "development")
        .arg("--database-url")
        .arg(url)
        .arg("--app-role")
        .arg(test_support::database::app_role())
        .args(args)
        .output()
        .await
        .expect("tenant-admin")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn temp(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("{name}-{}", Uuid::new_v4().simple()))
        .display()
        .to_string()
}

/// A digest of every row of every table of `schema` (the journal without restore entries; not
/// the migrations' record, whose dates are the target's), by table: equal digests, same rows.
async fn digest(db: &TestDatabase, schema: &str) -> Vec<(String, String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = $1 AND tablename <> 'schema_migrations' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&db.admin)
    .await
    .expect("tables");
    let mut out = Vec::new();
    for table in tables {
        let filter = if table == "journal" {
            "WHERE kind <> 'territory_restored'"
        } else {
            ""
        };
        let (md5, n): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')), count(*)
             FROM {schema}.{table} t {filter}"
        )))
        .fetch_one(&db.admin)
        .await
        .expect("empreinte");
        out.push((table, md5, n));
    }
    out
}

/// (seq, hash, at) of the checkpoint line `territory backup` prints.
fn checkpoint_of(out: &str) -> (String, String, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("point de scellement du journal : n° "))
        .unwrap_or_else(|| panic!("point de scellement absent : {out}"));
    let rest = &line["point de scellement du journal : n° ".len()..];
    let (seq, rest) = rest.split_once(", empreinte ").expect("empreinte");
    let (hash, rest) = rest.split_once(", le ").expect("date");
    let (at, _) = rest.split_once(" (clé").expect("clé");
    (seq.into(), hash.into(), at.into())
}

async fn journal_verify(url: &str, (seq, hash, at): &(String, String, String)) -> Output {
    tenant_admin(
        url,
        &[
            "journal",
            "verify",
            "--departement",
            "33",
            "--checkpoint-seq",
            seq,
            "--checkpoint-hash",
            hash,
            "--checkpoint-at",
            at,
        ],
    )
    .await
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&db.admin)
        .await
        .expect(sql)
}

#[tokio::test]
async fn a_damaged_territory_is_restored_in_place_and_into_an_empty_database_and_its_journal_verifies_against_the_backup()
 {
    let db = TestDatabase::create().await;
    let out = tenant_admin(&db.admin_url, &["demo"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Another territory with a journal of its own, which nothing below may touch.
    db.provision("34").await;
    let pool = sqlx::PgPool::connect(&db.app_url).await.expect("pool");
    let tenancy = test_support::tenancy(pool).await;
    let other = tenancy
        .unguarded(DepartementCode::parse("34").expect("34"))
        .await
        .expect("34");
    let mut tx = other.begin().await.expect("tx");
    for n in 0..5 {
        journal::append(
            &mut tx,
            NewEntry::new(Event::MandateCreated).details(json!({ "n": n })),
        )
        .await
        .expect("entrée");
    }
    tx.commit().await.expect("commit");
    journal::seal_all(&other).await.expect("chaînage");
    let before_34 = digest(&db, "dep_34").await;

    let key = temp("cle");
    let out = tenant_admin(&db.admin_url, &["territory", "backup-key", "--out", &key]).await;
    assert!(out.status.success(), "{}", text(&out));
    let archive = temp("sauvegarde-33");
    let backup = [
        "territory",
        "backup",
        "--departement",
        "33",
        "--key-file",
        &key,
        "--out",
        &archive,
    ];
    let out = tenant_admin(&db.admin_url, &backup).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    let checkpoint = checkpoint_of(&printed);
    // The territory as the backup saw it (the backup chains and seals it first).
    let before_33 = digest(&db, "dep_33").await;
    let mandates = before_33
        .iter()
        .find(|t| t.0 == "mandates")
        .map(|t| t.2)
        .expect("mandats");
    assert!(mandates > 0, "the demo has mandates");
    let bytes = std::fs::read(&archive).expect("sauvegarde");
    assert!(
        !bytes.windows(8).any(|w| w == b"Bordeaux".as_slice()),
        "the archive is encrypted"
    );
    let out = tenant_admin(&db.admin_url, &backup).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("jamais écrasé"), "{}", text(&out));
    assert_eq!(std::fs::read(&archive).expect("sauvegarde"), bytes);

    // The damage: mandates deleted, a journal entry rewritten, a structure renamed, an entry
    // written after the backup.
    sqlx::raw_sql(
        "SET session_replication_role = replica;
         DELETE FROM dep_33.authorisations; DELETE FROM dep_33.mandates;
         UPDATE dep_33.journal SET details = '{\"falsifié\": true}' WHERE seq = 2;
         SET session_replication_role = origin;
         UPDATE dep_33.structures SET name = 'Renommée après la sauvegarde';
         INSERT INTO dep_33.journal (at, kind, details) VALUES (now(), 'mandate_created', '{}')",
    )
    .execute(&db.admin)
    .await
    .expect("dégâts");
    let damaged = digest(&db, "dep_33").await;
    assert_ne!(damaged, before_33);
    let out = journal_verify(&db.admin_url, &checkpoint).await;
    assert!(!out.status.success(), "the damaged journal is refused");

    // Mistakes, each refused with nothing written.
    let restore = |file: &str, key: &str, dep: &str, replace: bool| {
        let mut args = vec![
            "territory".to_owned(),
            "restore".into(),
            "--departement".into(),
            dep.into(),
            "--key-file".into(),
            key.into(),
            "--file".into(),
            file.into(),
        ];
        if replace {
            args.push("--replace".into());
        }
        args
    };
    let run = |url: String, args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tenant_admin(&url, &refs).await
    };
    let other_key = temp("autre-cle");
    let out = tenant_admin(
        &db.admin_url,
        &["territory", "backup-key", "--out", &other_key],
    )
    .await;
    assert!(out.status.success());
    let truncated = temp("tronquee");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).expect("copie");
    let altered = temp("alteree");
    let mut changed = bytes.clone();
    let at = changed.len() - 40;
    changed[at] ^= 0x10;
    std::fs::write(&altered, &changed).expect("copie");
    // Where the usager index job has read 33 and 34 up to: the restore of 33 must make it
    // read 33 whole again (its usagers keep their creation times); a refused restore, nothing.
    sqlx::query(
        "INSERT INTO platform.usager_index_marks (departement_code, through)
         VALUES ('33', now()), ('34', now())",
    )
    .execute(&db.admin)
    .await
    .expect("marques");
    let marks = || count(&db, "SELECT count(*) FROM platform.usager_index_marks");
    for (args, expected) in [
        (restore(&archive, &key, "33", false), "contient des données"),
        (restore(&archive, &other_key, "33", true), "autre clé"),
        (restore(&truncated, &key, "33", true), "tronquée"),
        (restore(&altered, &key, "33", true), "altérée"),
        (
            restore(&archive, &key, "34", true),
            "celle du territoire 33",
        ),
    ] {
        let out = run(db.admin_url.clone(), args).await;
        assert!(!out.status.success(), "{expected}");
        assert!(text(&out).contains(expected), "{expected} : {}", text(&out));
        assert_eq!(digest(&db, "dep_33").await, damaged, "{expected}");
        assert_eq!(marks().await, 2, "{expected}");
    }

    // In place: every row as it was at the backup, the journal verifies against its checkpoint.
    let out = run(db.admin_url.clone(), restore(&archive, &key, "33", true)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("journal restauré intact"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("laissées telles qu'elles sont"),
        "{}",
        text(&out)
    );
    assert_eq!(digest(&db, "dep_33").await, before_33);
    assert_eq!(digest(&db, "dep_34").await, before_34, "34 untouched");
    assert_eq!(marks().await, 1, "33's mark is gone");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM platform.usager_index_marks WHERE departement_code = '34'"
        )
        .await,
        1,
        "34's stays"
    );
    let out = journal_verify(&db.admin_url, &checkpoint).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'territory_restored'"
        )
        .await,
        1,
        "the restore is in the journal"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM dep_33.journal WHERE seq IS NULL").await,
        0,
        "and chained"
    );

    // Into an empty database: the schema, its rows and the platform rows it needs.
    let empty = TestDatabase::create().await;
    let out = run(
        empty.admin_url.clone(),
        restore(&archive, &key, "33", false),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("lignes nationales du territoire restaurées"),
        "{}",
        text(&out)
    );
    assert_eq!(digest(&empty, "dep_33").await, before_33);
    let out = journal_verify(&empty.admin_url, &checkpoint).await;
    assert!(out.status.success(), "{}", text(&out));
    for (sql, expected) in [
        ("SELECT count(*) FROM platform.tenants", 3),
        (
            "SELECT count(*) FROM platform.departement_schemas WHERE status = 'ready'",
            1,
        ),
    ] {
        assert_eq!(count(&empty, sql).await, expected, "{sql}");
    }
    assert_eq!(
        count(&empty, "SELECT count(*) FROM platform.role_assignments").await,
        count(
            &db,
            "SELECT count(*) FROM platform.role_assignments WHERE departement_code = '33'"
        )
        .await
    );
    assert_eq!(
        count(
            &empty,
            "SELECT count(*) FROM platform.role_assignments r
             WHERE NOT EXISTS (SELECT 1 FROM platform.professionals p WHERE p.id = r.professional_id)"
        )
        .await,
        0,
        "every role's professional came along"
    );
    for file in [&key, &other_key, &archive, &truncated, &altered] {
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test]
async fn an_archive_of_an_older_schema_is_restored_into_an_empty_database_then_migrated() {
    let db = TestDatabase::create().await;
    let older = DEPARTEMENT_MIGRATIONS.latest_version() - 1;
    let set = MigrationSet(
        DEPARTEMENT_MIGRATIONS
            .0
            .iter()
            .filter(|m| m.version <= older)
            .cloned()
            .collect(),
    );
    let report = migrate::provision_departement(
        &db.admin,
        &db.app_role,
        &TestDatabase::tenant_login(),
        DepartementCode::parse("33").expect("33"),
        &set,
    )
    .await
    .expect("schéma ancien");
    assert!(report.result.is_ok());
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, details) VALUES (now(), 'mandate_created', '{}')",
    )
    .execute(&db.admin)
    .await
    .expect("entrée");
    let key = temp("cle");
    let archive = temp("sauvegarde");
    assert!(
        tenant_admin(&db.admin_url, &["territory", "backup-key", "--out", &key])
            .await
            .status
            .success()
    );
    let out = tenant_admin(
        &db.admin_url,
        &[
            "territory",
            "backup",
            "--departement",
            "33",
            "--key-file",
            &key,
            "--out",
            &archive,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let empty = TestDatabase::create().await;
    let out = tenant_admin(
        &empty.admin_url,
        &[
            "territory",
            "restore",
            "--departement",
            "33",
            "--key-file",
            &key,
            "--file",
            &archive,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("schéma migré ensuite à la version {}", older + 1)),
        "{}",
        text(&out)
    );
    assert_eq!(
        count(&empty, "SELECT max(version) FROM dep_33.schema_migrations").await,
        older + 1
    );
    assert_eq!(
        count(
            &empty,
            "SELECT count(*) FROM dep_33.journal WHERE kind = 'mandate_created'"
        )
        .await,
        1
    );
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&archive);
}
