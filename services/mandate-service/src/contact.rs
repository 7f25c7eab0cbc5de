//! How a usager is reached (product.md §9): the contact an aidant records, the rules it must
//! follow, and the channel a receipt takes.

use foundation::outbox::{self, Channel, OutboxMessage, normalise_phone};
use foundation::tenancy::TenantTx;
use serde_json::Value;
use uuid::Uuid;

/// How a usager can be reached, as recorded on the usager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagerContact {
    pub email: Option<String>,
    /// E.164 mobile number.
    pub phone: Option<String>,
    pub postal_address: Option<String>,
}

/// A contact that is there (not absent, not blank).
fn known(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl UsagerContact {
    /// The channel a receipt takes (product.md §9): e-mail, else SMS, else a printed letter;
    /// none when the usager left no way to be reached.
    pub fn route(&self) -> Option<(Channel, &str)> {
        known(&self.email)
            .map(|e| (Channel::Email, e))
            .or_else(|| known(&self.phone).map(|p| (Channel::Sms, p)))
            .or_else(|| known(&self.postal_address).map(|a| (Channel::Letter, a)))
    }
}

/// Lines of a postal address a window envelope shows (French postal standard: 6 lines of 38
/// characters at most).
pub const ADDRESS_LINES: usize = 6;
pub const ADDRESS_LINE_CHARS: usize = 38;

/// A postal address from what a person typed: lines trimmed, empty lines dropped; at least two
/// lines (the name, then where), at most [`ADDRESS_LINES`] of [`ADDRESS_LINE_CHARS`].
pub fn normalise_postal_address(typed: &str) -> Option<String> {
    let lines: Vec<&str> = typed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let fits = (2..=ADDRESS_LINES).contains(&lines.len())
        && lines
            .iter()
            .all(|l| l.chars().count() <= ADDRESS_LINE_CHARS && !l.chars().any(char::is_control));
    fits.then(|| lines.join("\n"))
}

/// What is wrong with a typed contact, said to the aidant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    #[error(
        "Le numéro de téléphone mobile n'est pas valide : saisissez un numéro de portable, par exemple 06 12 34 56 78 (un téléphone fixe ne reçoit pas de SMS)."
    )]
    Phone,
    #[error(
        "L'adresse postale n'est pas valide : de 2 à 6 lignes (nom, numéro et voie, code postal et commune), 38 caractères au plus par ligne."
    )]
    PostalAddress,
}

/// The phone and postal address an aidant typed for a usager (each may be left empty), in the
/// form they are stored.
pub fn typed_contact(
    phone: &str,
    postal_address: &str,
) -> Result<(Option<String>, Option<String>), ContactError> {
    let phone = match phone.trim() {
        "" => None,
        p => Some(normalise_phone(p).ok_or(ContactError::Phone)?),
    };
    let address = if postal_address.trim().is_empty() {
        None
    } else {
        Some(normalise_postal_address(postal_address).ok_or(ContactError::PostalAddress)?)
    };
    Ok((phone, address))
}

/// Queues a receipt to a usager of `structure` by the channel their contact allows, inside the
/// caller's tenant transaction. Returns the message id and channel, or `None` when the usager
/// cannot be reached (nothing queued).
pub async fn enqueue_usager_receipt(
    tx: &mut TenantTx,
    structure: foundation::ids::StructureId,
    contact: &UsagerContact,

    template: &'static str,
    payload: Value,
) -> Result<Option<(Uuid, Channel)>, sqlx::Error> {
    let Some(message) = usager_receipt(contact, template, payload) else {
        return Ok(None);
    };
    let id = outbox::enqueue_for_structure(tx, &message, structure).await?;
    Ok(Some((id, message.channel)))
}

/// The receipt to a usager by the channel their contact allows, or `None` when they cannot be
/// reached.
pub fn usager_receipt(
    contact: &UsagerContact,
    template: &'static str,
    payload: Value,
) -> Option<OutboxMessage> {
    let (channel, recipient) = contact.route()?;
    Some(OutboxMessage {
        channel,
        recipient: recipient.to_owned(),
        template,
        payload,
    })
}

