//! One habilitated place as a record of the national « Lieux de médiation numérique » schema
//! (LaMednum/standard-mediation-num, version 1.0.1), and how a structure of a territory becomes
//! one. The field-by-field mapping, and why some fields stay empty, is in docs/OPEN_DATA.md.

use foundation::ids::StructureId;
use poem_openapi::Object;
use time::{Date, OffsetDateTime};

/// The version of the national schema the records follow.
pub const SCHEMA_VERSION: &str = "1.0.1";

/// The schema's columns, in its order (the CSV header).
pub const COLUMNS: [&str; 32] = [
    "id",
    "pivot",
    "nom",
    "commune",
    "code_postal",
    "code_insee",
    "adresse",
    "complement_adresse",
    "latitude",
    "longitude",
    "typologie",
    "telephone",
    "courriels",
    "site_web",
    "horaires",
    "presentation_resume",
    "presentation_detail",
    "source",
    "itinerance",
    "structure_parente",
    "date_maj",
    "services",
    "publics_specifiquement_adresses",
    "prise_en_charge_specifique",
    "frais_a_charge",
    "dispositif_programmes_nationaux",
    "formations_labels",
    "autres_formations_labels",
    "modalites_acces",
    "modalites_accompagnement",
    "fiche_acces_libre",
    "prise_rdv",
];

/// The pivot of a place without a SIRET: the schema requires one, and the national
/// cartography's tools write fourteen zeros for "unknown".
pub const NO_PIVOT: &str = "00000000000000";

/// Who collected the data (`source`).
pub const SOURCE: &str = "Aidants Connect";

/// The schema's `services` value for help with administrative procedures online: what an
/// aidant does.
pub const SERVICE: &str = "Aide aux démarches administratives";

/// The schema's limit on `presentation_resume`, in characters.
const RESUME_MAX: usize = 280;

/// A habilitated place, in the national « lieux de médiation numérique » schema (1.0.1). Fields
/// are the schema's; absent fields are empty in the CSV. Multiple values are separated by `|`,
/// as in the schema.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(rename = "LieuMediationNumerique", skip_serializing_if_is_none)]
pub struct Lieu {
    /// Local identifier: the structure's id.
    pub id: String,
    /// SIRET of the structure, or `00000000000000` when it has none.
    pub pivot: String,
    /// Name of the structure.
    pub nom: String,
    /// Name of the commune (INSEE reference data).
    pub commune: String,
    /// Postal code: the structure's, else the commune's first.
    pub code_postal: String,
    /// INSEE code of the commune.
    pub code_insee: Option<String>,
    /// Postal address (number and street; lines joined with commas).
    pub adresse: String,
    pub complement_adresse: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Structure type, in the data·inclusion typology (MUNI, CCAS, EPCI, DEPT, RFS, ASSO).
    pub typologie: Option<String>,
    pub telephone: Option<String>,
    pub courriels: Option<String>,
    pub site_web: Option<String>,
    /// Opening hours in OpenStreetMap `opening_hours` syntax (only when given so).
    pub horaires: Option<String>,
    /// The structure's missions (280 characters at most).
    pub presentation_resume: Option<String>,
    /// The structure's missions in full, when longer than the summary.
    pub presentation_detail: Option<String>,
    /// Who collected the data: `Aidants Connect`.
    pub source: Option<String>,
    pub itinerance: Option<String>,
    pub structure_parente: Option<String>,
    /// Date of the structure's last change (Paris time).
    pub date_maj: Date,
    /// `Aide aux démarches administratives`.
    pub services: Option<String>,
    pub publics_specifiquement_adresses: Option<String>,
    pub prise_en_charge_specifique: Option<String>,
    pub frais_a_charge: Option<String>,
    /// `Aidants Connect`, and `France Services` for a labelled structure.
    pub dispositif_programmes_nationaux: Option<String>,
    pub formations_labels: Option<String>,
    pub autres_formations_labels: Option<String>,
    pub modalites_acces: Option<String>,
    /// `Accompagnement individuel`: an aidant acts for one person at a time.
    pub modalites_accompagnement: Option<String>,
    pub fiche_acces_libre: Option<String>,
    pub prise_rdv: Option<String>,
}

/// A cell of the CSV: text (neutralised against spreadsheet formulas), or a number or a date
/// we wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    Number(f64),
    Date(Date),
}

fn text(v: &Option<String>) -> Cell<'_> {
    Cell::Text(v.as_deref().unwrap_or_default())
}

fn number<'a>(v: Option<f64>) -> Cell<'a> {
    v.map_or(Cell::Text(""), Cell::Number)
}

