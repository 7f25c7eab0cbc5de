//! `tenant-admin idp`: the identity provider's clients (FranceConnect's platforms and any other)
//! and signing keys. A client's secret is printed once, at registration or rotation, and only
//! its hash is kept.

use clap::{Args, Subcommand};
use foundation::auth::secrets::SeedCipher;
use foundation::config::Environment;
use mandate_service::idp::clients::{self, AuthMethod, NewClient};
use mandate_service::idp::keys::{self, Alg};
use mandate_service::jws::JwkSet;
use secrecy::SecretString;
use sqlx::PgPool;
use time::Duration;

#[derive(Subcommand)]
pub enum IdpCommand {
    /// Clients OpenID autorisés à appeler le fournisseur d'identité.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Clés de signature (jetons d'identité et userinfo).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Enregistre un client ; affiche son secret une seule fois.
    Add(Box<AddClient>),
    /// Liste les clients.
    List,
    /// Donne un nouveau secret au client (l'ancien cesse aussitôt de fonctionner).
    RotateSecret {
        #[arg(long)]
        client_id: String,
    },
    /// Désactive un client.
    Disable {
        #[arg(long)]
        client_id: String,
    },
    /// Réactive un client.
    Enable {
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Args)]
pub struct AddClient {
    /// Identifiant (8 à 100 caractères parmi A-Z a-z 0-9 . _ -).
    #[arg(long)]
    client_id: String,
    /// Nom affiché aux aidants (« FranceConnect », …).
    #[arg(long)]
    name: String,
    /// URI de redirection (exacte ; répétable) : https://…, ou http:// sur 127.0.0.1,
    /// [::1] ou localhost hors production ; ni identifiant, ni mot de passe, ni fragment.
    #[arg(long = "redirect-uri", required = true)]
    redirect_uris: Vec<String>,
    /// Scopes que le client peut demander, séparés par des virgules (openid est ajouté) :
    /// profile, email, birth, identite_pivot, given_name, family_name, birthdate, gender,
    /// birthplace, birthcountry, preferred_username.
    #[arg(long, required = true, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Catégories de démarches que le client peut recevoir, séparées par des virgules
    /// (codes : papiers, famille, social, travail, logement, transports, argent, justice,
    /// etranger, loisirs ; ou libellés FranceConnect).
    #[arg(long, required = true, value_delimiter = ',')]
    categories: Vec<String>,
    /// URI de retour après déconnexion (répétable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// client_secret_post, client_secret_basic ou private_key_jwt.
    #[arg(long, default_value = "client_secret_post")]
    auth_method: String,
    /// Fichier du jeu de clés publiques (JWKS) du client, pour private_key_jwt.
    #[arg(long)]
    jwks_file: Option<std::path::PathBuf>,
    /// ES256 ou RS256.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// Clé de chiffrement des clés privées (pour créer une clé RS256 si besoin).
    #[arg(
        long,
        env = "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    key_encryption_key: Option<String>,
    #[arg(
        long,
        env = "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY_VERSION",
        default_value_t = 1
    )]
    key_encryption_key_version: i32,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Crée une nouvelle clé : publiée aussitôt, utilisée après le délai de publication ;
    /// les anciennes restent publiées pendant la durée de conservation.
    Rotate {
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Délai entre publication et usage, en secondes (défaut : une heure ; au moins 10).
        #[arg(long, default_value_t = keys::DEFAULT_PUBLISH_DELAY.whole_seconds())]
        publish_delay: i64,
        /// Durée de publication des anciennes clés après la relève, en secondes (défaut : 24 h ;
        /// au moins 120).
        #[arg(long, default_value_t = keys::DEFAULT_RETENTION.whole_seconds())]
        retention: i64,
        #[arg(
            long,
            env = "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY",
            hide_env_values = true
        )]
        key_encryption_key: Option<String>,
        #[arg(
            long,
            env = "AC_SECURITY__IDP_KEY_ENCRYPTION_KEY_VERSION",
            default_value_t = 1
        )]
        key_encryption_key_version: i32,
    },
    /// Liste les clés et leurs dates.
    List,
}

/// The configured key, else the local development one (which the services refuse in
/// production).
fn cipher(key: &Option<String>, version: i32) -> anyhow::Result<SeedCipher> {
    let key: SecretString = match key {
        Some(k) => k.clone().into(),
        None => {
            foundation::config::Settings::default()
                .security
                .idp_key_encryption_key
        }
    };
    Ok(SeedCipher::new(&key, version)?)
}

/// The environment, read as the services read it (`AC_ENVIRONMENT`, else their default): plain
/// HTTP redirect URIs on the loopback interface are accepted only outside production.
fn environment() -> anyhow::Result<Environment> {
    Ok(match std::env::var("AC_ENVIRONMENT").as_deref() {
        Ok("production") => Environment::Production,
        Ok("development") => Environment::Development,
        Ok("test") => Environment::Test,
        Ok(other) => {
            anyhow::bail!("AC_ENVIRONMENT inconnu : {other} (production, development ou test)")
        }
        Err(_) => foundation::config::Settings::default().environment,
    })
}

