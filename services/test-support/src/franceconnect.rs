//! The FranceConnect stand-in (`infra/fc-standin`) seen from tests: registering the platform
//! under test as a client, with its exact redirect and logout URIs.

/// The stand-in's issuer (`AC_FC_ISSUER`, set by `infra/run`).
pub fn issuer() -> Option<String> {
    std::env::var("AC_FC_ISSUER").ok().filter(|s| !s.is_empty())
}

/// Registers a client for a platform served at `origin`; returns (client_id, client_secret).
pub async fn register_client(origin: &str) -> (String, String) {
    let issuer = issuer().expect("AC_FC_ISSUER (lancez les tests avec infra/run test)");
    let token = std::env::var("FC_REGISTRATION_TOKEN")
        .unwrap_or_else(|_| "stand-in-registration".to_owned());
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/reg"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "redirect_uris": [
                format!("{origin}/mandats/franceconnect/retour"),
                format!("{origin}/mes-mandats/franceconnect/retour"),
                format!("{origin}/consentement/franceconnect/retour"),
            ],
            "post_logout_redirect_uris": [
                format!("{origin}/mandats/franceconnect/deconnexion"),
                format!("{origin}/mes-mandats/franceconnect/deconnexion"),
                format!("{origin}/consentement/franceconnect/deconnexion"),
            ],
            "client_name": "Aidants Connect (tests)",
        }))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("enregistrement auprès du simulateur FranceConnect")
        .json()
        .await
        .expect("réponse d'enregistrement");
    (
        reply["client_id"].as_str().expect("client_id").to_owned(),
        reply["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned(),
    )
}
