//! Reading a guardian service's CSV export of its measures (issue 18 §2; the columns are in
//! docs/MEASURES.md). Two kinds of problem, kept apart:
//!
//! - the **file** is malformed (not UTF-8 — Latin-1 is detected and named —, no header, a
//!   required column missing, a line with the wrong number of fields, too many lines): the
//!   whole file is refused with the line and column of the first problem, and nothing is
//!   written;
//! - a **line** says something wrong (a date that is not one, an end before the start, an
//!   unknown kind of measure or démarche): that line is refused with its reason in French, the
//!   others go on.
//!
//! Pure functions: no database here (the delegates and the structure's démarches are checked
//! when the lines are applied, `import`).

use std::fmt;

use foundation::categories;
use time::Date;

use super::Measure;
use crate::mandates::search_key;

/// At most this many lines of measures in one file.
pub const MAX_LINES: usize = 20_000;
/// At most this many bytes.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The columns, in the order of the model file; `true` when required.
pub const COLUMNS: &[(&str, bool)] = &[
    ("numero_dossier", true),
    ("nom_naissance", true),
    ("nom_usage", false),
    ("prenoms", true),
    ("sexe", true),
    ("date_naissance", true),
    ("code_lieu_naissance", false),
    ("code_pays_naissance", false),
    ("type_mesure", true),
    ("tribunal", true),
    ("date_jugement", true),
    ("numero_rg", true),
    ("date_debut", true),
    ("date_fin", true),
    ("date_revision", false),
    ("demarches", true),
    ("delegue", false),
];

/// Other names the same columns carry in exports (compared after [`header_key`]).
const ALIASES: &[(&str, &str)] = &[
    ("dossier", "numero_dossier"),
    ("n_dossier", "numero_dossier"),
    ("no_dossier", "numero_dossier"),
    ("reference_dossier", "numero_dossier"),
    ("nom", "nom_naissance"),
    ("nom_de_naissance", "nom_naissance"),
    ("nom_d_usage", "nom_usage"),
    ("prenom", "prenoms"),
    ("civilite", "sexe"),
    ("date_de_naissance", "date_naissance"),
    ("commune_naissance", "code_lieu_naissance"),
    ("pays_naissance", "code_pays_naissance"),
    ("mesure", "type_mesure"),
    ("nature_mesure", "type_mesure"),
    ("juridiction", "tribunal"),
    ("date_decision", "date_jugement"),
    ("rg", "numero_rg"),
    ("n_rg", "numero_rg"),
    ("reference_decision", "numero_rg"),
    ("date_effet", "date_debut"),
    ("date_echeance", "date_fin"),
    ("echeance", "date_fin"),
    ("date_de_revision", "date_revision"),
    ("delegue_email", "delegue"),
    ("mandataire", "delegue"),
];

/// The whole file refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "Ligne {}, colonne {} : {}", self.line, c, self.message),
            None => write!(f, "Ligne {} : {}", self.line, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// The person as the court decision names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CivilStatus {
    pub family_name: String,
    pub usage_name: Option<String>,
    pub given_names: String,
    /// `male` or `female` (FranceConnect's words).
    pub gender: &'static str,
    pub birthdate: String,
    /// The INSEE code of the birth commune, empty when unknown or born abroad.
    pub birthplace: String,
    /// The INSEE code of the birth country (99100: France).
    pub birthcountry: String,
}

/// One line of measure, as read (the démarches and delegate are checked against the
/// structure when applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line's number in the file (the header is line 1).
    pub number: usize,
    pub case_number: String,
    pub person: CivilStatus,
    pub measure: Measure,
    /// Démarche codes, sorted, without repeats.
    pub categories: Vec<String>,
    /// The delegate's e-mail, lower case.
    pub delegate: Option<String>,
}

/// A line read or refused (with its case number when there is one, and the reason).
pub type Read = Result<Line, (usize, String, String)>;

