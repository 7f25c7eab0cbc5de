//! Reference data: the 18 régions and 101 départements with their INSEE codes, and the
//! parsed code types built on them (parse, don't validate).

use std::fmt;

/// One of the 18 régions (INSEE code, name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub code: &'static str,
    pub name: &'static str,
}

/// One of the 101 départements (INSEE code, name, région code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Departement {
    pub code: &'static str,
    pub name: &'static str,
    pub region_code: &'static str,
}

pub const REGIONS: [Region; 18] = [
    Region {
        code: "01",
        name: "Guadeloupe",
    },
    Region {
        code: "02",
        name: "Martinique",
    },
    Region {
        code: "03",
        name: "Guyane",
    },
    Region {
        code: "04",
        name: "La Réunion",
    },
    Region {
        code: "06",
        name: "Mayotte",
    },
    Region {
        code: "11",
        name: "Île-de-France",
    },
    Region {
        code: "24",
        name: "Centre-Val de Loire",
    },
    Region {
        code: "27",
        name: "Bourgogne-Franche-Comté",
    },
    Region {
        code: "28",
        name: "Normandie",
    },
    Region {
        code: "32",
        name: "Hauts-de-France",
    },
    Region {
        code: "44",
        name: "Grand Est",
    },
    Region {
        code: "52",
        name: "Pays de la Loire",
    },
    Region {
        code: "53",
        name: "Bretagne",
    },
    Region {
        code: "75",
        name: "Nouvelle-Aquitaine",
    },
    Region {
        code: "76",
        name: "Occitanie",
    },
    Region {
        code: "84",
        name: "Auvergne-Rhône-Alpes",
    },
    Region {
        code: "93",
        name: "Provence-Alpes-Côte d'Azur",
    },
    Region {
        code: "94",
        name: "Corse",
    },
];

macro_rules! departements {
    ($(($code:literal, $name:literal, $region:literal)),* $(,)?) => {
        pub const DEPARTEMENTS: [Departement; 101] = [
            $(Departement { code: $code, name: $name, region_code: $region }),*
        ];
    };
}

departements![
    ("01", "Ain", "84"),
    ("02", "Aisne", "32"),
    ("03", "Allier", "84"),
    ("04", "Alpes-de-Haute-Provence", "93"),
    ("05", "Hautes-Alpes", "93"),
    ("06", "Alpes-Maritimes", "93"),
    ("07", "Ardèche", "84"),
    ("08", "Ardennes", "44"),
    ("09", "Ariège", "76"),
    ("10", "Aube", "44"),
    ("11", "Aude", "76"),
    ("12", "Aveyron", "76"),
    ("13", "Bouches-du-Rhône", "93"),
    ("14", "Calvados", "28"),
    ("15", "Cantal", "84"),
    ("16", "Charente", "75"),
    ("17", "Charente-Maritime", "75"),
    ("18", "Cher", "24"),
    ("19", "Corrèze", "75"),
    ("2A", "Corse-du-Sud", "94"),
    ("2B", "Haute-Corse", "94"),
    ("21", "Côte-d'Or", "27"),
    ("22", "Côtes-d'Armor", "53"),
    ("23", "Creuse", "75"),
    ("24", "Dordogne", "75"),
    ("25", "Doubs", "27"),
    ("26", "Drôme", "84"),
    ("27", "Eure", "28"),
    ("28", "Eure-et-Loir", "24"),
    ("29", "Finistère", "53"),
    ("30", "Gard", "76"),
    ("31", "Haute-Garonne", "76"),
    ("32", "Gers", "76"),
    ("33", "Gironde", "75"),
    ("34", "Hérault", "76"),
    ("35", "Ille-et-Vilaine", "53"),
    ("36", "Indre", "24"),
    ("37", "Indre-et-Loire", "24"),
    ("38", "Isère", "84"),
    ("39", "Jura", "27"),
    ("40", "Landes", "75"),
    ("41", "Loir-et-Cher", "24"),
    ("42", "Loire", "84"),
    ("43", "Haute-Loire", "84"),
    ("44", "Loire-Atlantique", "52"),
    ("45", "Loiret", "24"),
    ("46", "Lot", "76"),
    ("47", "Lot-et-Garonne", "75"),
    ("48", "Lozère", "76"),
    ("49", "Maine-et-Loire", "52"),
    ("50", "Manche", "28"),
    ("51", "Marne", "44"),
    ("52", "Haute-Marne", "44"),
    ("53", "Mayenne", "52"),
    ("54", "Meurthe-et-Moselle", "44"),
    ("55", "Meuse", "44"),
    ("56", "Morbihan", "53"),
    ("57", "Moselle", "44"),
    ("58", "Nièvre", "27"),
    ("59", "Nord", "32"),
    ("60", "Oise", "32"),
    ("61", "Orne", "28"),
    ("62", "Pas-de-Calais", "32"),
    ("63", "Puy-de-Dôme", "84"),
    ("64", "Pyrénées-Atlantiques", "75"),
    ("65", "Hautes-Pyrénées", "76"),
    ("66", "Pyrénées-Orientales", "76"),
    ("67", "Bas-Rhin", "44"),
    ("68", "Haut-Rhin", "44"),
    ("69", "Rhône", "84"),
    ("70", "Haute-Saône", "27"),
    ("71", "Saône-et-Loire", "27"),
    ("72", "Sarthe", "52"),
    ("73", "Savoie", "84"),
    ("74", "Haute-Savoie", "84"),
    ("75", "Paris", "11"),
    ("76", "Seine-Maritime", "28"),
    ("77", "Seine-et-Marne", "11"),
    ("78", "Yvelines", "11"),
    ("79", "Deux-Sèvres", "75"),
    ("80", "Somme", "32"),
    ("81", "Tarn", "76"),
    ("82", "Tarn-et-Garonne", "76"),
    ("83", "Var", "93"),
    ("84", "Vaucluse", "93"),
    ("85", "Vendée", "52"),
    ("86", "Vienne", "75"),
    ("87", "Haute-Vienne", "75"),
    ("88", "Vosges", "44"),
    ("89", "Yonne", "27"),
    ("90", "Territoire de Belfort", "27"),
    ("91", "Essonne", "11"),
    ("92", "Hauts-de-Seine", "11"),
    ("93", "Seine-Saint-Denis", "11"),
    ("94", "Val-de-Marne", "11"),
    ("95", "Val-d'Oise", "11"),
    ("971", "Guadeloupe", "01"),
    ("972", "Martinique", "02"),
    ("973", "Guyane", "03"),
    ("974", "La Réunion", "04"),
    ("976", "Mayotte", "06"),
];

