//! Anomaly alerts: signs that mandates may be misused, for the structure's référent and the
//! territory admin to look at. Per structure and day, from the aggregates of
//! [`crate::statistics`] and the journal:
//!
//! - **creations** or **uses**: more than the structure's own daily mean over the 28 days
//!   before, times the tenant's factor (3 by default), and at least its minimum (10);
//! - **closed_hours**: uses at night (21 h – 7 h, Paris time, by default) or on a day the
//!   structure's opening hours (OpenStreetMap syntax) say it is closed;
//! - **usager_structures**: one person holding live mandates with many structures of the
//!   territory (3 by default), raised for each of them (the person by a pseudonymous id);
//! - **revocations**: many revocations by the structure in a day (10 by default).
//!
//! The job `anomaly_alerts` (hourly) looks at yesterday and today; an alert is unique per
//! structure, rule, day and subject, so reruns raise nothing twice. Each alert is journaled in
//! the territory; `anomaly_digest` mails each référent and territory admin their new alerts.

use std::collections::HashMap;
use std::time::Duration;

use foundation::app::Platform;
use foundation::ids::{StructureId, TenantId, UsagerId};
use foundation::jobs::Job;
use foundation::journal::{self, Event, NewEntry};
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::tenancy::{DepartementCode, Territory};
use serde_json::json;
use time::Date;
use uuid::Uuid;

/// A tenant's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Thresholds {
    pub volume_factor: f64,
    pub volume_minimum: i32,
    pub night_starts: i32,
    pub night_ends: i32,
    pub usager_structures: i32,
    pub revocations_per_day: i32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            volume_factor: 3.0,
            volume_minimum: 10,
            night_starts: 21,
            night_ends: 7,
            usager_structures: 3,
            revocations_per_day: 10,
        }
    }
}

/// The thresholds of each tenant that set them.
pub async fn thresholds(platform: &Platform) -> Result<HashMap<TenantId, Thresholds>, sqlx::Error> {
    let rows: Vec<(TenantId, f64, i32, i32, i32, i32, i32)> = sqlx::query_as(
        "SELECT tenant_id, volume_factor::float8, volume_minimum, night_starts, night_ends,
                usager_structures, revocations_per_day FROM platform.alert_settings",
    )
    .fetch_all(platform.platform_pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, f, m, ns, ne, u, r)| {
            (
                t,
                Thresholds {
                    volume_factor: f,
                    volume_minimum: m,
                    night_starts: ns,
                    night_ends: ne,
                    usager_structures: u,
                    revocations_per_day: r,
                },
            )
        })
        .collect())
}

/// The rule's words for people.
pub fn rule_label(rule: &str) -> &'static str {
    match rule {
        "creations" => "Créations de mandats inhabituellement nombreuses",
        "uses" => "Utilisations de mandats inhabituellement nombreuses",
        "closed_hours" => "Utilisations la nuit ou un jour de fermeture",
        "usager_structures" => "Une personne a des mandats avec de nombreuses structures",
        "revocations" => "Nombreuses révocations dans la journée",
        _ => "Alerte",
    }
}

/// The days a structure is open, from OpenStreetMap opening hours (`Mo-Fr 09:00-17:00; Sa
/// 09:00-12:00`); `None` when they cannot be read (then only the night counts).
pub fn open_days(opening_hours: &str) -> Option<[bool; 7]> {
    let text = opening_hours.trim();
    if text.is_empty() || opening_hours_syntax::parse(text).is_err() {
        return None;
    }
    const DAYS: [&str; 7] = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
    let index = |d: &str| DAYS.iter().position(|x| *x == d);
    let mut open = [false; 7];
    let mut any = false;
    for rule in text.split([';', ',']) {
        let rule = rule.trim();
        if rule.contains("off") || rule.contains("closed") {
            continue;
        }
        let selector = rule.split_whitespace().next().unwrap_or_default();
        for part in selector.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    if let (Some(a), Some(b)) = (index(a), index(b)) {
                        let mut i = a;
                        loop {
                            open[i] = true;
                            any = true;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                }
                None => {
                    if let Some(i) = index(part) {
                        open[i] = true;
                        any = true;
                    }
                }
            }
        }
    }
    // Hours only (`09:00-17:00`): no day is said closed.
    any.then_some(open)
}

/// One alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub structure: StructureId,
    pub tenant: TenantId,
    pub rule: &'static str,
    pub subject: String,
    pub figure: i64,
    pub expected: Option<i64>,
}

