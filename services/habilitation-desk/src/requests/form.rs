//! The request form's steps as typed by the issuer, and their validation: every error is a
//! French sentence attached to its field, and what was typed is kept to be shown again. A step
//! is saved only when all its fields are valid, so nothing half-written reaches the draft.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{RequestError, siret};
use crate::accounts::normalize_email;

/// Field name → what is wrong with it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(pub BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
    /// In the order of the form, for the summary at the top of the page.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        self.0.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// Structure types (fixed list): code, label.
pub const STRUCTURE_KINDS: &[(&str, &str)] = &[
    ("mairie", "Mairie"),
    ("ccas", "CCAS ou CIAS"),
    ("intercommunalite", "Intercommunalité"),
    (
        "conseil_departemental",
        "Conseil départemental (services sociaux)",
    ),
    ("france_services", "Espace France Services"),
    ("association", "Association"),
    (
        "mediation_numerique",
        "Lieu de médiation numérique (tiers-lieu, médiathèque…)",
    ),
    (
        "organisme_social",
        "Organisme de protection sociale (CAF, CPAM, MSA…)",
    ),
    ("autre_administration", "Autre administration publique"),
];

pub fn kind_label(code: &str) -> &'static str {
    STRUCTURE_KINDS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("autre", |(_, l)| l)
}

/// Employment statuses offered for an aidant: the three professional ones, and those the
/// dispositif refuses (listed so that the refusal can say why).
pub const EMPLOYMENTS: &[(&str, &str)] = &[
    ("public_agent", "Agent public (titulaire ou contractuel)"),
    ("employee", "Salarié de droit privé"),
    (
        "conseiller_numerique",
        "Conseiller numérique (poste financé par l'État)",
    ),
    ("volunteer", "Bénévole"),
    ("civic_service", "Volontaire en service civique"),
    ("intern", "Stagiaire ou apprenti en formation"),
    ("elected", "Élu"),
];

pub fn employment_label(code: &str) -> &'static str {
    EMPLOYMENTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("autre", |(_, l)| l)
}

/// Why a status cannot be habilitated (product.md §4.1: professionals only).
fn refused_employment(code: &str) -> Option<&'static str> {
    Some(match code {
        "volunteer" => {
            "Les bénévoles ne peuvent pas être habilités : seuls des professionnels, salariés ou agents de la structure, peuvent agir pour le compte d'une personne."
        }
        "civic_service" => {
            "Les volontaires en service civique ne peuvent pas être habilités : seuls des professionnels salariés ou agents peuvent l'être."
        }
        "intern" => {
            "Les stagiaires et apprentis en formation ne peuvent pas être habilités : seuls des professionnels en poste peuvent l'être."
        }
        "elected" => {
            "Les élus ne peuvent pas être habilités : la personne aidée doit pouvoir compter sur un professionnel sans mandat électif."
        }
        _ => return None,
    })
}

/// Words of a profession that name a refused status, whatever the select says.
fn refused_profession(profession: &str) -> Option<&'static str> {
    let folded: String = profession
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    let words: Vec<&str> = folded.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    let phrase = |p: &str| format!(" {} ", words.join(" ")).contains(&format!(" {p} "));
    if has("benevole") || has("benevoles") {
        refused_employment("volunteer")
    } else if phrase("service civique") {
        refused_employment("civic_service")
    } else if has("stagiaire") || has("stagiaires") {
        refused_employment("intern")
    } else if has("elu")
        || has("elue")
        || phrase("adjoint au maire")
        || phrase("conseiller municipal")
        || phrase("conseillere municipale")
        || has("maire")
    {
        refused_employment("elected")
    } else {
        None
    }
}

fn text(
    errors: &mut FieldErrors,
    field: &'static str,
    value: &str,
    label: &str,
    max: usize,
) -> String {
    let v = value.trim().to_owned();
    if v.is_empty() {
        errors.add(field, format!("Indiquez {label}."));
    } else if v.chars().count() > max {
        errors.add(
            field,
            format!("Ce champ dépasse {max} caractères ; raccourcissez-le."),
        );
    } else if v.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
        errors.add(field, "Ce champ contient des caractères non admis.");
    }
    v
}