fn alg(s: &str) -> anyhow::Result<Alg> {
    Alg::parse(s).ok_or_else(|| anyhow::anyhow!("algorithme inconnu : {s} (ES256 ou RS256)"))
}

pub async fn run(pool: &PgPool, command: &IdpCommand) -> anyhow::Result<()> {
    match command {
        IdpCommand::Client { command } => client(pool, command).await,
        IdpCommand::Keys { command } => key_command(pool, command).await,
    }
}

async fn client(pool: &PgPool, command: &ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Add(add) => {
            let AddClient {
                client_id,
                name,
                redirect_uris,
                scopes,
                categories,
                post_logout_redirect_uris,
                auth_method,
                jwks_file,
                alg: signing,
                key_encryption_key,
                key_encryption_key_version,
            } = add.as_ref();
            let environment = environment()?;
            for uri in redirect_uris.iter().chain(post_logout_redirect_uris) {
                clients::check_uri(uri, environment).map_err(anyhow::Error::msg)?;
            }
            let auth_method = AuthMethod::parse(auth_method).ok_or_else(|| {
                anyhow::anyhow!(
                    "méthode inconnue : {auth_method} (client_secret_post, client_secret_basic, private_key_jwt)"
                )
            })?;
            let jwks = match jwks_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("{} illisible : {e}", path.display()))?;
                    let set: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("JWKS invalide : {e}"))?;
                    Some(set)
                }
                None => None,
            };
            let signing_alg = alg(signing)?;
            if signing_alg == Alg::Rs256 {
                let c = cipher(key_encryption_key, *key_encryption_key_version)?;
                if keys::ensure(pool, &c, Alg::Rs256).await? {
                    println!("Clé de signature RS256 créée.");
                }
            }
            let secret = clients::register(
                pool,
                &NewClient {
                    client_id: client_id.clone(),
                    name: name.clone(),
                    auth_method,
                    jwks,
                    redirect_uris: redirect_uris.clone(),
                    post_logout_redirect_uris: post_logout_redirect_uris.clone(),
                    signing_alg,
                    allowed_scopes: scopes.iter().map(|s| s.trim().to_owned()).collect(),
                    allowed_categories: categories.iter().map(|c| c.trim().to_owned()).collect(),
                },
                environment,
            )
            .await?;
            println!("Client {client_id} enregistré ({}).", auth_method.as_str());
            if let Some(secret) = secret {
                println!("client_secret (affiché une seule fois) : {secret}");
            }
        }
        ClientCommand::List => {
            for c in clients::list(pool).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\tredirect: {}\tlogout: {}\tscopes: {}\tcatégories: {}",
                    c.client_id,
                    c.name,
                    c.auth_method.as_str(),
                    c.signing_alg.as_str(),
                    if c.active { "actif" } else { "désactivé" },
                    c.redirect_uris.join(" "),
                    c.post_logout_redirect_uris.join(" "),
                    c.allowed_scopes.join(" "),
                    c.allowed_categories.join(" "),
                );
            }
        }
        ClientCommand::RotateSecret { client_id } => {
            let secret = clients::rotate_secret(pool, client_id).await?;
            println!("Nouveau client_secret de {client_id} (affiché une seule fois) : {secret}");
        }
        ClientCommand::Disable { client_id } => {
            clients::set_active(pool, client_id, false).await?;
            println!("Client {client_id} désactivé.");
        }
        ClientCommand::Enable { client_id } => {
            clients::set_active(pool, client_id, true).await?;
            println!("Client {client_id} réactivé.");
        }
    }
    Ok(())
}

async fn key_command(pool: &PgPool, command: &KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate {
            alg: a,
            publish_delay,
            retention,
            key_encryption_key,
            key_encryption_key_version,
        } => {
            if *publish_delay < keys::MIN_PUBLISH_DELAY.whole_seconds() {
                anyhow::bail!(
                    "délai de publication trop court : au moins {} s (chaque processus relit les clés toutes les {} s)",
                    keys::MIN_PUBLISH_DELAY.whole_seconds(),
                    keys::RELOAD_EVERY.as_secs()
                );
            }
            if *retention < 120 {
                anyhow::bail!("conservation trop courte : au moins 120 s (les jetons vivent 60 s)");
            }
            let c = cipher(key_encryption_key, *key_encryption_key_version)?;
            let kid = keys::rotate(
                pool,
                &c,
                alg(a)?,
                Duration::seconds(*publish_delay),
                Duration::seconds(*retention),
            )
            .await?;
            println!(
                "Nouvelle clé {kid} publiée ; elle signera dans {publish_delay} s. Les précédentes restent publiées {retention} s après."
            );
        }
        KeysCommand::List => {
            for k in keys::list(pool).await? {
                println!(
                    "{}\t{}\tcréée {}\tsigne depuis {}\tdépubliée {}",
                    k.kid,
                    k.alg,
                    k.created_at,
                    k.signs_from,
                    k.unpublished_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "—".into())
                );
            }
        }
    }
    Ok(())
}
