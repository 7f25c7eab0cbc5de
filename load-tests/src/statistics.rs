//! Benchmark of the statistics dashboards at national scale (`infra/run bench`, release build,
//! the local stack's PostgreSQL), target p99 ≤ 100 ms:
//!
//! - the aggregates as 10,000,000 mandates over a year leave them: the platform's monthly
//!   table for the 101 départements (24 months × 11 categories), and, for the département
//!   measured, 1,000 structures with a year of daily rows (creations, uses in four categories)
//!   and 1,000,000 people-months, and the council's monthly table the job keeps from them;
//! - over HTTP with real sessions: the open page, the national page, a département council's
//!   territory space (1,000 structures) and a référent's structure page;
//! - the fold of the journal into the aggregates (the job), on 1,000,000 entries: entries per
//!   second, against the rate a national year needs.
//!
//! Each figure is printed with its target and the ratio.

use std::time::{Duration, Instant};

use foundation::auth::session;
use foundation::ids::StructureId;

use foundation::tenancy::{DepartementCode, Tenancy};
use load_tests::{ms, percentile, timed_gets};
use policies::{Domain, Role};
use test_support::database::TestDatabase;
use time::OffsetDateTime;
use uuid::Uuid;

const MANDATES: i64 = 10_000_000;
const STRUCTURES: i64 = 1_000;
const JOURNAL: i64 = 1_000_000;

