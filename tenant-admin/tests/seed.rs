//! `tenant-admin seed`: the national figures spread exactly over the served territories by
//! population, consistent rows (every mandate with one to three authorisations, by an aidant of
//! its structure), a journal telling the mandates' acts in time order whose chain verifies, a
//! run stopped by a failing territory keeps what was committed and is simply run again, bad
//! input refused with nothing written. Runs on either cluster.

use test_support::database::TestDatabase;

async fn cli(db: &TestDatabase, env: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-admin"))
        .env("AC_ENVIRONMENT", env)
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

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&db.admin)
        .await
        .expect(sql)
}

const SEED: [&str; 9] = [
    "seed",
    "--mandates",
    "3000",
    "--aidants",
    "40",
    "--largest-structure",
    "400",
    "--parallel",
    "1",
];

#[tokio::test]
async fn seed_spreads_a_consistent_population_and_resumes_after_a_failed_territory() {
    let db = TestDatabase::with_departements(&["33", "40"]).await;

    // Bad input and production: refused, nothing written.
    for (env, args, says) in [
        (
            "development",
            vec!["seed", "--mandates", "0"],
            "--mandates : entre 1",
        ),
        (
            "development",
            vec!["seed", "--aidants", "0"],
            "--aidants : entre 1",
        ),
        (
            "development",
            vec!["seed", "--departement", "34"],
            "n'est pas servi",
        ),
        (
            "development",
            vec!["seed", "--departement", "99"],
            "code de département inconnu",
        ),
        ("production", vec!["seed"], "refusé en production"),
    ] {
        let (ok, _, err) = cli(&db, env, &args).await;
        assert!(!ok, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM dep_33.structures").await,
        0
    );

    // A territory that fails half-way (its authorisations refused by a constraint): the run
    // stops with the error; 33, committed before, stays whole; none of 40's rows remain (its
    // aidants' accounts, written first and idempotently, may).
    sqlx::raw_sql(
        "ALTER TABLE dep_40.authorisations ADD CONSTRAINT seed_stop CHECK (category <> 'famille')",
    )
    .execute(&db.admin)
    .await
    .expect("contrainte");
    let (ok, _, err) = cli(&db, "development", &SEED).await;
    assert!(!ok);
    assert!(err.contains("seed_stop"), "{err}");
    let m33 = count(&db, "SELECT count(*) FROM dep_33.mandates").await;
    assert!(m33 > 0);
    let j33 = count(&db, "SELECT count(*) FROM dep_33.journal").await;
    assert!(j33 > 3 * m33, "{j33} entrées pour {m33} mandats");
    for table in [
        "structures",
        "usagers",
        "mandates",
        "authorisations",
        "journal",
    ] {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM dep_40.{table}")).await,
            0,
            "{table}"
        );
    }

    // Run again once the cause is gone: 33 is left as it was, 40 is seeded, no account twice.
    sqlx::raw_sql("ALTER TABLE dep_40.authorisations DROP CONSTRAINT seed_stop")
        .execute(&db.admin)
        .await
        .expect("contrainte");
    let (ok, out, err) = cli(&db, "development", &SEED).await;
    assert!(ok, "{err}");
    assert!(out.contains("33 Gironde : déjà peuplé"), "{out}");
    assert!(
        out.contains("33 Gironde : journal déjà écrit, laissé tel quel"),
        "{out}"
    );
    assert!(out.contains("Peuplement terminé"), "{out}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM dep_33.mandates").await,
        m33
    );
    assert_eq!(count(&db, "SELECT count(*) FROM dep_33.journal").await, j33);
    let m40 = count(&db, "SELECT count(*) FROM dep_40.mandates").await;
    // Exactly the national figure, Gironde (1.65 M people) about four times Landes (0.42 M).
    assert_eq!(m33 + m40, 3000);
    assert!(m33 > 3 * m40 && m33 < 5 * m40, "{m33} / {m40}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM platform.role_assignments
             WHERE role = 'aidant' AND departement_code IN ('33', '40')"
        )
        .await,
        40
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM platform.professionals WHERE email LIKE 'seed-aidant-%'"
        )
        .await,
        40
    );
    for d in ["33", "40"] {
        // One to three authorisations per mandate, with the mandate's structure and usager.
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM (SELECT m.id, count(a.id) AS n FROM dep_{d}.mandates m
                       LEFT JOIN dep_{d}.authorisations a ON a.mandate_id = m.id
                        AND a.structure_id = m.structure_id AND a.usager_id = m.usager_id
                     GROUP BY m.id) x WHERE n NOT BETWEEN 1 AND 3"
                )
            )
            .await,
            0
        );
        // Every mandate made by an aidant of its structure.
        assert_eq!(
            count(
                &db,
                &format!(
                    // The platform's rows in a CTE: Citus joins no local table to a
                    // distributed one directly.
                    "WITH r AS MATERIALIZED (SELECT professional_id, domain
                                             FROM platform.role_assignments WHERE role = 'aidant')
                     SELECT count(*) FROM dep_{d}.mandates m WHERE NOT EXISTS (
                       SELECT 1 FROM r WHERE r.professional_id = m.created_by
                         AND r.domain = 'structure:' || m.structure_id)"
                )
            )
            .await,
            0
        );
        // Live, expired and revoked mandates, as a real territory has.
        for state in [
            "ended_at IS NULL AND expires_at > now()",
            "expires_at <= now()",
            "ended_reason = 'revoked'",
        ] {
            assert!(
                count(
                    &db,
                    &format!("SELECT count(*) FROM dep_{d}.mandates WHERE {state}")
                )
                .await
                    > 0,
                "{d}: {state}"
            );
        }
    }
    for d in ["33", "40"] {
        journal_tells_the_mandates(&db, d).await;
    }
    // The largest structure of 33 holds the asked number (at most a third of its mandates).
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM dep_33.mandates m JOIN dep_33.structures s ON s.id = m.structure_id
             WHERE s.name LIKE '% n° 1'"
        )
        .await,
        400
    );
}

