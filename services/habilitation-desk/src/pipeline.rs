//! Where each habilitation file of a structure stands (product.md §4.3–4.6), read the same way
//! by the référent's space, the training pages and the issuer's.
//!
//! A file's own state is `to_train`, `active` or `withdrawn`: the steps in between are facts
//! held by the platform (the latest training registration, the Pix result, the charter
//! acceptance of the file's address, current version). [`Stage`] is the furthest step reached
//! on the path training → Pix → charter → active; the facts themselves are kept beside it,
//! since Pix or the charter may come before the training ends.

use foundation::ids::{ProfessionalId, StructureId};
use foundation::paris;
use foundation::tenancy::Territory;
use foundation::web::PageResult;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

/// A step of the habilitation path, as the référent reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    ToTrain,
    Absent,
    Waiting,
    Registered,
    Trained,
    Pix,
    Charter,
    Active,
    Withdrawn,
}

impl Stage {
    /// Every stage, in the order of the path (the page's summary follows it).
    pub const ALL: [Stage; 9] = [
        Stage::ToTrain,
        Stage::Absent,
        Stage::Waiting,
        Stage::Registered,
        Stage::Trained,
        Stage::Pix,
        Stage::Charter,
        Stage::Active,
        Stage::Withdrawn,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::ToTrain => "à former",
            Stage::Absent => "absent à la formation, à réinscrire",
            Stage::Waiting => "en liste d'attente de formation",
            Stage::Registered => "inscrit en formation",
            Stage::Trained => "formé",
            Stage::Pix => "certification Pix obtenue",
            Stage::Charter => "charte acceptée",
            Stage::Active => "habilité",
            Stage::Withdrawn => "habilitation retirée",
        }
    }

    /// What comes next, in words for the référent.
    pub fn next_step(self) -> &'static str {
        match self {
            Stage::ToTrain | Stage::Absent => "Inscrivez la personne à une session de formation.",
            Stage::Waiting => "Elle sera prévenue par e-mail si une place se libère.",
            Stage::Registered => "Le formateur enregistrera sa présence le jour de la session.",
            Stage::Trained | Stage::Pix | Stage::Charter => {
                "Son compte s'ouvre dès que la formation, la certification Pix et la charte sont réunies."
            }
            Stage::Active => "Elle peut créer et utiliser des mandats.",
            Stage::Withdrawn => "Elle ne peut plus agir pour la structure.",
        }
    }

    /// The DSFR badge that marks it.
    pub fn badge(self) -> &'static str {
        match self {
            Stage::Active => "fr-badge--success",
            Stage::Withdrawn => "fr-badge--error",
            Stage::Absent => "fr-badge--warning",
            Stage::ToTrain => "fr-badge--new",
            _ => "fr-badge--info",
        }
    }
}

/// A habilitation file, as its territory holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct File {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub state: String,
    pub professional_id: Option<ProfessionalId>,
}

impl File {
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// The latest training registration of a file.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Registration {
    pub file_id: Uuid,
    pub id: Uuid,
    pub status: String,
    pub title: String,
    pub first_day: Date,
}

impl Registration {
    pub fn describe(&self) -> String {
        let what = match self.status.as_str() {
            "registered" => "inscrit",
            "waiting" => "en liste d'attente",
            "attended" => "présent",
            _ => "absent",
        };
        format!("{what} — {}, {}", self.title, paris::day(self.first_day))
    }

    /// A registration the structure may still cancel.
    pub fn cancellable(&self) -> bool {
        self.status == "registered" || self.status == "waiting"
    }
}

/// A file with the facts of its path.
#[derive(Debug, Clone)]
pub struct Progress {
    pub file: File,
    pub registration: Option<Registration>,
    pub pix: Option<(i32, Date)>,
    pub charter: bool,
    pub stage: Stage,
}

impl Progress {
    /// Whether the file may be registered on a session now.
    pub fn can_register(&self) -> bool {
        matches!(self.stage, Stage::ToTrain | Stage::Absent)
    }

    pub fn pix_text(&self) -> Option<String> {
        self.pix
            .map(|(score, day)| format!("{score} pix, le {}", paris::day(day)))
    }
}

/// The stage reached, from the file's state and the platform's facts.
pub fn stage(state: &str, registration: Option<&str>, pix: bool, charter: bool) -> Stage {
    match state {
        "withdrawn" => return Stage::Withdrawn,
        "active" => return Stage::Active,
        _ => {}
    }
    match registration {
        Some("attended") if charter => Stage::Charter,
        Some("attended") if pix => Stage::Pix,
        Some("attended") => Stage::Trained,
        Some("registered") => Stage::Registered,
        Some("waiting") => Stage::Waiting,
        Some("absent") => Stage::Absent,
        _ => Stage::ToTrain,
    }
}

