//! The attestations' layout (PDF): the mandate's, with its legal text version, terms, signature
//! boxes and a QR code to the public verification page; and the revocation's. Built with
//! pdf-writer and the standard Helvetica font in WinAnsi encoding (French accents included),
//! so no font file is embedded and the document stays small.

pub use foundation::pdf::shown_text;
#[cfg(test)]
use foundation::pdf::winansi;
use foundation::pdf::{BOLD, LEFT, Page, REGULAR, UnicodeFont, document, document_with, wrap};
use qrcode::EcLevel;

/// What a mandate attestation states.
#[derive(Debug, Clone)]
pub struct MandateTerms {
    pub mandate_id: String,
    pub legal_text_version: String,
    pub usager_name: String,
    pub usager_birth: String,
    pub structure_name: String,
    pub structure_place: String,
    pub aidant_name: String,
    pub categories: Vec<String>,
    pub duration: String,
    pub starts: String,
    pub ends: String,
    pub verification_url: String,
    /// The explanation given to the person, in their language, printed beside French.
    pub explanation: Option<Explanation>,
}

/// The explanation of the mandate in the language it was given in.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The language's name in French.
    pub language: String,
    pub title: String,
    pub paragraphs: Vec<String>,
}

/// What a revocation attestation states.
#[derive(Debug, Clone)]
pub struct RevocationTerms {
    pub mandate_id: String,
    pub usager_name: String,
    pub structure_name: String,
    pub revoked_by: String,
    pub categories: Vec<String>,
    pub whole_mandate: bool,
    pub at: String,
}

/// The legal text of the mandate, version [`crate::mandates::LEGAL_TEXT_VERSION`]. Written for
/// this platform; a change of wording needs a new version.
const LEGAL_TEXT: &[&str] = &[
    "Par le présent mandat, la personne accompagnée (le mandant) autorise la structure désignée ci-dessous (le mandataire), par l'intermédiaire de ses aidants habilités, à réaliser en son nom les démarches administratives en ligne des catégories listées, pendant la durée indiquée (articles 1984 et suivants du Code civil).",
    "La personne accompagnée reste responsable de l'exactitude des informations qu'elle communique. L'aidant agit uniquement pour les démarches listées, avec l'accord de la personne, et n'utilise pas ses informations à d'autres fins.",
    "La personne peut révoquer ce mandat à tout moment, en tout ou partie, auprès de la structure ou d'elle-même. Chaque utilisation du mandat est enregistrée dans un journal infalsifiable ; la personne peut demander à en connaître le contenu.",
    "Les données personnelles sont traitées pour l'exécution du mandat, conservées pendant sa durée puis archivées selon la durée légale, et ne sont jamais cédées. La personne dispose de droits d'accès, de rectification et d'opposition.",
];

/// The modules of a QR code (error correction M) for `url`. One fixed mask (checkerboard)
/// instead of trying the eight: scoring every mask was the costliest step of a whole mandate
/// creation, and any mask is a valid QR code that phones read.
fn qr_modules(url: &str) -> Option<(usize, Vec<qrcode::Color>)> {
    use qrcode::canvas::{Canvas, MaskPattern};
    let bits = qrcode::bits::encode_auto(url.as_bytes(), EcLevel::M).ok()?;
    let version = bits.version();
    let data = bits.into_bytes();
    let (encoded, ec) = qrcode::ec::construct_codewords(&data, version, EcLevel::M).ok()?;
    let mut canvas = Canvas::new(version, EcLevel::M);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&encoded, &ec);
    canvas.apply_mask(MaskPattern::Checkerboard);
    Some((version.width() as usize, canvas.into_colors()))
}

/// What attestations add to a plain page: labelled fields, signature boxes, a QR code.
trait AttestationPage {
    fn field(&mut self, label: &str, value: &str);
    fn signature_boxes(&mut self, labels: &[&str]);
    fn qr(&mut self, url: &str, x: f32, y: f32, size: f32);
}

