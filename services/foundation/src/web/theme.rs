//! The operator's brand marks, in one place. The national team operates the platform under
//! the State brand (DSFR "bloc marque"); another operator replaces this value, not the pages.

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Lines of the brand block ("République" / "Française"), shown above the service name.
    pub brand_lines: &'static [&'static str],
    /// Whether the brand block is the State's official Marianne logo (DSFR `fr-logo`).
    pub official_state_logo: bool,
    pub service_name: &'static str,
    pub tagline: &'static str,
    /// Short description shown in the footer.
    pub footer_description: &'static str,
    /// Accessibility compliance as legally declared ("non conforme" until an audit).
    pub accessibility_status: &'static str,
}

impl Theme {
    /// The brand block as one accessible label, e.g. "République Française".
    pub fn brand_label(&self) -> String {
        self.brand_lines.join(" ")
    }
}

pub const STATE: Theme = Theme {
    brand_lines: &["République", "Française"],
    official_state_logo: true,
    service_name: "Aidants Connect",
    tagline: "Faire des démarches en ligne pour le compte d'une personne, légalement et en toute sécurité",
    footer_description: "Aidants Connect permet aux professionnels habilités de réaliser des démarches \
        administratives en ligne pour le compte de personnes qui ne peuvent pas les faire seules, \
        avec leur consentement et de façon traçable.",
    accessibility_status: "non conforme",
};
