//! The explanation of a mandate a person can understand: in FALC French (« facile à lire et à
//! comprendre ») and in English, Arabic (right to left), Spanish, Portuguese, Turkish and
//! Romanian. Each language is a file of `key = sentence` lines under `explanations/`, compiled
//! in; every language has exactly the keys of the French one, with the same placeholders (a
//! unit test checks it). The aidant chooses the person's language on the recap (or when
//! preparing a remote consent); the person's pages show it beside nothing else, the attestation
//! carries it beside French, and [`read_aloud`] turns it into speech with espeak-ng.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A language of the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// BCP 47 code, also the value of the forms' `langue` field.
    pub code: &'static str,
    /// Its name in French, for the aidant.
    pub name_fr: &'static str,
    /// Its name in itself, for the person.
    pub own_name: &'static str,
    /// Right to left.
    pub rtl: bool,
    /// The espeak-ng voice that reads it.
    pub voice: &'static str,
    source: &'static str,
}

/// Every language, French first.
pub const LANGUAGES: &[Language] = &[
    Language {
        code: "fr",
        name_fr: "Français facile à lire et à comprendre",
        own_name: "Français facile",
        rtl: false,
        voice: "fr",
        source: include_str!("../explanations/fr.txt"),
    },
    Language {
        code: "en",
        name_fr: "Anglais",
        own_name: "English",
        rtl: false,
        voice: "en",
        source: include_str!("../explanations/en.txt"),
    },
    Language {
        code: "ar",
        name_fr: "Arabe",
        own_name: "العربية",
        rtl: true,
        voice: "ar",
        source: include_str!("../explanations/ar.txt"),
    },
    Language {
        code: "es",
        name_fr: "Espagnol",
        own_name: "Español",
        rtl: false,
        voice: "es",
        source: include_str!("../explanations/es.txt"),
    },
    Language {
        code: "pt",
        name_fr: "Portugais",
        own_name: "Português",
        rtl: false,
        voice: "pt",
        source: include_str!("../explanations/pt.txt"),
    },
    Language {
        code: "tr",
        name_fr: "Turc",
        own_name: "Türkçe",
        rtl: false,
        voice: "tr",
        source: include_str!("../explanations/tr.txt"),
    },
    Language {
        code: "ro",
        name_fr: "Roumain",
        own_name: "Română",
        rtl: false,
        voice: "ro",
        source: include_str!("../explanations/ro.txt"),
    },
];

/// The keys in the order the explanation reads.
pub const KEYS: &[&str] = &[
    "title", "who", "what", "until", "only", "stop", "traced", "truth", "data", "choice",
];

/// A language by its code; an unknown code is French.
pub fn language(code: &str) -> &'static Language {
    LANGUAGES
        .iter()
        .find(|l| l.code == code)
        .unwrap_or(&LANGUAGES[0])
}

/// Whether `code` is one of [`LANGUAGES`].
pub fn known(code: &str) -> bool {
    LANGUAGES.iter().any(|l| l.code == code)
}

fn parse(source: &str) -> BTreeMap<&str, &str> {
    source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

fn texts() -> &'static BTreeMap<&'static str, BTreeMap<&'static str, &'static str>> {
    static TEXTS: OnceLock<BTreeMap<&'static str, BTreeMap<&'static str, &'static str>>> =
        OnceLock::new();
    TEXTS.get_or_init(|| {
        LANGUAGES
            .iter()
            .map(|l| (l.code, parse(l.source)))
            .collect()
    })
}

/// The explanation of one mandate, in one language.
#[derive(Debug, Clone)]
pub struct Explained {
    pub language: &'static Language,
    pub title: String,
    /// The sentences before the démarches.
    pub before: Vec<String>,
    /// The démarches (their French labels).
    pub demarches: Vec<String>,
    /// The sentences after them.
    pub after: Vec<String>,
}

impl Explained {
    /// The whole text, as it is read aloud.
    pub fn text(&self) -> String {
        let mut parts = vec![self.title.clone()];
        parts.extend(self.before.iter().cloned());
        parts.extend(self.demarches.iter().map(|d| format!("{d}.")));
        parts.extend(self.after.iter().cloned());
        parts.join("\n")
    }
}

/// The explanation in `language` for a mandate of `structure`, for `demarches`, ending on
/// `ends` (a date as pages show it).
pub fn explain(language: &str, structure: &str, demarches: &[&str], ends: &str) -> Explained {
    let language = self::language(language);
    let texts = &texts()[language.code];
    let fill = |key: &str| {
        texts
            .get(key)
            .copied()
            .unwrap_or_default()
            .replace("{structure}", structure)
            .replace("{date}", ends)
    };
    Explained {
        language,
        title: fill("title"),
        before: vec![fill("who"), fill("what")],
        demarches: demarches.iter().map(|d| (*d).to_owned()).collect(),
        after: ["until", "only", "stop", "traced", "truth", "data", "choice"]
            .iter()
            .map(|k| fill(k))
            .collect(),
    }
}

/// Why the read-out could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("la synthèse vocale (espeak-ng) n'a pas pu être lancée : {0}")]
    Spawn(#[from] std::io::Error),
    #[error("la synthèse vocale (espeak-ng) a échoué")]
    Failed,
}

/// The explanation read aloud by espeak-ng in its language's voice: a WAV file.
pub async fn read_aloud(explained: &Explained) -> Result<Vec<u8>, SpeechError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("espeak-ng")
        .args(["-v", explained.language.voice, "-s", "140", "--stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(explained.text().as_bytes()).await?;
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| SpeechError::Failed)??;
    if !out.status.success() || !out.stdout.starts_with(b"RIFF") {
        return Err(SpeechError::Failed);
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(s: &str) -> Vec<&str> {
        let mut found: Vec<&str> = ["{structure}", "{date}"]
            .into_iter()
            .filter(|p| s.contains(p))
            .collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn every_language_has_every_key_with_the_same_placeholders_and_nothing_more() {
        let french = parse(LANGUAGES[0].source);
        let keys: Vec<&str> = french.keys().copied().collect();
        let mut expected: Vec<&str> = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert!(LANGUAGES.len() >= 7);
        for language in LANGUAGES {
            let texts = parse(language.source);
            let theirs: Vec<&str> = texts.keys().copied().collect();
            assert_eq!(theirs, keys, "{} : clés différentes", language.code);
            for key in KEYS {
                let text = texts[key];
                assert!(!text.is_empty(), "{} : « {key} » vide", language.code);
                assert_eq!(
                    placeholders(text),
                    placeholders(french[key]),
                    "{} : « {key} » n'a pas les mêmes variables",
                    language.code
                );
                if language.code != "fr" {
                    assert_ne!(
                        text, french[key],
                        "{} : « {key} » non traduit",
                        language.code
                    );
                }
            }
        }
    }

    #[test]
    fn the_explanation_names_the_structure_and_the_end_in_each_language() {
        for language in LANGUAGES {
            let e = explain(language.code, "CCAS de Bègles", &["Logement"], "24/11/2027");
            let text = e.text();
            assert!(text.contains("CCAS de Bègles"), "{}", language.code);
            assert!(text.contains("24/11/2027"), "{}", language.code);
            assert!(text.contains("Logement"), "{}", language.code);
            assert!(!text.contains('{'), "{}", language.code);
        }
        assert_eq!(language("xx").code, "fr");
        assert!(language("ar").rtl);
    }
}
