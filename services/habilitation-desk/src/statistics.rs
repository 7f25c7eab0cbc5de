//! Statistics (product.md §11), from aggregates only. The job `statistics_refresh` folds each
//! territory's sealed journal entries past its watermark into `stats_daily` (creations, uses
//! by démarche category, revocations, per structure and day) and `stats_people` (each person
//! helped once per month and structure) and, per tenant, `stats_tenant_months` (what the
//! territory admin's space reads), moving the watermark in the same transaction: every
//! entry is counted exactly once, however often the job runs. It then copies the territory's
//! monthly figures and the state of its habilitation into the platform's small tables, which
//! the national and public dashboards read — so a dashboard costs the same at 10 M mandates as
//! at 10.
//!
//! Public figures of fewer than [`THRESHOLD`] people are not published (re-identification).

use std::time::Duration;

use foundation::app::Platform;
use foundation::ids::{StructureId, TenantId};
use foundation::jobs::Job;
use foundation::tenancy::{DepartementCode, Territory};
use sqlx::PgConnection;
use time::Date;

/// Below this many people, a public figure is not published.
pub const THRESHOLD: i64 = 5;

/// Entries folded per transaction.
const BATCH: i64 = 10_000;

/// A figure as the public may see it: `None` when it counts fewer than [`THRESHOLD`] people
/// (and is not zero).
pub fn public(n: i64) -> Option<i64> {
    (n == 0 || n >= THRESHOLD).then_some(n)
}

/// A batch's figures by day, structure and category: the journal's entries `$1 < seq <= $2`.
macro_rules! batch {
    () => {
        "(SELECT (at AT TIME ZONE 'Europe/Paris')::date AS day, structure_id,
                 CASE WHEN kind = 'mandate_used' THEN coalesce(details::jsonb ->> 'category', '') ELSE '' END AS category,
                 count(*) FILTER (WHERE kind = 'mandate_created') AS created,
                 count(*) FILTER (WHERE kind = 'mandate_used') AS used,
                 count(*) FILTER (WHERE kind = 'mandate_revoked') AS revoked
          FROM journal
          WHERE seq > $1 AND seq <= $2 AND structure_id IS NOT NULL
            AND kind IN ('mandate_created', 'mandate_used', 'mandate_revoked')
          GROUP BY 1, 2, 3) b"
    };
}

/// The people helped in a batch, once per month and structure.
macro_rules! people {
    () => {
        "(SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'Europe/Paris')::date AS month, structure_id, usager_id
          FROM journal
          WHERE seq > $1 AND seq <= $2 AND structure_id IS NOT NULL AND usager_id IS NOT NULL
            AND kind IN ('mandate_created', 'mandate_used')) p"
    };
}

const FOLD_DAILY: &str = concat!(
    "INSERT INTO stats_daily (day, structure_id, category, created, used, revoked)
     SELECT day, structure_id, category, created, used, revoked FROM ",
    batch!(),
    " ON CONFLICT (day, structure_id, category) DO UPDATE SET
         created = stats_daily.created + EXCLUDED.created,
         used = stats_daily.used + EXCLUDED.used,
         revoked = stats_daily.revoked + EXCLUDED.revoked"
);

const FOLD_MONTHS: &str = concat!(
    "INSERT INTO stats_tenant_months (tenant_id, month, category, created, used, revoked)
     SELECT s.tenant_id, date_trunc('month', b.day)::date, b.category,
            sum(b.created), sum(b.used), sum(b.revoked)
     FROM ",
    batch!(),
    " JOIN structures s ON s.id = b.structure_id
     GROUP BY 1, 2, 3
     ON CONFLICT (tenant_id, month, category) DO UPDATE SET
         created = stats_tenant_months.created + EXCLUDED.created,
         used = stats_tenant_months.used + EXCLUDED.used,
         revoked = stats_tenant_months.revoked + EXCLUDED.revoked"
);

