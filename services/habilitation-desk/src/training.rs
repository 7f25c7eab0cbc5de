//! Training (product.md §4.3). The national team (`training:manage`) records training
//! organisations, their trainers (role `trainer` in the organisation's domain; an account with
//! e-mail and second factor like everyone) and sessions (one or two days, in person with an
//! address or remote, a région, a capacity). A structure's référent
//! (`aidant:add_to_training`) registers the structure's habilitation files on a session; a
//! session that is full says so and offers its waiting list; cancelling frees the seat for the
//! first on the waiting list (told by e-mail). The trainer (`attendance:record` in their
//! organisation) records attendance; another organisation's session is 404.
//!
//! Seats are counted in `training_sessions.seats_taken`, moved in the registration's own
//! transaction by `UPDATE … WHERE seats_taken < capacity` (row lock), so concurrent
//! registrations never exceed the capacity and a refused one writes nothing. Every act is
//! journaled in the platform's security journal in the same transaction, and its e-mails are
//! queued there too.

use foundation::web::{PageError, PageResult};
use std::time::Duration;

use askama::Template;
use foundation::app::Platform;
use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::auth::session::Professional;
use foundation::auth::{csrf, guard};
use foundation::ids::ProfessionalId;
use foundation::jobs::Job;
use foundation::outbox::{self, Channel, OutboxMessage};
use foundation::paris;
use foundation::tenancy::territories::REGIONS;
use foundation::web::{NavItem, Theme, html_status};
use poem::http::StatusCode;
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use policies::{Action, Domain, Role};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::accounts;
use crate::requests::form::FieldErrors;
use crate::views::{THEME, nav};

/// A session as listed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub organisation: String,
    pub title: String,
    pub first_day: Date,
    pub second_day: Option<Date>,
    pub mode: String,
    pub address: Option<String>,
    pub region_code: String,
    pub capacity: i32,
    pub seats_taken: i32,
    pub waiting: i64,
    pub cancelled: bool,
}

impl Session {
    pub fn dates(&self) -> String {
        match self.second_day {
            Some(d) => format!("{} et {}", paris::day(self.first_day), paris::day(d)),
            None => paris::day(self.first_day),
        }
    }
    pub fn place(&self) -> String {
        match (&self.mode[..], &self.address) {
            ("in_person", Some(a)) => format!("en présentiel, {a}"),
            _ => "à distance".to_owned(),
        }
    }
    pub fn region(&self) -> &'static str {
        REGIONS
            .iter()
            .find(|r| r.code == self.region_code)
            .map_or("", |r| r.name)
    }
    pub fn seats_left(&self) -> i32 {
        self.capacity - self.seats_taken
    }
    pub fn label(&self) -> String {
        format!(
            "{} — {} ({}, {}) — {} place(s) libre(s) sur {}",
            self.title,
            self.dates(),
            self.place(),
            self.region(),
            self.seats_left(),
            self.capacity
        )
    }
}

/// A read of training sessions, as one static string: the columns and joins, then `$tail`.
macro_rules! sessions_sql {

    ($tail:literal) => {

        concat!("SELECT s.id, o.name AS organisation, s.title, s.first_day, s.second_day, s.mode, s.address,
        s.region_code, s.capacity, s.seats_taken,
        (SELECT count(*) FROM platform.training_registrations r WHERE r.session_id = s.id AND r.status = 'waiting') AS waiting,
        s.cancelled_at IS NOT NULL AS cancelled
     FROM platform.training_sessions s JOIN platform.training_organisations o ON o.id = s.organisation_id", " ", $tail)

    };

}
pub(crate) use sessions_sql;

/// Sessions still to come (not cancelled), soonest first.
pub async fn upcoming(conn: &mut PgConnection) -> Result<Vec<Session>, sqlx::Error> {
    sqlx::query_as(sessions_sql!(
        "WHERE s.cancelled_at IS NULL AND s.first_day > (now() AT TIME ZONE 'Europe/Paris')::date ORDER BY s.first_day, s.title"
    ))
    .fetch_all(&mut *conn)
    .await
}

/// What a registration attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    Full,
    Waiting,
    AlreadyRegistered,
    Closed,
}

