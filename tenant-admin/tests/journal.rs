//! The territory journal against Postgres: what the application's role may not do, every kind
//! of tampering found by verification (and by `tenant-admin journal verify`), signed
//! checkpoints, and concurrent writers that never fork or skip the chain.

use foundation::ids::{MandateId, ProfessionalId, UsagerId};
use foundation::journal::{self, CheckpointKey, Event, NewEntry};
use foundation::tenancy::{DepartementCode, Territory};
use serde_json::json;
use test_support::database::TestDatabase;
use uuid::Uuid;

/// The key of the default configuration (what the CLI uses in tests).
fn key() -> CheckpointKey {
    let settings = foundation::config::Settings::default();
    CheckpointKey::from_base64(secrecy::ExposeSecret::expose_secret(
        &settings.security.journal_signing_key,
    ))
    .expect("clé")
}

/// The territory as the application reaches it (its own login role, then the département role).
async fn territory(db: &TestDatabase, code: &str) -> Territory {
    let pool = sqlx::PgPool::connect(&db.app_url).await.expect("pool");
    test_support::tenancy(pool)
        .await
        .unguarded(DepartementCode::parse(code).expect("code"))
        .await
        .expect("territoire")
}

async fn append_n(ctx: &Territory, n: usize) {
    append_unsealed(ctx, n).await;
    journal::seal_all(ctx).await.expect("chaînage");
}

async fn append_unsealed(ctx: &Territory, n: usize) {
    let mut tx = ctx.begin().await.expect("tx");
    for i in 0..n {
        journal::append(
            &mut tx,
            NewEntry::new(Event::MandateCreated)
                .mandate(MandateId::new_v7())
                .usager(UsagerId::new_v7())
                .details(json!({ "n": i })),
        )
        .await
        .expect("ajout");
    }
    tx.commit().await.expect("commit");
}

async fn verify(ctx: &Territory) -> journal::Verification {
    verify_anchored(ctx, &journal::Anchor::default()).await
}

/// Verifies the territory's journal read whole, then read in two halves over two connections
/// (as a long journal is): both readings must find the same, whatever was tampered with.
async fn verify_anchored(ctx: &Territory, anchor: &journal::Anchor) -> journal::Verification {
    let mut tx = ctx.begin().await.expect("tx");
    let v = journal::verify(&mut tx, Some(&key().public()), anchor)
        .await
        .expect("vérification");
    tx.commit().await.expect("commit");
    let mut tx = ctx.begin().await.expect("tx");
    let halves = journal::verify_split(&mut tx, Some(&key().public()), anchor, |_| {}, 2)
        .await
        .expect("vérification en deux moitiés");
    tx.commit().await.expect("commit");
    assert_eq!(
        halves, v,
        "lu en deux moitiés, le journal ne donne pas le même résultat"
    );
    v
}

/// Runs `tenant-admin` on the test database; returns (success, stdout, stderr).
async fn cli(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        // Absent means production, which refuses the local stack's keys and the demo.
        .env("AC_ENVIRONMENT", "development")
        .args(["--database-url", &db.admin_url])
        .args(args)
        .output()
        .await
        .expect("tenant-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.jsonl", Uuid::new_v4()))
}

/// Runs SQL as the database owner, with the journal's "sealed is final" trigger disabled for
/// the statement (what someone with full control of the database could do).
async fn admin(db: &TestDatabase, sql: &str) {
    let schema = if sql.contains("dep_34") {
        "dep_34"
    } else {
        "dep_33"
    };
    // One statement at a time, in one transaction (Citus forwards a territory's statements to
    // its worker one by one).
    let mut tx = db.admin.begin().await.expect("transaction");
    let statements = std::iter::once(format!("ALTER TABLE {schema}.journal DISABLE TRIGGER USER"))
        .chain(sql.split(';').map(str::to_owned))
        .chain([format!("ALTER TABLE {schema}.journal ENABLE TRIGGER USER")]);
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .expect(&statement);
    }
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn the_application_role_can_append_but_never_change_the_journal() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 3).await;
    let mut tx = ctx.begin().await.expect("tx");
    journal::checkpoint(&mut tx, &key()).await.expect("sceau");
    tx.commit().await.expect("commit");
    // Content is never writable; the chain columns only while empty (sealed rows are final).
    for statement in [
        "UPDATE journal SET details = '{}'",
        "UPDATE journal SET hash = hash",
        "UPDATE journal SET seq = NULL, prev_hash = NULL, hash = NULL",
    ] {
        let mut tx = ctx.begin().await.expect("tx");
        let err = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err(statement);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement} : {err}");
    }
    for table in ["journal", "journal_checkpoints"] {
        for statement in [
            format!("UPDATE {table} SET seq = seq"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let mut tx = ctx.begin().await.expect("tx");
            let err = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
                .expect_err(&statement);
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{statement} : {err}");
        }
    }
    assert!(verify(&ctx).await.intact());
}