const FOLD_NEW_PEOPLE: &str = concat!(
    "INSERT INTO stats_tenant_months (tenant_id, month, category, people)
     SELECT s.tenant_id, p.month, '', count(*)
     FROM ",
    people!(),
    " JOIN structures s ON s.id = p.structure_id
     WHERE NOT EXISTS (SELECT 1 FROM stats_people k
                       WHERE k.month = p.month AND k.structure_id = p.structure_id
                         AND k.usager_id = p.usager_id)
     GROUP BY 1, 2
     ON CONFLICT (tenant_id, month, category) DO UPDATE SET
         people = stats_tenant_months.people + EXCLUDED.people"
);

const FOLD_PEOPLE: &str = concat!(
    "INSERT INTO stats_people (month, structure_id, usager_id)
     SELECT month, structure_id, usager_id FROM ",
    people!(),
    " ON CONFLICT DO NOTHING"
);

/// Folds the territory's sealed journal entries past the watermark; returns how many.
pub async fn fold(tenant: &Territory) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = tenant.begin().await?;
        let from: i64 = sqlx::query_scalar("SELECT seq FROM stats_watermark FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let to: Option<i64> = sqlx::query_scalar(
            "SELECT max(seq) FROM (SELECT seq FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2) s",
        )
        .bind(from)
        .bind(BATCH)
        .fetch_one(&mut *tx)
        .await?;
        let Some(to) = to else {
            tx.commit().await?;
            return Ok(total);
        };
        // The batch's figures by day, structure and category, added to the daily rows and, by
        // month, to the tenants' rows; then the people new to a month and structure, counted
        // into their tenant's month before they are recorded (the watermark's lock keeps any
        // other fold out meanwhile). Four plain statements rather than data-modifying `WITH`s:
        // Citus sends those to the territory's worker without naming its shards
        // (docs/TENANCY.md, what the cluster refuses).
        for statement in [FOLD_DAILY, FOLD_MONTHS, FOLD_NEW_PEOPLE, FOLD_PEOPLE] {
            sqlx::query(statement)
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE stats_watermark SET seq = $1")
            .bind(to)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += u64::try_from(to - from).unwrap_or(0);
    }
}

