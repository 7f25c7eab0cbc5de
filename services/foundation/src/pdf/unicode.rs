//! Text in any script (Arabic, Turkish, Romanian…) in the documents made here: shaped by
//! rustybuzz (right to left where the script says so, with Arabic's joined forms), shown with
//! the glyphs of a TrueType font embedded as a subset (subsetter) in a CID font, with a
//! ToUnicode map so that readers extract the text. The font is read from a file (DejaVu Sans,
//! Debian's `fonts-dejavu-core`, by default); without it, callers say so instead of showing
//! question marks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Finish, Name, Pdf, Rect, Ref, Str};

use super::{LEFT, Page};

/// The font's resource name on the pages.
pub const UNICODE: Name<'static> = Name(b"F3");
/// Where the font is read from.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The right margin of the text (A4 is 595 points wide).
const RIGHT: f32 = 545.0;

/// The bytes of the default font, read once; `None` when the file is missing.
pub fn default_font() -> Option<&'static [u8]> {
    static FONT: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    FONT.get_or_init(|| std::fs::read(DEFAULT_FONT).ok())
        .as_deref()
        .filter(|data| rustybuzz::Face::from_slice(data, 0).is_some())
}

/// A glyph as shaped: its id in the font, its advance in thousandths of the font size, and the
/// text it shows (the first glyph of a cluster carries the cluster's text).
struct Shaped {
    gid: u16,
    advance: f32,
    text: String,
}

/// The glyphs a document uses from one font, gathered page by page, then embedded.
pub struct UnicodeFont {
    data: &'static [u8],
    remapper: subsetter::GlyphRemapper,
    /// New glyph id → its default advance (thousandths) and its text.
    glyphs: BTreeMap<u16, (f32, String)>,
}

impl UnicodeFont {
    pub fn new(data: &'static [u8]) -> Option<Self> {
        rustybuzz::Face::from_slice(data, 0)?;
        Some(UnicodeFont {
            data,
            remapper: subsetter::GlyphRemapper::new(),
            glyphs: BTreeMap::new(),
        })
    }

    fn face(&self) -> rustybuzz::Face<'static> {
        rustybuzz::Face::from_slice(self.data, 0).expect("checked in new()")
    }

    /// `text` shaped in visual order (left to right on the page), and whether it runs right to
    /// left.
    fn shape(&self, text: &str) -> (Vec<Shaped>, bool) {
        let face = self.face();
        let scale = 1000.0 / f32::from(face.units_per_em() as u16);
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        let rtl = buffer.direction() == rustybuzz::Direction::RightToLeft;
        let shaped = rustybuzz::shape(&face, &[], buffer);
        let clusters: Vec<u32> = shaped.glyph_infos().iter().map(|i| i.cluster).collect();
        let mut starts: Vec<usize> = clusters.iter().map(|c| *c as usize).collect();
        starts.sort_unstable();
        starts.dedup();
        let text_of = |cluster: usize| {
            let end = starts
                .iter()
                .find(|s| **s > cluster)
                .copied()
                .unwrap_or(text.len());
            text.get(cluster..end).unwrap_or_default().to_owned()
        };
        let mut seen = std::collections::HashSet::new();
        let glyphs = shaped
            .glyph_infos()
            .iter()
            .zip(shaped.glyph_positions())
            .map(|(info, pos)| {
                let cluster = info.cluster as usize;
                Shaped {
                    gid: info.glyph_id as u16,
                    advance: pos.x_advance as f32 * scale,
                    text: if seen.insert(cluster) {
                        text_of(cluster)
                    } else {
                        String::new()
                    },
                }
            })
            .collect();
        (glyphs, rtl)
    }

    /// The width of `text` at `size` points.
    fn width(&self, text: &str, size: f32) -> f32 {
        self.shape(text).0.iter().map(|g| g.advance).sum::<f32>() * size / 1000.0
    }

    /// The lines of a paragraph that fit between the margins, in reading order.
    pub fn wrap(&self, text: &str, size: f32) -> Vec<String> {
        let room = RIGHT - LEFT;
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if !line.is_empty() && self.width(&candidate, size) > room {
                lines.push(std::mem::replace(&mut line, word.to_owned()));
            } else {
                line = candidate;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Shows one line at `y`: from the left margin, or ending at the right one for a
    /// right-to-left script.
    fn show_line(&mut self, page: &mut Page, text: &str, size: f32, y: f32) {
        let (glyphs, rtl) = self.shape(text);
        let face = self.face();
        let scale = 1000.0 / f32::from(face.units_per_em() as u16);
        let width: f32 = glyphs.iter().map(|g| g.advance).sum::<f32>() * size / 1000.0;
        let x = if rtl { RIGHT - width } else { LEFT };
        page.content.begin_text();
        page.content.set_font(UNICODE, size);
        page.content.next_line(x, y);
        let mut positioned = page.content.show_positioned();
        let mut items = positioned.items();
        for g in &glyphs {
            let gid = self.remapper.remap(g.gid);
            let default = face
                .glyph_hor_advance(rustybuzz::ttf_parser::GlyphId(g.gid))
                .map_or(0.0, |a| f32::from(a) * scale);
            let entry = self
                .glyphs
                .entry(gid)
                .or_insert_with(|| (default, String::new()));
            if entry.1.is_empty() && !g.text.is_empty() {
                entry.1 = g.text.clone();
            }
            items.show(Str(&gid.to_be_bytes()));
            // The shaped advance where it differs from the glyph's own width (kerning, joined
            // forms).
            if (default - g.advance).abs() > 0.01 {
                items.adjust(default - g.advance);
            }
        }
        items.finish();
        positioned.finish();
        page.content.end_text();
    }

    /// Writes the subset font and its descriptors under `type0` (the font the pages name).
    pub(super) fn write(self, pdf: &mut Pdf, type0: Ref, next: i32) {
        let (cid, descriptor, file, cmap) = (
            Ref::new(next),
            Ref::new(next + 1),
            Ref::new(next + 2),
            Ref::new(next + 3),
        );
        let face = self.face();
        let scale = 1000.0 / f32::from(face.units_per_em() as u16);
        let subset = subsetter::subset(self.data, 0, &self.remapper).unwrap_or_default();
        let base = Name(b"AAAAAA+DejaVuSans");
        pdf.type0_font(type0)
            .base_font(base)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid)
            .to_unicode(cmap);
        let info = SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        };
        let mut font = pdf.cid_font(cid);
        font.subtype(CidFontType::Type2)
            .base_font(base)
            .system_info(info)
            .font_descriptor(descriptor)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let mut widths = font.widths();
        for (gid, (width, _)) in &self.glyphs {
            widths.consecutive(*gid, [*width]);
        }
        widths.finish();
        font.finish();
        let bbox = face.global_bounding_box();
        pdf.font_descriptor(descriptor)
            .name(base)
            .flags(FontFlags::NON_SYMBOLIC)
            .bbox(Rect::new(
                f32::from(bbox.x_min) * scale,
                f32::from(bbox.y_min) * scale,
                f32::from(bbox.x_max) * scale,
                f32::from(bbox.y_max) * scale,
            ))
            .italic_angle(0.0)
            .ascent(f32::from(face.ascender()) * scale)
            .descent(f32::from(face.descender()) * scale)
            .cap_height(f32::from(face.capital_height().unwrap_or(face.ascender())) * scale)
            .stem_v(80.0)
            .font_file2(file);
        pdf.stream(file, &subset);
        let mut unicode = UnicodeCmap::new(Name(b"Custom"), info);
        for (gid, (_, text)) in &self.glyphs {
            if !text.is_empty() {
                unicode.pair_with_multiple(*gid, text.chars());
            }
        }
        pdf.cmap(cmap, &unicode.finish());
    }
}

