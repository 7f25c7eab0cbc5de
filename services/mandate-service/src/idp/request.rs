//! Validation of an authorization request (OpenID Connect Core §3.1.2.1, as FranceConnect sends
//! it): first the client and its exact redirect URI — without both, nothing is ever redirected
//! anywhere — then everything else, answered by an OIDC error redirect carrying `state`.

use std::collections::BTreeSet;
use std::sync::Arc;

use foundation::config::Environment;
use serde_json::Value;

use super::clients::{Client, check_uri};
use crate::categories::{self, ALL, Category};

/// The parameters of the authorization request that pages carry along (hidden fields) so the
/// request can be validated again at each step; the platform's own fields start with `ac_`.
pub const CARRIED: [&str; 11] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "acr_values",
    "prompt",
    "claims",
    "code_challenge",
    "code_challenge_method",
];

/// A validated request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: Arc<Client>,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: String,
    pub nonce: String,
    /// The categories the client accepts (all when it did not say) and was registered with.
    pub requested: Vec<Category>,
    pub code_challenge: Option<String>,
    /// The carried parameters, as received.
    pub carried: Vec<(String, String)>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid client or redirect URI: an error page, never a redirect.
    Page(&'static str),
    /// An OIDC error sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

/// The parameters of a query string or form, with repeated names noted.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(encoded: &str) -> Self {
        Self {
            pairs: serde_urlencoded::from_str(encoded).unwrap_or_default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn repeated(&self) -> Option<&str> {
        let mut seen = BTreeSet::new();
        self.pairs
            .iter()
            .find(|(k, _)| !seen.insert(k.as_str()))
            .map(|(k, _)| k.as_str())
    }
}

fn opaque_ok(value: &str) -> bool {
    !value.is_empty() && value.len() <= 512 && value.chars().all(|c| !c.is_control())
}

/// The categories named by a `claims` parameter's `rep_scope` (id_token or userinfo member):
/// `None` when it names none (no restriction), `Some(list)` otherwise — values that are neither
/// FranceConnect labels nor our codes are ignored, so a list of only those is empty.
pub fn requested_categories(claims: &Value) -> Result<Option<Vec<Category>>, &'static str> {
    let mut named: Option<BTreeSet<Category>> = None;
    for member in ["id_token", "userinfo"] {
        let rep_scope = &claims[member]["rep_scope"];
        let values: Vec<&Value> = match rep_scope {
            Value::Null => continue,
            Value::Object(o) => match (o.get("values"), o.get("value")) {
                (Some(Value::Array(list)), _) => list.iter().collect(),
                (Some(Value::Null) | None, Some(v)) => vec![v],
                (Some(Value::Null) | None, None) => continue,
                _ => return Err("rep_scope.values doit être une liste"),
            },
            _ => return Err("rep_scope doit être un objet"),
        };
        let set = named.get_or_insert_with(BTreeSet::new);
        for v in values {
            let text = v
                .as_str()
                .ok_or("rep_scope : valeurs textuelles attendues")?;
            if let Some(c) = categories::by_fc_label_or_code(text) {
                set.insert(c);
            }
        }
    }
    Ok(named.map(|s| s.into_iter().collect()))
}

