//! The places as the schema's CSV: UTF-8 without BOM, comma-separated, the schema's header in
//! its order, every cell quoted (RFC 4180: `"` doubled, lines ended by CRLF). As in the
//! référents' export, a text cell starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading
//! `'`, so that a spreadsheet never reads it as a formula; numbers and dates we write are left
//! as they are.

use super::lieu::{COLUMNS, Cell, Lieu};

/// The CSV document of `lieux`.
pub fn render(lieux: &[Lieu]) -> String {
    let mut out = String::with_capacity(512 + lieux.len() * 400);
    line(&mut out, COLUMNS.iter().map(|c| Cell::Text(c)));
    for lieu in lieux {
        line(&mut out, lieu.cells().into_iter());
    }
    out
}

/// One row of text cells, written by the same rules (quoted, formula-safe, CRLF).
pub(crate) fn text_row(out: &mut String, cells: &[&str]) {
    line(out, cells.iter().map(|c| Cell::Text(c)));
}

fn line<'a>(out: &mut String, cells: impl Iterator<Item = Cell<'a>>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        match cell {
            Cell::Text(t) => {
                if t.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                    out.push('\'');
                }
                out.push_str(&t.replace('"', "\"\""));
            }
            Cell::Number(n) => out.push_str(&n.to_string()),
            Cell::Date(d) => out.push_str(&format!(
                "{:04}-{:02}-{:02}",
                d.year(),
                u8::from(d.month()),
                d.day()
            )),
        }
        out.push('"');
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        let mut out = String::new();
        line(
            &mut out,
            [
                Cell::Text("Espace « Bastide », 2e"),
                Cell::Text("Le \"Relais\""),
                Cell::Text("=HYPERLINK(\"x\")"),
                Cell::Text("-1"),
                Cell::Number(-0.57),
                Cell::Date(time::macros::date!(2026 - 01 - 05)),
                Cell::Text(""),
            ]
            .into_iter(),
        );
        assert_eq!(
            out,
            "\"Espace « Bastide », 2e\",\"Le \"\"Relais\"\"\",\"'=HYPERLINK(\"\"x\"\")\",\"'-1\",\"-0.57\",\"2026-01-05\",\"\"\r\n"
        );
    }

    #[test]
    fn an_empty_list_is_the_header_alone() {
        let csv = render(&[]);
        assert!(
            csv.starts_with("\"id\",\"pivot\",\"nom\",\"commune\""),
            "{csv}"
        );
        assert!(
            csv.ends_with("\"fiche_acces_libre\",\"prise_rdv\"\r\n"),
            "{csv}"
        );
        assert_eq!(csv.matches("\r\n").count(), 1);
    }
}
