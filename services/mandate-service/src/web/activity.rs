//! `/activite`: the aidant's own acts in the current territory over the last twelve months,
//! month by month (people helped, démarches done, mandates created) and by démarche, read from
//! the territory's journal.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::guard;
use foundation::ids::ProfessionalId;
use foundation::tenancy::Territory;
use foundation::web::PageResult;
use foundation::web::{NavItem, Theme, html};
use poem::web::Data;
use poem::{Response, handler};
use policies::Action;
use time::Date;

use super::{THEME, nav};
use crate::categories;
use crate::scope::Scope;

pub struct Month {
    pub label: String,
    pub people: i64,
    pub demarches: i64,
    pub created: i64,
    pub bar: i64,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    months: Vec<Month>,
    total_people: i64,
    total_demarches: i64,
    total_created: i64,
    by_category: Vec<(&'static str, i64)>,
}

/// The months' names, as the page labels them.
pub const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// People helped (one person counted once), démarches done (uses of a mandate) and mandates
/// created: one month's, or the twelve months' totals.
#[derive(sqlx::FromRow)]
struct Counts {
    people: i64,
    demarches: i64,
    created: i64,
}

#[derive(sqlx::FromRow)]
struct MonthCounts {
    /// The month's first day; empty on the row of the twelve months' totals.
    month: Option<Date>,
    #[sqlx(flatten)]
    counts: Counts,
}

#[derive(sqlx::FromRow)]
struct CategoryUses {
    category: Option<String>,
    uses: i64,
}

/// What the page shows, read in one territory transaction.
struct Activity {
    months: Vec<MonthCounts>,
    totals: Counts,
    by_category: Vec<CategoryUses>,
}

// The twelve months shown are this one and the eleven before it, months of the calendar in
// France: cut at midnight in Paris, whatever the server's or the session's time zone (an act at
// half past midnight on the 1st is of that month, though in UTC it is still the month before).
// A month is over, for the figures kept in `activity_months`, an hour after it ends (no act's
// transaction lasts that long, and an entry is stamped when it is written): before that it is
// still read from the journal. `now()` is the transaction's start, the same for the three
// statements.

/// People helped (one person counted once a month, and once over the twelve months), démarches
/// done (uses of a mandate) and mandates created, month by month (the month's first day), then
/// over the twelve months (the row with no month). Read from the index alone
/// (`journal_professional_acts`, département migration 0035): the kind and the person are in
/// it, the journal's table is not visited.
pub const COUNTS_SQL: &str =
    "SELECT date_trunc('month', at AT TIME ZONE 'Europe/Paris')::date AS month,
            count(DISTINCT usager_id) AS people,
            count(*) FILTER (WHERE kind = 'mandate_used') AS demarches,
            count(*) FILTER (WHERE kind = 'mandate_created') AS created
     FROM journal
     WHERE professional_id = $1 AND kind IN ('mandate_created', 'mandate_used')
       AND at >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris') - interval '11 months')
                 AT TIME ZONE 'Europe/Paris'
     GROUP BY GROUPING SETS ((date_trunc('month', at AT TIME ZONE 'Europe/Paris')::date), ())
     ORDER BY 1";

/// Counts, once, the uses by démarche of each month shown that is over and not counted yet
/// (the first view of a month after it ends, or of an aidant's page). The months are numbered
/// (an integer series, whose size the planner knows): over a series of dates it assumed a
/// thousand months, a cost past the threshold at which PostgreSQL compiles a statement to
/// machine code (JIT), which took 150 ms at each view even with every month already counted.
pub const FILL_SQL: &str = "INSERT INTO activity_months (professional_id, month, uses)
     SELECT $1, l.month,
            (SELECT coalesce(jsonb_object_agg(category, n), '{}')
             FROM (SELECT details::json ->> 'category' AS category, count(*) AS n
                   FROM journal
                   WHERE professional_id = $1 AND kind = 'mandate_used'
                     AND at >= m.starts AND at < m.ends
                   GROUP BY 1) c
             WHERE category IS NOT NULL)
     FROM generate_series(1, 11) AS k,
          LATERAL (SELECT (date_trunc('month', now() AT TIME ZONE 'Europe/Paris')
                           - k * interval '1 month')::date AS month) AS l,
          LATERAL (SELECT l.month::timestamp AT TIME ZONE 'Europe/Paris' AS starts,
                          (l.month + interval '1 month') AT TIME ZONE 'Europe/Paris' AS ends) AS m
     WHERE m.ends <= now() - interval '1 hour'
       AND NOT EXISTS (SELECT 1 FROM activity_months a
                       WHERE a.professional_id = $1 AND a.month = l.month)
     ON CONFLICT DO NOTHING";

/// Uses by démarche over the twelve months: the months over from `activity_months`, the
/// current one from the journal.
pub const CATEGORIES_SQL: &str = "SELECT category, sum(n)::bigint AS uses
     FROM (SELECT e.key AS category, e.value::bigint AS n
           FROM activity_months a, jsonb_each_text(a.uses) e
           WHERE a.professional_id = $1
             AND a.month >= (date_trunc('month', now() AT TIME ZONE 'Europe/Paris')
                             - interval '11 months')::date
             AND a.month < date_trunc('month', (now() - interval '1 hour')
                                               AT TIME ZONE 'Europe/Paris')::date
           UNION ALL
           SELECT details::json ->> 'category', 1
           FROM journal
           WHERE professional_id = $1 AND kind = 'mandate_used'
             AND at >= date_trunc('month', (now() - interval '1 hour') AT TIME ZONE 'Europe/Paris')
                       AT TIME ZONE 'Europe/Paris') u
     GROUP BY 1
     ORDER BY 2 DESC, 1";

/// The page's statements, in order, each taking the aidant as `$1`.
pub const STATEMENTS: [&str; 3] = [COUNTS_SQL, FILL_SQL, CATEGORIES_SQL];

async fn read_activity(tenant: &Territory, me: ProfessionalId) -> Result<Activity, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let mut months: Vec<MonthCounts> = sqlx::query_as(COUNTS_SQL)
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
    // The totals' row comes last (no month), even with no act at all (zeros).
    let totals = match months.last() {
        Some(last) if last.month.is_none() => months.pop().map(|t| t.counts),
        _ => None,
    }
    .unwrap_or(Counts {
        people: 0,
        demarches: 0,
        created: 0,
    });
    sqlx::query(FILL_SQL).bind(me).execute(&mut *tx).await?;
    let by_category: Vec<CategoryUses> = sqlx::query_as(CATEGORIES_SQL)
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Activity {
        months,
        totals,
        by_category,
    })
}

