//! `/territoire/deploiement`: a territory admin follows the rollout of their tenant — the wave
//! of its département and the structure requests filed there, with their states (no personal
//! data: structures, communes, dates). A commune tenant sees only its commune's requests
//! (its municipal arrondissements included); a département council the whole département.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::guard;
use foundation::auth::session::Professional;
use foundation::ids::TenantId;
use foundation::paris;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::web::Data;
use poem::{Response, handler};
use policies::Action;

use crate::requests::form::kind_label;
use crate::requests::{self, Status};
use crate::views::{THEME, nav};
use crate::waves::{self, Wave};

pub struct TenantView {
    pub name: String,
    pub territory: String,
    pub scope: String,
    pub wave: Option<Wave>,
    pub lines: Vec<Line>,
    pub unavailable: bool,
    pub counts: Vec<(&'static str, usize)>,
}

pub struct Line {
    pub reference: String,
    pub structure: String,
    pub kind: &'static str,
    pub commune: String,
    pub status: Status,
    pub submitted: String,
}

#[derive(Template)]
#[template(path = "territory_rollout.html")]
struct RolloutPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    tenants: Vec<TenantView>,
}

/// `GET /territoire/deploiement`.
#[handler]
pub async fn rollout(platform: Data<&Platform>, me: Professional) -> PageResult<Response> {
    let held: Vec<(TenantId, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.name, t.kind, t.departement_code, t.commune_code FROM platform.role_assignments a
         JOIN platform.tenants t ON a.domain = 'tenant:' || t.id::text
         WHERE a.professional_id = $1 AND a.role = 'territory_admin' ORDER BY t.name",
    )
    .bind(me.id)
    .fetch_all(platform.platform_pool())
    .await?;
    let mut tenants = Vec::new();
    for (id, name, kind, code, commune) in held {
        let Some(allowed) = guard::check_in_tenant(&platform, &me, id, Action::RolloutFollow).await
        else {
            continue;
        };
        let Ok(d) = DepartementCode::parse(&code) else {
            continue;
        };
        let wave = waves::wave_of(platform.platform_pool(), d).await?;
        // A commune sees its own commune and its municipal arrondissements.
        let communes: Option<Vec<String>> = match (&kind[..], &commune) {
            ("commune", Some(c)) => Some(
                sqlx::query_scalar(
                    "SELECT code FROM platform.communes WHERE code = $1 OR parent_code = $1
                     UNION SELECT $1",
                )
                .bind(c)
                .fetch_all(platform.platform_pool())
                .await?,
            ),
            _ => None,
        };
        let mut lines = Vec::new();
        let mut unavailable = false;
        match allowed.territory(&platform).await {
            Ok(tenant) => {
                let mut tx = tenant.begin().await?;
                let rows = requests::summaries(&mut tx, &[], None, None).await?;
                tx.commit().await?;
                let codes: Vec<String> = rows.iter().map(|r| r.commune_code.clone()).collect();
                let names: Vec<(String, String)> =
                    sqlx::query_as("SELECT code, name FROM platform.communes WHERE code = ANY($1)")
                        .bind(&codes)
                        .fetch_all(platform.platform_pool())
                        .await?;
                for r in rows {
                    if let Some(allowed) = &communes
                        && !allowed.contains(&r.commune_code)
                    {
                        continue;
                    }
                    lines.push(Line {
                        reference: r.reference.clone(),
                        structure: r.structure_name.clone(),
                        kind: kind_label(&r.structure_kind),
                        commune: names
                            .iter()
                            .find(|(c, _)| *c == r.commune_code)
                            .map(|(_, n)| n.clone())
                            .unwrap_or_else(|| r.commune_code.clone()),
                        status: r.status(),
                        submitted: r
                            .submitted_at
                            .map(paris::date)
                            .unwrap_or_else(|| "—".to_owned()),
                    });
                }
            }
            Err(_) => unavailable = true,
        }
        let counts = Status::ALL
            .iter()
            .filter(|s| **s != Status::Draft)
            .map(|s| (s.label(), lines.iter().filter(|l| l.status == *s).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        tenants.push(TenantView {
            name,
            territory: format!("{} ({})", d.name(), d.as_str()),
            scope: match commune {
                Some(c) => format!("les structures de la commune (code INSEE {c})"),
                None => "toutes les structures du département".to_owned(),
            },
            wave,
            lines,
            unavailable,
            counts,
        });
    }
    if tenants.is_empty() {
        tracing::info!(action = "rollout:follow", "authorization denied");
        return Err(PageError::forbidden());
    }
    html(&RolloutPage {
        theme: THEME,
        nav: nav("/territoire/deploiement"),
        tenants,
    })
}