/// The alerts of a day in one territory (not yet stored).
pub async fn detect_day(
    tenant: &Territory,
    settings: &HashMap<TenantId, Thresholds>,
    day: Date,
) -> Result<Vec<Raised>, sqlx::Error> {
    let th = |t: &TenantId| settings.get(t).copied().unwrap_or_default();
    let mut tx = tenant.begin().await?;
    let mut raised = Vec::new();
    // Volumes and revocations, from the aggregates.
    let volumes: Vec<(StructureId, TenantId, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "WITH d AS (SELECT structure_id, sum(created)::bigint AS c, sum(used)::bigint AS u, sum(revoked)::bigint AS r
                    FROM stats_daily WHERE day = $1 GROUP BY 1),
              h AS (SELECT structure_id, sum(created)::bigint AS c, sum(used)::bigint AS u
                    FROM stats_daily WHERE day >= $1 - 28 AND day < $1 GROUP BY 1)
         SELECT d.structure_id, s.tenant_id, d.c, d.u, d.r, coalesce(h.c, 0), coalesce(h.u, 0)
         FROM d JOIN structures s ON s.id = d.structure_id LEFT JOIN h ON h.structure_id = d.structure_id",
    )
    .bind(day)
    .fetch_all(&mut *tx)
    .await?;
    for (structure, tenant_id, c, u, r, hc, hu) in volumes {
        let t = th(&tenant_id);
        for (rule, today, history) in [("creations", c, hc), ("uses", u, hu)] {
            let mean = history as f64 / 28.0;
            let expected = (mean * t.volume_factor).ceil() as i64;
            if today >= i64::from(t.volume_minimum) && today > expected {
                raised.push(Raised {
                    structure,
                    tenant: tenant_id,
                    rule,
                    subject: String::new(),
                    figure: today,
                    expected: Some(mean.round() as i64),
                });
            }
        }
        if r >= i64::from(t.revocations_per_day) {
            raised.push(Raised {
                structure,
                tenant: tenant_id,
                rule: "revocations",
                subject: String::new(),
                figure: r,
                expected: None,
            });
        }
    }
    // Uses outside opening hours, from the journal (Paris time).
    let uses: Vec<(StructureId, TenantId, String, i32, i64)> = sqlx::query_as(
        "SELECT j.structure_id, s.tenant_id, s.opening_hours,
                extract(hour FROM j.at AT TIME ZONE 'Europe/Paris')::int, count(*)::bigint
         FROM journal j JOIN structures s ON s.id = j.structure_id
         WHERE j.kind = 'mandate_used'
           AND (j.at AT TIME ZONE 'Europe/Paris')::date = $1
           AND j.at >= ($1::date - 1)::timestamp AT TIME ZONE 'UTC'
           AND j.at < ($1::date + 2)::timestamp AT TIME ZONE 'UTC'
         GROUP BY 1, 2, 3, 4",
    )
    .bind(day)
    .fetch_all(&mut *tx)
    .await?;
    let weekday = day.weekday().number_days_from_monday() as usize;
    let mut outside: HashMap<(StructureId, TenantId), i64> = HashMap::new();
    for (structure, tenant_id, hours, hour, n) in uses {
        let t = th(&tenant_id);
        let night = hour >= t.night_starts || hour < t.night_ends;
        let closed = open_days(&hours).is_some_and(|open| !open[weekday]);
        if night || closed {
            *outside.entry((structure, tenant_id)).or_default() += n;
        }
    }
    for ((structure, tenant_id), n) in outside {
        raised.push(Raised {
            structure,
            tenant: tenant_id,
            rule: "closed_hours",
            subject: String::new(),
            figure: n,
            expected: None,
        });
    }
    // One person, live mandates with many structures.
    let holders: Vec<(UsagerId, Vec<StructureId>)> = sqlx::query_as(
        "SELECT usager_id, array_agg(DISTINCT structure_id) FROM live_authorisations
         GROUP BY 1 HAVING count(DISTINCT structure_id) >= 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    if !holders.is_empty() {
        let tenants: Vec<(StructureId, TenantId)> =
            sqlx::query_as("SELECT id, tenant_id FROM structures")
                .fetch_all(&mut *tx)
                .await?;
        for (usager, structures) in holders {
            for structure in &structures {
                let Some(tenant_id) = tenants.iter().find(|t| t.0 == *structure).map(|t| t.1)
                else {
                    continue;
                };
                if structures.len() >= th(&tenant_id).usager_structures as usize {
                    raised.push(Raised {
                        structure: *structure,
                        tenant: tenant_id,
                        rule: "usager_structures",
                        subject: format!("U-{}", &usager.as_uuid().simple().to_string()[..8]),
                        figure: structures.len() as i64,
                        expected: None,
                    });
                }
            }
        }
    }
    tx.commit().await?;
    Ok(raised)
}

