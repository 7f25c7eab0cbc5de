//! Structures' habilitation requests (product.md §4.1), kept in the territory of the
//! structure's commune (`structure_requests`). This module holds the national team's weekly
//! digest of the new ones; the request form and its review come with the request flow.
//!
//! The digest goes out on Mondays from 08:00, Paris time, to every active national admin. It
//! covers the requests first submitted since the end of the previous digest, so a request is in
//! exactly one digest; the week's row in `platform.request_digests` and the messages commit
//! together, so a week is digested once across replicas and runs.

use std::time::Duration;

use foundation::app::Platform;
use foundation::jobs::Job;
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::paris;
use serde_json::json;
use time::OffsetDateTime;

/// Local hour (Paris) from which Monday's digest is sent.
pub const DIGEST_HOUR: u8 = 8;
/// Requests listed one by one in a digest; beyond, the digest says how many more there are.
pub const DIGEST_MAX_LINES: usize = 500;
/// Requests submitted in the last minute wait for the next digest: a submission whose
/// transaction is still running when the digest reads is not skipped, provided it records
/// `first_submitted_at` with the database clock at the end of its work (`clock_timestamp()`)
/// and commits within this minute.
const SETTLING: time::Duration = time::Duration::minutes(1);

/// What one digest covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub covered_from: OffsetDateTime,
    pub covered_until: OffsetDateTime,
    pub requests: usize,
    pub recipients: usize,
}

/// One new request, as listed.
#[derive(sqlx::FromRow)]
struct NewRequest {
    reference: String,
    structure_name: String,
    structure_kind: String,
    commune_code: String,
    first_submitted_at: OffsetDateTime,
}

/// The Monday (Paris) of the week of `now`, if the digest is due at `now`.
fn due_week(now: OffsetDateTime) -> Option<time::Date> {
    let local = paris::local(now);
    let monday =
        local.date() - time::Duration::days(i64::from(local.weekday().number_days_from_monday()));
    let due = local.weekday() != time::Weekday::Monday || local.hour() >= DIGEST_HOUR;
    due.then_some(monday)
}

/// Sends this week's digest if it is due at `now` and not sent yet. Returns what it covered, or
/// `None` when there was nothing to do.
pub async fn send_weekly_digest(
    platform: &Platform,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Digest>> {
    let Some(week) = due_week(now) else {
        return Ok(None);
    };
    // A territory not served (migration failed or behind) cannot be read: the week waits for
    // it rather than passing over its requests for good.
    let unserved = platform.tenancy.unserved();
    if !unserved.is_empty() {
        anyhow::bail!(
            "request digest postponed: territories not served: {}",
            unserved
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut tx = platform.platform_pool().begin().await?;
    let previous: Option<OffsetDateTime> = sqlx::query_scalar(
        "SELECT max(covered_until) FROM platform.request_digests WHERE week_start < $1",
    )
    .bind(week)
    .fetch_one(&mut *tx)
    .await?;
    let until = now - SETTLING;
    let from = previous.unwrap_or(until - time::Duration::days(7));
    if from >= until {
        return Ok(None);
    }
    // The week's row: whoever inserts it sends the digest; a concurrent run waits on the key,
    // then finds it taken.
    let claimed = sqlx::query(
        "INSERT INTO platform.request_digests (week_start, covered_from, covered_until, request_count, recipients)
         VALUES ($1, $2, $3, 0, 0) ON CONFLICT (week_start) DO NOTHING",
    )
    .bind(week)
    .bind(from)
    .bind(until)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }

    let mut lines = Vec::new();
    let mut count = 0usize;
    for departement in platform.tenancy.served() {
        let tenant = platform.tenancy.unguarded(departement).await?;
        let mut dep = tenant.begin().await?;
        let new: Vec<NewRequest> = sqlx::query_as(
            "SELECT reference, structure_name, structure_kind, commune_code, first_submitted_at
             FROM structure_requests WHERE first_submitted_at > $1 AND first_submitted_at <= $2
             ORDER BY first_submitted_at, reference",
        )
        .bind(from)
        .bind(until)
        .fetch_all(&mut *dep)
        .await?;
        dep.commit().await?;
        count += new.len();
        for r in new {
            if lines.len() < DIGEST_MAX_LINES {
                lines.push(format!(
                    "{} ({}) — {} ({}, commune INSEE {}), déposée le {}, réf. {}",
                    departement.name(),
                    departement.as_str(),
                    r.structure_name,
                    r.structure_kind,
                    r.commune_code,
                    paris::date_time(r.first_submitted_at),
                    r.reference,
                ));
            }
        }
    }
    let more = if count == 0 {
        "Aucune demande n'a été déposée pendant cette période.".to_owned()
    } else if count > lines.len() {
        format!(
            "{} sont listées ci-dessus (par territoire) ; {} autres ne le sont pas.",
            lines.len(),
            count - lines.len()
        )
    } else {
        "La liste ci-dessus est complète.".to_owned()
    };
    let recipients: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT p.email FROM platform.role_assignments a
         JOIN platform.professionals p ON p.id = a.professional_id
         WHERE a.role = 'national_admin' AND a.domain = 'national' AND p.active ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Nobody to tell: the week is not recorded, so its requests go into the next digest.
    if recipients.is_empty() {
        tracing::warn!("request digest: no active national admin");
        return Ok(None);
    }
    let payload = json!({
        "period": format!("du {} au {}", paris::date_time(from), paris::date_time(until)),
        "count": count.to_string(),
        "requests": lines,
        "more": more,
    });
    for recipient in &recipients {
        outbox::enqueue_platform(
            &mut tx,
            &OutboxMessage {
                channel: Channel::Email,
                recipient: recipient.clone(),
                template: "new_requests_digest",
                payload: payload.clone(),
            },
        )
        .await?;
    }
    sqlx::query(
        "UPDATE platform.request_digests SET request_count = $2, recipients = $3 WHERE week_start = $1",
    )
    .bind(week)
    .bind(count as i32)
    .bind(recipients.len() as i32)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Digest {
        covered_from: from,
        covered_until: until,
        requests: count,
        recipients: recipients.len(),
    }))
}

/// The job: looks every hour whether this week's digest is due. The time is the database's,
/// the clock `first_submitted_at` is written with.
pub fn weekly_digest() -> Job {
    Job::new(
        "weekly_request_digest",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let now: OffsetDateTime = sqlx::query_scalar("SELECT now()")
                .fetch_one(platform.platform_pool())
                .await?;
            let sent = send_weekly_digest(&platform, now).await?;
            Ok(sent.map_or(0, |d| d.recipients as u64))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_digest_is_due_from_monday_eight_paris_time_for_the_whole_week() {
        // Monday 23 November 2026: 07:59 in Paris is 06:59 UTC.
        assert_eq!(due_week(datetime!(2026-11-23 06:59 UTC)), None);
        assert_eq!(
            due_week(datetime!(2026-11-23 07:00 UTC)),
            Some(date!(2026 - 11 - 23))
        );
        assert_eq!(
            due_week(datetime!(2026-11-29 22:59 UTC)),
            Some(date!(2026 - 11 - 23))
        );
        // Sunday 23:30 UTC is already Monday 00:30 in Paris: next week, not due yet.
        assert_eq!(due_week(datetime!(2026-11-29 23:30 UTC)), None);
        // Summer time: Monday 6 July 2026, 08:00 Paris is 06:00 UTC.
        assert_eq!(due_week(datetime!(2026-07-06 05:59 UTC)), None);
        assert_eq!(
            due_week(datetime!(2026-07-06 06:00 UTC)),
            Some(date!(2026 - 07 - 06))
        );
    }
}
