//! Pix certification results (product.md §4.4), imported by the national team as CSV — on the
//! national page or with `tenant-admin pix import` for large files. The header must be exactly
//! `identifiant;score;date` (or with commas; a UTF-8 BOM and Windows line ends are accepted),
//! else the file is refused whole and nothing is written. `identifiant` is the person's e-mail
//! address (every habilitation file with that address gets the result) or a habilitation file's
//! id; `score` a Pix score from 0 to 1024; `date` the certification day (`AAAA-MM-JJ` or
//! `JJ/MM/AAAA`). Each line is reported: imported, unknown person, bad score, bad date,
//! duplicate in the file, or already imported (a file keeps its first result: nothing is
//! imported twice). Lines are read as a stream and written by batches, each batch in one
//! transaction with its journal entry.

use foundation::web::{PageError, PageResult};
use std::collections::HashSet;
use std::io::Read;

use foundation::auth::journal::{self as security, SecurityEvent};
use foundation::ids::ProfessionalId;
use serde_json::json;
use sqlx::PgPool;
use time::Date;
use uuid::Uuid;

/// The highest Pix score.
pub const MAX_SCORE: i32 = 1024;
/// Lines written per transaction.
const BATCH: usize = 1000;

/// What became of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Imported(usize),
    UnknownPerson,
    BadScore,
    BadDate,
    Duplicate,
    AlreadyImported,
    Malformed,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Imported(1) => "importé".to_owned(),
            Outcome::Imported(n) => format!("importé ({n} dossiers)"),
            Outcome::UnknownPerson => "personne inconnue (aucun dossier d'habilitation à cette adresse ou sous cet identifiant)".to_owned(),
            Outcome::BadScore => format!("score invalide (un nombre entier de 0 à {MAX_SCORE})"),
            Outcome::BadDate => "date invalide (AAAA-MM-JJ ou JJ/MM/AAAA, pas dans le futur)".to_owned(),
            Outcome::Duplicate => "doublon : cette personne figure déjà plus haut dans le fichier".to_owned(),
            Outcome::AlreadyImported => "déjà importé : le dossier a déjà un résultat Pix".to_owned(),
            Outcome::Malformed => "ligne mal formée (trois colonnes attendues)".to_owned(),
        }
    }
}

/// One line's report (line numbers count the header as line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineReport {
    pub line: u64,
    pub identifier: String,
    pub outcome: Outcome,
}

/// A whole import.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub lines: Vec<LineReport>,
    pub imported: usize,
    pub refused: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "en-tête invalide : la première ligne doit être exactement « identifiant;score;date » (ou séparée par des virgules) ; fichier refusé, rien n'a été importé"
    )]
    Header,
    #[error("fichier illisible : {0} ; rien de plus n'a été importé")]
    Unreadable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The delimiter of a valid header line (BOM and spaces allowed), or `None`.
pub fn header_delimiter(first: &str) -> Option<u8> {
    let line = first.trim_start_matches('\u{feff}').trim();
    for d in [b';', b','] {
        let cells: Vec<String> = line
            .split(d as char)
            .map(|c| c.trim().trim_matches('"').to_lowercase())
            .collect();
        if cells == ["identifiant", "score", "date"] {
            return Some(d);
        }
    }
    None
}

fn parse_date(s: &str, today: Date) -> Option<Date> {
    let s = s.trim();
    let iso = time::macros::format_description!("[year]-[month]-[day]");
    let fr = time::macros::format_description!("[day]/[month]/[year]");
    Date::parse(s, iso)
        .or_else(|_| Date::parse(s, fr))
        .ok()
        .filter(|d| *d <= today)
}

struct Parsed {
    line: u64,
    identifier: String,
    score: i32,
    date: Date,
}