/// Validates the request against the registered `client` (already looked up from
/// `client_id`; `None` when unknown or disabled). The redirect URI, though registered, is
/// parsed again under the current `environment` before anything is sent there.
pub fn validate(
    params: &Params,
    client: Option<Arc<Client>>,
    environment: Environment,
) -> Result<AuthRequest, Refusal> {
    let client = client.ok_or(Refusal::Page(
        "Le service qui vous a envoyé ici n'est pas reconnu par Aidants Connect.",
    ))?;
    let redirect_uri = params
        .get("redirect_uri")
        .filter(|r| client.redirect_uris.iter().any(|u| u == r))
        .ok_or(Refusal::Page(
            "L'adresse de retour demandée n'est pas celle enregistrée pour ce service.",
        ))?
        .to_owned();
    if check_uri(&redirect_uri, environment).is_err() {
        return Err(Refusal::Page(
            "L'adresse de retour enregistrée pour ce service n'est pas sûre : Aidants Connect n'y renvoie pas.",
        ));
    }
    let state = params.get("state").map(str::to_owned);
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone().filter(|s| opaque_ok(s)),
        error,
        description: description.to_owned(),
    };
    if let Some(name) = params.repeated() {
        return Err(refuse(
            "invalid_request",
            &format!("paramètre répété : {name}"),
        ));
    }
    if params.get("request").is_some() {
        return Err(refuse(
            "request_not_supported",
            "request non pris en charge",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri non pris en charge",
        ));
    }
    match params.get("response_type") {
        None => return Err(refuse("invalid_request", "response_type manquant")),
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "seul response_type=code est pris en charge",
            ));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(refuse(
            "invalid_request",
            "seul response_mode=query est pris en charge",
        ));
    }
    let scope = params
        .get("scope")
        .ok_or_else(|| refuse("invalid_request", "scope manquant"))?;
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(refuse("invalid_scope", "le scope openid est obligatoire"));
    }
    // A scope the client was not registered with is an error (RFC 6749 §4.1.2.1), not
    // silently dropped: the client learns at once that it asks for more than it may.
    if let Some(extra) = scopes
        .iter()
        .find(|s| !client.allowed_scopes.iter().any(|a| a == *s))
    {
        return Err(refuse(
            "invalid_scope",
            &format!("scope non autorisé pour ce service : {extra}"),
        ));
    }
    let state = params
        .get("state")
        .filter(|s| opaque_ok(s))
        .ok_or_else(|| refuse("invalid_request", "state manquant ou invalide"))?
        .to_owned();
    let nonce = params
        .get("nonce")
        .filter(|n| opaque_ok(n))
        .ok_or_else(|| refuse("invalid_request", "nonce manquant ou invalide"))?
        .to_owned();
    let prompts: Vec<&str> = params
        .get("prompt")
        .map(|p| p.split_whitespace().collect())
        .unwrap_or_default();
    if prompts.contains(&"none") {
        return Err(refuse(
            "interaction_required",
            "l'aidant doit choisir la personne et la démarche",
        ));
    }
    if let Some(acr) = params.get("acr_values")
        && !acr.split_whitespace().any(|a| a == "eidas1")
    {
        return Err(refuse(
            "invalid_request",
            "seul le niveau eidas1 est proposé",
        ));
    }
    let code_challenge = match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (None, None) => None,
        (Some(c), Some("S256"))
            if (43..=128).contains(&c.len())
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-._~".contains(ch)) =>
        {
            Some(c.to_owned())
        }
        _ => {
            return Err(refuse(
                "invalid_request",
                "code_challenge invalide (S256 seulement)",
            ));
        }
    };
    let requested = match params.get("claims") {
        None => None,
        Some(raw) => {
            let claims: Value = serde_json::from_str(raw)
                .map_err(|_| refuse("invalid_request", "claims n'est pas du JSON"))?;
            if !claims.is_object() {
                return Err(refuse("invalid_request", "claims doit être un objet"));
            }
            requested_categories(&claims).map_err(|e| refuse("invalid_request", e))?
        }
    };
    // The démarches asked for (all when the claims request names none), restricted to those
    // the client was registered with: a claims request is honoured as far as allowed
    // (OpenID Connect Core §5.5); if nothing is left, the aidant has nothing to choose and the
    // client gets access_denied.
    let requested = requested
        .unwrap_or_else(|| ALL.to_vec())
        .into_iter()
        .filter(|c| client.allowed_categories.iter().any(|a| a == c.code))
        .collect();
    let carried = CARRIED
        .iter()
        .filter_map(|name| params.get(name).map(|v| ((*name).to_owned(), v.to_owned())))
        .collect();
    Ok(AuthRequest {
        client,
        redirect_uri,
        scopes,
        state,
        nonce,
        requested,
        code_challenge,
        carried,
    })
}

/// `uri` with `params` added to its query.
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

impl Refusal {
    /// The error redirect's location (for [`Refusal::Redirect`]).
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            Refusal::Page(_) => None,
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut params = vec![("error", *error), ("error_description", description)];
                if let Some(s) = state {
                    params.push(("state", s));
                }
                params.push(("iss", issuer));
                Some(with_query(redirect_uri, &params))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::clients::AuthMethod;
    use super::super::keys::Alg;
    use super::*;

    const PROD: Environment = Environment::Production;

    fn client() -> Arc<Client> {
        Arc::new(Client::for_tests(
            "fc-integration",
            AuthMethod::ClientSecretPost,
            vec!["https://fc.example/api/v2/oidc-callback".into()],
            Alg::Es256,
        ))
    }

    fn query(extra: &str) -> String {
        format!(
            "response_type=code&client_id=fc-integration&redirect_uri=https%3A%2F%2Ffc.example%2Fapi%2Fv2%2Foidc-callback\
             &scope=openid%20profile%20email%20birth&state=s1234&nonce=n1234&acr_values=eidas1&prompt=login{extra}"
        )
    }