impl AttestationPage for Page {
    fn field(&mut self, label: &str, value: &str) {
        self.y -= 14.0;
        self.text(BOLD, 10.0, LEFT, self.y, label);
        let mut first = true;
        for line in wrap(value, 70) {
            if !first {
                self.y -= 13.0;
            }
            self.text(REGULAR, 10.0, LEFT + 150.0, self.y, &line);
            first = false;
        }
    }

    fn signature_boxes(&mut self, labels: &[&str]) {
        self.y -= 24.0;
        let width = 240.0;
        for (i, label) in labels.iter().enumerate() {
            let x = LEFT + i as f32 * (width + 15.0);
            self.text(BOLD, 10.0, x, self.y, label);
            self.content.set_line_width(0.8);
            self.content.rect(x, self.y - 80.0, width, 70.0);
            self.content.stroke();
            self.text(REGULAR, 8.0, x + 4.0, self.y - 78.0, "Date et signature");
        }
        self.y -= 90.0;
    }

    fn qr(&mut self, url: &str, x: f32, y: f32, size: f32) {
        let Some((n, colors)) = qr_modules(url) else {
            return;
        };
        let quiet = 2.0;
        let module = size / (n as f32 + 2.0 * quiet);
        // Drawn in a grid of one unit per module (its origin the code's bottom left corner),
        // each row's runs of dark modules one rectangle: whole numbers only, about a tenth of
        // the bytes and of the time of a rectangle per module in page coordinates.
        self.content.save_state();
        self.content.transform([
            module,
            0.0,
            0.0,
            module,
            x + quiet * module,
            y + quiet * module,
        ]);
        for (row, modules) in colors.chunks(n).enumerate() {
            let bottom = (n - 1 - row) as f32;
            let mut col = 0;
            while col < n {
                if modules[col] != qrcode::Color::Dark {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < n && modules[col] == qrcode::Color::Dark {
                    col += 1;
                }
                self.content
                    .rect(start as f32, bottom, (col - start) as f32, 1.0);
            }
        }
        self.content.fill_nonzero();
        self.content.restore_state();
    }
}

/// The mandate attestation.
pub fn mandate_pdf(t: &MandateTerms) -> Vec<u8> {
    let mut page = Page::new();
    page.heading(
        "Mandat de représentation pour des démarches administratives",
        16.0,
    );
    page.paragraph(
        &format!(
            "Aidants Connect — mandat n° {} — texte juridique version {}",
            t.mandate_id, t.legal_text_version
        ),
        9.0,
    );
    page.heading("Les parties", 12.0);
    page.field("Personne accompagnée", &t.usager_name);
    page.field("Née ou né", &t.usager_birth);
    page.field("Structure mandataire", &t.structure_name);
    page.field("Adresse", &t.structure_place);
    page.field("Aidant habilité", &t.aidant_name);
    page.y -= 8.0;
    page.heading("Les démarches et la durée", 12.0);
    for c in &t.categories {
        page.y -= 13.0;
        page.text(REGULAR, 10.0, LEFT + 10.0, page.y, &format!("• {c}"));
    }
    page.field("Durée", &t.duration);
    page.field("Valable du", &format!("{} au {} inclus", t.starts, t.ends));
    page.y -= 8.0;
    page.heading("Engagements", 12.0);
    for p in LEGAL_TEXT {
        page.paragraph(p, 9.5);
    }
    page.signature_boxes(&[
        "Signature de la personne accompagnée",
        "Signature de l'aidant",
    ]);
    let qr_size = 90.0;
    page.qr(&t.verification_url, 595.0 - 50.0 - qr_size, 40.0, qr_size);
    page.text(
        REGULAR,
        8.0,
        LEFT,
        110.0,
        "Vérifier la validité de ce mandat (sans aucune donnée personnelle) :",
    );
    for (i, line) in wrap(&t.verification_url, 80).iter().enumerate() {
        page.text(REGULAR, 8.0, LEFT, 98.0 - i as f32 * 10.0, line);
    }
    page.text(
        REGULAR,
        8.0,
        LEFT,
        50.0,
        "L'empreinte de ce document est enregistrée dans le journal de la plateforme.",
    );
    let mut pages = vec![page];
    let mut font = None;
    if let Some(e) = &t.explanation {
        let mut page = Page::new();
        page.heading(
            &format!(
                "Explication du mandat donnée à la personne ({})",
                e.language
            ),
            13.0,
        );
        page.paragraph(
            "Le texte ci-dessous est celui que la personne a lu ou écouté. Seul le texte en français des pages précédentes engage les parties.",
            9.0,
        );
        page.y -= 6.0;
        match foundation::pdf::unicode::default_font().and_then(UnicodeFont::new) {
            Some(mut unicode) => {
                page.unicode_paragraph(&mut unicode, &e.title, 13.0);
                for p in &e.paragraphs {
                    page.unicode_paragraph(&mut unicode, p, 11.0);
                }
                font = Some(unicode);
            }
            None => {
                tracing::warn!("no unicode font: the explanation is not printed");
                page.paragraph(
                    "La police de caractères nécessaire n'est pas installée sur le serveur : le texte de l'explication n'a pas pu être imprimé.",
                    10.0,
                );
            }
        }
        pages.push(page);
    }
    document_with("Mandat Aidants Connect", pages, font)
}

/// The revocation attestation.
pub fn revocation_pdf(t: &RevocationTerms) -> Vec<u8> {
    let mut page = Page::new();
    page.heading("Attestation de révocation de mandat", 16.0);
    page.paragraph(
        &format!("Aidants Connect — mandat n° {}", t.mandate_id),
        9.0,
    );
    page.field("Personne accompagnée", &t.usager_name);
    page.field("Structure mandataire", &t.structure_name);
    page.field("Révoqué par", &t.revoked_by);
    page.field("Le", &t.at);
    page.y -= 8.0;
    page.heading(
        if t.whole_mandate {
            "Le mandat entier est révoqué ; il ne peut plus être utilisé."
        } else {
            "Les démarches suivantes sont révoquées :"
        },
        11.0,
    );
    for c in &t.categories {
        page.y -= 13.0;
        page.text(REGULAR, 10.0, LEFT + 10.0, page.y, &format!("• {c}"));
    }
    page.y -= 10.0;
    page.paragraph(
        "À compter de cette date, la structure ne peut plus agir au nom de la personne pour ces démarches. La révocation est enregistrée dans le journal de la plateforme.",
        9.5,
    );
    page.signature_boxes(&[
        "Signature de l'aidant",
        "Signature de la personne (facultative)",
    ]);
    document("Révocation de mandat Aidants Connect", vec![page])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attestation_is_a_pdf_with_its_terms_in_winansi() {
        let pdf = mandate_pdf(&MandateTerms {
            mandate_id: "0190-abc".into(),
            legal_text_version: "2026-11-v1".into(),
            usager_name: "Angela Claire Louise DUBOIS".into(),
            usager_birth: "le 24/08/1962 à 75107 (France)".into(),
            structure_name: "France Services de Bègles".into(),
            structure_place: "33522".into(),
            aidant_name: "Camille Aidante".into(),
            categories: vec!["Social - Santé".into(), "Logement".into()],
            duration: "182 jours".into(),
            starts: "23/11/2026".into(),
            ends: "24/05/2027".into(),
            verification_url: "https://aidants.example/verifier/33/x/y".into(),
            explanation: None,
        });
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(String::from_utf8_lossy(&pdf).contains("WinAnsiEncoding"));
        let text = shown_text(&pdf);
        for expected in [
            "France Services de Bègles",
            "2026-11-v1",
            "Angela Claire Louise DUBOIS",
            "Social - Santé",
            "https://aidants.example/verifier/33/x/y",
            "Signature de la personne accompagnée",
        ] {
            assert!(text.contains(expected), "{expected} absent : {text}");
        }
        assert_eq!(winansi("œ’€"), vec![0x9C, 0x92, 0x80]);
        // The fixed-mask QR code has the size and finder patterns of the library's own.
        let url = "https://aidants.example/verifier/33/0190-abc/tokentokentoken";
        let (n, modules) = qr_modules(url).expect("qr");
        let reference = qrcode::QrCode::with_error_correction_level(url, EcLevel::M).expect("qr");
        assert_eq!(n, reference.width());
        let colors = reference.to_colors();
        for (x, y) in [(0, 0), (6, 6), (n - 1, 0), (0, n - 1), (3, 3)] {
            assert_eq!(
                modules[y * n + x],
                colors[y * n + x],
                "motif de repérage ({x}, {y})"
            );
        }
        // And an independent decoder reads the URL back.
        let dark: Vec<bool> = modules.iter().map(|m| *m == qrcode::Color::Dark).collect();
        assert_eq!(decoded(n, &dark), url);
    }

    /// What an independent decoder reads in `n` × `n` modules (4 pixels per module, a quiet
    /// zone of 4 modules).
    fn decoded(n: usize, dark: &[bool]) -> String {
        let scale = 4;
        let side = (n + 8) * scale;
        let mut image = rqrr::PreparedImage::prepare_from_bitmap(side, side, |x, y| {
            let (mx, my) = ((x / scale) as isize - 4, (y / scale) as isize - 4);
            mx >= 0
                && my >= 0
                && (mx as usize) < n
                && (my as usize) < n
                && dark[my as usize * n + mx as usize]
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().expect("décodage").1
    }

    /// The code as drawn in the document (its rectangles read back from the page) is the
    /// verification URL for an independent decoder.
    #[test]
    fn the_qr_code_drawn_on_the_attestation_reads_back_as_its_verification_url() {
        let url = "https://aidants.example/verifier/33/0190-abc/tokentokentokentoken";
        let pdf = mandate_pdf(&MandateTerms {
            mandate_id: "0190-abc".into(),
            legal_text_version: "2026-11-v1".into(),
            usager_name: "Angela DUBOIS".into(),
            usager_birth: "le 24/08/1962".into(),
            structure_name: "France Services de Bègles".into(),
            structure_place: "33522".into(),
            aidant_name: "Camille Aidante".into(),
            categories: vec!["Logement".into()],
            duration: "182 jours".into(),
            starts: "23/11/2026".into(),
            ends: "24/05/2027".into(),
            verification_url: url.into(),
            explanation: None,
        });
        let raw = String::from_utf8_lossy(&pdf);
        // The grid's transform, then its rectangles up to the fill.
        let start = raw.find(" cm\n").expect("la grille du code") + " cm\n".len();
        let end = start + raw[start..].find("\nf\n").expect("le remplissage du code");
        let (n, modules) = qr_modules(url).expect("qr");
        let mut dark = vec![false; n * n];
        let mut rects = 0;
        for line in raw[start..end].lines() {
            let v: Vec<usize> = line
                .trim_end_matches(" re")
                .split(' ')
                .map(|t| t.parse().expect("nombre entier"))
                .collect();
            let (x, y, w) = (v[0], v[1], v[2]);
            assert_eq!(v[3], 1, "une rangée par rectangle");
            for col in x..x + w {
                dark[(n - 1 - y) * n + col] = true;
            }
            rects += 1;
        }
        assert!(rects > n, "{rects} rectangles");
        // Module for module, the top row at the top (a decoder would read a mirrored code too).
        let expected: Vec<bool> = modules.iter().map(|m| *m == qrcode::Color::Dark).collect();
        assert!(dark == expected, "le code dessiné diffère de ses modules");
        assert_eq!(decoded(n, &dark), url);
    }
}