fn email(errors: &mut FieldErrors, field: &'static str, value: &str) -> String {
    match normalize_email(value) {
        Ok(e) => e,
        Err(_) if value.trim().is_empty() => {
            errors.add(field, "Indiquez une adresse e-mail.");
            String::new()
        }
        Err(_) => {
            errors.add(
                field,
                "Cette adresse e-mail n'est pas valide : elle doit avoir la forme nom@domaine.fr.",
            );
            value.trim().to_owned()
        }
    }
}

fn checked(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("on" | "oui" | "true" | "1"))
}

/// Step 1: the structure, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StructureInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub siret: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub postal_code: String,
    #[serde(default)]
    pub commune_code: String,
    pub france_services: Option<String>,
    #[serde(default)]
    pub france_services_number: String,
    #[serde(default)]
    pub mission: String,
    #[serde(default)]
    pub opening_hours: String,
}

/// Step 1, valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureStep {
    pub name: String,
    pub kind: String,
    pub siret: String,
    pub address: String,
    pub postal_code: String,
    pub commune_code: String,
    pub france_services: bool,
    pub france_services_number: Option<String>,
    pub mission: String,
    pub opening_hours: String,
}

impl StructureInput {
    pub fn france_services_checked(&self) -> bool {
        checked(&self.france_services)
    }

    /// Checks what does not need the reference data; the commune is checked against it by the
    /// caller (`commune_known`).
    pub fn validate(&self) -> Result<StructureStep, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = text(&mut e, "name", &self.name, "le nom de la structure", 200);
        let kind = self.kind.trim().to_owned();
        if !STRUCTURE_KINDS.iter().any(|(c, _)| *c == kind) {
            e.add("kind", "Choisissez le type de structure dans la liste.");
        }
        let siret = match siret::parse(&self.siret) {
            Ok(s) => s,
            Err(err) => {
                e.add("siret", err.message());
                String::new()
            }
        };
        let address = text(
            &mut e,
            "address",
            &self.address,
            "l'adresse postale (numéro et voie)",
            300,
        );
        if address.lines().count() > 3 {
            e.add("address", "L'adresse tient en trois lignes au plus.");
        }
        let postal_code = self.postal_code.trim().to_owned();
        if !(postal_code.len() == 5 && postal_code.bytes().all(|b| b.is_ascii_digit())) {
            e.add(
                "postal_code",
                "Le code postal compte 5 chiffres (par exemple 33000).",
            );
        }
        let commune_code = self.commune_code.trim().to_ascii_uppercase();
        if foundation::tenancy::CommuneCode::parse(&commune_code).is_err() {
            e.add(
                "commune_code",
                "Le code INSEE de la commune compte 5 caractères (par exemple 33063 pour Bordeaux, 2A004 pour Ajaccio) ; ce n'est pas le code postal.",
            );
        }
        let france_services = self.france_services_checked();
        let number = self.france_services_number.trim().to_owned();
        let france_services_number = if france_services {
            if number.is_empty() {
                e.add(
                    "france_services_number",
                    "Indiquez le numéro de labellisation France Services de la structure.",
                );
            } else if number.chars().count() > 50
                || !number
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
            {
                e.add(
                    "france_services_number",
                    "Le numéro de labellisation ne contient que des lettres, des chiffres et des tirets.",
                );
            }
            Some(number)
        } else {
            None
        };
        let mission = text(
            &mut e,
            "mission",
            &self.mission,
            "les missions de la structure",
            2000,
        );
        let opening_hours = text(
            &mut e,
            "opening_hours",
            &self.opening_hours,
            "les horaires d'accueil du public",
            500,
        );
        if e.is_empty() {
            Ok(StructureStep {
                name,
                kind,
                siret,
                address,
                postal_code,
                commune_code,
                france_services,
                france_services_number,
                mission,
                opening_hours,
            })
        } else {
            Err(e)
        }
    }
}

/// Step 2: the référent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferentInput {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    pub is_aidant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferentStep {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub is_aidant: bool,
}

