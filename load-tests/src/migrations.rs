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

/// A new migration adding `$column` to the structures, filling it and indexing it.
macro_rules! column_migration {
    ($version:literal, $column:literal) => {
        Migration {
            version: $version,
            name: concat!($version, "_bench_structure_", $column),
            sql: concat!(
                "ALTER TABLE structures ADD COLUMN ",
                $column,
                " text;
                 UPDATE structures SET ",
                $column,
                " = '' WHERE ",
                $column,
                " IS NULL;
                 CREATE INDEX structures_",
                $column,
                " ON structures (",
                $column,
                ");"
            ),
        }
    };
}

/// Realistic follow-up migrations, each a column, a backfill and an index on every schema. They
/// are applied one after the other, each measured: the time of one on 101 territories moves
/// from run to run (above all on Citus), and the median of several in one run says more.
const NEW_MIGRATIONS: [Migration; 3] = [
    column_migration!(9000, "phone"),
    column_migration!(9001, "fax"),
    column_migration!(9002, "website"),
];

/// Applies the new migrations one after the other; the time of each.
async fn apply_new(db: &TestDatabase, concurrency: usize) -> anyhow::Result<Vec<Duration>> {
    let mut set = DEPARTEMENT_MIGRATIONS.clone();
    let mut times = Vec::new();
    for migration in NEW_MIGRATIONS {
        set.0.push(migration);
        times.push(migrate_all(db, &set, concurrency).await?);
    }
    Ok(times)
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn list(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
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

    let sequential = TestDatabase::create().await;
    let seq_empty = migrate_all(&sequential, &DEPARTEMENT_MIGRATIONS, 1).await?;
    let seq_next = apply_new(&sequential, 1).await?;

    let db = TestDatabase::create().await;
    let from_empty = migrate_all(&db, &DEPARTEMENT_MIGRATIONS, args.concurrency).await?;
    let one_more = apply_new(&db, args.concurrency).await?;

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
        "une nouvelle migration appliquée aux 101 (médiane)",
        median(&one_more),
        Duration::from_secs(2),
    );
    println!(
        "  {} nouvelles migrations l'une après l'autre : {} s",
        NEW_MIGRATIONS.len(),
        list(&one_more)
    );
    println!(
        "séquentiel, même session : depuis vide {:.2} s (×{:.1} du parallèle), nouvelle migration {} s (médiane ×{:.1})",
        seq_empty.as_secs_f64(),
        seq_empty.as_secs_f64() / from_empty.as_secs_f64(),
        list(&seq_next),
        median(&seq_next).as_secs_f64() / median(&one_more).as_secs_f64()
    );
    Ok(())
}