/// Tells a registered (or waiting) person about their session, in the caller's transaction.
async fn tell_registered(
    conn: &mut PgConnection,
    session: Uuid,
    file: Uuid,
    status: &str,
) -> Result<(), sqlx::Error> {
    let (email, name): (String, String) = sqlx::query_as(
        "SELECT email, display_name FROM platform.habilitation_file_index WHERE file_id = $1",
    )
    .bind(file)
    .fetch_one(&mut *conn)
    .await?;
    let s: Session = sqlx::query_as(sessions_sql!("WHERE s.id = $1"))
        .bind(session)
        .fetch_one(&mut *conn)
        .await?;
    outbox::enqueue_platform(
        conn,
        &OutboxMessage {
            channel: Channel::Email,
            recipient: email,
            template: "training_registered",
            payload: json!({
                "name": name,
                "session": s.title,
                "dates": s.dates(),
                "place": s.place(),
                "status": status,
            }),
        },
    )
    .await?;
    Ok(())
}

/// Who registers or cancels: a professional (the structure's référent) or the issuer of the
/// structure's request, who has no account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registrar {
    Professional(ProfessionalId),
    Issuer(Uuid),
}

impl Registrar {
    /// The professional, as the security journal's actor.
    fn actor(self) -> Option<ProfessionalId> {
        match self {
            Registrar::Professional(id) => Some(id),
            Registrar::Issuer(_) => None,
        }
    }

    /// The issuer, when it is one.
    fn issuer(self) -> Option<Uuid> {
        match self {
            Registrar::Professional(_) => None,
            Registrar::Issuer(id) => Some(id),
        }
    }

    /// The journal's details, with the issuer named when it is one.
    fn details(self, mut details: serde_json::Value) -> serde_json::Value {
        if let (Some(issuer), Some(map)) = (self.issuer(), details.as_object_mut()) {
            map.insert("issuer".to_owned(), json!(issuer));
        }
        details
    }
}

/// Registers a file on a session, in one transaction: a seat is taken only while one is free.
/// A full session writes nothing (`Full`); with `waiting`, the file joins its waiting list
/// instead.
pub async fn register(
    conn: &mut PgConnection,
    session: Uuid,
    file: Uuid,
    by: Registrar,
    waiting: bool,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let open: Option<bool> = sqlx::query_scalar(
        "SELECT cancelled_at IS NULL AND first_day > (now() AT TIME ZONE 'Europe/Paris')::date FROM platform.training_sessions WHERE id = $1",
    )
    .bind(session)
    .fetch_optional(&mut *tx)
    .await?;
    if open != Some(true) {
        return Ok(Outcome::Closed);
    }
    let live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.training_registrations
                        WHERE file_id = $1 AND status IN ('registered', 'waiting', 'attended'))",
    )
    .bind(file)
    .fetch_one(&mut *tx)
    .await?;
    if live {
        return Ok(Outcome::AlreadyRegistered);
    }
    let seat = if waiting {
        false
    } else {
        sqlx::query(
            "UPDATE platform.training_sessions SET seats_taken = seats_taken + 1
             WHERE id = $1 AND seats_taken < capacity",
        )
        .bind(session)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1
    };
    if !seat && !waiting {
        // Nothing written: the transaction is dropped.
        return Ok(Outcome::Full);
    }
    let status = if seat { "registered" } else { "waiting" };
    let inserted = sqlx::query(
        "INSERT INTO platform.training_registrations
             (id, session_id, file_id, status, registered_by, registered_by_issuer)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(session)
    .bind(file)
    .bind(status)
    .bind(by.actor())
    .bind(by.issuer())
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Ok(Outcome::AlreadyRegistered);
        }
        Err(e) => return Err(e),
    }
    security::append(
        &mut tx,
        if seat {
            SecurityEvent::TrainingRegistered
        } else {
            SecurityEvent::TrainingWaitlisted
        },
        None,
        by.actor(),
        by.details(json!({ "session": session, "file": file })),
    )
    .await?;
    tell_registered(
        &mut tx,
        session,
        file,
        if seat {
            "Votre place est réservée."
        } else {
            "La session est complète : vous êtes sur sa liste d'attente et serez prévenu si une place se libère."
        },
    )
    .await?;
    tx.commit().await?;
    Ok(if seat {
        Outcome::Registered
    } else {
        Outcome::Waiting
    })
}

