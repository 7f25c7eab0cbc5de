//! `/verifier/{dep}/{id}/{token}`: the public page an attestation's QR code leads to. The token
//! is the HMAC of [`attestation::verification_url`]; a wrong one, an unknown territory or
//! mandate all answer 404. The page says only whether the mandate is valid, and until when.

use askama::Template;
use foundation::app::Platform;
use foundation::auth::secrets;
use foundation::ids::MandateId;
use foundation::tenancy::DepartementCode;
use foundation::web::{NavItem, Theme, html};
use foundation::web::{PageError, PageResult};
use poem::web::{Data, Path};
use poem::{Response, handler};
use time::{Duration, OffsetDateTime};

use super::{THEME, date, parse_id};
use crate::attestation;

#[derive(Template)]
#[template(path = "verification.html")]
struct VerificationPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    valid: bool,
    until: String,
}

/// A mandate's end and whether any of its démarches is live.
#[derive(sqlx::FromRow)]
struct Validity {
    expires_at: OffsetDateTime,
    live: bool,
}

#[handler]
pub async fn verify(
    platform: Data<&Platform>,
    Path((dep, id, token)): Path<(String, String, String)>,
) -> PageResult<Response> {
    let departement = DepartementCode::parse(&dep).map_err(|_| PageError::not_found())?;
    let mandate: MandateId = parse_id(&id)?;
    let expected = attestation::verification_token(&platform, departement, mandate);
    if !secrets::constant_time_eq(&expected, &token) {
        return Err(PageError::not_found());
    }
    let tenant = platform
        .tenancy
        .unguarded(departement)
        .await
        .map_err(|_| PageError::not_found())?;
    let mut tx = tenant.begin().await?;
    let row: Option<Validity> = sqlx::query_as(
        "SELECT m.expires_at, EXISTS (SELECT 1 FROM live_authorisations a WHERE a.mandate_id = m.id) AS live
         FROM mandates m WHERE m.id = $1",
    )
    .bind(mandate)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Validity { expires_at, live } = row.ok_or_else(PageError::not_found)?;
    html(&VerificationPage {
        theme: THEME,
        nav: foundation::web::navigation(""),
        valid: live,
        until: date(expires_at - Duration::seconds(1)),
    })
}