/// A département's INSEE code, known to exist. Only obtainable by parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DepartementCode(&'static Departement);

/// Why a territory code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error(
        "code de département inconnu « {0} » : codes INSEE attendus 01 à 19, 2A, 2B, 21 à 95, 971, 972, 973, 974 ou 976"
    )]
    UnknownDepartement(String),
    #[error(
        "code commune INSEE invalide « {0} » : 5 caractères attendus, par exemple 75056 ou 2A004"
    )]
    InvalidCommune(String),
}

impl DepartementCode {
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let wanted = input.trim().to_ascii_uppercase();
        DEPARTEMENTS
            .iter()
            .find(|d| d.code == wanted)
            .map(DepartementCode)
            .ok_or_else(|| CodeError::UnknownDepartement(input.trim().to_owned()))
    }

    pub fn all() -> impl Iterator<Item = DepartementCode> {
        DEPARTEMENTS.iter().map(DepartementCode)
    }

    pub fn as_str(&self) -> &'static str {
        self.0.code
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    pub fn region_code(&self) -> &'static str {
        self.0.region_code
    }

    /// The Postgres schema holding this territory's data: `dep_75`, `dep_2a`, `dep_971`.
    pub fn schema_name(&self) -> String {
        format!("dep_{}", self.0.code.to_ascii_lowercase())
    }
}

impl fmt::Display for DepartementCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code)
    }
}

/// A commune's INSEE code (5 characters), whose département exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommuneCode {
    code: String,
    departement: DepartementCode,
}

impl CommuneCode {
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        let code = input.trim().to_ascii_uppercase();
        let invalid = || CodeError::InvalidCommune(input.trim().to_owned());
        if code.len() != 5 || !code.is_ascii() {
            return Err(invalid());
        }
        // Overseas départements use three characters (971…976); Corsica uses 2A/2B.
        let prefix_len = if code.starts_with("97") { 3 } else { 2 };
        let (prefix, rest) = code.split_at(prefix_len);
        if !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let departement = DepartementCode::parse(prefix).map_err(|_| invalid())?;
        Ok(Self { code, departement })
    }

    pub fn as_str(&self) -> &str {
        &self.code
    }

    pub fn departement(&self) -> DepartementCode {
        self.departement
    }
}

impl fmt::Display for CommuneCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_data_has_the_official_counts() {
        assert_eq!(REGIONS.len(), 18);
        assert_eq!(DEPARTEMENTS.len(), 101);
        for d in &DEPARTEMENTS {
            assert!(
                REGIONS.iter().any(|r| r.code == d.region_code),
                "{}",
                d.code
            );
        }
        let mut codes: Vec<_> = DEPARTEMENTS.iter().map(|d| d.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 101);
        assert!(!codes.contains(&"20"), "Corsica is 2A/2B since 1976");
    }

    #[test]
    fn departement_codes_parse_case_insensitively() {
        assert_eq!(DepartementCode::parse("2a").map(|d| d.as_str()), Ok("2A"));
        assert_eq!(
            DepartementCode::parse(" 971 ").map(|d| d.schema_name()),
            Ok("dep_971".into())
        );
        assert!(DepartementCode::parse("20").is_err());
        assert!(DepartementCode::parse("975").is_err());
        assert!(DepartementCode::parse("96").is_err());
        assert!(DepartementCode::parse("").is_err());
    }

    #[test]
    fn commune_codes_know_their_departement() {
        let paris = CommuneCode::parse("75056").expect("Paris");
        assert_eq!(paris.departement().as_str(), "75");
        let ajaccio = CommuneCode::parse("2a004").expect("Ajaccio");
        assert_eq!(
            (ajaccio.as_str(), ajaccio.departement().as_str()),
            ("2A004", "2A")
        );
        let pointe_a_pitre = CommuneCode::parse("97120").expect("Pointe-à-Pitre");
        assert_eq!(pointe_a_pitre.departement().as_str(), "971");
        for bad in ["7505", "750561", "20004", "97512", "75A56", "ééééé"] {
            assert!(CommuneCode::parse(bad).is_err(), "{bad}");
        }
    }
}