#[handler]
pub async fn activity(platform: Data<&Platform>, scope: Scope) -> PageResult<Response> {
    guard::require_in_current_structure(&platform, &scope.me, Action::ActivityReadOwn).await?;
    let Activity {
        months: rows,
        totals,
        by_category,
    } = read_activity(&scope.tenant, scope.me.id).await?;
    let max = rows
        .iter()
        .map(|r| {
            r.counts
                .people
                .max(r.counts.demarches)
                .max(r.counts.created)
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let months = rows
        .into_iter()
        .filter_map(|MonthCounts { month, counts }| month.map(|m| (m, counts)))
        .map(|(m, counts)| Month {
            label: format!(
                "{} {}",
                MONTHS[usize::from(u8::from(m.month())) - 1],
                m.year()
            ),
            people: counts.people,
            demarches: counts.demarches,
            created: counts.created,
            bar: counts.people * 100 / max,
        })
        .collect();
    html(&ActivityPage {
        theme: THEME,
        nav: nav("/activite"),
        months,
        total_people: totals.people,
        total_demarches: totals.demarches,
        total_created: totals.created,
        by_category: by_category
            .into_iter()
            .filter_map(|c| Some((categories::by_code(c.category.as_deref()?)?.label, c.uses)))
            .collect(),
    })
}
