//! Printable documents (PDF) made with pdf-writer and the standard Helvetica fonts in WinAnsi
//! encoding (French accents included), so no font file is embedded and documents stay small:
//! A4 pages of text, and a reader of the text they show (for tests and auditors).

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

/// Text in any script, with an embedded font.
pub mod unicode;
pub use unicode::UnicodeFont;

/// A character in WinAnsi (Windows-1252), or `?` when it has no place there.
pub fn winansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{a0}' | '\u{202f}' => 0xA0,
            '\u{a1}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '…' => 0x85,
            'Œ' => 0x8C,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            'œ' => 0x9C,
            _ => b'?',
        })
        .collect()
}

/// Splits a paragraph into lines of at most `width` characters (Helvetica at the sizes used
/// here fits about that many on the page's text width).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One A4 page being written, top to bottom (`y` is the current baseline).
pub struct Page {
    pub content: Content,
    pub y: f32,
}

pub const LEFT: f32 = 50.0;
pub const REGULAR: Name<'static> = Name(b"F1");
pub const BOLD: Name<'static> = Name(b"F2");

impl Page {
    pub fn new() -> Self {
        Page {
            content: Content::new(),
            y: 790.0,
        }
    }

    pub fn text(&mut self, font: Name, size: f32, x: f32, y: f32, s: &str) {
        self.content.begin_text();
        self.content.set_font(font, size);
        self.content.next_line(x, y);
        self.content.show(Str(&winansi(s)));
        self.content.end_text();
    }

    pub fn heading(&mut self, s: &str, size: f32) {
        self.y -= size + 6.0;
        self.text(BOLD, size, LEFT, self.y, s);
        self.y -= 4.0;
    }

    pub fn paragraph(&mut self, s: &str, size: f32) {
        let width = (930.0 / size) as usize;
        for line in wrap(s, width) {
            self.y -= size + 3.5;
            self.text(REGULAR, size, LEFT, self.y, &line);
        }
        self.y -= 4.0;
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

/// The PDF of `pages`, in order, with its title and the French language declared.
pub fn document(title: &str, pages: Vec<Page>) -> Vec<u8> {
    document_with(title, pages, None)
}

/// The same, with the glyphs `font` gathered from the pages' Unicode text embedded.
pub fn document_with(title: &str, pages: Vec<Page>, font: Option<UnicodeFont>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let ids: Vec<(Ref, Ref)> = (0..pages.len() as i32)
        .map(|i| (Ref::new(6 + 2 * i), Ref::new(7 + 2 * i)))
        .collect();
    let unicode_font = Ref::new(6 + 2 * pages.len() as i32);
    pdf.catalog(catalog).pages(tree).lang(TextStr("fr-FR"));
    pdf.pages(tree)
        .kids(ids.iter().map(|(page, _)| *page))
        .count(pages.len() as i32);
    for ((page_id, contents), page) in ids.iter().zip(pages) {
        let mut p = pdf.page(*page_id);
        p.media_box(Rect::new(0.0, 0.0, 595.0, 842.0));
        p.parent(tree);
        p.contents(*contents);
        let mut resources = p.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
        if font.is_some() {
            fonts.pair(unicode::UNICODE, unicode_font);
        }
        fonts.finish();
        resources.finish();
        p.finish();
        pdf.stream(*contents, &page.content.finish());
    }
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    if let Some(font) = font {
        font.write(&mut pdf, unicode_font, unicode_font.get() + 1);
    }
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("Aidants Connect"));
    pdf.finish()
}

fn from_winansi(b: u8) -> char {
    match b {
        0x80 => '€',
        0x85 => '…',
        0x8C => 'Œ',
        0x91 => '‘',
        0x92 => '’',
        0x93 => '“',
        0x94 => '”',
        0x95 => '•',
        0x96 => '–',
        0x97 => '—',
        0x9C => 'œ',
        b => b as char,
    }
}

/// Reads back the text shown in a PDF made here (its literal and hex strings, in order, one per
/// line): what tests and auditors check against the stored terms.
pub fn shown_text(pdf: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < pdf.len() {
        match pdf[i] {
            b'<' if pdf.get(i + 1) != Some(&b'<') && pdf.get(i.wrapping_sub(1)) != Some(&b'<') => {
                let end = pdf[i..].iter().position(|&b| b == b'>').map(|p| i + p);
                let Some(end) = end else { break };
                let hex: Vec<u8> = pdf[i + 1..end]
                    .iter()
                    .copied()
                    .filter(u8::is_ascii_hexdigit)
                    .collect();
                for pair in hex.chunks(2) {
                    if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(pair), 16) {
                        out.push(from_winansi(b));
                    }
                }
                out.push('\n');
                i = end + 1;
            }
            b'(' => {
                let mut depth = 1;
                i += 1;
                while i < pdf.len() && depth > 0 {
                    match pdf[i] {
                        b'\\' if i + 1 < pdf.len() => {
                            i += 1;
                            out.push(pdf[i] as char);
                        }
                        b'(' => {
                            depth += 1;
                            out.push('(');
                        }
                        b')' => {
                            depth -= 1;
                            if depth > 0 {
                                out.push(')');
                            }
                        }
                        b => out.push(from_winansi(b)),
                    }
                    i += 1;
                }
                out.push('\n');
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_show_their_text_in_winansi_in_order() {
        let mut first = Page::new();
        first.heading("Première page", 14.0);
        first.paragraph("Lettre à Mᵐᵉ Œdipe — « déjà » vu", 10.0);
        let mut second = Page::new();
        second.paragraph("Deuxième page", 10.0);
        let pdf = document("Essai", vec![first, second]);
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(String::from_utf8_lossy(&pdf).contains("/Count 2"));
        let text = shown_text(&pdf);
        let a = text.find("Première page").expect("page 1");
        let b = text.find("Deuxième page").expect("page 2");
        assert!(a < b);
        assert!(text.contains("Lettre à M?? Œdipe — « déjà » vu"), "{text}");
        assert_eq!(winansi("œ’€"), vec![0x9C, 0x92, 0x80]);
        assert_eq!(
            wrap("un deux trois quatre", 9),
            vec!["un deux", "trois", "quatre"]
        );
    }
}