/// The seeded journal of `d`: every entry sealed, numbered in time order, one creation (with
/// its identification and attestation) per mandate, one revocation per revoked mandate and one
/// per démarche of it, uses only while live; and its chain, once signed by the operators'
/// command, verifies whole.
async fn journal_tells_the_mandates(db: &TestDatabase, d: &str) {
    let of = |sql: &str| sql.replace("{d}", d);
    let mandates = count(db, &of("SELECT count(*) FROM dep_{d}.mandates")).await;
    for (kind, expected) in [
        ("mandate_created", "SELECT count(*) FROM dep_{d}.mandates"),
        (
            "attestation_produced",
            "SELECT count(*) FROM dep_{d}.mandates",
        ),
        (
            "usager_identified",
            "SELECT count(DISTINCT usager_id) FROM dep_{d}.mandates",
        ),
        (
            "mandate_revoked",
            "SELECT count(*) FROM dep_{d}.mandates WHERE ended_reason = 'revoked'",
        ),
        (
            "authorisation_revoked",
            "SELECT count(*) FROM dep_{d}.authorisations WHERE revoked_at IS NOT NULL",
        ),
    ] {
        assert_eq!(
            count(
                db,
                &of(&format!(
                    "SELECT count(*) FROM dep_{{d}}.journal WHERE kind = '{kind}'"
                ))
            )
            .await,
            count(db, &of(expected)).await,
            "{d} : {kind}"
        );
    }
    assert_eq!(
        count(
            db,
            &of("SELECT count(*) FROM dep_{d}.journal WHERE kind = 'usager_identity_updated'")
        )
        .await,
        mandates
            - count(
                db,
                &of("SELECT count(DISTINCT usager_id) FROM dep_{d}.mandates")
            )
            .await,
        "{d}"
    );
    for (what, sql) in [
        (
            "entrées non scellées",
            "SELECT count(*) FROM dep_{d}.journal WHERE seq IS NULL",
        ),
        (
            "numéros hors de l'ordre du temps",
            "SELECT count(*) FROM (SELECT at < lag(at) OVER (ORDER BY seq) AS back
                                   FROM dep_{d}.journal) x WHERE back",
        ),
        (
            "numéros manquants",
            "SELECT max(seq) - count(*) FROM dep_{d}.journal",
        ),
        (
            "utilisations hors de la vie du mandat",
            "SELECT count(*) FROM dep_{d}.journal j JOIN dep_{d}.mandates m ON m.id = j.mandate_id
             WHERE j.kind = 'mandate_used'
               AND (j.at <= m.created_at OR j.at > least(m.expires_at, coalesce(m.ended_at, 'infinity')))",
        ),
        (
            "entrées d'un autre aidant, usager ou structure que le mandat",
            "SELECT count(*) FROM dep_{d}.journal j JOIN dep_{d}.mandates m ON m.id = j.mandate_id
             WHERE (j.structure_id, j.professional_id, j.usager_id)
                   IS DISTINCT FROM (m.structure_id, m.created_by, m.usager_id)",
        ),
    ] {
        assert_eq!(count(db, &of(sql)).await, 0, "{d} : {what}");
    }
    assert!(
        count(
            db,
            &of("SELECT count(*) FROM dep_{d}.journal WHERE kind = 'mandate_used'")
        )
        .await
            > 0
    );
    let entries = count(db, &of("SELECT count(*) FROM dep_{d}.journal")).await;
    let (ok, _, err) = cli(
        db,
        "development",
        &["journal", "checkpoint", "--departement", d],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = cli(
        db,
        "development",
        &["journal", "verify", "--departement", d],
    )
    .await;
    assert!(ok, "{d} : {err}");
    assert!(
        out.contains(&format!("journal intact : {entries} entrées")),
        "{d} : {out}"
    );
}