/// The text of the file, or why it cannot be read: a UTF-8 BOM is dropped; UTF-16 and
/// Latin-1 (ISO-8859-1, Windows-1252) are recognised and named.
pub fn decode(bytes: &[u8]) -> Result<&str, FileError> {
    let err = |line, column, message: &str| FileError {
        line,
        column,
        message: message.to_owned(),
    };
    if bytes.is_empty() {
        return Err(err(1, None, "le fichier est vide."));
    }
    if bytes.len() > MAX_BYTES {
        return Err(err(
            1,
            None,
            "le fichier dépasse 8 Mo : découpez-le en plusieurs fichiers.",
        ));
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(err(
            1,
            Some(1),
            "le fichier est encodé en UTF-16. Enregistrez-le au format « CSV UTF-8 » puis importez-le de nouveau.",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.valid_up_to();
            let before = &bytes[..at];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            // The column as a person counts it: characters since the start of the line.
            let column = String::from_utf8_lossy(&bytes[line_start..at])
                .chars()
                .count()
                + 1;
            let latin1 = bytes
                .iter()
                .filter(|b| **b >= 0x80)
                .all(|b| !matches!(b, 0x81 | 0x8D | 0x8F | 0x90 | 0x9D));
            let message = if latin1 {
                "le fichier n'est pas en UTF-8 : il semble encodé en Latin-1 (ISO-8859-1 ou Windows-1252), comme l'enregistrent certains tableurs. Enregistrez-le au format « CSV UTF-8 » puis importez-le de nouveau."
            } else {
                "le fichier n'est pas en UTF-8. Enregistrez-le au format « CSV UTF-8 » puis importez-le de nouveau."
            };
            Err(err(line, Some(column), message))
        }
    }
}

/// A header as compared: lower case, without accents, words joined by `_`.
fn header_key(h: &str) -> String {
    let k = search_key(h.trim());
    let mut out = String::new();
    for c in k.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// The column named by a header, if it is one of ours.
fn column_of(header: &str) -> Option<&'static str> {
    let key = header_key(header);
    COLUMNS
        .iter()
        .map(|(c, _)| *c)
        .find(|c| *c == key)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == key).map(|(_, c)| *c))
}

/// The delimiter of the header line: `;` (French spreadsheets), `,` or a tab.
fn delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or("");
    [b';', b',', b'\t']
        .into_iter()
        .max_by_key(|d| first.bytes().filter(|b| b == d).count())
        .unwrap_or(b';')
}

/// Reads the file: the lines, each read or refused; or the whole file refused.
pub fn parse(text: &str, today: Date) -> Result<Vec<Read>, FileError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter(text))
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(csv_error(&e, 1)),
        None => {
            return Err(FileError {
                line: 1,
                column: None,
                message: "le fichier est vide.".into(),
            });
        }
    };
    // Which field holds which column.
    let mut positions: Vec<(&'static str, usize)> = Vec::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(column) = column_of(h) {
            if positions.iter().any(|(c, _)| *c == column) {
                return Err(FileError {
                    line: 1,
                    column: Some(i + 1),
                    message: format!("la colonne « {column} » apparaît deux fois dans l'en-tête."),
                });
            }
            positions.push((column, i));
        }
    }
    if let Some((missing, _)) = COLUMNS
        .iter()
        .find(|(c, required)| *required && !positions.iter().any(|(p, _)| p == c))
    {
        return Err(FileError {
            line: 1,
            column: Some(header.len() + 1),
            message: format!(
                "la colonne obligatoire « {missing} » manque dans l'en-tête (la première ligne). Les colonnes attendues sont décrites sur la page d'import."
            ),
        });
    }
    let width = header.len();
    let mut lines = Vec::new();
    for (i, record) in records.enumerate() {
        let number = i + 2;
        let record = record.map_err(|e| csv_error(&e, number))?;
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() != width {
            return Err(FileError {
                line: number,
                column: Some(record.len().min(width) + 1),
                message: format!(
                    "cette ligne a {} champs alors que l'en-tête en a {width}. Vérifiez les séparateurs et les guillemets.",
                    record.len()
                ),
            });
        }
        if lines.len() == MAX_LINES {
            return Err(FileError {
                line: number,
                column: None,
                message: format!(
                    "le fichier dépasse {MAX_LINES} mesures : découpez-le en plusieurs fichiers."
                ),
            });
        }
        let field = |name: &str| {
            positions
                .iter()
                .find(|(c, _)| *c == name)
                .and_then(|(_, p)| record.get(*p))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        lines.push(line(number, &field, today));
    }
    if lines.is_empty() {
        return Err(FileError {
            line: 2,
            column: None,
            message: "le fichier ne contient aucune mesure après l'en-tête.".into(),
        });
    }
    Ok(lines)
}

fn csv_error(e: &::csv::Error, line: usize) -> FileError {
    let line = e
        .position()
        .map_or(line, |p| usize::try_from(p.line()).unwrap_or(line));
    FileError {
        line,
        column: None,
        message: "cette ligne ne peut pas être lue comme du CSV. Vérifiez les guillemets.".into(),
    }
}