impl Lieu {
    /// The record's cells, in the schema's column order (`COLUMNS`).
    pub fn cells(&self) -> [Cell<'_>; 32] {
        [
            Cell::Text(&self.id),
            Cell::Text(&self.pivot),
            Cell::Text(&self.nom),
            Cell::Text(&self.commune),
            Cell::Text(&self.code_postal),
            text(&self.code_insee),
            Cell::Text(&self.adresse),
            text(&self.complement_adresse),
            number(self.latitude),
            number(self.longitude),
            text(&self.typologie),
            text(&self.telephone),
            text(&self.courriels),
            text(&self.site_web),
            text(&self.horaires),
            text(&self.presentation_resume),
            text(&self.presentation_detail),
            text(&self.source),
            text(&self.itinerance),
            text(&self.structure_parente),
            Cell::Date(self.date_maj),
            text(&self.services),
            text(&self.publics_specifiquement_adresses),
            text(&self.prise_en_charge_specifique),
            text(&self.frais_a_charge),
            text(&self.dispositif_programmes_nationaux),
            text(&self.formations_labels),
            text(&self.autres_formations_labels),
            text(&self.modalites_acces),
            text(&self.modalites_accompagnement),
            text(&self.fiche_acces_libre),
            text(&self.prise_rdv),
        ]
    }
}

/// What the open data says of a structure of the territory (active ones only).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StructureRow {
    pub id: StructureId,
    pub name: String,
    pub kind: String,
    pub siret: Option<String>,
    pub address: String,
    pub commune_code: String,
    pub postal_code: Option<String>,
    pub france_services: bool,
    pub mission: String,
    pub opening_hours: String,
    pub created_at: OffsetDateTime,
}

/// Columns of `StructureRow`, for the territory's query.
pub const STRUCTURE_COLUMNS: &str = "id, name, kind, siret, address, commune_code, postal_code, \
     france_services, mission, opening_hours, created_at";

/// A commune of the reference data (`platform.communes`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommuneRef {
    pub code: String,
    pub name: String,
    pub postal_codes: Vec<String>,
}

/// Why a structure is left out of the open data (the schema requires what it lacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// No postal address: `adresse` is required.
    NoAddress,
    /// Its commune is not in the reference data: `commune` and `code_postal` are required.
    UnknownCommune,
}

