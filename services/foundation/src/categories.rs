//! The fixed list of démarche categories (product.md §6): our code, the label people read, and
//! the value FranceConnect uses in `rep_scope`.

/// One démarche category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category {
    pub code: &'static str,
    pub label: &'static str,
    pub fc_label: &'static str,
}

pub const ALL: [Category; 10] = [
    Category {
        code: "papiers",
        label: "Papiers - Citoyenneté - Élections",
        fc_label: "Papier-Citoyenneté-Elections",
    },
    Category {
        code: "famille",
        label: "Famille - Scolarité",
        fc_label: "Famille-Scolarité",
    },
    Category {
        code: "social",
        label: "Social - Santé",
        fc_label: "Social-Santé",
    },
    Category {
        code: "travail",
        label: "Travail - Formation",
        fc_label: "Travail-Formation",
    },
    Category {
        code: "logement",
        label: "Logement",
        fc_label: "Logement",
    },
    Category {
        code: "transports",
        label: "Transports - Mobilité",
        fc_label: "Transports-Mobilité",
    },
    Category {
        code: "argent",
        label: "Argent - Impôts - Consommation",
        fc_label: "Argent-Impots-Consommation",
    },
    Category {
        code: "justice",
        label: "Justice",
        fc_label: "Justice",
    },
    Category {
        code: "etranger",
        label: "Étranger - Europe",
        fc_label: "Etranger-Europe",
    },
    Category {
        code: "loisirs",
        label: "Loisirs - Sport - Culture",
        fc_label: "Loisirs-Sport-Culture",
    },
];

/// The category with this code.
pub fn by_code(code: &str) -> Option<Category> {
    ALL.iter().copied().find(|c| c.code == code)
}

/// The category named by FranceConnect's label or by our code (both are accepted in
/// `rep_scope`).
pub fn by_fc_label_or_code(value: &str) -> Option<Category> {
    ALL.iter()
        .copied()
        .find(|c| c.fc_label == value || c.code == value)
}

/// The label of a code, or the code itself if unknown (old data).
pub fn label(code: &str) -> &str {
    by_code(code).map(|c| c.label).unwrap_or(code)
}

/// The durations a mandate may have, in days, with their French wording.
pub const DURATIONS: [(i32, &str); 4] = [
    (1, "1 jour"),
    (31, "31 jours (un mois)"),
    (182, "182 jours (six mois)"),
    (365, "365 jours (un an)"),
];

pub fn duration_label(days: i32) -> &'static str {
    DURATIONS
        .iter()
        .find(|(d, _)| *d == days)
        .map(|(_, l)| *l)
        .unwrap_or("durée inconnue")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_name_the_same_category() {
        for c in ALL {
            assert_eq!(by_fc_label_or_code(c.fc_label), Some(c));
            assert_eq!(by_fc_label_or_code(c.code), Some(c));
        }
        assert_eq!(by_fc_label_or_code("Famille - Scolarité"), None);
        assert_eq!(by_code("Famille-Scolarité"), None);
    }
}