/// The files of a structure in its territory (which the caller reached through its guard), by
/// name: (structure name, active, files). `None` when the structure is not in that territory.
pub async fn structure_files(
    tenant: &Territory,
    structure: StructureId,
) -> PageResult<Option<(String, bool, Vec<File>)>> {
    let mut tx = tenant.begin().await?;
    let Some((name, active)): Option<(String, bool)> =
        sqlx::query_as("SELECT name, active FROM structures WHERE id = $1")
            .bind(structure)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    let files: Vec<File> = sqlx::query_as(
        "SELECT id, first_name, last_name, email, state, professional_id FROM habilitation_files
         WHERE structure_id = $1 ORDER BY last_name, first_name, id",
    )
    .bind(structure)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((name, active, files)))
}

/// The facts of each file's path, from the platform (one query per fact, whatever the number
/// of files).
pub async fn progress(
    conn: &mut PgConnection,
    files: Vec<File>,
) -> Result<Vec<Progress>, sqlx::Error> {
    let ids: Vec<Uuid> = files.iter().map(|f| f.id).collect();
    let emails: Vec<String> = files.iter().map(|f| f.email.clone()).collect();
    // The latest registration of each file that still says something (not a cancelled one).
    let registrations: Vec<Registration> = sqlx::query_as(
        "SELECT DISTINCT ON (r.file_id) r.file_id, r.id, r.status, s.title, s.first_day
         FROM platform.training_registrations r
         JOIN platform.training_sessions s ON s.id = r.session_id
         WHERE r.file_id = ANY($1) AND r.status <> 'cancelled'
         ORDER BY r.file_id, r.created_at DESC, r.id DESC",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let pix: Vec<(Uuid, i32, Date)> = sqlx::query_as(
        "SELECT file_id, score, certified_on FROM platform.pix_results WHERE file_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let charters: Vec<String> = sqlx::query_scalar(
        "SELECT c.email FROM platform.charter_acceptances c
         WHERE c.email = ANY($1) AND c.version = (SELECT version FROM platform.charter_versions
               WHERE published_at <= now() ORDER BY published_at DESC, version DESC LIMIT 1)",
    )
    .bind(&emails)
    .fetch_all(&mut *conn)
    .await?;
    Ok(files
        .into_iter()
        .map(|file| {
            let registration = registrations.iter().find(|r| r.file_id == file.id).cloned();
            let pix = pix
                .iter()
                .find(|p| p.0 == file.id)
                .map(|(_, score, day)| (*score, *day));
            let charter = charters.contains(&file.email);
            let stage = stage(
                &file.state,
                registration.as_ref().map(|r| r.status.as_str()),
                pix.is_some(),
                charter,
            );
            Progress {
                file,
                registration,
                pix,
                charter,
                stage,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_state_wins_over_the_facts() {
        assert_eq!(
            stage("withdrawn", Some("attended"), true, true),
            Stage::Withdrawn
        );
        assert_eq!(stage("active", None, false, false), Stage::Active);
    }

    #[test]
    fn the_furthest_step_on_the_path_is_shown() {
        assert_eq!(stage("to_train", None, false, false), Stage::ToTrain);
        assert_eq!(
            stage("to_train", Some("waiting"), false, false),
            Stage::Waiting
        );
        assert_eq!(
            stage("to_train", Some("registered"), true, true),
            Stage::Registered
        );
        assert_eq!(
            stage("to_train", Some("absent"), false, false),
            Stage::Absent
        );
        assert_eq!(
            stage("to_train", Some("attended"), false, false),
            Stage::Trained
        );
        assert_eq!(stage("to_train", Some("attended"), true, false), Stage::Pix);
        assert_eq!(
            stage("to_train", Some("attended"), true, true),
            Stage::Charter
        );
        // The charter accepted before the Pix result: the charter is the step reached.
        assert_eq!(
            stage("to_train", Some("attended"), false, true),
            Stage::Charter
        );
    }

    #[test]
    fn only_a_file_without_a_live_registration_may_be_registered() {
        let file = File {
            id: Uuid::nil(),
            first_name: "A".into(),
            last_name: "B".into(),
            email: "a@b.test".into(),
            state: "to_train".into(),
            professional_id: None,
        };
        let with = |stage| Progress {
            file: file.clone(),
            registration: None,
            pix: None,
            charter: false,
            stage,
        };
        for s in Stage::ALL {
            assert_eq!(
                with(s).can_register(),
                matches!(s, Stage::ToTrain | Stage::Absent),
                "{s:?}"
            );
        }
    }
}