    fn error_of(r: Result<AuthRequest, Refusal>) -> &'static str {
        match r {
            Err(Refusal::Redirect { error, .. }) => error,
            Err(Refusal::Page(p)) => p,
            Ok(_) => "ok",
        }
    }

    #[test]
    fn a_franceconnect_request_is_accepted() {
        let req = validate(&Params::parse(&query("")), Some(client()), PROD).expect("valide");
        assert_eq!(req.state, "s1234");
        assert_eq!(req.requested.len(), ALL.len());
        assert!(req.carried.iter().any(|(k, _)| k == "prompt"));
    }

    #[test]
    fn unknown_client_or_redirect_gives_a_page_never_a_redirect() {
        assert!(matches!(
            validate(&Params::parse(&query("")), None, PROD),
            Err(Refusal::Page(_))
        ));
        let wrong = query("").replace("oidc-callback", "evil");
        assert!(matches!(
            validate(&Params::parse(&wrong), Some(client()), PROD),
            Err(Refusal::Page(_))
        ));
    }

    #[test]
    fn other_errors_are_redirected_with_state() {
        let p = |q: String| validate(&Params::parse(&q), Some(client()), PROD);
        assert_eq!(
            error_of(p(
                query("").replace("response_type=code", "response_type=token")
            )),
            "unsupported_response_type"
        );
        assert_eq!(
            error_of(p(query("").replace("scope=openid%20", "scope="))),
            "invalid_scope"
        );
        assert_eq!(
            error_of(p(query("").replace("&nonce=n1234", ""))),
            "invalid_request"
        );
        assert_eq!(error_of(p(query("&state=again"))), "invalid_request");
        assert_eq!(error_of(p(query("&claims=%7Bnope"))), "invalid_request");
        assert_eq!(
            error_of(p(query("").replace("prompt=login", "prompt=none"))),
            "interaction_required"
        );
        assert_eq!(
            error_of(p(query("&code_challenge=abc&code_challenge_method=plain"))),
            "invalid_request"
        );
        match p(query("").replace("response_type=code&", "")) {
            Err(r @ Refusal::Redirect { .. }) => {
                let to = r.location("https://ac.example").expect("redirect");
                assert!(
                    to.starts_with("https://fc.example/api/v2/oidc-callback?error=invalid_request")
                );
                assert!(to.contains("state=s1234"), "{to}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rep_scope_accepts_labels_and_codes_and_ignores_the_rest() {
        let claims = serde_json::json!({"id_token": {"rep_scope": {"essential": true,
            "values": ["Famille-Scolarité", "logement", "Inconnu"]}}});
        let cats = requested_categories(&claims).expect("lu").expect("nommées");
        let codes: Vec<&str> = cats.iter().map(|c| c.code).collect();
        assert_eq!(codes.len(), 2);
        assert!(codes.contains(&"famille") && codes.contains(&"logement"));
        let none = serde_json::json!({"id_token": {"rep_scope": {"values": ["Inconnu"]}}});
        assert_eq!(requested_categories(&none), Ok(Some(vec![])));
        assert_eq!(requested_categories(&serde_json::json!({})), Ok(None));
        let bad = serde_json::json!({"id_token": {"rep_scope": {"values": [1]}}});
        assert!(requested_categories(&bad).is_err());
    }
}

#[cfg(test)]
mod allowance_tests {
    use super::super::clients::AuthMethod;
    use super::super::keys::Alg;
    use super::*;

    #[test]
    fn scopes_outside_the_registration_are_invalid_and_categories_are_restricted() {
        let mut client = Client::for_tests(
            "service-logement",
            AuthMethod::ClientSecretPost,
            vec!["https://s.example/cb".into()],
            Alg::Es256,
        );
        client.allowed_scopes = vec!["openid".into(), "profile".into()];
        client.allowed_categories = vec!["logement".into()];
        let client = Arc::new(client);
        let query = |scope: &str, extra: &str| {
            format!(
                "response_type=code&client_id=service-logement&redirect_uri=https%3A%2F%2Fs.example%2Fcb\
                 &scope={scope}&state=s1234&nonce=n1234{extra}"
            )
        };
        let run = |q: String| {
            validate(
                &Params::parse(&q),
                Some(client.clone()),
                Environment::Production,
            )
        };
        assert!(matches!(
            run(query("openid%20email", "")),
            Err(Refusal::Redirect {
                error: "invalid_scope",
                ..
            })
        ));
        let ok = run(query("openid%20profile", "")).expect("valide");
        assert_eq!(
            ok.requested.iter().map(|c| c.code).collect::<Vec<_>>(),
            ["logement"]
        );
        let famille = run(query(
            "openid",
            "&claims=%7B%22id_token%22%3A%7B%22rep_scope%22%3A%7B%22values%22%3A%5B%22famille%22%5D%7D%7D%7D",
        ))
        .expect("valide");
        assert!(famille.requested.is_empty());
    }
}