/// A date written `JJ/MM/AAAA` or `AAAA-MM-JJ`, as `AAAA-MM-JJ`.
fn iso_date(s: &str) -> Option<String> {
    let s = s.trim();
    let parsed = Date::parse(s, time::macros::format_description!("[day]/[month]/[year]"))
        .or_else(|_| Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")))
        .ok()?;
    Some(parsed.to_string())
}

fn kind_of(s: &str) -> Result<&'static str, String> {
    let key = header_key(s);
    if key == "curatelle" {
        return Err("précisez « curatelle simple » ou « curatelle renforcée ».".into());
    }
    super::KINDS
        .iter()
        .find(|(code, label)| *code == key || header_key(label) == key)
        .map(|(code, _)| *code)
        .ok_or_else(|| {
            format!(
                "type de mesure « {s} » inconnu (tutelle, curatelle simple, curatelle renforcée, habilitation familiale, sauvegarde de justice, mandat de protection future)."
            )
        })
}

fn categories_of(s: &str) -> Result<Vec<String>, String> {
    let mut codes: Vec<String> = Vec::new();
    for part in s.split(['|', ',', '/', '+']) {
        let key = header_key(part);
        if key.is_empty() {
            continue;
        }
        let found = categories::ALL
            .iter()
            .find(|c| c.code == key || header_key(c.label) == key)
            .ok_or_else(|| format!("démarche « {} » inconnue.", part.trim()))?;
        codes.push(found.code.to_owned());
    }
    codes.sort();
    codes.dedup();
    if codes.is_empty() {
        return Err("indiquez au moins une démarche que la décision permet.".into());
    }
    Ok(codes)
}