/// How a person may choose, in their own space, to receive receipts: (stored value, label).
pub const RECEIPTS: &[(&str, &str)] = &[
    (
        "auto",
        "Automatique : par e-mail, sinon par SMS, sinon par courrier",
    ),
    ("email", "Par e-mail"),
    ("sms", "Par SMS"),
    ("letter", "Par courrier"),
    ("none", "Je ne veux pas de confirmation"),
];

impl UsagerContact {
    /// The contact narrowed to the channel the person chose (`usagers.receipts`): that channel
    /// alone when its contact is known, nothing at all for `none`, the usual order otherwise
    /// (`auto`, or a chosen channel whose contact is unknown).
    pub fn chosen(self, receipts: &str) -> UsagerContact {
        match receipts {
            "none" => UsagerContact::default(),
            "email" if known(&self.email).is_some() => UsagerContact {
                email: self.email,
                ..Default::default()
            },
            "sms" if known(&self.phone).is_some() => UsagerContact {
                phone: self.phone,
                ..Default::default()
            },
            "letter" if known(&self.postal_address).is_some() => UsagerContact {
                postal_address: self.postal_address,
                ..Default::default()
            },
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foundation::outbox::Channel;

    #[test]
    fn receipts_go_by_email_else_sms_else_letter() {
        let mut contact = UsagerContact {
            email: Some("a@b.fr".into()),
            phone: Some("+33612345678".into()),
            postal_address: Some("1 rue X\n33000 Bordeaux".into()),
        };
        assert_eq!(contact.route(), Some((Channel::Email, "a@b.fr")));
        contact.email = Some("  ".into());
        assert_eq!(contact.route(), Some((Channel::Sms, "+33612345678")));
        contact.phone = None;
        assert_eq!(
            contact.route(),
            Some((Channel::Letter, "1 rue X\n33000 Bordeaux"))
        );
        contact.postal_address = None;
        assert_eq!(contact.route(), None);
    }

    #[test]
    fn the_persons_choice_narrows_the_route() {
        let all = UsagerContact {
            email: Some("a@b.fr".into()),
            phone: Some("+33612345678".into()),
            postal_address: Some("A\nB".into()),
        };
        assert_eq!(
            all.clone().chosen("auto").route(),
            Some((Channel::Email, "a@b.fr"))
        );
        assert_eq!(
            all.clone().chosen("sms").route(),
            Some((Channel::Sms, "+33612345678"))
        );
        assert_eq!(
            all.clone().chosen("letter").route(),
            Some((Channel::Letter, "A\nB"))
        );
        assert_eq!(all.clone().chosen("none").route(), None);
        // A chosen channel without its contact: the usual order.
        let no_phone = UsagerContact { phone: None, ..all };
        assert_eq!(
            no_phone.chosen("sms").route(),
            Some((Channel::Email, "a@b.fr"))
        );
    }

    #[test]
    fn typed_contacts_are_normalised_or_refused_in_french() {
        assert_eq!(
            typed_contact(
                " 06 12 34 56 78 ",
                "  M. Paul MARTIN \n\n 3 rue Neuve\r\n33000 Bordeaux "
            ),
            Ok((
                Some("+33612345678".into()),
                Some("M. Paul MARTIN\n3 rue Neuve\n33000 Bordeaux".into())
            ))
        );
        assert_eq!(typed_contact("", "  "), Ok((None, None)));
        assert_eq!(
            typed_contact("05 56 00 00 00", ""),
            Err(ContactError::Phone)
        );
        assert_eq!(
            typed_contact("", "Bordeaux"),
            Err(ContactError::PostalAddress)
        );
        let long = format!("M. Paul MARTIN\n{}", "x".repeat(39));
        assert_eq!(typed_contact("", &long), Err(ContactError::PostalAddress));
        let seven = "a\nb\nc\nd\ne\nf\ng";
        assert_eq!(typed_contact("", seven), Err(ContactError::PostalAddress));
        assert!(ContactError::Phone.to_string().starts_with("Le numéro"));
    }
}
