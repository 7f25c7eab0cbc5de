//! Message templates, one folder per message under `templates/`, in French. A template gets
//! the outbox payload as parameters; an unknown template or a missing parameter is a permanent
//! failure (retrying would not help).

use serde_json::Value;

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("modèle de message inconnu « {0} »")]
    Unknown(String),
    #[error("paramètre « {1} » manquant pour le modèle « {0} »")]
    MissingParameter(String, &'static str),
}

fn param<'a>(
    template: &str,
    payload: &'a Value,
    key: &'static str,
) -> Result<&'a str, TemplateError> {
    payload[key]
        .as_str()
        .ok_or_else(|| TemplateError::MissingParameter(template.into(), key))
}

/// Fills `{{name}}` placeholders of a template file with the payload's string values.
fn fill(
    template: &str,
    source: &str,
    payload: &Value,
    keys: &[&'static str],
) -> Result<String, TemplateError> {
    let mut out = source.to_owned();
    for key in keys {
        out = out.replace(&format!("{{{{{key}}}}}"), param(template, payload, key)?);
    }
    Ok(out)
}

/// Renders the message `template` with `payload`.
pub fn render(template: &str, payload: &Value) -> Result<Rendered, TemplateError> {
    match template {
        "operator_test" => Ok(Rendered {
            subject: include_str!("../templates/operator_test/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/operator_test/body.txt"),
                payload,
                &["sent_by"],
            )?,
        }),
        "login_link" => Ok(Rendered {
            subject: include_str!("../templates/login_link/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/login_link/body.txt"),
                payload,
                &["url"],
            )?,
        }),
        "enrolment_link" => Ok(Rendered {
            subject: include_str!("../templates/enrolment_link/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/enrolment_link/body.txt"),
                payload,
                &["url"],
            )?,
        }),
        "mandates_expiring" => Ok(Rendered {
            subject: include_str!("../templates/mandates_expiring/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/mandates_expiring/body.txt"),
                payload,
                &["count", "structure", "url"],
            )?,
        }),
        "inactive_aidant" => Ok(Rendered {
            subject: include_str!("../templates/inactive_aidant/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/inactive_aidant/body.txt"),
                payload,
                &["name", "url"],
            )?,
        }),
        "mandate_used" => Ok(Rendered {
            subject: include_str!("../templates/mandate_used/subject.txt")
                .trim()
                .to_owned(),
            text: fill(
                template,
                include_str!("../templates/mandate_used/body.txt"),
                payload,
                &["date", "structure", "demarche"],
            )?,
        }),
        other => Err(TemplateError::Unknown(other.into())),
    }
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
}
