//! SIRET numbers (INSEE): 14 digits, SIREN (9) then the establishment's number (5), checked by
//! the Luhn key — except La Poste's establishments (SIREN 356 000 000), too many for the key,
//! whose digits must add up to a multiple of 5.

/// La Poste's SIREN, whose establishments follow their own rule.
pub const LA_POSTE_SIREN: &str = "356000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiretError {
    Empty,
    NotDigits,
    Length(usize),
    Key,
}

impl SiretError {
    /// The message shown on the field.
    pub fn message(&self) -> String {
        match self {
            SiretError::Empty => "Indiquez le numéro SIRET de la structure (14 chiffres).".into(),
            SiretError::NotDigits => {
                "Le numéro SIRET ne contient que des chiffres (14 chiffres, espaces permis).".into()
            }
            SiretError::Length(n) => format!(
                "Le numéro SIRET compte 14 chiffres ; vous en avez saisi {n}. Vérifiez-le sur l'avis de situation SIRENE."
            ),
            SiretError::Key => "Ce numéro SIRET n'est pas valide (clé de contrôle incorrecte). Vérifiez chaque chiffre.".into(),
        }
    }
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Parses a typed SIRET (spaces and non-breaking spaces allowed between groups) and checks its
/// key. Returns the 14 digits.
pub fn parse(input: &str) -> Result<String, SiretError> {
    let compact: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}' && *c != '\u{202f}')
        .collect();
    if compact.is_empty() {
        return Err(SiretError::Empty);
    }
    if !compact.chars().all(|c| c.is_ascii_digit()) {
        return Err(SiretError::NotDigits);
    }
    if compact.len() != 14 {
        return Err(SiretError::Length(compact.len()));
    }
    let digits: Vec<u32> = compact.chars().filter_map(|c| c.to_digit(10)).collect();
    let valid = if compact.starts_with(LA_POSTE_SIREN) {
        // The head office (…00048) keeps a Luhn key; the other establishments sum to 5k.
        luhn(&digits) || digits.iter().sum::<u32>().is_multiple_of(5)
    } else {
        luhn(&digits)
    };
    if valid {
        Ok(compact)
    } else {
        Err(SiretError::Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siret_table() {
        let cases: &[(&str, Result<&str, SiretError>)] = &[
            // Valid Luhn keys (the state's digital directorate, a town hall's pattern).
            ("13002526500013", Ok("13002526500013")),
            ("130 025 265 00013", Ok("13002526500013")),
            ("\u{a0}13002526500013 ", Ok("13002526500013")),
            ("73282932000074", Ok("73282932000074")),
            // One digit changed: the key no longer holds.
            ("13002526500014", Err(SiretError::Key)),
            ("73282932000075", Err(SiretError::Key)),
            // La Poste: digits adding up to a multiple of 5, whatever Luhn says…
            ("35600000000001", Ok("35600000000001")),
            ("35600000049837", Ok("35600000049837")),
            // …and its head office, with a Luhn key.
            ("35600000000048", Ok("35600000000048")),
            // La Poste with neither rule.
            ("35600000000002", Err(SiretError::Key)),
            // Letters, lengths.
            ("1300252650001A", Err(SiretError::NotDigits)),
            ("ABCDEFGHIJKLMN", Err(SiretError::NotDigits)),
            ("1300-2526-5000-13", Err(SiretError::NotDigits)),
            ("1300252650001", Err(SiretError::Length(13))),
            ("130025265000130", Err(SiretError::Length(15))),
            ("", Err(SiretError::Empty)),
            ("   ", Err(SiretError::Empty)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).as_deref(), expected.as_deref(), "{input:?}");
        }
        // A Luhn-valid number that is not La Poste's and does not sum to 5k stays valid; a
        // La Poste number that is Luhn-invalid but sums to 5k too.
        assert!(luhn(&[1, 3, 0, 0, 2, 5, 2, 6, 5, 0, 0, 0, 1, 3]));
    }
}
