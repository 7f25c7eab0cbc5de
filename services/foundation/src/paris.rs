//! Metropolitan French civil time (CET in winter, CEST from the last Sunday of March to the last
//! Sunday of October, changing at 01:00 UTC): the dates people read on pages, attestations and
//! messages, and the local hour scheduled jobs wait for.

use time::{Date, Month, OffsetDateTime, UtcOffset, Weekday};

/// The Paris offset at instant `t`.
pub fn offset(t: OffsetDateTime) -> UtcOffset {
    let year = t.year();
    let last_sunday = |month: Month| {
        let mut d = Date::from_calendar_date(year, month, 31).unwrap_or(Date::MIN);
        while d.weekday() != Weekday::Sunday {
            d = d.previous_day().unwrap_or(d);
        }
        d.with_hms(1, 0, 0).map(|d| d.assume_utc()).unwrap_or(t)
    };
    let summer = t >= last_sunday(Month::March) && t < last_sunday(Month::October);
    UtcOffset::from_hms(if summer { 2 } else { 1 }, 0, 0).unwrap_or(UtcOffset::UTC)
}

/// `t` in Paris time.
pub fn local(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(offset(t))
}

/// Today's date in Paris: what « today » means on a page, a form's check or an import (from
/// midnight to 1 or 2 a.m. in France, the UTC date is still yesterday's).
pub fn today() -> Date {
    local(OffsetDateTime::now_utc()).date()
}

/// `23/11/2026`.
pub fn date(t: OffsetDateTime) -> String {
    let t = local(t);
    format!("{:02}/{:02}/{}", t.day(), u8::from(t.month()), t.year())
}

/// A calendar date: `23/11/2026`.
pub fn day(d: time::Date) -> String {
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

/// `23/11/2026 à 10h05`.
pub fn date_time(t: OffsetDateTime) -> String {
    let t = local(t);
    format!(
        "{:02}/{:02}/{} à {:02}h{:02}",
        t.day(),
        u8::from(t.month()),
        t.year(),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn winter_and_summer_time_change_on_the_last_sundays_at_one_utc() {
        assert_eq!(
            date_time(datetime!(2026-11-23 09:05 UTC)),
            "23/11/2026 à 10h05"
        );
        assert_eq!(
            date_time(datetime!(2026-07-14 08:00 UTC)),
            "14/07/2026 à 10h00"
        );
        // 2026-03-29 and 2026-10-25 are the last Sundays of March and October.
        assert_eq!(
            date_time(datetime!(2026-03-29 00:59 UTC)),
            "29/03/2026 à 01h59"
        );
        assert_eq!(
            date_time(datetime!(2026-03-29 01:00 UTC)),
            "29/03/2026 à 03h00"
        );
        assert_eq!(
            date_time(datetime!(2026-10-25 00:59 UTC)),
            "25/10/2026 à 02h59"
        );
        assert_eq!(
            date_time(datetime!(2026-10-25 01:00 UTC)),
            "25/10/2026 à 02h00"
        );
        assert_eq!(date(datetime!(2026-12-31 23:30 UTC)), "01/01/2027");
    }
}