/// Stores the day's alerts (those not raised before), each journaled; returns how many are new.
pub async fn raise(tenant: &Territory, day: Date, alerts: &[Raised]) -> Result<u64, sqlx::Error> {
    let mut tx = tenant.begin().await?;
    let mut new = 0;
    for a in alerts {
        let id = Uuid::now_v7();
        let inserted = sqlx::query(
            "INSERT INTO anomaly_alerts (id, structure_id, tenant_id, rule, day, subject, figure, expected)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (structure_id, rule, day, subject) DO NOTHING",
        )
        .bind(id)
        .bind(a.structure)
        .bind(a.tenant)
        .bind(a.rule)
        .bind(day)
        .bind(&a.subject)
        .bind(a.figure)
        .bind(a.expected)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            new += 1;
            journal::append(
                &mut tx,
                NewEntry::new(Event::AnomalyDetected)
                    .structure(a.structure)
                    .details(json!({ "alert": id, "rule": a.rule, "day": day.to_string(),
                                     "figure": a.figure, "expected": a.expected })),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(new)
}

/// Detects and raises yesterday's and today's alerts in every served territory.
pub async fn run(platform: &Platform) -> anyhow::Result<u64> {
    let settings = thresholds(platform).await?;
    let today = foundation::paris::today();
    let settings = &settings;
    foundation::jobs::each_territory(platform, |d| async move {
        let tenant = platform.tenancy.unguarded(d).await?;
        let mut new = 0;
        for day in [today.previous_day().unwrap_or(today), today] {
            let found = detect_day(&tenant, settings, day).await?;
            new += raise(&tenant, day, &found).await?;
        }
        Ok(new)
    })
    .await
}

/// The hourly detection job (after the statistics refresh has folded the day's acts).
pub fn job() -> Job {
    Job::new(
        "anomaly_alerts",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            // A territory the refresh could not fold is detected all the same, on what was
            // folded before; the others are not held back by it.
            let refreshed = crate::statistics::refresh(&platform).await;
            let raised = run(&platform).await;
            refreshed.and(raised)
        },
    )
}

/// Mails each référent and territory admin the alerts raised since the last digest (one
/// message per person and territory), then marks them mailed.
pub async fn digest(platform: &Platform) -> anyhow::Result<u64> {
    foundation::jobs::each_territory(platform, |d| digest_territory(platform, d)).await
}

/// The alerts not mailed yet, locked for the digest: read through `anomaly_alerts_unmailed`
/// (département migration 0034), not among every alert ever raised.
pub const UNMAILED_SQL: &str =
    "SELECT a.id, a.structure_id, a.tenant_id, a.rule, s.name FROM anomaly_alerts a
     JOIN structures s ON s.id = a.structure_id
     WHERE a.mailed_at IS NULL FOR UPDATE OF a SKIP LOCKED";

async fn digest_territory(platform: &Platform, d: DepartementCode) -> anyhow::Result<u64> {
    let tenant = platform.tenancy.unguarded(d).await?;
    let mut tx = tenant.begin().await?;
    let fresh: Vec<(Uuid, StructureId, TenantId, String, String)> =
        sqlx::query_as(UNMAILED_SQL).fetch_all(&mut *tx).await?;
    if fresh.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut recipients: HashMap<String, (Vec<String>, String)> = HashMap::new();
    let base = crate::requests::public_url(platform);
    for (_, structure, tenant_id, rule, name) in &fresh {
        let line = format!("{} — {}", name, rule_label(rule));
        let people: Vec<(String, String)> = sqlx::query_as(
            "SELECT p.email, a.role FROM platform.role_assignments a JOIN platform.professionals p ON p.id = a.professional_id
             WHERE p.active AND ((a.role = 'referent' AND a.domain = $1) OR (a.role = 'territory_admin' AND a.domain = $2))",
        )
        .bind(structure.domain().to_string())
        .bind(tenant_id.domain().to_string())

        .fetch_all(platform.platform_pool())
        .await?;
        for (email, role) in people {
            let url = if role == "referent" {
                format!("{base}/structure/alertes")
            } else {
                format!("{base}/territoire/collectivites/{tenant_id}/alertes")
            };
            let entry = recipients.entry(email).or_insert_with(|| (Vec::new(), url));
            if !entry.0.contains(&line) {
                entry.0.push(line.clone());
            }
        }
    }
    let mut sent = 0;
    for (email, (lines, url)) in recipients {
        outbox::enqueue_tenant(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: email,
                template: "anomaly_digest",
                payload: json!({ "count": lines.len().to_string(), "alerts": lines.join("\n"), "url": url }),
            },
        )
        .await?;
        sent += 1;
    }
    let ids: Vec<Uuid> = fresh.iter().map(|f| f.0).collect();
    sqlx::query("UPDATE anomaly_alerts SET mailed_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(sent)
}

/// The digest job: every morning's first run after a night (every 6 hours, new alerts only).
pub fn digest_job() -> Job {
    Job::new(
        "anomaly_digest",
        Duration::from_secs(6 * 3600),
        |platform: Platform| async move { digest(&platform).await },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_hours_give_the_open_days() {
        let open = open_days("Mo-Fr 09:00-17:00; Sa 09:00-12:00").expect("lisible");
        assert_eq!(open, [true, true, true, true, true, true, false]);
        let open = open_days("Tu,Th 14:00-18:00").expect("lisible");
        assert_eq!(open, [false, true, false, true, false, false, false]);
        assert_eq!(open_days("Du lundi au vendredi"), None);
        assert_eq!(open_days(""), None);
    }

    #[test]
    fn the_rules_have_french_words() {
        for rule in [
            "creations",
            "uses",
            "closed_hours",
            "usager_structures",
            "revocations",
        ] {
            assert_ne!(rule_label(rule), "Alerte");
        }
    }
}