#[tokio::test]
async fn every_kind_of_tampering_is_found_at_the_first_broken_entry() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 10).await;
    assert_eq!(verify(&ctx).await.checked, 10);
    let snapshot = "CREATE TABLE public.journal_copy AS SELECT * FROM dep_33.journal";
    let restore = "DELETE FROM dep_33.journal; INSERT INTO dep_33.journal OVERRIDING SYSTEM VALUE SELECT * FROM public.journal_copy";
    admin(&db, snapshot).await;
    let cases = [
        (
            "modification",
            "UPDATE dep_33.journal SET details = '{\"n\":99}' WHERE seq = 4",
            4,
        ),
        ("suppression", "DELETE FROM dep_33.journal WHERE seq = 6", 6),
        (
            "insertion",
            "UPDATE dep_33.journal SET seq = seq + 100 WHERE seq >= 5;
             UPDATE dep_33.journal SET seq = seq - 99 WHERE seq >= 105;
             INSERT INTO dep_33.journal (seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash)
             SELECT 5, at, kind, structure_id, professional_id, usager_id, mandate_id,
                    '{\"forged\":true}', prev_hash, hash FROM dep_33.journal WHERE seq = 4",
            5,
        ),
        (
            "permutation",
            "UPDATE dep_33.journal SET seq = -3 WHERE seq = 3;
             UPDATE dep_33.journal SET seq = 3 WHERE seq = 4;
             UPDATE dep_33.journal SET seq = 4 WHERE seq = -3",
            3,
        ),
        (
            "date modifiée",
            "UPDATE dep_33.journal SET at = '2020-01-01 00:00:00+00' WHERE seq = 2",
            2,
        ),
        // Where a chain read in two halves is cut (after entry 5 of 10), and after it.
        (
            "suppression de la dernière entrée de la première moitié",
            "DELETE FROM dep_33.journal WHERE seq = 5",
            5,
        ),
        (
            "lien rompu entre les deux moitiés",
            "UPDATE dep_33.journal SET prev_hash = hash WHERE seq = 6",
            6,
        ),
        (
            "modification dans la seconde moitié",
            "UPDATE dep_33.journal SET details = '{\"n\":98}' WHERE seq = 8",
            8,
        ),
    ];
    for (what, sql, first) in cases {
        admin(&db, sql).await;
        let v = verify(&ctx).await;
        assert_eq!(v.first_broken, Some(first), "{what} : {v:?}");
        assert!(v.problem.is_some(), "{what}");
        // The operators' command reports the same entry and fails.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
            // Absent means production, which refuses the local stack's keys and the demo.
            .env("AC_ENVIRONMENT", "development")
            .args([
                "--database-url",
                &db.admin_url,
                "journal",
                "verify",
                "--departement",
                "33",
            ])
            .output()
            .await
            .expect("tenant-admin");
        assert!(!out.status.success(), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("à partir de l'entrée n° {first}")),
            "{what} : {stderr}"
        );
        admin(&db, restore).await;
        assert!(verify(&ctx).await.intact(), "{what} : restauration");
    }
    // Intact but never sealed: refused, nothing guarantees it.
    let (ok, _, stderr) = cli(&db, &["journal", "verify", "--departement", "33"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("journal refusé : aucun point de scellement"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(&db, &["journal", "checkpoint", "--departement", "33"]).await;
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = cli(&db, &["journal", "verify", "--departement", "33"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("journal intact : 10 entrées"), "{stdout}");
    // A checkpoint older than the stated age is refused.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let (ok, _, stderr) = cli(
        &db,
        &[
            "journal",
            "verify",
            "--departement",
            "33",
            "--max-age",
            "2s",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("aucun point de scellement depuis plus de 2 s"),
        "{stderr}"
    );
    let (ok, _, stderr) = cli(
        &db,
        &[
            "journal",
            "verify",
            "--departement",
            "33",
            "--max-age",
            "2x",
        ],
    )
    .await;
    assert!(!ok && stderr.contains("durée invalide"), "{stderr}");
}

#[tokio::test]
async fn signed_checkpoints_catch_a_recomputed_chain_a_cut_tail_and_a_forged_seal() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 6).await;
    let mut tx = ctx.begin().await.expect("tx");
    assert_eq!(
        journal::checkpoint(&mut tx, &key()).await.expect("sceau"),
        Some(6)
    );
    assert_eq!(
        journal::checkpoint(&mut tx, &key()).await.expect("sceau"),
        None,
        "rien de neuf à sceller"
    );
    tx.commit().await.expect("commit");
    append_n(&ctx, 2).await;
    let v = verify(&ctx).await;
    assert!(v.intact() && v.checkpoints_checked == 1, "{v:?}");

    // Someone rewrites entry 3 and recomputes every hash after it: the chain alone is
    // consistent again, but the signed checkpoint at 6 no longer matches.
    let rows: Vec<journal::Entry> = sqlx::query_as(
        "SELECT seq, at, kind, structure_id, professional_id, usager_id, mandate_id, details, prev_hash, hash
         FROM dep_33.journal WHERE seq IS NOT NULL ORDER BY seq",
    )
    .fetch_all(&db.admin)
    .await
    .expect("entrées");
    sqlx::raw_sql("ALTER TABLE dep_33.journal DISABLE TRIGGER USER")
        .execute(&db.admin)
        .await
        .expect("déclencheur");
    let mut prev = rows[1].hash.clone();
    for e in rows.iter().skip(2) {
        let details = if e.seq == 3 {
            "{\"n\":42}".to_owned()
        } else {
            e.details.clone()
        };
        let hash = journal::entry_hash(
            &prev,
            e.seq,
            e.at,
            &e.kind,
            e.structure_id,
            e.professional_id,
            e.usager_id,
            e.mandate_id,
            &details,
        );
        sqlx::query(
            "UPDATE dep_33.journal SET details = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
        )
        .bind(e.seq)
        .bind(&details)
        .bind(&prev)
        .bind(hash.as_slice())
        .execute(&db.admin)
        .await
        .expect("réécriture");
        prev = hash.to_vec();
    }
    sqlx::raw_sql("ALTER TABLE dep_33.journal ENABLE TRIGGER USER")
        .execute(&db.admin)
        .await
        .expect("déclencheur");
    let v = verify(&ctx).await;
    assert_eq!(v.first_broken, Some(6), "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap_or_default()
            .contains("point de scellement n° 6")
    );

    // A cut tail (the sealed entries removed) and a forged seal are found too.
    let db2 = TestDatabase::with_departements(&["34"]).await;
    let ctx2 = territory(&db2, "34").await;
    append_n(&ctx2, 5).await;
    let mut tx = ctx2.begin().await.expect("tx");
    journal::checkpoint(&mut tx, &key()).await.expect("sceau");
    tx.commit().await.expect("commit");
    // The auditor takes the export (and notes the last checkpoint) before anything happens.
    let export = temp_file("ancre");
    let (ok, _, stderr) = cli(
        &db2,
        &[
            "journal",
            "export",
            "--departement",
            "34",
            "--out",
            export.to_str().expect("chemin"),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&export).expect("export");
    let points = journal::Anchor::from_export(&text, "dep_34").expect("points");
    assert_eq!(points.len(), 1);
    let anchor = journal::Anchor {
        points: points.clone(),
        max_age: Some(time::Duration::hours(24)),
    };
    assert!(verify_anchored(&ctx2, &anchor).await.intact());
    let at = points[0]
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("date");
    let by_hand = [
        "--checkpoint-seq".to_owned(),
        points[0].seq.to_string(),
        "--checkpoint-hash".to_owned(),
        hex::encode(&points[0].hash),
        "--checkpoint-at".to_owned(),
        at,
    ];
    let verify_args = |extra: &[String]| {
        let mut args: Vec<String> = ["journal", "verify", "--departement", "34"]
            .map(String::from)
            .to_vec();
        args.extend_from_slice(extra);
        args
    };
    for extra in [
        vec!["--anchor".to_owned(), export.display().to_string()],
        by_hand.to_vec(),
    ] {
        let args = verify_args(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = cli(&db2, &args).await;
        assert!(ok, "{stderr}");
        assert!(stdout.contains("1 de l'auditeur retrouvés"), "{stdout}");
    }
    admin(&db2, "DELETE FROM dep_34.journal WHERE seq >= 4").await;
    let v = verify(&ctx2).await;
    assert_eq!(v.first_broken, Some(4), "{v:?}");
    // The owner deletes every checkpoint, rewrites the chain and signs it again: the
    // auditor's checkpoint is gone, so the rewrite is found.
    admin(&db2, "DELETE FROM dep_34.journal_checkpoints").await;
    append_n(&ctx2, 2).await;
    let mut tx = ctx2.begin().await.expect("tx");
    journal::checkpoint(&mut tx, &key()).await.expect("sceau");
    tx.commit().await.expect("commit");
    let v = verify_anchored(&ctx2, &anchor).await;
    assert!(!v.intact(), "{v:?}");
    assert!(
        v.problem
            .as_deref()
            .unwrap_or_default()
            .contains("point de scellement n° 5 du"),
        "{v:?}"
    );
    for extra in [
        vec!["--anchor".to_owned(), export.display().to_string()],
        by_hand.to_vec(),
    ] {
        let args = verify_args(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = cli(&db2, &args).await;
        assert!(!ok, "{extra:?}");
        assert!(
            stderr.contains("remis à l'auditeur n'est plus dans le journal"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_file(&export);
    admin(&db2, "UPDATE dep_34.journal_checkpoints SET signature = set_byte(signature, 4, get_byte(signature, 4) # 255)").await;
    let v = verify(&ctx2).await;
    assert!(
        v.problem
            .as_deref()
            .unwrap_or_default()
            .contains("signature"),
        "{v:?}"
    );
}

#[tokio::test]
async fn eight_concurrent_writers_leave_one_gapless_chain() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    let mut tx = ctx.begin().await.expect("tx");
                    journal::append(
                        &mut tx,
                        NewEntry::new(Event::MandateUsed).details(json!({ "writer": w, "i": i })),
                    )
                    .await
                    .expect("ajout");
                    // One in ten transactions rolls back: it must leave no gap.
                    if i % 10 == 9 {
                        tx.rollback().await.expect("rollback");
                    } else {
                        tx.commit().await.expect("commit");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("écrivain");
    }
    // Nothing is chained by the writers themselves: the sealer gives every committed entry its
    // place, once, without gaps.
    let unsealed: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE seq IS NULL")
        .fetch_one(&db.admin)
        .await
        .expect("compte");
    assert_eq!(unsealed, 1800);
    // Two sealers at once (as two replicas would): the advisory lock makes them take turns.
    let (a, b) = tokio::join!(journal::seal_all(&ctx), journal::seal_all(&ctx));
    assert_eq!(a.expect("sceau") + b.expect("sceau"), 1800);
    let (count, max): (i64, i64) = sqlx::query_as("SELECT count(*), max(seq) FROM dep_33.journal")
        .fetch_one(&db.admin)
        .await
        .expect("compte");
    assert_eq!((count, max), (1800, 1800));
    let v = verify(&ctx).await;
    assert!(v.intact() && v.checked == 1800, "{v:?}");
}

#[tokio::test]
async fn the_auditor_export_holds_every_entry_the_checkpoints_and_the_public_key() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 4).await;
    let out_file = std::env::temp_dir().join(format!("journal-{}.jsonl", Uuid::new_v4()));
    for args in [
        vec!["journal", "checkpoint", "--departement", "33"],
        vec![
            "journal",
            "export",
            "--departement",
            "33",
            "--out",
            out_file.to_str().expect("chemin"),
        ],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
            // Absent means production, which refuses the local stack's keys and the demo.
            .env("AC_ENVIRONMENT", "development")
            .args(["--database-url", &db.admin_url])
            .args(&args)
            .output()
            .await
            .expect("tenant-admin");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let _ = std::fs::remove_file(&out_file);
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["checkpoint_public_key"], key().public().to_hex());
    assert_eq!(lines.iter().filter(|l| l["type"] == "entry").count(), 4);
    assert_eq!(
        lines.iter().filter(|l| l["type"] == "checkpoint").count(),
        1
    );
    // The export itself is journaled.
    let exported: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dep_33.journal WHERE kind = 'journal_exported'")
            .fetch_one(&db.admin)
            .await
            .expect("compte");
    assert_eq!(exported, 1);
}

#[tokio::test]
async fn the_departement_role_never_writes_the_chain_columns_and_sealing_rewrites_nothing() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 2).await;
    append_unsealed(&ctx, 1).await;
    for statement in [
        // Filling the chain columns of a pending entry (the sealer's job).
        "UPDATE journal SET seq = 3, prev_hash = hash, hash = hash WHERE seq IS NULL",
        "UPDATE journal SET seq = 3 WHERE seq IS NULL",
        // Inserting an entry already chained.
        "INSERT INTO journal (seq, at, kind, details, prev_hash, hash)
         VALUES (3, now(), 'mandate_created', '{}', '\\x00', '\\x00')",
        "INSERT INTO journal (at, kind, details, hash) VALUES (now(), 'mandate_created', '{}', '\\x00')",
    ] {
        let mut tx = ctx.begin().await.expect("tx");
        let err = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err(statement);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement} : {err}");
    }
    // Sealing still works, through the function, for the département role and the platform.
    let mut tx = ctx.begin().await.expect("tx");
    assert_eq!(journal::seal(&mut tx).await.expect("sceau"), 1);
    tx.commit().await.expect("commit");
    append_unsealed(&ctx, 2).await;
    let app = sqlx::PgPool::connect(&db.app_url).await.expect("pool");
    let tenancy = test_support::tenancy(app).await;
    assert_eq!(
        journal::seal_from_platform(&tenancy, DepartementCode::parse("33").expect("code"))
            .await
            .expect("sceau"),
        2
    );
    let v = verify(&ctx).await;
    assert!(v.intact() && v.checked == 5 && v.pending == 0, "{v:?}");
    // Called again, it has nothing to do and changes nothing already chained.
    let before: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM dep_33.journal ORDER BY seq")
            .fetch_all(&db.admin)
            .await
            .expect("chaîne");
    let mut tx = ctx.begin().await.expect("tx");
    let again: i32 = sqlx::query_scalar("SELECT journal_seal(1000000)")
        .fetch_one(&mut *tx)
        .await
        .expect("sceau");
    tx.commit().await.expect("commit");
    assert_eq!(again, 0);
    let after: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM dep_33.journal ORDER BY seq")
            .fetch_all(&db.admin)
            .await
            .expect("chaîne");
    assert_eq!(before, after);
    // The function runs as the sealer role, with a fixed search path ending with pg_temp.
    let sealer = foundation::tenancy::logins::sealer_role(&db.name);
    let (definer, owner, config): (bool, String, Vec<String>) = sqlx::query_as(
        "SELECT prosecdef, proowner::regrole::text, proconfig FROM pg_proc
         WHERE proname = 'journal_seal' AND pronamespace = 'dep_33'::regnamespace",
    )
    .fetch_one(&db.admin)
    .await
    .expect("fonction");
    assert_eq!(
        (definer, owner, config),
        (
            true,
            sealer.clone(),
            vec!["search_path=dep_33, pg_temp".to_owned()]
        )
    );
    // Even the function's owner cannot touch a sealed entry.
    let mut conn = db.admin.acquire().await.expect("connexion");
    sqlx::query("SELECT set_config('role', $1, false)")
        .bind(&sealer)
        .execute(&mut *conn)
        .await
        .expect("rôle du scelleur");
    let rewrite = sqlx::query("UPDATE dep_33.journal SET hash = prev_hash WHERE seq = 1")
        .execute(&mut *conn)
        .await;
    assert!(
        rewrite.as_ref().is_err_and(
            |e| e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501")
        ),
        "{rewrite:?}"
    );
    sqlx::query("RESET ROLE")
        .execute(&mut *conn)
        .await
        .expect("RESET ROLE");
}

#[tokio::test]
async fn a_rewritten_security_journal_is_found_with_the_auditors_checkpoint() {
    use foundation::auth::journal::{self as security, SecurityEvent};
    let db = TestDatabase::create().await;
    let append = |n: usize| {
        let admin = db.admin.clone();
        async move {
            let mut tx = admin.begin().await.expect("tx");
            for i in 0..n {
                security::append(
                    &mut tx,
                    SecurityEvent::LoginSucceeded,
                    Some(ProfessionalId::new_v7()),
                    None,
                    json!({ "n": i }),
                )
                .await
                .expect("ajout");
            }
            tx.commit().await.expect("commit");
        }
    };
    append(4).await;
    let (ok, stdout, stderr) = cli(&db, &["journal", "checkpoint", "--securite"]).await;
    assert!(
        ok && stdout.contains("scellé jusqu'à l'entrée n° 4"),
        "{stdout}{stderr}"
    );
    let export = temp_file("securite");
    let out = export.to_str().expect("chemin");
    let (ok, _, stderr) = cli(&db, &["journal", "export", "--securite", "--out", out]).await;
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) =
        cli(&db, &["journal", "verify", "--securite", "--anchor", out]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("journal intact : 4 entrées"), "{stdout}");
    // An export of a territory's journal is not an anchor of the security journal.
    let text = std::fs::read_to_string(&export).expect("export");
    assert!(journal::Anchor::from_export(&text, "dep_33").is_err());

    // The owner empties the journal and its checkpoints, writes another history through the
    // application's own code (so every hash is right) and signs it.
    sqlx::raw_sql(
        "DELETE FROM platform.security_journal; DELETE FROM platform.security_journal_checkpoints",
    )
    .execute(&db.admin)
    .await
    .expect("réécriture");
    append(5).await;
    let (ok, _, stderr) = cli(&db, &["journal", "checkpoint", "--securite"]).await;
    assert!(ok, "{stderr}");
    // The chain alone (all that was checked before signed checkpoints) says nothing.
    let mut conn = db.admin.acquire().await.expect("connexion");
    assert_eq!(
        security::verify(&mut conn)
            .await
            .expect("chaîne")
            .first_broken,
        None
    );
    drop(conn);
    let (ok, _, stderr) = cli(&db, &["journal", "verify", "--securite"]).await;
    assert!(ok, "sans ancre, rien ne permet de le voir : {stderr}");
    let (ok, _, stderr) = cli(&db, &["journal", "verify", "--securite", "--anchor", out]).await;
    assert!(!ok);
    assert!(
        stderr.contains("point de scellement n° 4 du")
            && stderr.contains("remis à l'auditeur n'est plus dans le journal"),
        "{stderr}"
    );
    // A forged checkpoint signature is found too.
    sqlx::raw_sql("UPDATE platform.security_journal_checkpoints SET signature = set_byte(signature, 4, get_byte(signature, 4) # 255)")
        .execute(&db.admin)
        .await
        .expect("signature");
    let (ok, _, stderr) = cli(&db, &["journal", "verify", "--securite"]).await;
    assert!(!ok && stderr.contains("signature"), "{stderr}");
    let _ = std::fs::remove_file(&export);
}

