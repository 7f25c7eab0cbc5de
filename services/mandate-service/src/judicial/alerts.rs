//! Alerts before a measure ends (issue 18 §3): 90, 30 and 7 days before its end, and on its
//! renewal date, to the delegate who holds it and to the service's référents, by e-mail (the
//! case number, kind and dates; never the person's name). Each alert goes once per measure,
//! threshold and date (`judicial_alerts`): when a run was missed, only the most urgent
//! threshold due is sent; when the court moves the end, the new date gets its own alerts. The
//! day is given (the job passes today in Paris; tests pass the days they check).

use std::collections::HashMap;
use std::time::Duration;

use foundation::app::Platform;
use foundation::ids::{MandateId, ProfessionalId, StructureId, UsagerId};
use foundation::jobs::Job;
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::Territory;
use serde_json::json;
use sqlx::PgPool;
use time::Date;

/// Days before the end when an alert goes, most urgent first.
pub const THRESHOLDS: [i64; 3] = [7, 30, 90];
/// A renewal date is alerted up to this many days after it (a missed run).
const RENEWAL_GRACE_DAYS: i64 = 30;

#[derive(sqlx::FromRow)]
struct Due {
    mandate_id: MandateId,
    structure_id: StructureId,
    usager_id: UsagerId,
    case_number: Option<String>,
    kind: String,
    ends: Date,
    renewal_date: Option<Date>,
    delegate_id: Option<ProfessionalId>,
    structure: String,
}

/// Who is told about a structure's measure: the delegate (if active) and the référents.
async fn recipients(
    platform: &PgPool,
    structure: StructureId,
    delegate: Option<ProfessionalId>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.email FROM platform.professionals p
         WHERE p.active AND (p.id = $2 OR EXISTS (
             SELECT 1 FROM platform.role_assignments a
             WHERE a.professional_id = p.id AND a.domain = $1 AND a.role = 'referent'))
         ORDER BY 1",
    )
    .bind(format!("structure:{structure}"))
    .bind(delegate)
    .fetch_all(platform)
    .await
}

/// Queues the alerts of one territory due on `today`; returns how many measures were alerted.
pub async fn run(
    platform: &PgPool,
    origin: &str,
    territory: &Territory,
    today: Date,
) -> anyhow::Result<u64> {
    let mut tx = territory.begin().await?;
    let due: Vec<Due> = sqlx::query_as(
        "SELECT j.mandate_id, j.structure_id, m.usager_id, j.case_number, j.kind, j.ends,
                j.renewal_date, j.delegate_id, s.name AS structure
         FROM judicial_measures j JOIN mandates m ON m.id = j.mandate_id
         JOIN structures s ON s.id = j.structure_id
         WHERE m.ended_at IS NULL
           AND ((j.ends > $1 AND j.ends <= $1 + 90)
                OR (j.renewal_date <= $1 AND j.renewal_date > $1 - $2::int AND j.ends > $1))
         ORDER BY j.ends FOR UPDATE OF j SKIP LOCKED",
    )
    .bind(today)
    .bind(RENEWAL_GRACE_DAYS as i32)
    .fetch_all(&mut *tx)
    .await?;
    let mut alerted = 0;
    // Who is told, read once per structure and delegate (many measures share them).
    let mut told: HashMap<(StructureId, Option<ProfessionalId>), Vec<String>> = HashMap::new();
    for d in &due {
        let left = (d.ends - today).whole_days();
        let mut sent = Vec::new();
        if let Some(threshold) = THRESHOLDS.iter().find(|t| left <= **t) {
            // This threshold and the larger ones it makes pointless.
            let covered: Vec<String> = THRESHOLDS
                .iter()
                .filter(|t| *t >= threshold)
                .map(ToString::to_string)
                .collect();
            let fresh: Option<String> = sqlx::query_scalar(
                "INSERT INTO judicial_alerts (mandate_id, alert, due)
                 SELECT $1, a, $3 FROM unnest($2::text[]) a
                 ON CONFLICT DO NOTHING RETURNING alert",
            )
            .bind(d.mandate_id)
            .bind(&covered)
            .bind(d.ends)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .find(|a| *a == threshold.to_string());
            if fresh.is_some() {
                sent.push(("judicial_measure_ending", threshold.to_string(), left));
            }
        }
        if let Some(renewal) = d.renewal_date.filter(|r| *r <= today) {
            let fresh = sqlx::query(
                "INSERT INTO judicial_alerts (mandate_id, alert, due) VALUES ($1, 'renewal', $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(d.mandate_id)
            .bind(renewal)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if fresh == 1 {
                sent.push(("judicial_measure_renewal", "renewal".into(), left));
            }
        }
        if sent.is_empty() {
            continue;
        }
        alerted += 1;
        let to = match told.entry((d.structure_id, d.delegate_id)) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(recipients(platform, d.structure_id, d.delegate_id).await?)
            }
        };
        let to = &*to;
        for (template, alert, left) in &sent {
            for recipient in to {
                outbox::enqueue_tenant(
                    &mut tx,
                    &OutboxMessage {
                        channel: Channel::Email,
                        recipient: recipient.clone(),
                        template,
                        payload: json!({
                            "case": d.case_number.as_deref().unwrap_or("sans numéro"),
                            "kind": super::kind_label(&d.kind),
                            "structure": d.structure,
                            "ends": foundation::paris::day(d.ends),
                            "days": left.to_string(),
                            "renewal": d.renewal_date.map(foundation::paris::day).unwrap_or_default(),
                            "url": format!("{origin}/mesures"),
                        }),
                    },
                )
                .await?;
            }
            journal::append(
                &mut tx,
                NewEntry::new(Event::JudicialMeasureAlertQueued)
                    .structure(d.structure_id)
                    .usager(d.usager_id)
                    .mandate(d.mandate_id)
                    .details(json!({
                        "alert": alert,
                        "ends": d.ends.to_string(),
                        "recipients": to.len(),
                    })),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(alerted)
}

/// Every hour: today's alerts (Paris' date) in every territory.
pub fn job() -> Job {
    Job::new(
        "judicial_alerts",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let today = foundation::paris::today();
            let origin = platform.settings.http.public_origin();
            let (platform, origin) = (&platform, &origin);
            foundation::jobs::each_territory(platform, |departement| async move {
                let territory = platform.tenancy.unguarded(departement).await?;
                run(platform.platform_pool(), origin, &territory, today).await
            })
            .await
        },
    )
}