/// A French phone number, landline or mobile, in E.164 (+33…) or overseas.
pub fn normalise_french_phone(typed: &str) -> Option<String> {
    let digits: String = typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '\u{a0}'))
        .collect();
    let national = if let Some(rest) = digits.strip_prefix("+33") {
        format!("0{rest}")
    } else if let Some(rest) = digits.strip_prefix("0033") {
        format!("0{rest}")
    } else {
        digits
    };
    (national.len() == 10
        && national.starts_with('0')
        && !national.starts_with("00")
        && national.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("+33{}", &national[1..]))
}

impl ReferentInput {
    pub fn is_aidant_checked(&self) -> bool {
        checked(&self.is_aidant)
    }

    pub fn validate(&self) -> Result<ReferentStep, FieldErrors> {
        let mut e = FieldErrors::default();
        let first_name = text(&mut e, "first_name", &self.first_name, "le prénom", 100);
        let last_name = text(&mut e, "last_name", &self.last_name, "le nom", 100);
        let email = email(&mut e, "email", &self.email);
        let phone = match normalise_french_phone(&self.phone) {
            Some(p) => p,
            None => {
                e.add(
                    "phone",
                    "Indiquez un numéro de téléphone français à 10 chiffres (par exemple 05 56 00 00 00).",
                );
                String::new()
            }
        };
        if e.is_empty() {
            Ok(ReferentStep {
                first_name,
                last_name,
                email,
                phone,
                is_aidant: self.is_aidant_checked(),
            })
        } else {
            Err(e)
        }
    }
}

/// Step 3: one aidant to habilitate.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AidantInput {
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub profession: String,
    #[serde(default)]
    pub employment: String,
    #[serde(default)]
    pub employer: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AidantStep {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub profession: String,
    pub employment: String,
    pub employer: String,
}

/// Aidants one request may list.
pub const MAX_AIDANTS: usize = 50;

impl AidantInput {
    pub fn validate(&self) -> Result<AidantStep, FieldErrors> {
        let mut e = FieldErrors::default();
        let first_name = text(&mut e, "first_name", &self.first_name, "le prénom", 100);
        let last_name = text(&mut e, "last_name", &self.last_name, "le nom", 100);
        let email = email(&mut e, "email", &self.email);
        let profession = text(
            &mut e,
            "profession",
            &self.profession,
            "la profession (intitulé du poste)",
            150,
        );
        let employment = self.employment.trim().to_owned();
        if let Some(reason) = refused_employment(&employment) {
            e.add("employment", reason);
        } else if !EMPLOYMENTS.iter().any(|(c, _)| *c == employment) {
            e.add(
                "employment",
                "Choisissez le statut de la personne dans la liste.",
            );
        }
        if let Some(reason) = refused_profession(&profession) {
            e.add("profession", reason);
        }
        let employer = text(
            &mut e,
            "employer",
            &self.employer,
            "l'employeur de la personne",
            200,
        );
        if e.is_empty() {
            Ok(AidantStep {
                first_name,
                last_name,
                email,
                profession,
                employment,
                employer,
            })
        } else {
            Err(e)
        }
    }
}

/// The commitments (product.md §4.1), each with the version of its text. A new version of a
/// text must be accepted again before submission.
pub struct Commitment {
    pub code: &'static str,
    pub version: &'static str,
    pub text: &'static str,
}

pub const COMMITMENTS: &[Commitment] = &[
    Commitment {
        code: "terms_of_use",
        version: "2026-11",
        text: "La structure a pris connaissance des conditions générales d'utilisation d'Aidants Connect et s'engage à les respecter.",
    },
    Commitment {
        code: "dpo_informed",
        version: "2026-11",
        text: "Le délégué à la protection des données (DPO) de la structure est informé de l'utilisation d'Aidants Connect et des données traitées.",
    },
    Commitment {
        code: "training_financed",
        version: "2026-11",
        text: "La structure finance ou organise la formation de ses aidants et leur laisse le temps de la suivre.",
    },
    Commitment {
        code: "professionals_only",
        version: "2026-11",
        text: "Seuls des professionnels salariés ou agents de la structure seront habilités : ni bénévoles, ni volontaires en service civique, ni stagiaires.",
    },
    Commitment {
        code: "no_elected_official",
        version: "2026-11",
        text: "Aucun élu ne sera habilité à utiliser Aidants Connect.",
    },
];