/// One line read from its fields by column name (the page's civil-status form uses it too).
pub fn line(number: usize, field: &dyn Fn(&str) -> String, today: Date) -> Read {
    let case_number = field("numero_dossier");
    let refuse = |reason: String| Err((number, case_number.clone(), reason));
    if case_number.is_empty() || case_number.chars().count() > 60 {
        return refuse("le numéro de dossier manque ou dépasse 60 caractères.".into());
    }
    let family_name = field("nom_naissance");
    let given_names = field("prenoms");
    if family_name.is_empty() || given_names.is_empty() {
        return refuse(
            "le nom de naissance et les prénoms de la personne sont obligatoires.".into(),
        );
    }
    if family_name.chars().count() > 100 || given_names.chars().count() > 200 {
        return refuse("le nom ou les prénoms sont trop longs.".into());
    }
    let gender = match header_key(&field("sexe")).as_str() {
        "f" | "femme" | "feminin" | "mme" | "madame" => "female",
        "m" | "h" | "homme" | "masculin" | "m_" | "monsieur" => "male",
        _ => return refuse("sexe à indiquer par F ou M.".into()),
    };
    let Some(birthdate) = iso_date(&field("date_naissance")) else {
        return refuse("date de naissance illisible : écrivez-la 15/03/1950.".into());
    };
    let birthplace = field("code_lieu_naissance").to_uppercase();
    let birthplace_ok = birthplace.is_empty()
        || (birthplace.len() == 5 && birthplace.chars().all(|c| c.is_ascii_alphanumeric()));
    if !birthplace_ok {
        return refuse("code de commune de naissance : 5 caractères (code INSEE).".into());
    }
    let country = field("code_pays_naissance");
    let birthcountry = if country.is_empty() {
        "99100".to_owned()
    } else if country.len() == 5 && country.chars().all(|c| c.is_ascii_digit()) {
        country
    } else {
        return refuse(
            "code de pays de naissance : 5 chiffres (code INSEE, 99100 pour la France).".into(),
        );
    };
    let kind = match kind_of(&field("type_mesure")) {
        Ok(k) => k,
        Err(reason) => return refuse(reason),
    };
    let dated = |name: &str, label: &str| -> Result<String, String> {
        let raw = field(name);
        iso_date(&raw)
            .ok_or_else(|| format!("{label} illisible (« {raw} ») : écrivez-la 15/03/2026."))
    };
    let dates = (|| {
        let decision = dated("date_jugement", "date du jugement")?;
        let starts = dated("date_debut", "date de début")?;
        let ends = dated("date_fin", "date de fin")?;
        let renewal = match field("date_revision") {
            r if r.is_empty() => None,
            _ => Some(dated("date_revision", "date de révision")?),
        };
        Ok::<_, String>((decision, starts, ends, renewal))
    })();
    let (decision_date, starts, ends, renewal_date) = match dates {
        Ok(d) => d,
        Err(reason) => return refuse(reason),
    };
    let measure = Measure {
        kind: kind.to_owned(),
        court: field("tribunal"),
        decision_date,
        decision_reference: field("numero_rg"),
        starts,
        ends,
        renewal_date,
    };
    let measure = match measure.checked(today) {
        Ok((m, _)) => m,
        Err(e) => return refuse(lower_first(&e.to_string())),
    };
    let categories = match categories_of(&field("demarches")) {
        Ok(c) => c,
        Err(reason) => return refuse(reason),
    };
    let delegate = field("delegue").to_lowercase();
    if !delegate.is_empty() && !delegate.contains('@') {
        return refuse("délégué : indiquez son adresse e-mail.".into());
    }
    let usage = field("nom_usage");
    Ok(Line {
        number,
        case_number: case_number.clone(),
        person: CivilStatus {
            usage_name: (!usage.is_empty() && usage != family_name).then_some(usage),
            family_name,
            given_names,
            gender,
            birthdate,
            birthplace,
            birthcountry,
        },
        measure,
        categories,
        delegate: (!delegate.is_empty()).then_some(delegate),
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "numero_dossier;nom_naissance;nom_usage;prenoms;sexe;date_naissance;code_lieu_naissance;code_pays_naissance;type_mesure;tribunal;date_jugement;numero_rg;date_debut;date_fin;date_revision;demarches;delegue";

    fn today() -> Date {
        Date::from_calendar_date(2026, time::Month::November, 30).expect("date")
    }

    #[test]
    fn lines_are_read_or_refused_one_by_one() {
        let text = format!(
            "{HEADER}\n\
             D-001;Martin;;Jeanne Marie;F;12/04/1941;33063;99100;Curatelle renforcée;Tribunal judiciaire de Bordeaux;15/03/2026;RG 26/01234;15/03/2026;14/03/2031;15/09/2030;argent|Logement;Delegue@Exemple.fr\n\
             D-002;Durand;;Paul;M;1950-01-02;;;curatelle;TJ Bordeaux;15/03/2026;RG 1;15/03/2026;14/03/2031;;social;\n\
             D-003;Petit;;Luc;M;02/01/1950;;;tutelle;TJ Bordeaux;15/03/2026;RG 2;15/03/2026;14/03/2025;;social;\n\
             ;;;;;;;;;;;;;;;;\n"
        );
        let lines = parse(&text, today()).expect("lisible");
        assert_eq!(lines.len(), 3, "the blank line is skipped");
        let first = lines[0].as_ref().expect("line 2");
        assert_eq!(first.number, 2);
        assert_eq!(first.measure.kind, "curatelle_renforcee");
        assert_eq!(first.measure.ends, "2031-03-14");
        assert_eq!(first.person.birthdate, "1941-04-12");
        assert_eq!(first.person.gender, "female");
        assert_eq!(first.categories, vec!["argent", "logement"]);
        assert_eq!(first.delegate.as_deref(), Some("delegue@exemple.fr"));
        let (n, case, reason) = lines[1].as_ref().expect_err("ambiguous");
        assert_eq!((*n, case.as_str()), (3, "D-002"));
        assert!(reason.contains("curatelle simple"), "{reason}");
        let (n, _, reason) = lines[2].as_ref().expect_err("ends before it starts");
        assert_eq!(*n, 4);
        assert!(reason.contains("après son début"), "{reason}");
    }

    #[test]
    fn a_malformed_file_is_refused_whole_with_its_line_and_column() {
        let missing = "numero_dossier;nom;prenoms\nD-1;Martin;Jeanne\n";
        let e = parse(missing, today()).expect_err("columns missing");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("« sexe »"), "{e}");
        let short = format!(
            "{HEADER}\nD-001;Martin;;Jeanne;F;12/04/1941;;;tutelle;TJ;15/03/2026;RG;15/03/2026;14/03/2031;;social;\nD-002;Martin;Jeanne\n"
        );
        let e = parse(&short, today()).expect_err("short line");
        assert_eq!((e.line, e.column), (3, Some(4)));
        assert_eq!(
            e.to_string(),
            "Ligne 3, colonne 4 : cette ligne a 3 champs alors que l'en-tête en a 17. Vérifiez les séparateurs et les guillemets."
        );
        let only_header = format!("{HEADER}\n");
        assert_eq!(parse(&only_header, today()).expect_err("empty").line, 2);
    }

    #[test]
    fn latin1_is_recognised_and_named() {
        let mut bytes = format!("{HEADER}\nD-001;").into_bytes();
        bytes.extend_from_slice(b"B\xE9ranger;;Ir\xE8ne;F");
        let e = decode(&bytes).expect_err("latin-1");
        assert_eq!((e.line, e.column), (2, Some(8)));
        assert!(e.message.contains("Latin-1"), "{e}");
        let utf16 = [0xFF, 0xFE, b'n', 0];
        assert!(
            decode(&utf16)
                .expect_err("utf-16")
                .message
                .contains("UTF-16")
        );
        let bom = b"\xEF\xBB\xBFnumero_dossier";
        assert_eq!(decode(bom).expect("utf-8"), "numero_dossier");
        let e = decode(b"a\nb\x81(").expect_err("neither UTF-8 nor Latin-1");
        assert_eq!((e.line, e.column), (2, Some(2)));
        assert!(!e.message.contains("Latin-1"), "{e}");
    }
}