/// Imports a CSV stream. `progress` is told how many lines were read so far.
pub async fn import<R: Read>(
    pool: &PgPool,
    input: R,
    importer: Option<ProfessionalId>,
    mut progress: impl FnMut(u64),
) -> Result<Report, ImportError> {
    let mut buffered = std::io::BufReader::new(input);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut buffered, &mut first)
        .map_err(|e| ImportError::Unreadable(e.to_string()))?;
    let delimiter = header_delimiter(&first).ok_or(ImportError::Header)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(buffered);
    let today = foundation::paris::today();
    let mut report = Report::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<Parsed> = Vec::new();
    let mut line: u64 = 1;
    for record in reader.records() {
        line += 1;
        let record = record.map_err(|e| ImportError::Unreadable(format!("ligne {line} : {e}")))?;
        if record.iter().all(|c| c.is_empty()) {
            continue;
        }
        let identifier = record.get(0).unwrap_or_default().to_lowercase();
        let mut refuse = |outcome| {
            report.lines.push(LineReport {
                line,
                identifier: identifier.clone(),
                outcome,
            });
            report.refused += 1;
        };
        if record.len() != 3 || identifier.is_empty() {
            refuse(Outcome::Malformed);
            continue;
        }
        let Some(score) = record
            .get(1)
            .and_then(|s| s.parse::<i32>().ok())
            .filter(|s| (0..=MAX_SCORE).contains(s))
        else {
            refuse(Outcome::BadScore);
            continue;
        };
        let Some(date) = record.get(2).and_then(|d| parse_date(d, today)) else {
            refuse(Outcome::BadDate);
            continue;
        };
        if !seen.insert(identifier.clone()) {
            refuse(Outcome::Duplicate);
            continue;
        }
        batch.push(Parsed {
            line,
            identifier,
            score,
            date,
        });
        if batch.len() >= BATCH {
            write(pool, std::mem::take(&mut batch), importer, &mut report).await?;
            progress(line - 1);
        }
    }
    write(pool, batch, importer, &mut report).await?;
    progress(line - 1);
    report.lines.sort_by_key(|l| l.line);
    Ok(report)
}