/// A message body: trimmed, 1 to 5,000 characters.
pub fn message_body(field: &'static str, typed: &str) -> Result<String, RequestError> {
    let body = typed.trim().replace("\r\n", "\n");
    if body.is_empty() {
        return Err(RequestError::field(
            field,
            match field {
                "changes" => "Indiquez ce qui est à modifier avant d'envoyer la demande.",
                "reason" => "Indiquez le motif du refus : il est envoyé au demandeur.",
                _ => "Écrivez votre message avant de l'envoyer.",
            },
        ));
    }
    if body.chars().count() > 5000 {
        return Err(RequestError::field(
            field,
            "Le message dépasse 5 000 caractères ; raccourcissez-le.",
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aidant(employment: &str, profession: &str) -> AidantInput {
        AidantInput {
            first_name: "Camille".into(),
            last_name: "Durand".into(),
            email: "camille@mairie.fr".into(),
            profession: profession.into(),
            employment: employment.into(),
            employer: "Mairie de Pessac".into(),
        }
    }

    #[test]
    fn only_professionals_may_be_listed() {
        assert!(aidant("public_agent", "Agent d'accueil").validate().is_ok());
        assert!(
            aidant("employee", "Travailleuse sociale")
                .validate()
                .is_ok()
        );
        assert!(
            aidant("conseiller_numerique", "Conseiller numérique")
                .validate()
                .is_ok()
        );
        for (status, word) in [
            ("volunteer", "bénévoles"),
            ("civic_service", "service civique"),
            ("intern", "stagiaires"),
            ("elected", "élus"),
        ] {
            let e = aidant(status, "Accueil").validate().expect_err(status);
            assert!(
                e.get("employment")
                    .is_some_and(|m| m.to_lowercase().contains(word)),
                "{status}: {e:?}"
            );
        }
        // The profession typed gives it away too.
        for profession in [
            "Bénévole accueil",
            "Volontaire Service Civique",
            "Stagiaire",
            "Adjointe au maire",
            "élue",
        ] {
            let e = aidant("employee", profession)
                .validate()
                .expect_err(profession);
            assert!(e.get("profession").is_some(), "{profession}");
        }
        // Words that merely contain those letters are fine.
        assert!(
            aidant("employee", "Médiatrice numérique")
                .validate()
                .is_ok()
        );
        assert!(
            aidant("employee", "Responsable élévation")
                .validate()
                .is_ok()
        );
        // Something else than the list.
        assert!(aidant("pirate", "Accueil").validate().is_err());
    }

    #[test]
    fn a_structure_step_reports_each_field_and_keeps_nothing_half() {
        let e = StructureInput {
            siret: "123".into(),
            commune_code: "33000".into(),
            france_services: Some("on".into()),
            ..Default::default()
        }
        .validate()
        .expect_err("vide");
        for field in [
            "name",
            "kind",
            "siret",
            "address",
            "postal_code",
            "france_services_number",
            "mission",
            "opening_hours",
        ] {
            assert!(e.get(field).is_some(), "{field}: {e:?}");
        }
        let ok = StructureInput {
            name: "Mairie de Pessac".into(),
            kind: "mairie".into(),
            siret: "130 025 265 00013".into(),
            address: "Place de la Cinquième République".into(),
            postal_code: "33600".into(),
            commune_code: "33318".into(),
            france_services: None,
            france_services_number: "ignoré".into(),
            mission: "Accueil".into(),
            opening_hours: "Lundi-vendredi 9h-17h".into(),
        }
        .validate()
        .expect("valide");
        assert_eq!(ok.siret, "13002526500013");
        assert_eq!(ok.france_services_number, None);
    }

    #[test]
    fn phones_are_french_numbers() {
        assert_eq!(
            normalise_french_phone("05 56 00 00 00").as_deref(),
            Some("+33556000000")
        );
        assert_eq!(
            normalise_french_phone("+33 6 12 34 56 78").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(normalise_french_phone("0612"), None);
        assert_eq!(normalise_french_phone("abcdefghij"), None);
    }
}
