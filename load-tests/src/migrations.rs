//! Benchmark: migrating all 101 département schemas from empty, then applying one new migration
//! to all of them, on a fresh database of the local stack (`infra/run bench`). Targets
//! (shared/spec/targets.md): ≤ 10 s and ≤ 2 s. Reports each time, its target and the ratio
//! target / measured (above 1 means within target), plus the sequential run measured in the
//! same session for comparison.

use std::time::{Duration, Instant};

use clap::Parser;
use foundation::tenancy::DepartementCode;
use foundation::tenancy::migrate::{self, DEPARTEMENT_MIGRATIONS, Migration, MigrationSet};
use test_support::database::TestDatabase;

#[derive(Parser)]
struct Args {
    /// Schemas migrated in parallel (the tenant-admin default is 4).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// A realistic follow-up migration: a column, a backfill and an index on every schema.
fn next_migration() -> MigrationSet {
    let mut set = DEPARTEMENT_MIGRATIONS.clone();
    set.0.push(Migration {
        version: 9_000,
        name: "9000_bench_structure_phone",
        sql: "ALTER TABLE structures ADD COLUMN phone text;
              UPDATE structures SET phone = '' WHERE phone IS NULL;
              CREATE INDEX structures_phone ON structures (phone);",
    });
    set
}

async fn migrate_all(
    db: &TestDatabase,
    set: &MigrationSet,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let reports = migrate::migrate_departements(
        &db.admin,
        &db.app_role,
        &TestDatabase::tenant_login(),
        DepartementCode::all().collect(),
        set,
        concurrency,
        |_| {},
    )
    .await?;
    let elapsed = started.elapsed();
    let failed: Vec<_> = reports.iter().filter(|r| r.result.is_err()).collect();
    anyhow::ensure!(
        reports.len() == 101 && failed.is_empty(),
        "{} schéma(s) en échec, dont {:?}",
        failed.len(),
        failed.first().map(|r| (r.departement, &r.result))
    );
    Ok(elapsed)
}

fn line(what: &str, measured: Duration, target: Duration) {
    println!(
        "{what:<52} {:>8.2} s   cible ≤ {:>4} s   marge ×{:.1}",
        measured.as_secs_f64(),
        target.as_secs(),
        target.as_secs_f64() / measured.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let next = next_migration();

    let sequential = TestDatabase::create().await;
    let seq_empty = migrate_all(&sequential, &DEPARTEMENT_MIGRATIONS, 1).await?;
    let seq_next = migrate_all(&sequential, &next, 1).await?;

    let db = TestDatabase::create().await;
    let from_empty = migrate_all(&db, &DEPARTEMENT_MIGRATIONS, args.concurrency).await?;
    let one_more = migrate_all(&db, &next, args.concurrency).await?;

    println!(
        "Migrations des 101 schémas départementaux (PostgreSQL local, {} en parallèle)",
        args.concurrency
    );
    line(
        "depuis vide (101 schémas + rôles + droits)",
        from_empty,
        Duration::from_secs(10),
    );
    line(
        "une nouvelle migration appliquée aux 101",
        one_more,
        Duration::from_secs(2),
    );
    println!(
        "séquentiel, même session : depuis vide {:.2} s (×{:.1} du parallèle), nouvelle migration {:.2} s (×{:.1})",
        seq_empty.as_secs_f64(),
        seq_empty.as_secs_f64() / from_empty.as_secs_f64(),
        seq_next.as_secs_f64(),
        seq_next.as_secs_f64() / one_more.as_secs_f64()
    );
    Ok(())
}
