//! Text in any script (Arabic, Turkish, Romanian…) in the documents made here: shaped by
//! rustybuzz (right to left where the script says so, with Arabic's joined forms), shown with
//! the glyphs of a TrueType font embedded as a subset (subsetter) in a CID font, with a
//! ToUnicode map so that readers extract the text. The font is read from a file (DejaVu Sans,
//! Debian's `fonts-dejavu-core`, by default); without it, callers say so instead of showing
//! question marks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

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
        .filter(|data| Shaper::of(data).is_some())
}

/// `text` in a shaping buffer, its direction and script guessed from its letters (as a line is
/// shown: each line alone).
fn segment(text: &str) -> rustybuzz::UnicodeBuffer {
    let mut buffer = rustybuzz::UnicodeBuffer::new();
    buffer.push_str(text);
    buffer.guess_segment_properties();
    buffer
}

/// A glyph as shaped: its id in the font, its advance in thousandths of the font size, and the
/// text it shows (the first glyph of a cluster carries the cluster's text).
struct Shaped {
    gid: u16,
    advance: f32,
    text: String,
}

/// A font ready for shaping, made once per process and font: parsing a face builds its layout
/// tables' lookup accelerators, and a plan compiles a script's features, both far costlier than
/// shaping a line (rebuilt for every line, they took a quarter of the application's CPU during
/// mandate creations, whose attestations carry the explanation page).
struct Shaper {
    face: rustybuzz::Face<'static>,
    /// One plan per direction and script met (no language or feature is ever set).
    plans: Mutex<HashMap<(rustybuzz::Direction, rustybuzz::Script), Arc<rustybuzz::ShapePlan>>>,
}

impl Shaper {
    /// The shaper of `data`, made on first use; `None` if it is not a font. Fonts are few (the
    /// default one, in practice): each one's shaper is kept for the life of the process.
    fn of(data: &'static [u8]) -> Option<&'static Shaper> {
        type Known = Mutex<Vec<((usize, usize), &'static Shaper)>>;
        static KNOWN: OnceLock<Known> = OnceLock::new();
        let key = (data.as_ptr() as usize, data.len());
        let mut known = KNOWN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, shaper)) = known.iter().find(|(k, _)| *k == key) {
            return Some(shaper);
        }
        let face = rustybuzz::Face::from_slice(data, 0)?;
        let shaper: &'static Shaper = Box::leak(Box::new(Shaper {
            face,
            plans: Mutex::default(),
        }));
        known.push((key, shaper));
        Some(shaper)
    }

    /// `buffer` (its direction and script guessed) shaped with the plan for its direction and
    /// script, the plan `rustybuzz::shape` would compile for it.
    fn shape(&self, buffer: rustybuzz::UnicodeBuffer) -> rustybuzz::GlyphBuffer {
        // After guessing, the script reads UNKNOWN only when none was found (the guess skips
        // unknown characters), and `shape` then plans without one.
        let (direction, script) = (buffer.direction(), buffer.script());
        let plan = {
            let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            plans
                .entry((direction, script))
                .or_insert_with(|| {
                    let script = (script != rustybuzz::script::UNKNOWN).then_some(script);
                    Arc::new(rustybuzz::ShapePlan::new(
                        &self.face,
                        direction,
                        script,
                        None,
                        &[],
                    ))
                })
                .clone()
        };
        rustybuzz::shape_with_plan(&self.face, &plan, buffer)
    }
}

/// The glyphs a document uses from one font, gathered page by page, then embedded.
pub struct UnicodeFont {
    data: &'static [u8],
    shaper: &'static Shaper,
    remapper: subsetter::GlyphRemapper,
    /// New glyph id → its default advance (thousandths) and its text.
    glyphs: BTreeMap<u16, (f32, String)>,
}

impl UnicodeFont {
    pub fn new(data: &'static [u8]) -> Option<Self> {
        Some(UnicodeFont {
            data,
            shaper: Shaper::of(data)?,
            remapper: subsetter::GlyphRemapper::new(),
            glyphs: BTreeMap::new(),
        })
    }

    fn face(&self) -> &'static rustybuzz::Face<'static> {
        &self.shaper.face
    }

    /// Thousandths of the font size per font unit.
    fn scale(&self) -> f32 {
        1000.0 / f32::from(self.face().units_per_em() as u16)
    }