impl Page {
    /// A paragraph in any script with `font`, wrapped to the margins (right-aligned for a
    /// right-to-left script).
    pub fn unicode_paragraph(&mut self, font: &mut UnicodeFont, s: &str, size: f32) {
        for line in font.wrap(s, size) {
            self.y -= size + 3.5;
            let y = self.y;
            font.show_line(self, &line, size, y);
        }
        self.y -= 4.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdf::document_with;

    #[test]
    fn turkish_romanian_and_arabic_text_embed_a_subset_font_with_its_unicode_map() {
        let Some(data) = default_font() else {
            panic!("{DEFAULT_FONT} absent : installez fonts-dejavu-core (infra/run install)");
        };
        let mut font = UnicodeFont::new(data).expect("police");
        let mut page = Page::new();
        page.unicode_paragraph(&mut font, "Vekaletiniz, basitçe açıklanmış hali", 12.0);
        page.unicode_paragraph(&mut font, "Mandatul dumneavoastră, explicat simplu", 12.0);
        page.unicode_paragraph(&mut font, "وكالتك، بشرح بسيط", 12.0);
        let glyphs = font.glyphs.len();
        let pdf = document_with("Essai", vec![page], Some(font));
        if let Ok(dir) = std::env::var("AC_KEEP_PDF") {
            let _ = std::fs::write(format!("{dir}/unicode.pdf"), &pdf);
        }
        let raw = String::from_utf8_lossy(&pdf);
        assert!(raw.contains("/Identity-H"), "Type0");
        assert!(raw.contains("/FontFile2"), "police embarquée");
        assert!(raw.contains("/ToUnicode"), "table Unicode");
        // The ToUnicode map holds ş (U+015F), ă (U+0103) and an Arabic letter (ك, U+0643).
        for hex in ["015F", "0103", "0643"] {
            assert!(raw.contains(hex), "{hex} absent de la table Unicode");
        }
        // A subset, not the whole font (DejaVu Sans holds about 6,000 glyphs, 750 kB).
        assert!(glyphs < 100, "{glyphs}");
        assert!(pdf.len() < 150_000, "{} octets", pdf.len());
    }
}