/// The structure as a place of the schema.
pub fn lieu(s: &StructureRow, commune: Option<&CommuneRef>) -> Result<Lieu, LeftOut> {
    let adresse = s
        .address
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    if adresse.is_empty() {
        return Err(LeftOut::NoAddress);
    }
    let commune = commune.ok_or(LeftOut::UnknownCommune)?;
    let code_postal = s
        .postal_code
        .as_deref()
        .map(str::trim)
        .filter(|p| is_postal_code(p))
        .or_else(|| {
            commune
                .postal_codes
                .iter()
                .map(String::as_str)
                .find(|p| is_postal_code(p))
        })
        .ok_or(LeftOut::UnknownCommune)?
        .to_owned();
    let pivot = s
        .siret
        .as_deref()
        .filter(|s| s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(NO_PIVOT)
        .to_owned();
    let (presentation_resume, presentation_detail) = presentation(&s.mission);
    let mut dispositifs = vec!["Aidants Connect"];
    if s.france_services {
        dispositifs.push("France Services");
    }
    Ok(Lieu {
        id: s.id.to_string(),
        pivot,
        nom: s.name.trim().to_owned(),
        commune: commune.name.clone(),
        code_postal,
        code_insee: Some(s.commune_code.clone()),
        adresse,
        complement_adresse: None,
        latitude: None,
        longitude: None,
        typologie: typologie(&s.kind).map(str::to_owned),
        telephone: None,
        courriels: None,
        site_web: None,
        horaires: horaires(&s.opening_hours),
        presentation_resume,
        presentation_detail,
        source: Some(SOURCE.to_owned()),
        itinerance: None,
        structure_parente: None,
        date_maj: foundation::paris::local(s.created_at).date(),
        services: Some(SERVICE.to_owned()),
        publics_specifiquement_adresses: None,
        prise_en_charge_specifique: None,
        frais_a_charge: None,
        dispositif_programmes_nationaux: Some(dispositifs.join("|")),
        formations_labels: None,
        autres_formations_labels: None,
        modalites_acces: None,
        modalites_accompagnement: Some("Accompagnement individuel".to_owned()),
        fiche_acces_libre: None,
        prise_rdv: None,
    })
}

fn is_postal_code(p: &str) -> bool {
    p.len() == 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Our structure types in the data·inclusion typology the schema points to; types it has no
/// single code for (a "lieu de médiation numérique" may be a library or a tiers-lieu, an
/// "organisme social" a CAF, CPAM or MSA) stay empty rather than guessed.
pub fn typologie(kind: &str) -> Option<&'static str> {
    match kind {
        "mairie" => Some("MUNI"),
        "ccas" => Some("CCAS"),
        "intercommunalite" => Some("EPCI"),
        // `departement` is what operators typed before the request form's list existed.
        "conseil_departemental" | "departement" => Some("DEPT"),
        "france_services" => Some("RFS"),
        "association" => Some("ASSO"),
        _ => None,
    }
}

/// The opening hours when they are written in OpenStreetMap's syntax, as the schema asks; the
/// request form takes free text ("Lundi-vendredi 9h-17h"), which is left out rather than
/// published in a format the schema's readers cannot parse.
pub fn horaires(opening_hours: &str) -> Option<String> {
    let h = opening_hours.trim();
    (!h.is_empty() && opening_hours_syntax::parse(h).is_ok()).then(|| h.to_owned())
}

/// The missions as summary (at most 280 characters) and, when longer, in full.
pub fn presentation(mission: &str) -> (Option<String>, Option<String>) {
    let m = mission.trim();
    if m.is_empty() {
        return (None, None);
    }
    if m.chars().count() <= RESUME_MAX {
        return (Some(m.to_owned()), None);
    }
    // Cut at the last space that leaves room for the ellipsis.
    let head: String = m.chars().take(RESUME_MAX - 1).collect();
    let cut = head
        .rfind(char::is_whitespace)
        .filter(|&i| i > 0)
        .map_or(head.as_str(), |i| &head[..i]);
    let resume = format!("{}…", cut.trim_end());
    (Some(resume), Some(m.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn row() -> StructureRow {
        StructureRow {
            id: StructureId::from_uuid(Uuid::nil()),
            name: " Mairie de Pessac ".into(),
            kind: "mairie".into(),
            siret: Some("13002526500013".into()),
            address: "Place de la Ve République\n\n  Bâtiment B ".into(),
            commune_code: "33318".into(),
            postal_code: None,
            france_services: false,
            mission: String::new(),
            opening_hours: String::new(),
            created_at: time::macros::datetime!(2026-03-29 22:30 UTC),
        }
    }

    fn pessac() -> CommuneRef {
        CommuneRef {
            code: "33318".into(),
            name: "Pessac".into(),
            postal_codes: vec!["33600".into()],
        }
    }

    #[test]
    fn a_structure_becomes_a_place_of_the_schema() {
        let l = lieu(&row(), Some(&pessac())).expect("lieu");
        assert_eq!(l.pivot, "13002526500013");
        assert_eq!(l.nom, "Mairie de Pessac");
        assert_eq!(
            (l.commune.as_str(), l.code_postal.as_str()),
            ("Pessac", "33600")
        );
        assert_eq!(l.adresse, "Place de la Ve République, Bâtiment B");
        assert_eq!(l.typologie.as_deref(), Some("MUNI"));
        assert_eq!(l.services.as_deref(), Some(SERVICE));
        assert_eq!(
            l.dispositif_programmes_nationaux.as_deref(),
            Some("Aidants Connect")
        );
        // 00:30 in Paris (summer time began that night).
        assert_eq!(l.date_maj, time::macros::date!(2026 - 03 - 30));
        assert_eq!((l.horaires, l.presentation_resume), (None, None));
    }

    #[test]
    fn what_the_structure_lacks_is_said_or_the_place_left_out() {
        let mut s = row();
        s.siret = None;
        s.france_services = true;
        s.kind = "organisme_social".into();
        s.postal_code = Some("33601".into());
        let l = lieu(&s, Some(&pessac())).expect("lieu");
        assert_eq!(l.pivot, NO_PIVOT);
        assert_eq!(l.code_postal, "33601");
        assert_eq!(l.typologie, None);
        assert_eq!(
            l.dispositif_programmes_nationaux.as_deref(),
            Some("Aidants Connect|France Services")
        );
        assert_eq!(lieu(&s, None), Err(LeftOut::UnknownCommune));
        s.address = " \n ".into();
        assert_eq!(lieu(&s, Some(&pessac())), Err(LeftOut::NoAddress));
    }

    #[test]
    fn only_osm_opening_hours_are_published() {
        assert_eq!(
            horaires(" Mo-Fr 09:00-12:00,14:00-17:30; Sa 09:00-12:00 ").as_deref(),
            Some("Mo-Fr 09:00-12:00,14:00-17:30; Sa 09:00-12:00")
        );
        assert_eq!(horaires("Lundi-vendredi 9h-17h"), None);
        assert_eq!(horaires(""), None);
    }

    #[test]
    fn long_missions_are_summarised_within_280_characters() {
        let short = "Accueil et accompagnement.";
        assert_eq!(presentation(short), (Some(short.into()), None));
        let long = "Accompagnement des habitants dans leurs démarches. ".repeat(10);
        let (resume, detail) = presentation(&long);
        let resume = resume.expect("résumé");
        assert!(resume.chars().count() <= 280, "{resume}");
        assert!(
            resume.ends_with("démarches.…") || resume.ends_with('…'),
            "{resume}"
        );
        assert_eq!(detail.as_deref(), Some(long.trim()));
        let word = "é".repeat(400);
        let (resume, _) = presentation(&word);
        assert_eq!(resume.expect("résumé").chars().count(), 280);
    }
}
