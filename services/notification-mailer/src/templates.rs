//! Message templates, one folder per message under `templates/`, in French: `subject.txt`,
//! `body.txt` (the text part, also the text of a printed letter), `body.html` (the HTML part,
//! put inside `layout.html`) and, for messages that may go by SMS, `sms.txt`. A template gets
//! the outbox payload as parameters (escaped in HTML); an unknown template or a missing
//! parameter is a permanent failure (retrying would not help). (`templates/letters.html`, beside
//! them, is not a message: it is the askama template of the letters page.)

use serde_json::Value;

/// A rendered e-mail: its subject, text part and HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("modèle de message inconnu « {0} »")]
    Unknown(String),
    #[error("paramètre « {1} » manquant pour le modèle « {0} »")]
    MissingParameter(String, &'static str),
    #[error("le modèle « {0} » n'existe pas en SMS")]
    NoSms(String),
}

/// One message's folder, compiled in.
struct Template {
    name: &'static str,
    params: &'static [&'static str],
    subject: &'static str,
    text: &'static str,
    html: &'static str,
    sms: Option<&'static str>,
}

macro_rules! template {
    ($name:literal, [$($param:literal),*] $(, $sms:ident)?) => {
        Template {
            name: $name,
            params: &[$($param),*],
            subject: include_str!(concat!("../templates/", $name, "/subject.txt")),
            text: include_str!(concat!("../templates/", $name, "/body.txt")),
            html: include_str!(concat!("../templates/", $name, "/body.html")),
            sms: template!(@sms $name $(, $sms)?),
        }
    };
    (@sms $name:literal) => { None };
    (@sms $name:literal, sms) => {
        Some(include_str!(concat!("../templates/", $name, "/sms.txt")))
    };
}

const TEMPLATES: &[Template] = &[
    template!("operator_test", ["sent_by"], sms),
    template!("login_link", ["url"]),
    template!("enrolment_link", ["url"]),
    template!("mandates_expiring", ["count", "structure", "url"]),
    template!("inactive_aidant", ["name", "url"]),
    template!("mandate_used", ["date", "structure", "demarche"], sms),
    template!(
        "mandate_created",
        ["date", "structure", "demarches", "expires"],
        sms
    ),
    template!(
        "mandate_revoked",
        ["date", "structure", "demarches", "suite"],
        sms
    ),
    template!(
        "mandate_transferred_out",
        ["structure", "demarches", "date", "url"]
    ),
    template!(
        "judicial_measure_ending",
        ["case", "kind", "structure", "ends", "days", "url"]
    ),
    template!(
        "judicial_measure_renewal",
        ["case", "kind", "structure", "renewal", "ends", "url"]
    ),
    template!(
        "remote_consent_link",
        ["structure", "aidant", "url", "expires"],
        sms
    ),
    template!(
        "mandate_revoked_by_usager",
        ["structure", "demarches", "date", "url"]
    ),
    template!(
        "usager_contact_changed",
        ["date", "structure", "changes"],
        sms
    ),
    template!(
        "new_requests_digest",
        ["period", "count", "requests", "more"]
    ),
    template!("issuer_link", ["url"]),
    template!(
        "request_received",
        ["reference", "structure", "next", "url"]
    ),
    template!(
        "request_changes_requested",
        ["reference", "structure", "message", "url"]
    ),
    template!(
        "request_message",
        ["reference", "structure", "from", "message", "url"]
    ),
    template!("request_amended", ["reference", "structure", "url"]),
    template!("request_accepted", ["reference", "structure", "url"]),
    template!(
        "request_refused",
        ["reference", "structure", "reason", "url"]
    ),
    template!("request_released", ["reference", "structure", "url"]),
    template!("referent_appointed", ["structure", "url"]),
    template!(
        "habilitation_withdrawn",
        ["structure", "date", "by", "reason"]
    ),
    template!(
        "training_registered",
        ["name", "session", "dates", "place", "status"]
    ),
    template!("training_reminder", ["name", "session", "dates", "place"]),
    template!("charter_link", ["url"]),
    template!("habilitation_opened", ["structure", "next", "url"]),
    template!("aidant_habilitated", ["name", "structure"]),
    template!("territory_admin_delegated", ["tenant", "url"]),
    template!("anomaly_digest", ["count", "alerts", "url"]),
];

const LAYOUT: &str = include_str!("../templates/layout.html");

/// The names of every template (tests, tools).
pub fn names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|t| t.name)
}

fn find(name: &str) -> Result<&'static Template, TemplateError> {
    TEMPLATES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| TemplateError::Unknown(name.into()))
}

fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How a part is written: plain text (letters, the text part), HTML, or one SMS line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Html,
    Sms,
}

/// A list parameter (an array of strings): one item per line in text, a `<ul>` in HTML, items
/// separated by commas in an SMS; an empty list writes nothing.
fn list(items: &[Value], part: Part) -> Option<String> {
    let items: Vec<&str> = items.iter().map(Value::as_str).collect::<Option<_>>()?;
    if items.is_empty() {
        return Some(String::new());
    }
    Some(match part {
        Part::Text => items
            .iter()
            .map(|i| format!("- {i}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Part::Sms => items.join(", "),
        Part::Html => format!(
            "<ul style=\"margin:0 0 16px 0;padding-left:24px;\">{}</ul>",
            items
                .iter()
                .map(|i| format!("<li>{}</li>", html_escape(i)))
                .collect::<String>()
        ),
    })
}

/// Replaces each `{{name}}` of `source` by `value(name)`, in one pass: a value is never read
/// as a template itself. Unknown names stay as they are.
fn substitute(source: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").map(|end| (&after[..end], end)) {
            Some((name, end)) => {
                match value(name) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fills `{{name}}` placeholders of `source` with the payload's values: strings (escaped in
/// HTML) or lists of strings.
fn fill(
    template: &Template,
    source: &str,
    payload: &Value,
    part: Part,
) -> Result<String, TemplateError> {
    let mut values = std::collections::HashMap::new();
    for key in template.params {
        let value = match &payload[*key] {
            Value::String(v) if part == Part::Html => Some(html_escape(v)),
            Value::String(v) => Some(v.clone()),
            Value::Array(items) => list(items, part),
            _ => None,
        }
        .ok_or_else(|| TemplateError::MissingParameter(template.name.into(), key))?;
        values.insert(*key, value);
    }
    Ok(substitute(source, |name| values.get(name).cloned()))
}

/// Renders the e-mail `template` with `payload`.
pub fn render(template: &str, payload: &Value) -> Result<Rendered, TemplateError> {
    let t = find(template)?;
    let subject = fill(t, t.subject, payload, Part::Text)?.trim().to_owned();
    let content = fill(t, t.html, payload, Part::Html)?;
    let html = substitute(LAYOUT, |name| match name {
        "subject" => Some(html_escape(&subject)),
        "content" => Some(content.trim_end().to_owned()),
        _ => None,
    });
    Ok(Rendered {
        text: fill(t, t.text, payload, Part::Text)?,
        html,
        subject,
    })
}

/// Renders the SMS text of `template` with `payload`.
pub fn render_sms(template: &str, payload: &Value) -> Result<String, TemplateError> {
    let t = find(template)?;
    let source = t.sms.ok_or_else(|| TemplateError::NoSms(template.into()))?;
    Ok(fill(t, source, payload, Part::Sms)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_test_names_who_sent_it() {
        let rendered = render(
            "operator_test",
            &serde_json::json!({"sent_by": "tenant-admin"}),
        )
        .expect("rendu");
        assert_eq!(rendered.subject, "Aidants Connect : message de test");
        assert!(
            rendered.text.contains("envoyé par tenant-admin"),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn expiring_mandates_reminder_names_the_structure_and_links_the_list() {
        let rendered = render(
            "mandates_expiring",
            &serde_json::json!({"count": "3", "structure": "CCAS de Bègles", "url": "https://x/mandats?etat=bientot"}),
        )
        .expect("rendu");
        assert!(rendered.subject.contains("expirent bientôt"));
        assert!(
            rendered.text.contains("3 mandat(s) de CCAS de Bègles"),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("https://x/mandats?etat=bientot"));
    }

    #[test]
    fn the_usage_receipt_says_who_used_the_mandate_for_what_and_when() {
        let rendered = render(
            "mandate_used",
            &serde_json::json!({"date": "23/11/2026 à 10h05", "structure": "CCAS de Bègles", "demarche": "Logement"}),
        )
        .expect("rendu");
        assert!(rendered.subject.contains("utilisé"));
        assert!(
            rendered
                .text
                .contains("Le 23/11/2026 à 10h05, CCAS de Bègles a utilisé le mandat"),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("« Logement »"));
        assert!(!rendered.text.contains("{{"));
    }

    #[test]
    fn unknown_template_and_missing_parameter_are_refused() {
        assert_eq!(
            render("nope", &Value::Null),
            Err(TemplateError::Unknown("nope".into()))
        );
        assert_eq!(
            render("operator_test", &serde_json::json!({})),
            Err(TemplateError::MissingParameter(
                "operator_test".into(),
                "sent_by"
            ))
        );
    }

    #[test]
    fn every_template_fills_every_placeholder_in_text_and_html() {
        for name in names() {
            let t = find(name).expect("modèle");
            let payload: serde_json::Map<String, Value> = t
                .params
                .iter()
                .map(|p| ((*p).to_owned(), Value::String(format!("valeur-{p}"))))
                .collect();
            let rendered = render(name, &Value::Object(payload.clone())).expect("rendu");
            for part in [&rendered.subject, &rendered.text, &rendered.html] {
                assert!(!part.contains("{{"), "{name} : {part}");
            }
            for p in t.params {
                let value = format!("valeur-{p}");
                assert!(rendered.text.contains(&value), "{name} texte sans {p}");
                assert!(rendered.html.contains(&value), "{name} HTML sans {p}");
            }
            assert!(
                rendered
                    .html
                    .starts_with("<!DOCTYPE html>\n<html lang=\"fr\">")
            );
            if t.sms.is_some() {
                let sms = render_sms(name, &Value::Object(payload)).expect("sms");
                assert!(!sms.contains("{{"), "{name} : {sms}");
            }
        }
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let rendered = render(
            "operator_test",
            &serde_json::json!({"sent_by": "<script>alert('x')</script> & co"}),
        )
        .expect("rendu");
        assert!(rendered.text.contains("<script>alert('x')</script> & co"));
        assert!(!rendered.html.contains("<script>"));
        assert!(
            rendered
                .html
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"),
            "{}",
            rendered.html
        );
        assert!(
            rendered
                .html
                .contains("<title>Aidants Connect : message de test</title>")
        );
    }

    #[test]
    fn only_messages_meant_for_sms_have_an_sms_text() {
        let sms = render_sms(
            "mandate_used",
            &serde_json::json!({"date": "23/11/2026 à 10h05", "structure": "CCAS de Bègles", "demarche": "Logement"}),
        )
        .expect("sms");
        assert!(sms.starts_with("Aidants Connect : le 23/11/2026 à 10h05, CCAS de Bègles"));
        assert!(sms.chars().count() <= 300, "{sms}");
        assert_eq!(
            render_sms("login_link", &serde_json::json!({"url": "x"})),
            Err(TemplateError::NoSms("login_link".into()))
        );
    }

    #[test]
    fn list_parameters_are_lines_in_text_a_list_in_html_and_commas_in_sms() {
        let payload = serde_json::json!({
            "date": "23/11/2026 à 10h05",
            "structure": "CCAS de Bègles",
            "demarches": ["Logement", "Social & santé"],
            "expires": "22/11/2027",
        });
        let rendered = render("mandate_created", &payload).expect("rendu");
        assert!(
            rendered
                .text
                .contains("suivantes :\n- Logement\n- Social & santé\n"),
            "{}",
            rendered.text
        );
        assert!(
            rendered
                .html
                .contains("<li>Logement</li><li>Social &amp; santé</li></ul>"),
            "{}",
            rendered.html
        );
        let sms = render_sms("mandate_created", &payload).expect("sms");
        assert!(sms.contains("(Logement, Social & santé)"), "{sms}");
        // An empty list writes nothing; a list of something else than strings is refused.
        let digest = serde_json::json!({
            "period": "du 16/11/2026 au 23/11/2026",
            "count": "0",
            "requests": [],
            "more": "Aucune demande n'a été déposée pendant cette période.",
        });
        let rendered = render("new_requests_digest", &digest).expect("rendu");
        assert!(!rendered.html.contains("<ul"), "{}", rendered.html);
        assert!(!rendered.text.contains("- "), "{}", rendered.text);
        let mut bad = digest.clone();
        bad["requests"] = serde_json::json!([1, 2]);
        assert_eq!(
            render("new_requests_digest", &bad),
            Err(TemplateError::MissingParameter(
                "new_requests_digest".into(),
                "requests"
            ))
        );
    }

    #[test]
    fn a_value_is_never_expanded_as_a_template() {
        let rendered = render(
            "mandate_created",
            &serde_json::json!({
                "date": "{{expires}}",
                "structure": "{{content}} {{subject}}",
                "demarches": ["{{date}}"],
                "expires": "22/11/2027",
            }),
        )
        .expect("rendu");
        assert!(
            rendered
                .text
                .contains("Le {{expires}}, vous avez confié à {{content}} {{subject}}"),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("- {{date}}"));
        assert!(rendered.subject.ends_with("{{content}} {{subject}}"));
        assert_eq!(rendered.html.matches("<main>").count(), 1);
        assert!(rendered.html.contains("<title>Aidants Connect : vous avez confié un mandat à {{content}} {{subject}}</title>"), "{}", rendered.html);
    }
}