/// `tenant-admin` without any database address, as an auditor runs it on their own machine.
async fn offline(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        .env_remove("AC_ADMIN_DATABASE_URL")
        .env("AC_ENVIRONMENT", "development")
        .args(args)
        .output()
        .await
        .expect("tenant-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_tampered_one_is_refused_at_its_first_broken_entry() {
    let db = TestDatabase::with_departements(&["33"]).await;
    let ctx = territory(&db, "33").await;
    append_n(&ctx, 6).await;
    let file = temp_file("export");
    let path = file.to_str().expect("chemin");
    let (ok, _, stderr) = cli(&db, &["journal", "checkpoint", "--departement", "33"]).await;
    assert!(ok, "{stderr}");
    append_n(&ctx, 2).await;
    let (ok, _, stderr) = cli(
        &db,
        &["journal", "export", "--departement", "33", "--out", path],
    )
    .await;
    assert!(ok, "{stderr}");
    let public = key().public().to_hex();
    // Genuine: intact, with the entries after the last checkpoint said unsealed.
    let (ok, stdout, stderr) =
        offline(&["journal", "verify", "--file", path, "--public-key", &public]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("export intact (dep_33) : 8 entrées"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 entrée(s) après le dernier point de scellement"),
        "{stdout}"
    );
    // The key is never taken from the file.
    let (ok, _, stderr) = offline(&["journal", "verify", "--file", path]).await;
    assert!(
        !ok && stderr.contains("--public-key est obligatoire"),
        "{stderr}"
    );
    // Another key: refused.
    let other = CheckpointKey::from_base64("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")
        .expect("clé")
        .public()
        .to_hex();
    let (ok, _, stderr) =
        offline(&["journal", "verify", "--file", path, "--public-key", &other]).await;
    assert!(!ok && stderr.contains("signature"), "{stderr}");
    // Tampered: the details of the third entry edited in the file.
    let text = std::fs::read_to_string(&file).expect("export");
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let third = lines
        .iter_mut()
        .find(|l| l["type"] == "entry" && l["seq"] == 3)
        .expect("entrée 3");
    third["details"] = serde_json::json!("{\"modifié\":true}");
    let tampered = temp_file("altere");
    std::fs::write(
        &tampered,
        lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("écriture");
    let (ok, _, stderr) = offline(&[
        "journal",
        "verify",
        "--file",
        tampered.to_str().expect("chemin"),
        "--public-key",
        &public,
    ])
    .await;
    assert!(!ok, "un export altéré est refusé");
    assert!(
        stderr.contains("export altéré à partir de l'entrée n° 3"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&tampered);
}
