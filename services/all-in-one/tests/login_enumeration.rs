//! Login must not tell whether an e-mail address has an account: a known address with a wrong
//! code and an unknown address are compared by status, page (the e-mail echoed in the form
//! aside), time (medians of interleaved samples, within a generous band) and writes (every
//! row of every table of the database before and after, per table).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::identity::*;
use common::{TestApp, spawn_app};
use sqlx::PgPool;

/// Every row of every table, as text, counted per table: (schema.table → row → count).
async fn snapshot(admin: &PgPool) -> BTreeMap<String, BTreeMap<String, i64>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
         ORDER BY 1",
    )
    .fetch_all(admin)
    .await
    .expect("tables");
    let mut all = BTreeMap::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(admin)
        .await
        .expect("lignes");
        let mut counted: BTreeMap<String, i64> = BTreeMap::new();
        for row in rows {
            *counted.entry(row).or_default() += 1;
        }
        all.insert(table, counted);
    }
    all
}

/// Rows that appeared or disappeared, per table (an update counts one of each).
fn writes(
    before: &BTreeMap<String, BTreeMap<String, i64>>,
    after: &BTreeMap<String, BTreeMap<String, i64>>,
) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (table, rows_after) in after {
        let empty = BTreeMap::new();
        let rows_before = before.get(table).unwrap_or(&empty);
        let mut changed = 0;
        for (row, n) in rows_after {
            changed += (n - rows_before.get(row).copied().unwrap_or(0)).abs();
        }
        for (row, n) in rows_before {
            if !rows_after.contains_key(row) {
                changed += n;
            }
        }
        if changed > 0 {
            out.insert(table.clone(), changed);
        }
    }
    out
}

async fn attempt(
    client: &Browser,
    app: &TestApp,
    email: &str,
    code: &str,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let (status, body) = ask_link(client, app, email, code).await;
    (status, body.replace(email, "EMAIL"), started.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn wrong_code(who: &TestProfessional) -> String {
    let valid: Vec<String> = (-1..=1).map(|o| who.code(o)).collect();
    ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .expect("un code faux")
        .to_owned()
}

#[tokio::test]
async fn known_and_unknown_addresses_look_the_same_at_login() {
    let app = spawn_app(&[]).await;
    const SAMPLES: usize = 8;
    let mut known = Vec::new();
    for i in 0..=SAMPLES {
        known.push(professional(&app.db.admin, &format!("Connue {i}"), &[]).await);
    }
    let client = browser(&app.address);
    // Warm up (the address's rate-limit bucket exists afterwards for both paths alike).
    attempt(&client, &app, "echauffement@example.test", "123456").await;

    // Writes: one fresh known account with a wrong code, one fresh unknown address.
    let first = &known[0];
    let before = snapshot(&app.db.admin).await;
    let (known_status, known_body, _) =
        attempt(&client, &app, &first.email, &wrong_code(first)).await;
    let middle = snapshot(&app.db.admin).await;
    let (unknown_status, unknown_body, _) =
        attempt(&client, &app, "inconnue-0@example.test", &wrong_code(first)).await;
    let after = snapshot(&app.db.admin).await;
    // AC_DEBUG_WRITES=1 prints the rows that differ.
    if std::env::var("AC_DEBUG_WRITES").is_ok() {
        for (label, a, b) in [("connue", &before, &middle), ("inconnue", &middle, &after)] {
            for (table, rows) in b {
                for row in rows.keys() {
                    if !a.get(table).is_some_and(|r| r.contains_key(row)) {
                        println!("{label} + {table} {row}");
                    }
                }
            }
            for (table, rows) in a {
                for row in rows.keys() {
                    if !b.get(table).is_some_and(|r| r.contains_key(row)) {
                        println!("{label} - {table} {row}");
                    }
                }
            }
        }
    }
    // `job_runs` and the journals' checkpoints are written by the scheduled jobs on their own
    // clock (their first runs follow the start), never by a login: left out of the comparison.
    let login_writes = |a, b| {
        let mut w = writes(a, b);
        w.remove("platform.job_runs");
        w.remove("platform.security_journal_checkpoints");
        w
    };
    let known_writes = login_writes(&before, &middle);
    let unknown_writes = login_writes(&middle, &after);

    assert_eq!(known_status, 422);
    assert_eq!(known_status, unknown_status);
    assert_eq!(known_body, unknown_body, "la page diffère");

    // Time: interleaved samples, each on a fresh account or a fresh unknown address. The
    // whole suite shares two cores, and one side's median of eight can be slowed by chance
    // (once in CI: 48.9 against 28.0 ms): a difference seen is measured again on fresh
    // accounts, the address's attempts counted anew, and fails only if seen both times. A path
    // doing twice the work stands out in both.
    let mut distinguishable = None;
    for round in 0..2 {
        if round == 1 {
            sqlx::query("DELETE FROM platform.rate_limits WHERE key LIKE 'login-address:%'")
                .execute(&app.db.admin)
                .await
                .expect("compteurs de l'adresse");
            known.truncate(1);
            for i in 1..=SAMPLES {
                known.push(professional(&app.db.admin, &format!("Connue bis {i}"), &[]).await);
            }
        }
        let mut known_times = Vec::new();
        let mut unknown_times = Vec::new();
        for (i, who) in known.iter().enumerate().skip(1) {
            let unknown = format!("inconnue-{round}-{i}@example.test");
            let code = wrong_code(who);
            if i % 2 == 0 {
                known_times.push(attempt(&client, &app, &who.email, &code).await.2);
                unknown_times.push(attempt(&client, &app, &unknown, &code).await.2);
            } else {
                unknown_times.push(attempt(&client, &app, &unknown, &code).await.2);
                known_times.push(attempt(&client, &app, &who.email, &code).await.2);
            }
        }
        let (k, u) = (median(known_times), median(unknown_times));
        println!(
            "médianes : adresse connue {k:?}, inconnue {u:?}; écritures : connue {known_writes:?}, inconnue {unknown_writes:?}"
        );
        let (slow, fast) = if k > u { (k, u) } else { (u, k) };
        // Generous (a shared machine is noisy), yet a path doing twice the work stands out.
        distinguishable = (slow > fast * 3 / 2 + Duration::from_millis(5)).then_some((k, u));
        if distinguishable.is_none() {
            break;
        }
    }
    assert!(
        distinguishable.is_none(),
        "temps distinguables deux fois : connue, inconnue {distinguishable:?}"
    );
    assert_eq!(
        known_writes, unknown_writes,
        "écritures différentes (lignes changées par table)"
    );
}