/// Recomputes the tenants' monthly table from the daily rows and people of the territory (what
/// the fold keeps in step): for aggregates written other than by the fold — the demo's history,
/// a benchmark's seeded volume — or to repair. Idempotent. Call it in a transaction: it takes
/// the watermark's lock, so a fold running meanwhile waits for it.
pub async fn rebuild_tenant_months(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    // One statement per call: Citus forwards a territory's statements to its worker one by one.
    for statement in [
        "SELECT seq FROM stats_watermark FOR UPDATE",
        "DELETE FROM stats_tenant_months",
        "INSERT INTO stats_tenant_months (tenant_id, month, category, created, used, revoked)
         SELECT s.tenant_id, date_trunc('month', d.day)::date, d.category,
                sum(d.created), sum(d.used), sum(d.revoked)
         FROM stats_daily d JOIN structures s ON s.id = d.structure_id
         GROUP BY 1, 2, 3",
        "INSERT INTO stats_tenant_months (tenant_id, month, category, people)
         SELECT s.tenant_id, p.month, '', count(*)
         FROM stats_people p JOIN structures s ON s.id = p.structure_id
         GROUP BY 1, 2
         ON CONFLICT (tenant_id, month, category) DO UPDATE SET people = EXCLUDED.people",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// One month of figures.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Month {
    pub month: Date,
    pub created: i64,
    pub used: i64,
    pub revoked: i64,
    pub people: i64,
}

/// Whose figures: one tenant's structures (from its monthly table) or one structure's.
#[derive(Debug, Clone, Copy)]
pub enum Of {
    Tenant(TenantId),
    Structure(StructureId),
}

/// Monthly figures for the twelve months to now, from the territory's aggregates.
pub async fn months(conn: &mut PgConnection, of: Of) -> Result<Vec<Month>, sqlx::Error> {
    match of {
        Of::Tenant(tenant) => {
            sqlx::query_as(
                "SELECT month, sum(created)::bigint AS created, sum(used)::bigint AS used,
                        sum(revoked)::bigint AS revoked, sum(people)::bigint AS people
                 FROM stats_tenant_months
                 WHERE tenant_id = $1
                   AND month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await
        }
        Of::Structure(structure) => {
            sqlx::query_as(
                "WITH m AS (
                     SELECT date_trunc('month', day)::date AS month, sum(created)::bigint AS created,
                            sum(used)::bigint AS used, sum(revoked)::bigint AS revoked
                     FROM stats_daily
                     WHERE structure_id = $1
                       AND day >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
                     GROUP BY 1),
                 p AS (
                     SELECT month, count(*)::bigint AS people FROM stats_people
                     WHERE structure_id = $1
                       AND month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
                     GROUP BY 1)
                 SELECT coalesce(m.month, p.month) AS month, coalesce(m.created, 0) AS created,
                        coalesce(m.used, 0) AS used, coalesce(m.revoked, 0) AS revoked,
                        coalesce(p.people, 0) AS people
                 FROM m FULL JOIN p ON p.month = m.month ORDER BY 1",
            )
            .bind(structure)
            .fetch_all(&mut *conn)
            .await
        }
    }
}

/// Uses by démarche category over the twelve months, most first.
pub async fn categories(
    conn: &mut PgConnection,
    of: Of,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let query = match of {
        Of::Tenant(id) => sqlx::query_as(
            "SELECT category, sum(used)::bigint FROM stats_tenant_months
             WHERE category <> '' AND tenant_id = $1
               AND month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(id),
        Of::Structure(id) => sqlx::query_as(
            "SELECT category, sum(used)::bigint FROM stats_daily
             WHERE category <> '' AND structure_id = $1
               AND day >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(id),
    };
    query.fetch_all(&mut *conn).await
}

/// Copies the territory's monthly figures and the state of its habilitation to the platform.
pub async fn publish(
    platform: &Platform,
    tenant: &Territory,
    d: DepartementCode,
) -> Result<(), sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let by_category: Vec<(Date, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT date_trunc('month', day)::date, category, sum(created)::bigint, sum(used)::bigint, sum(revoked)::bigint
         FROM stats_daily
         WHERE day >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '23 months')::date
         GROUP BY 1, 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    let people: Vec<(Date, i64)> = sqlx::query_as(
        "SELECT month, count(*)::bigint FROM stats_people
         WHERE month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '23 months')::date
         GROUP BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    let (structures, requests, files, live): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM structures WHERE active),
                (SELECT count(*) FROM structure_requests
                 WHERE status IN ('waiting', 'submitted', 'changes_requested', 'amended')),
                (SELECT count(*) FROM habilitation_files WHERE state NOT IN ('active', 'withdrawn')),
                (SELECT count(*) FROM mandates WHERE ended_at IS NULL AND expires_at > now())",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut ptx = platform.platform_pool().begin().await?;
    sqlx::query("DELETE FROM platform.stats_territory_months WHERE departement_code = $1")
        .bind(d.as_str())
        .execute(&mut *ptx)
        .await?;
    let column = |f: fn(&(Date, String, i64, i64, i64)) -> i64| -> Vec<i64> {
        by_category.iter().map(f).collect()
    };
    sqlx::query(
        "INSERT INTO platform.stats_territory_months (departement_code, month, category, created, used, revoked)
         SELECT $1, * FROM unnest($2::date[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])",
    )
    .bind(d.as_str())
    .bind(by_category.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(by_category.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
    .bind(column(|r| r.2))
    .bind(column(|r| r.3))
    .bind(column(|r| r.4))
    .execute(&mut *ptx)
    .await?;
    // People helped, on each month's mandate-wide row (made here for a month of uses only).
    sqlx::query(
        "INSERT INTO platform.stats_territory_months (departement_code, month, category, people)
         SELECT $1, month, '', people FROM unnest($2::date[], $3::bigint[]) AS p(month, people)
         ON CONFLICT (departement_code, month, category) DO UPDATE SET people = EXCLUDED.people",
    )
    .bind(d.as_str())
    .bind(people.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(people.iter().map(|p| p.1).collect::<Vec<_>>())
    .execute(&mut *ptx)
    .await?;
    let aidants: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT a.professional_id) FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.role = 'aidant' AND a.departement_code = $1 AND p.active",
    )
    .bind(d.as_str())
    .fetch_one(&mut *ptx)
    .await?;
    sqlx::query(
        "INSERT INTO platform.stats_territory_snapshots
             (departement_code, month, structures, aidants, requests_in_progress, files_in_progress,
              mandates_live)
         VALUES ($1, date_trunc('month', now() AT TIME ZONE 'Europe/Paris')::date, $2, $3, $4, $5, $6)
         ON CONFLICT (departement_code, month) DO UPDATE SET structures = EXCLUDED.structures,
             aidants = EXCLUDED.aidants, requests_in_progress = EXCLUDED.requests_in_progress,
             files_in_progress = EXCLUDED.files_in_progress, mandates_live = EXCLUDED.mandates_live",
    )
    .bind(d.as_str())
    .bind(structures)
    .bind(aidants)
    .bind(requests)
    .bind(files)
    .bind(live)
    .execute(&mut *ptx)
    .await?;
    ptx.commit().await
}

/// Folds and publishes every served territory.
pub async fn refresh(platform: &Platform) -> anyhow::Result<u64> {
    foundation::jobs::each_territory(platform, |d| async move {
        let tenant = platform.tenancy.unguarded(d).await?;
        foundation::journal::seal_from_platform(&platform.tenancy, d).await?;
        let folded = fold(&tenant).await?;
        publish(platform, &tenant, d).await?;
        Ok(folded)
    })
    .await
}

/// The job: every ten minutes.
pub fn job() -> Job {
    Job::new(
        "statistics_refresh",
        Duration::from_secs(600),
        |platform: Platform| async move { refresh(&platform).await },
    )
}

/// National monthly figures (twelve months to now) from the platform's table, and the figures
/// per territory over those months.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct TerritoryFigures {
    pub departement_code: String,
    pub structures: i64,
    pub aidants: i64,
    pub requests_in_progress: i64,
    pub files_in_progress: i64,
    pub mandates_live: i64,
    pub created: i64,
    pub used: i64,
    pub people: i64,
}

pub async fn national_months(conn: &mut PgConnection) -> Result<Vec<Month>, sqlx::Error> {
    sqlx::query_as(
        "SELECT month, sum(created)::bigint AS created, sum(used)::bigint AS used,
                sum(revoked)::bigint AS revoked, sum(people)::bigint AS people
         FROM platform.stats_territory_months
         WHERE month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn national_categories(
    conn: &mut PgConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT category, sum(used)::bigint FROM platform.stats_territory_months
         WHERE category <> ''
           AND month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn territories(conn: &mut PgConnection) -> Result<Vec<TerritoryFigures>, sqlx::Error> {
    sqlx::query_as(
        "WITH m AS (
             SELECT departement_code, sum(created)::bigint AS created, sum(used)::bigint AS used,
                    sum(people)::bigint AS people
             FROM platform.stats_territory_months
             WHERE month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')::date
             GROUP BY 1),
         s AS (
             SELECT DISTINCT ON (departement_code) departement_code, structures, aidants,
                    requests_in_progress, files_in_progress, mandates_live
             FROM platform.stats_territory_snapshots ORDER BY departement_code, month DESC)
         SELECT coalesce(s.departement_code, m.departement_code) AS departement_code,
                coalesce(s.structures, 0) AS structures, coalesce(s.aidants, 0) AS aidants,
                coalesce(s.requests_in_progress, 0) AS requests_in_progress,
                coalesce(s.files_in_progress, 0) AS files_in_progress,
                coalesce(s.mandates_live, 0) AS mandates_live,
                coalesce(m.created, 0) AS created, coalesce(m.used, 0) AS used,
                coalesce(m.people, 0) AS people
         FROM s FULL JOIN m ON m.departement_code = s.departement_code
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
}

/// The charts every statistics page draws from the same figures: mandates created, uses and
/// people helped by month, uses by démarche category.
pub mod charts {
    use foundation::categories;
    use foundation::web::chart::{self, Chart};

    use super::{Month, month_label};

    fn by_month(
        id: &str,
        title: &str,
        unit: &str,
        months: &[Month],
        f: fn(&Month) -> i64,
    ) -> Chart {
        chart::bars(
            id,
            title,
            unit,
            &months
                .iter()
                .map(|m| (month_label(m.month), Some(f(m))))
                .collect::<Vec<_>>(),
        )
    }

    pub fn created(months: &[Month]) -> Chart {
        by_month(
            "mandats-par-mois",
            "Mandats créés, par mois",
            "mandats",
            months,
            |m| m.created,
        )
    }

    pub fn uses(months: &[Month]) -> Chart {
        by_month(
            "demarches-par-mois",
            "Démarches faites avec un mandat, par mois",
            "démarches",
            months,
            |m| m.used,
        )
    }

    pub fn people(months: &[Month]) -> Chart {
        by_month(
            "personnes-par-mois",
            "Personnes accompagnées, par mois",
            "personnes",
            months,
            |m| m.people,
        )
    }

    pub fn by_category(uses: &[(String, i64)]) -> Chart {
        chart::bars(
            "demarches-par-categorie",
            "Démarches des douze derniers mois, par catégorie",
            "démarches",
            &uses
                .iter()
                .filter_map(|(code, n)| {
                    Some((categories::by_code(code)?.label.to_owned(), Some(*n)))
                })
                .collect::<Vec<_>>(),
        )
    }
}

/// `janv. 2026`.
pub fn month_label(d: Date) -> String {
    const SHORT: [&str; 12] = [
        "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
        "déc.",
    ];
    format!(
        "{} {}",
        SHORT[usize::from(u8::from(d.month())) - 1],
        d.year()
    )
}

/// The twelve months to now, each with its figures (zero when absent).
pub fn twelve(months: &[Month]) -> Vec<Month> {
    let now = foundation::paris::today();
    let mut first = Date::from_calendar_date(now.year(), now.month(), 1).unwrap_or(now);
    for _ in 0..11 {
        first = first
            .previous_day()
            .and_then(|d| Date::from_calendar_date(d.year(), d.month(), 1).ok())
            .unwrap_or(first);
    }
    let mut out = Vec::new();
    let mut m = first;
    for _ in 0..12 {
        out.push(
            months
                .iter()
                .find(|x| x.month == m)
                .cloned()
                .unwrap_or(Month {
                    month: m,
                    created: 0,
                    used: 0,
                    revoked: 0,
                    people: 0,
                }),
        );
        let next = m
            .replace_day(28)
            .ok()
            .and_then(|d| d.checked_add(time::Duration::days(5)));
        m = next
            .and_then(|d| Date::from_calendar_date(d.year(), d.month(), 1).ok())
            .unwrap_or(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_figures_of_people_are_not_published() {
        assert_eq!(public(0), Some(0));
        assert_eq!(public(1), None);
        assert_eq!(public(4), None);
        assert_eq!(public(5), Some(5));
        assert_eq!(public(12_000), Some(12_000));
    }

    #[test]
    fn twelve_months_end_with_this_one_and_fill_the_gaps() {
        let months = twelve(&[]);
        assert_eq!(months.len(), 12);
        let now = foundation::paris::today();
        assert_eq!(months[11].month.month(), now.month());
        assert!(months.windows(2).all(|w| w[0].month < w[1].month));
        assert!(months.iter().all(|m| m.month.day() == 1));
    }
}