async fn professional(
    admin: &sqlx::PgPool,
    name: &str,
    roles: &[(Role, Domain, Option<&str>)],
) -> anyhow::Result<String> {
    let mut tx = admin.begin().await?;
    let id = habilitation_desk::accounts::create_professional(
        &mut tx,
        &format!(
            "{}-{}@bench.test",
            name.to_lowercase().replace(' ', "."),
            Uuid::new_v4().simple()
        ),
        name,
    )
    .await?;
    for (role, domain, d) in roles {
        habilitation_desk::accounts::grant_role(&mut tx, id, *role, *domain, *d).await?;
    }
    tx.commit().await?;
    let mut conn = admin.acquire().await?;
    let cookie = session::open(&mut conn, id, OffsetDateTime::now_utc(), false).await?;
    Ok(cookie.value_str().to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = TestDatabase::with_departements(&["33"]).await;
    let mut settings = test_support::test_settings(&db.app_url);
    settings.database.max_connections = 20;
    // Errors and warnings of the application on the console (a failed page says why).
    settings.telemetry.log_filter = "warn".into();
    settings.telemetry.otlp_endpoint = None;
    let _telemetry = foundation::telemetry::init(&settings.telemetry)?;
    let tenancy = Tenancy::load(db.admin.clone(), TestDatabase::tenant_login()).await?;
    let d = DepartementCode::parse("33")?;
    let ctx = tenancy.unguarded(d).await?;
    let council = foundation::tenancy::tenants::create_tenant(
        &db.admin,
        &foundation::tenancy::tenants::TenantKind::Departement(d),
        "Conseil départemental de la Gironde",
    )
    .await?
    .id;
    let started = Instant::now();
    // 1,000 structures of the council, in the communes of Gironde.
    sqlx::query(
        "INSERT INTO dep_33.structures (id, tenant_id, name, kind, commune_code, address)
         SELECT gen_random_uuid(), $1, 'Structure ' || i, 'ccas', c.code, '1 place de la Mairie'
         FROM generate_series(1, $2::int) i
         JOIN LATERAL (SELECT code FROM platform.communes WHERE departement_code = '33' AND parent_code IS NULL
                       ORDER BY code OFFSET (i * 7) % 500 LIMIT 1) c ON true",
    )
    .bind(council)
    .bind(STRUCTURES)
    .execute(&db.admin)
    .await?;
    // A year of daily figures for each: creations, and uses in four categories.
    sqlx::query(
        "INSERT INTO dep_33.stats_daily (day, structure_id, category, created, used, revoked)
         SELECT day::date, s.id, c.code,
                CASE WHEN c.code = '' THEN 1 + (abs(hashtext(s.id::text || day::text)) % 5) ELSE 0 END,
                CASE WHEN c.code = '' THEN 0 ELSE (abs(hashtext(s.id::text || c.code || day::text)) % 7) END,
                CASE WHEN c.code = '' THEN (abs(hashtext(day::text || s.id::text)) % 2) ELSE 0 END
         FROM dep_33.structures s,
              generate_series((now() AT TIME ZONE 'Europe/Paris')::date - 364, (now() AT TIME ZONE 'Europe/Paris')::date, interval '1 day') day,
              (VALUES (''), ('social'), ('logement'), ('travail'), ('argent')) c(code)",
    )
    .execute(&db.admin)
    .await?;
    // 1,000,000 people-months.
    sqlx::query(
        "INSERT INTO dep_33.stats_people (month, structure_id, usager_id)
         SELECT date_trunc('month', (now() AT TIME ZONE 'Europe/Paris')::date - (i % 365))::date, s.id, gen_random_uuid()
         FROM generate_series(1, $1::int) i
         JOIN LATERAL (SELECT id FROM dep_33.structures OFFSET i % $2::int LIMIT 1) s ON true",
    )
    .bind(1_000_000_i64)
    .bind(STRUCTURES)
    .execute(&db.admin)
    .await?;
    // The platform's national table: 101 départements, 24 months, 11 categories, summing to
    // 10,000,000 mandates over the year.
    sqlx::query(
        "INSERT INTO platform.stats_territory_months (departement_code, month, category, created, used, revoked, people)
         SELECT d.code, date_trunc('month', (now() AT TIME ZONE 'Europe/Paris')::date - m * interval '1 month')::date, c.code,
                CASE WHEN c.code = '' THEN $1 / 101 / 12 ELSE 0 END,
                CASE WHEN c.code = '' THEN 0 ELSE $1 / 101 / 12 / 2 END,
                CASE WHEN c.code = '' THEN $1 / 101 / 12 / 20 ELSE 0 END,
                CASE WHEN c.code = '' THEN $1 / 101 / 12 * 8 / 10 ELSE 0 END
         FROM platform.departements d, generate_series(0, 23) m,
              (VALUES (''), ('papiers'), ('famille'), ('social'), ('travail'), ('logement'),
                      ('transports'), ('argent'), ('justice'), ('etranger'), ('loisirs')) c(code)",
    )
    .bind(MANDATES)
    .execute(&db.admin)
    .await?;
    sqlx::query(
        "INSERT INTO platform.stats_territory_snapshots (departement_code, month, structures, aidants, requests_in_progress, files_in_progress)
         SELECT code, date_trunc('month', (now() AT TIME ZONE 'Europe/Paris')::date)::date, 300, 900, 12, 40 FROM platform.departements",
    )
    .execute(&db.admin)
    .await?;
    // The council's monthly table, as the job keeps it in step with the daily rows.
    let mut tx = ctx.begin().await?;
    habilitation_desk::statistics::rebuild_tenant_months(&mut tx).await?;
    tx.commit().await?;
    sqlx::raw_sql(
        "VACUUM ANALYZE dep_33.stats_daily, dep_33.stats_people, dep_33.structures, dep_33.stats_tenant_months,
                        platform.stats_territory_months, platform.stats_territory_snapshots",
    )
    .execute(&db.admin)
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dep_33.stats_daily")
        .fetch_one(&db.admin)
        .await?;
    println!(
        "préparation : agrégats de {MANDATES} mandats par an (table nationale des 101 départements), {STRUCTURES} structures et {rows} lignes quotidiennes en Gironde, 1 000 000 personnes-mois, en {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let structure: StructureId = sqlx::query_scalar("SELECT id FROM dep_33.structures LIMIT 1")
        .fetch_one(&db.admin)
        .await?;
    let territory = professional(
        &db.admin,
        "Teo Territoire",
        &[(Role::TerritoryAdmin, council.domain(), None)],
    )
    .await?;
    let national = professional(
        &db.admin,
        "Nadia Nationale",
        &[(Role::NationalAdmin, Domain::National, None)],
    )
    .await?;
    let referent = professional(
        &db.admin,
        "Rita Referente",
        &[(Role::Referent, structure.domain(), Some("33"))],
    )
    .await?;
    sqlx::query("UPDATE platform.sessions SET current_structure = $1 WHERE ended_at IS NULL")
        .bind(structure)
        .execute(&db.admin)
        .await?;

    let base = load_tests::spawn_platform(settings).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!("\nTableaux de bord (HTTP, 200 requêtes chacun, 4 à la fois)");
    let pages = [
        (
            "page publique /statistiques",
            format!("{base}/statistiques"),
            None,
            "Gironde (33)",
        ),
        (
            "page nationale /national/statistiques",
            format!("{base}/national/statistiques"),
            Some(national.as_str()),
            "Gironde (33)",
        ),
        (
            "espace du département (1 000 structures)",
            format!("{base}/territoire/collectivites/{council}"),
            Some(territory.as_str()),
            "Usage des mandats",
        ),
        (
            "statistiques d'une structure",
            format!("{base}/structure/statistiques"),
            Some(referent.as_str()),
            "Statistiques de",
        ),
    ];
    for (what, url, cookie, must) in &pages {
        // A first pass warms the caches, as a running service has them.
        let times = match timed_gets(&client, url, *cookie, &[must], 10, 4).await {
            Ok(_) => timed_gets(&client, url, *cookie, &[must], 200, 4).await,
            Err(e) => Err(e),
        };
        let times = match times {
            Ok(t) => t,
            Err(e) => {
                println!("{what:<46} ÉCHEC : {e}");
                continue;
            }
        };
        let p99 = ms(percentile(&times, 0.99));
        println!(
            "{what:<46} p50 {:>6.1} ms  p99 {:>6.1} ms  cible p99 ≤ 100 ms  marge ×{:.1}",
            ms(percentile(&times, 0.5)),
            p99,
            100.0 / p99
        );
    }

    // The job's fold: 1,000,000 sealed journal entries (uses) past the watermark.
    sqlx::query("UPDATE dep_33.stats_watermark SET seq = 0")
        .execute(&db.admin)
        .await?;
    sqlx::query(
        "INSERT INTO dep_33.journal (at, kind, structure_id, usager_id, details)
         SELECT now() - (i % 30) * interval '1 day', 'mandate_used', s.id, gen_random_uuid(),
                '{\"category\":\"social\"}'
         FROM generate_series(1, $1::int) i
         JOIN LATERAL (SELECT id FROM dep_33.structures OFFSET i % $2::int LIMIT 1) s ON true",
    )
    .bind(JOURNAL)
    .bind(STRUCTURES)
    .execute(&db.admin)
    .await?;
    let sealing = Instant::now();
    loop {
        let mut tx = ctx.begin().await?;
        let n = foundation::journal::seal(&mut tx).await?;
        tx.commit().await?;
        if n == 0 {
            break;
        }
    }
    let sealed = sealing.elapsed();
    let folding = Instant::now();
    let folded = habilitation_desk::statistics::fold(&ctx).await?;
    let fold = folding.elapsed();
    let rate = folded as f64 / fold.as_secs_f64();
    // A national year of 10 M mandates with, say, 5 uses each, in one territory at worst.
    let needed = (MANDATES as f64 * 6.0) / (365.0 * 24.0 * 3600.0);
    println!(
        "\nRepli du journal dans les agrégats : {folded} entrées en {:.1} s, {:.0} entrées/s (chaînage préalable : {:.1} s)",
        fold.as_secs_f64(),
        rate,
        sealed.as_secs_f64()
    );
    println!(
        "  une année nationale (10 M mandats, 5 usages chacun) demande {needed:.1} entrées/s en moyenne : marge ×{:.0}",
        rate / needed
    );
    Ok(())
}