    /// `text` shaped in visual order (left to right on the page), and whether it runs right to
    /// left.
    fn shape(&self, text: &str) -> (Vec<Shaped>, bool) {
        let scale = self.scale();
        let buffer = segment(text);
        let rtl = buffer.direction() == rustybuzz::Direction::RightToLeft;
        let shaped = self.shaper.shape(buffer);
        let mut starts: Vec<usize> = shaped
            .glyph_infos()
            .iter()
            .map(|i| i.cluster as usize)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let text_of = |cluster: usize| {
            let end = starts
                .get(starts.partition_point(|s| *s <= cluster))
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

    /// Each glyph of `text` shaped: the byte where its cluster starts and its advance in
    /// thousandths of the font size (what measuring needs, without `shape`'s texts).
    fn advances(&self, text: &str) -> Vec<(usize, f64)> {
        let scale = f64::from(self.scale());
        let shaped = self.shaper.shape(segment(text));
        shaped
            .glyph_infos()
            .iter()
            .zip(shaped.glyph_positions())
            .map(|(info, pos)| (info.cluster as usize, f64::from(pos.x_advance) * scale))
            .collect()
    }

    /// The width of `text` at `size` points.
    #[cfg(test)]
    fn width(&self, text: &str, size: f32) -> f32 {
        self.shape(text).0.iter().map(|g| g.advance).sum::<f32>() * size / 1000.0
    }

    /// The lines of a paragraph that fit between the margins, in reading order: as many words
    /// on each line as fit (a word too wide for any line gets one of its own). The paragraph is
    /// shaped once, its words joined by single spaces; a line's width is the sum of the advances
    /// of the glyphs whose text lies on it (shaping each candidate line again made a paragraph
    /// cost as many shapings as it has words). A line is shown shaped alone, with the direction
    /// and script guessed from its own text: where those differ from the paragraph's (an Arabic
    /// line in a paragraph that opens with a Latin name), the line is measured shaped alone too.
    pub fn wrap(&self, text: &str, size: f32) -> Vec<String> {
        let room = f64::from((RIGHT - LEFT) * 1000.0 / size);
        let words: Vec<&str> = text.split_whitespace().collect();
        let joined = words.join(" ");
        let guessed = |text: &str| {
            let buffer = segment(text);
            (buffer.direction(), buffer.script())
        };
        let paragraph = guessed(&joined);
        // `before[b]`: the advance of the glyphs whose cluster starts before byte `b`.
        let mut at = vec![0.0f64; joined.len() + 1];
        for (cluster, advance) in self.advances(&joined) {
            at[cluster + 1] += advance;
        }
        let before: Vec<f64> = at
            .iter()
            .scan(0.0, |sum, a| {
                *sum += a;
                Some(*sum)
            })
            .collect();
        let width = |from: usize, to: usize| {
            let line = &joined[from..to];
            if guessed(line) == paragraph {
                before[to] - before[from]
            } else {
                self.advances(line).iter().map(|(_, advance)| advance).sum()
            }
        };
        let mut lines = Vec::new();
        let (mut start, mut end, mut offset) = (None::<usize>, 0, 0);
        for word in words {
            let (from, to) = (offset, offset + word.len());
            offset = to + 1;
            match start {
                Some(s) if width(s, to) > room => {
                    lines.push(joined[s..end].to_owned());
                    start = Some(from);
                }
                Some(_) => {}
                None => start = Some(from),
            }
            end = to;
        }
        if let Some(s) = start {
            lines.push(joined[s..end].to_owned());
        }
        lines
    }

    /// Shows one line at `y`: from the left margin, or ending at the right one for a
    /// right-to-left script.
    fn show_line(&mut self, page: &mut Page, text: &str, size: f32, y: f32) {
        let (glyphs, rtl) = self.shape(text);
        let face = self.face();
        let scale = self.scale();
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
        let scale = self.scale();
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
    fn a_kept_plan_shapes_as_a_fresh_one_in_every_script_and_without_any() {
        let data = default_font().expect("police");
        let shaper = Shaper::of(data).expect("police");
        assert!(
            std::ptr::eq(shaper, Shaper::of(data).expect("police")),
            "un seul par police"
        );
        let texts = [
            "Vekaletiniz, basitçe açıklanmış hali",
            "وكالتك، بشرح بسيط",
            "12 : 30 — 45 %",
            "Mandatul dumneavoastră, explicat simplu",
            "وكالتك",
            "",
        ];
        // Twice over, so that the second pass uses the plans the first one kept.
        for text in texts.iter().chain(texts.iter()) {
            let fresh = rustybuzz::shape(&shaper.face, &[], segment(text));
            let kept = shaper.shape(segment(text));
            let glyphs = |g: &rustybuzz::GlyphBuffer| -> Vec<(u32, u32, i32, i32)> {
                g.glyph_infos()
                    .iter()
                    .zip(g.glyph_positions())
                    .map(|(i, p)| (i.glyph_id, i.cluster, p.x_advance, p.x_offset))
                    .collect()
            };
            assert_eq!(glyphs(&fresh), glyphs(&kept), "{text}");
        }
        // Latin, Arabic (right to left) and the text with no script, each with its plan (other
        // tests of this process may have added theirs).
        let plans = shaper.plans.lock().expect("verrou");
        for text in ["Mandatul", "وكالتك", "12 : 30"] {
            let b = segment(text);
            assert!(plans.contains_key(&(b.direction(), b.script())), "{text}");
        }
    }

    #[test]
    fn a_paragraph_breaks_where_shaping_each_candidate_line_would() {
        let font = UnicodeFont::new(default_font().expect("police")).expect("police");
        // The former way: each candidate line shaped whole and measured.
        let reference = |text: &str, size: f32| {
            let mut lines = Vec::new();
            let mut line = String::new();
            for word in text.split_whitespace() {
                let candidate = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
                if !line.is_empty() && font.width(&candidate, size) > RIGHT - LEFT {
                    lines.push(std::mem::replace(&mut line, word.to_owned()));
                } else {
                    line = candidate;
                }
            }
            if !line.is_empty() {
                lines.push(line);
            }
            lines
        };
        let paragraphs = [
            "Bu belge, sizin adınıza bazı işlemleri yapması için bir yardımcıya verdiğiniz \
             vekaleti açıklar. Vekalet, seçtiğiniz süre boyunca geçerlidir ve istediğiniz \
             zaman  iptal   edebilirsiniz.\nYardımcı yalnızca seçtiğiniz işlemleri yapabilir.",
            "هذه الوثيقة تشرح الوكالة التي أعطيتها لمساعد للقيام ببعض الإجراءات نيابة عنك. \
             الوكالة صالحة طوال المدة التي اخترتها، ويمكنك إلغاؤها في أي وقت تشاء.",
            "Mandatul dumneavoastră, explicat simplu: ajutorul poate face doar demersurile \
             alese, pe durata aleasă, iar dumneavoastră îl puteți revoca oricând doriți.",
            // A paragraph that opens in Latin and goes on in Arabic, and the reverse: each line
            // is shown with its own script's plan (joined Arabic forms are far narrower than
            // the isolated ones a Latin plan gives).
            "Aidants Connect PDF : هذه الوثيقة تشرح الوكالة التي أعطيتها لمساعد للقيام ببعض \
             الإجراءات نيابة عنك. الوكالة صالحة طوال المدة التي اخترتها، ويمكنك إلغاؤها في أي \
             وقت تشاء. المساعد لا يستطيع القيام إلا بالإجراءات التي اخترتها بنفسك.",
            "الوكالة صالحة طوال المدة التي اخترتها Aidants Connect France Services Bordeaux \
             Mérignac Pessac Talence Bègles Villenave-d'Ornon Gradignan Cenon Lormont Eysines \
             Floirac Bruges Blanquefort Le Bouscat Saint-Médard-en-Jalles Ambarès-et-Lagrave",
            "Anticonstitutionnellement-et-sans-la-moindre-espace-une-suite-de-mots-trop-longue-\
             pour-tenir-sur-une-seule-ligne-de-la-page court",
            "",
            "   ",
        ];
        let mut broken = 0;
        for text in paragraphs {
            for size in [9.0, 11.0, 13.0] {
                let lines = font.wrap(text, size);
                assert_eq!(lines, reference(text, size), "{text} ({size} pt)");
                broken += lines.len().saturating_sub(1);
            }
        }
        assert!(
            broken > 10,
            "{broken} retours à la ligne : les paragraphes sont trop courts"
        );
    }

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