/// Cancels a registration (or a place on a waiting list); a freed seat goes to the first on the
/// waiting list, who is told. Returns false when there was nothing to cancel.
pub async fn cancel(
    conn: &mut PgConnection,
    registration: Uuid,
    by: Registrar,
) -> Result<bool, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let row: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "UPDATE platform.training_registrations r SET status = 'cancelled', cancelled_at = now()
         FROM platform.training_registrations old
         WHERE r.id = $1 AND old.id = r.id AND r.status IN ('registered', 'waiting')
         RETURNING r.session_id, r.file_id, old.status",
    )
    .bind(registration)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((session, file, previous)) = row else {
        return Ok(false);
    };
    security::append(
        &mut tx,
        SecurityEvent::TrainingCancelled,
        None,
        by.actor(),
        by.details(json!({ "session": session, "file": file })),
    )
    .await?;
    if previous == "registered" {
        // The session row is locked by this update: promotions happen one at a time.
        sqlx::query(
            "UPDATE platform.training_sessions SET seats_taken = seats_taken - 1 WHERE id = $1",
        )
        .bind(session)
        .execute(&mut *tx)
        .await?;
        let promoted: Option<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE platform.training_registrations SET status = 'registered'
             WHERE id = (SELECT id FROM platform.training_registrations
                         WHERE session_id = $1 AND status = 'waiting' ORDER BY created_at, id LIMIT 1)
             RETURNING id, file_id",
        )
        .bind(session)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((_, promoted_file)) = promoted {
            sqlx::query(
                "UPDATE platform.training_sessions SET seats_taken = seats_taken + 1 WHERE id = $1",
            )
            .bind(session)
            .execute(&mut *tx)
            .await?;
            security::append(
                &mut tx,
                SecurityEvent::TrainingRegistered,
                None,
                by.actor(),
                by.details(
                    json!({ "session": session, "file": promoted_file, "from_waiting_list": true }),
                ),
            )
            .await?;
            tell_registered(
                &mut tx,
                session,
                promoted_file,
                "Une place s'est libérée : elle vous est réservée.",
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// The job: reminds each registered person two days before their session (once).
pub fn reminders() -> Job {
    Job::new(
        "training_reminders",
        Duration::from_secs(3600),
        |platform: Platform| async move {
            let mut tx = platform.platform_pool().begin().await?;
            let due: Vec<(Uuid, String, String, Uuid)> = sqlx::query_as(
                "SELECT r.id, i.email, i.display_name, r.session_id
                 FROM platform.training_registrations r
                 JOIN platform.training_sessions s ON s.id = r.session_id
                 JOIN platform.habilitation_file_index i ON i.file_id = r.file_id
                 WHERE r.status = 'registered' AND r.reminded_at IS NULL AND s.cancelled_at IS NULL
                   AND s.first_day BETWEEN (now() AT TIME ZONE 'Europe/Paris')::date AND (now() AT TIME ZONE 'Europe/Paris')::date + 2
                 FOR UPDATE OF r SKIP LOCKED",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (id, email, name, session) in &due {
                let s: Session = sqlx::query_as(sessions_sql!("WHERE s.id = $1"))
                    .bind(session)
                    .fetch_one(&mut *tx)
                    .await?;
                outbox::enqueue_platform(
                    &mut tx,
                    &OutboxMessage {
                        channel: Channel::Email,
                        recipient: email.clone(),
                        template: "training_reminder",
                        payload: json!({ "name": name, "session": s.title, "dates": s.dates(), "place": s.place() }),
                    },
                )
                .await?;
                sqlx::query(
                    "UPDATE platform.training_registrations SET reminded_at = now() WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(due.len() as u64)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The national team's pages.

#[derive(Template)]
#[template(path = "national_training.html")]
struct NationalPage<'a> {
    theme: &'a Theme,
    nav: Vec<NavItem>,
    csrf: String,
    sessions: Vec<Session>,
    organisations: Vec<(String, String)>,
    regions: Vec<(String, String)>,
    form: SessionForm,
    errors: FieldErrors,
    flash: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SessionForm {
    #[serde(default)]
    pub organisation: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub first_day: String,
    #[serde(default)]
    pub second_day: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub capacity: String,
}

async fn national_page(
    req: &Request,
    platform: &Platform,
    form: SessionForm,
    errors: FieldErrors,
    flash: Option<&str>,
) -> PageResult<Response> {
    let mut conn = platform.platform_pool().acquire().await?;
    let sessions: Vec<Session> = sqlx::query_as(sessions_sql!(
        "WHERE s.first_day >= (now() AT TIME ZONE 'Europe/Paris')::date - 30 ORDER BY s.first_day, s.title LIMIT 500"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let organisations: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM platform.training_organisations ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
    let bad = !errors.is_empty();
    html_status(
        &NationalPage {
            theme: THEME,
            nav: nav("/national/formations"),
            csrf: csrf::token(req, platform.settings.http.secure_cookies()),
            sessions,
            organisations: organisations
                .into_iter()
                .map(|(id, n)| (id.to_string(), n))
                .collect(),
            regions: REGIONS
                .iter()
                .map(|r| (r.code.to_owned(), r.name.to_owned()))
                .collect(),
            form,
            errors,
            flash,
        },
        (bad).then_some(StatusCode::BAD_REQUEST),
    )
}

#[derive(Deserialize)]
pub struct FlashQuery {
    pub(crate) message: Option<String>,
}

/// `GET /national/formations`.
#[handler]
pub async fn national(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Query(q): Query<FlashQuery>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::TrainingManage).await?;
    let flash = match q.message.as_deref() {
        Some("session") => Some("La session est enregistrée."),
        Some("organisme") => Some("L'organisme de formation est enregistré."),
        Some("formateur") => Some(
            "Le formateur est enregistré ; s'il n'avait pas de compte, il reçoit son lien d'activation.",
        ),
        _ => None,
    };
    national_page(
        req,
        &platform,
        SessionForm::default(),
        FieldErrors::default(),
        flash,
    )
    .await
}

fn parse_day(s: &str) -> Option<Date> {
    Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// `POST /national/formations/sessions`: creates a session.
#[handler]
pub async fn create_session(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<SessionForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::TrainingManage).await?;
    let mut e = FieldErrors::default();
    let organisation = Uuid::parse_str(f.organisation.trim()).ok();
    if organisation.is_none() {
        e.add("organisation", "Choisissez l'organisme de formation.");
    }
    let title = f.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        e.add(
            "title",
            "Donnez un intitulé à la session (200 caractères au plus).",
        );
    }
    let today = foundation::paris::today();
    let first = parse_day(&f.first_day);
    match first {
        None => e.add("first_day", "Indiquez la date du premier jour."),
        Some(d) if d <= today => e.add("first_day", "La session doit commencer après aujourd'hui."),
        _ => {}
    }
    let second = if f.second_day.trim().is_empty() {
        None
    } else {
        match (parse_day(&f.second_day), first) {
            (Some(d), Some(f1)) if d > f1 => Some(d),
            _ => {
                e.add(
                    "second_day",
                    "Le second jour, s'il y en a un, vient après le premier.",
                );
                None
            }
        }
    };
    let mode = f.mode.trim();
    let address = f.address.trim();
    match mode {
        "in_person" if address.is_empty() => {
            e.add("address", "Indiquez l'adresse de la session en présentiel.")
        }
        "in_person" | "remote" => {}
        _ => e.add("mode", "Choisissez présentiel ou à distance."),
    }
    if !REGIONS.iter().any(|r| r.code == f.region.trim()) {
        e.add("region", "Choisissez la région de la session.");
    }
    let capacity: Option<i32> = f
        .capacity
        .trim()
        .parse()
        .ok()
        .filter(|c| (1..=200).contains(c));
    if capacity.is_none() {
        e.add(
            "capacity",
            "La capacité est un nombre de places entre 1 et 200.",
        );
    }
    let (Some(organisation), Some(first), Some(capacity), true) =
        (organisation, first, capacity, e.is_empty())
    else {
        return national_page(req, &platform, f, e, None).await;
    };
    let mut tx = platform.platform_pool().begin().await?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO platform.training_sessions (id, organisation_id, title, first_day, second_day, mode, address, region_code, capacity, created_by)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM platform.training_organisations WHERE id = $2)",
    )
    .bind(id)
    .bind(organisation)
    .bind(title)
    .bind(first)
    .bind(second)
    .bind(mode)
    .bind((mode == "in_person").then_some(address))
    .bind(f.region.trim())
    .bind(capacity)
    .bind(me.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let mut e = FieldErrors::default();
        e.add("organisation", "Cet organisme n'existe pas.");
        return national_page(req, &platform, f, e, None).await;
    }
    security::append(
        &mut tx,
        SecurityEvent::TrainingSessionCreated,
        None,
        Some(me.id),
        json!({ "session": id, "organisation": organisation, "capacity": capacity }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other("/national/formations?message=session").into_response())
}

#[derive(Deserialize)]
pub struct OrganisationForm {
    #[serde(default)]
    name: String,
}

/// `POST /national/formations/organismes`.
#[handler]
pub async fn create_organisation(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<OrganisationForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::TrainingManage).await?;
    let name = f.name.trim();
    let mut e = FieldErrors::default();
    if name.is_empty() || name.chars().count() > 200 {
        e.add(
            "organisation_name",
            "Indiquez le nom de l'organisme (200 caractères au plus).",
        );
        return national_page(req, &platform, SessionForm::default(), e, None).await;
    }
    let done = sqlx::query(
        "INSERT INTO platform.training_organisations (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .execute(platform.platform_pool())
    .await?
    .rows_affected();
    if done == 0 {
        e.add("organisation_name", "Un organisme porte déjà ce nom.");
        return national_page(req, &platform, SessionForm::default(), e, None).await;
    }
    Ok(Redirect::see_other("/national/formations?message=organisme").into_response())
}

#[derive(Deserialize)]
pub struct TrainerForm {
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
}

/// `POST /national/formations/formateurs`: gives a person the trainer role in an organisation
/// (a new account gets its activation link).
#[handler]
pub async fn add_trainer(
    req: &Request,
    platform: Data<&Platform>,
    me: Professional,
    Form(f): Form<TrainerForm>,
) -> PageResult<Response> {
    guard::require(&platform, &me, Domain::National, Action::TrainingManage).await?;
    let mut e = FieldErrors::default();
    let organisation = Uuid::parse_str(f.organisation.trim()).ok();
    let email = accounts::normalize_email(&f.email).ok();
    if organisation.is_none() {
        e.add(
            "trainer_organisation",
            "Choisissez l'organisme du formateur.",
        );
    }
    if email.is_none() {
        e.add(
            "trainer_email",
            "Indiquez une adresse e-mail valide (nom@domaine.fr).",
        );
    }
    if f.name.trim().is_empty() {
        e.add("trainer_name", "Indiquez le nom du formateur.");
    }
    let (Some(organisation), Some(email), true) = (organisation, email, e.is_empty()) else {
        return national_page(req, &platform, SessionForm::default(), e, None).await;
    };
    let mut tx = platform.platform_pool().begin().await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM platform.training_organisations WHERE id = $1)",
    )
    .bind(organisation)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Err(PageError::not_found());
    }
    let existing: Option<ProfessionalId> =
        sqlx::query_scalar("SELECT id FROM platform.professionals WHERE email = $1")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let (id, created) = match existing {
        Some(id) => (id, false),
        None => match accounts::create_professional(&mut tx, &email, f.name.trim()).await {
            Ok(id) => (id, true),
            Err(accounts::AccountError::Database(e)) => return Err(PageError::from(e)),
            Err(_) => {
                let mut e = FieldErrors::default();
                e.add(
                    "trainer_name",
                    "Ce nom n'est pas valide (200 caractères au plus).",
                );
                return national_page(req, &platform, SessionForm::default(), e, None).await;
            }
        },
    };
    accounts::grant_role(
        &mut tx,
        id,
        Role::Trainer,
        Domain::Organisation(organisation),
        None,
    )
    .await?;
    if created {
        accounts::send_enrolment_link(
            &mut tx,
            &platform.cipher,
            id,
            &crate::requests::public_url(&platform),
        )
        .await?;
    }
    security::append(
        &mut tx,
        SecurityEvent::TrainerAdded,
        Some(id),
        Some(me.id),
        json!({ "organisation": organisation }),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::see_other("/national/formations?message=formateur").into_response())
}