/// Writes one batch in one transaction: resolves identifiers to files, records the results no
/// file had yet, reports every line, journals the batch.
async fn write(
    pool: &PgPool,
    batch: Vec<Parsed>,
    importer: Option<ProfessionalId>,
    report: &mut Report,
) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    let identifiers: Vec<String> = batch.iter().map(|p| p.identifier.clone()).collect();
    let ids: Vec<Uuid> = identifiers
        .iter()
        .filter_map(|i| Uuid::parse_str(i).ok())
        .collect();
    // Every file each identifier names (by address, or by id).
    let files: Vec<(String, Uuid, bool)> = sqlx::query_as(
        "SELECT i.email, i.file_id, r.file_id IS NOT NULL FROM platform.habilitation_file_index i
         LEFT JOIN platform.pix_results r ON r.file_id = i.file_id
         WHERE i.email = ANY($1)
         UNION ALL
         SELECT i.file_id::text, i.file_id, r.file_id IS NOT NULL FROM platform.habilitation_file_index i
         LEFT JOIN platform.pix_results r ON r.file_id = i.file_id
         WHERE i.file_id = ANY($2)",
    )
    .bind(&identifiers)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut imported = 0;
    for p in &batch {
        let mine: Vec<&(String, Uuid, bool)> =
            files.iter().filter(|f| f.0 == p.identifier).collect();
        let fresh: Vec<Uuid> = mine.iter().filter(|f| !f.2).map(|f| f.1).collect();
        let outcome = if mine.is_empty() {
            Outcome::UnknownPerson
        } else if fresh.is_empty() {
            Outcome::AlreadyImported
        } else {
            let written = sqlx::query(
                "INSERT INTO platform.pix_results (file_id, score, certified_on, imported_by)
                 SELECT unnest($1::uuid[]), $2, $3, $4 ON CONFLICT (file_id) DO NOTHING",
            )
            .bind(&fresh)
            .bind(p.score)
            .bind(p.date)
            .bind(importer)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
            if written == 0 {
                Outcome::AlreadyImported
            } else {
                imported += written;
                Outcome::Imported(written)
            }
        };
        if matches!(outcome, Outcome::Imported(_)) {
            report.imported += 1;
        } else {
            report.refused += 1;
        }
        report.lines.push(LineReport {
            line: p.line,
            identifier: p.identifier.clone(),
            outcome,
        });
    }
    security::append(
        &mut tx,
        SecurityEvent::PixImported,
        None,
        importer,
        json!({ "lines": batch.len(), "results": imported }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The national page (pasted CSV; large files go through `tenant-admin pix import`).

#[derive(askama::Template)]
#[template(path = "national_pix.html")]
struct PixPage<'a> {
    theme: &'a foundation::web::Theme,
    nav: Vec<foundation::web::NavItem>,
    csrf: String,
    report: Option<Report>,
    error: Option<String>,
    typed: String,
}

fn pix_page(
    req: &poem::Request,
    platform: &foundation::app::Platform,
    report: Option<Report>,
    error: Option<String>,
    typed: String,
) -> PageResult<poem::Response> {
    let bad = error.is_some();
    foundation::web::html_status(
        &PixPage {
            theme: crate::views::THEME,
            nav: crate::views::nav("/national/pix"),
            csrf: foundation::auth::csrf::token(req, platform.settings.http.secure_cookies()),
            report,
            error,
            typed,
        },
        bad.then_some(poem::http::StatusCode::BAD_REQUEST),
    )
}

/// `GET /national/pix`.
#[poem::handler]
pub async fn form(
    req: &poem::Request,
    platform: poem::web::Data<&foundation::app::Platform>,
    me: foundation::auth::session::Professional,
) -> PageResult<poem::Response> {
    foundation::auth::guard::require(
        &platform,
        &me,
        policies::Domain::National,
        policies::Action::PixImport,
    )
    .await?;
    pix_page(req, &platform, None, None, String::new())
}

#[derive(serde::Deserialize)]
pub struct PixForm {
    #[serde(default)]
    resultats: String,
}

/// `POST /national/pix`: imports the pasted CSV and shows the line report.
#[poem::handler]
pub async fn submit(
    req: &poem::Request,
    platform: poem::web::Data<&foundation::app::Platform>,
    me: foundation::auth::session::Professional,
    poem::web::Form(f): poem::web::Form<PixForm>,
) -> PageResult<poem::Response> {
    foundation::auth::guard::require(
        &platform,
        &me,
        policies::Domain::National,
        policies::Action::PixImport,
    )
    .await?;
    match import(
        platform.platform_pool(),
        f.resultats.as_bytes(),
        Some(me.id),
        |_| {},
    )
    .await
    {
        Ok(report) => {
            if report.imported > 0
                && let Err(e) = crate::activation::activate_ready(&platform, None).await
            {
                tracing::warn!(error = %e, "activation deferred to the job");
            }
            pix_page(req, &platform, Some(report), None, String::new())
        }
        Err(ImportError::Database(e)) => Err(PageError::from(e)),
        Err(e) => pix_page(req, &platform, None, Some(e.to_string()), f.resultats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_exact_with_either_delimiter_a_bom_and_spaces() {
        assert_eq!(header_delimiter("identifiant;score;date"), Some(b';'));
        assert_eq!(
            header_delimiter("\u{feff}Identifiant, Score, Date\r\n"),
            Some(b',')
        );
        assert_eq!(
            header_delimiter("\"identifiant\";\"score\";\"date\""),
            Some(b';')
        );
        for bad in [
            "",
            "email;score;date",
            "identifiant;score",
            "identifiant;score;date;x",
            "identifiant score date",
        ] {
            assert_eq!(header_delimiter(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_iso_or_french_and_never_in_the_future() {
        let today = time::macros::date!(2026 - 11 - 30);
        assert_eq!(
            parse_date("2026-11-02", today),
            Some(time::macros::date!(2026 - 11 - 02))
        );
        assert_eq!(
            parse_date("02/11/2026", today),
            Some(time::macros::date!(2026 - 11 - 02))
        );
        assert_eq!(parse_date("2026-12-01", today), None);
        assert_eq!(parse_date("31/02/2026", today), None);
        assert_eq!(parse_date("hier", today), None);
    }
}
