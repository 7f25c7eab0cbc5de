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
use time::OffsetDateTime;

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

const MONTHS: [&str; 12] = [
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
    month: OffsetDateTime,
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

async fn read_activity(tenant: &Territory, me: ProfessionalId) -> Result<Activity, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    // The last twelve months of the aidant's own acts in this territory: people helped (one
    // person counted once a month), démarches done (uses of a mandate) and mandates created.
    let months: Vec<MonthCounts> = sqlx::query_as(
        "SELECT date_trunc('month', at) AS month,
                count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')) AS people,
                count(*) FILTER (WHERE kind = 'mandate_used') AS demarches,
                count(*) FILTER (WHERE kind = 'mandate_created') AS created
         FROM journal WHERE professional_id = $1 AND at > date_trunc('month', now()) - interval '11 months'
         GROUP BY 1 ORDER BY 1",
    )
    .bind(me)
    .fetch_all(&mut *tx)
    .await?;
    let totals: Counts = sqlx::query_as(
        "SELECT count(DISTINCT usager_id) FILTER (WHERE kind IN ('mandate_created', 'mandate_used')) AS people,
                count(*) FILTER (WHERE kind = 'mandate_used') AS demarches,
                count(*) FILTER (WHERE kind = 'mandate_created') AS created
         FROM journal WHERE professional_id = $1 AND at > date_trunc('month', now()) - interval '11 months'",
    )
    .bind(me)
    .fetch_one(&mut *tx)
    .await?;
    let by_category: Vec<CategoryUses> = sqlx::query_as(
        "SELECT details::jsonb ->> 'category' AS category, count(*) AS uses FROM journal
         WHERE professional_id = $1 AND kind = 'mandate_used' AND at > now() - interval '1 year'
         GROUP BY 1 ORDER BY 2 DESC",
    )
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
        .map(|MonthCounts { month: m, counts }| Month {
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
