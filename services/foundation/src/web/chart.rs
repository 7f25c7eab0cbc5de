//! Bar charts drawn on the server as SVG (no script), in the State design system's blue, each
//! with what a screen reader needs: the image is named by its title and described by a text
//! summary, and the page shows the same figures as a table beside it.

/// DSFR « bleu France ».
const BLUE: &str = "#000091";
/// DSFR grey for axes and labels (contrast ≥ 4.5:1 on white).
const GREY: &str = "#3a3a3a";

/// A chart ready for a page: the SVG, its summary, and the rows of its data table.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub svg: String,
    pub rows: Vec<(String, String)>,
    pub unit: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as French writes it (thin no-break space between thousands).
pub fn french_number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Vertical bars, one per label (months, say). `values` may hold `None` for a figure not
/// published (too small to show without re-identifying someone): no bar, « < 5 » written.
pub fn bars(id: &str, title: &str, unit: &str, values: &[(String, Option<i64>)]) -> Chart {
    let width = 640.0_f64;
    let height = 240.0_f64;
    let (left, bottom, top) = (8.0, 48.0, 24.0);
    let max = values.iter().filter_map(|v| v.1).max().unwrap_or(0).max(1) as f64;
    let n = values.len().max(1) as f64;
    let slot = (width - 2.0 * left) / n;
    let bar = (slot * 0.7).max(2.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" aria-labelledby=\"{id}-titre {id}-resume\" focusable=\"false\"><title id=\"{id}-titre\">{}</title>",
        escape(title)
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{GREY}\" stroke-width=\"1\"/>",
        y = height - bottom,
        x2 = width - left
    ));
    for (i, (label, value)) in values.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let centre = x + bar / 2.0;
        if let Some(v) = value {
            let h = (height - bottom - top) * (*v as f64) / max;
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{BLUE}\"/>",
                height - bottom - h
            ));
            svg.push_str(&format!(
                "<text x=\"{centre:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{GREY}\">{}</text>",
                height - bottom - h - 4.0,
                french_number(*v)
            ));
        } else {
            svg.push_str(&format!(
                "<text x=\"{centre:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{GREY}\">&lt; 5</text>",
                height - bottom - 4.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{centre:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{GREY}\">{}</text>",
            height - bottom + 16.0,
            escape(label)
        ));
    }
    svg.push_str("</svg>");
    let shown: Vec<&(String, Option<i64>)> = values.iter().filter(|v| v.1.is_some()).collect();
    let total: i64 = shown.iter().filter_map(|v| v.1).sum();
    let summary = match shown.iter().max_by_key(|v| v.1) {
        None => format!("{title} : aucune donnée publiée."),
        Some((label, Some(top))) => format!(
            "{title} : {} {unit} au total ; le plus haut, {label}, avec {}.",
            french_number(total),
            french_number(*top)
        ),
        Some(_) => format!("{title}."),
    };
    Chart {
        id: id.to_owned(),
        title: title.to_owned(),
        summary,
        svg,
        rows: values
            .iter()
            .map(|(label, v)| {
                (
                    label.clone(),
                    v.map(french_number)
                        .unwrap_or_else(|| "moins de 5".to_owned()),
                )
            })
            .collect(),
        unit: unit.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_names_itself_says_its_figures_and_escapes_labels() {
        let c = bars(
            "usages",
            "Démarches par mois",
            "démarches",
            &[
                ("janv. <2026>".into(), Some(1200)),
                ("févr. 2026".into(), Some(300)),
                ("mars 2026".into(), None),
            ],
        );
        assert!(c.svg.contains("role=\"img\"") && c.svg.contains("<title id=\"usages-titre\">"));
        assert!(c.svg.contains("janv. &lt;2026&gt;") && !c.svg.contains("<2026>"));
        assert_eq!(
            c.svg.matches("<rect").count(),
            2,
            "no bar for an unpublished figure"
        );
        assert!(
            c.summary.contains("1\u{202f}500 démarches au total"),
            "{}",
            c.summary
        );
        assert!(c.summary.contains("janv. <2026>, avec 1\u{202f}200"));
        assert_eq!(c.rows[2].1, "moins de 5");
    }

    #[test]
    fn french_numbers_group_thousands() {
        assert_eq!(french_number(0), "0");
        assert_eq!(french_number(999), "999");
        assert_eq!(french_number(10_000_000), "10\u{202f}000\u{202f}000");
    }
}
