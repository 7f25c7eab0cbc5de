//! `tenant-admin internal caller`: the services allowed to call the internal document API, each
//! with its own token (printed once, stored as SHA-256), the document kinds it may handle and
//! the départements it may reach.

use clap::Subcommand;
use foundation::auth::secrets::{new_token, token_hash};
use foundation::tenancy::DepartementCode;
use sqlx::PgPool;

#[derive(Subcommand)]
pub enum InternalCommand {
    /// Appelants de l'API interne des documents.
    #[command(subcommand)]
    Caller(CallerCommand),
}

#[derive(Subcommand)]
pub enum CallerCommand {
    /// Enregistre un service appelant ; son jeton est affiché une seule fois.
    Add {
        /// Nom du service (minuscules, chiffres, tirets), par exemple mandate-service.
        #[arg(long)]
        name: String,
        /// Types de documents permis, séparés par des virgules (attestation,court_decision…).
        #[arg(long, value_delimiter = ',', required = true)]
        kinds: Vec<String>,
        /// Départements que le service peut atteindre, séparés par des virgules (33,2A) ;
        /// les autres lui répondent 404.
        #[arg(long, value_delimiter = ',', required = true)]
        departements: Vec<String>,
    },
    /// Liste les services appelants.
    List,
    /// Désactive un service appelant (son jeton est refusé aussitôt).
    Disable {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(pool: &PgPool, command: &InternalCommand) -> anyhow::Result<()> {
    let InternalCommand::Caller(command) = command;
    match command {
        CallerCommand::Add {
            name,
            kinds,
            departements,
        } => {
            let departements = departements
                .iter()
                .map(|d| DepartementCode::parse(d).map(|c| c.as_str().to_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            let token = new_token();
            sqlx::query(
                "INSERT INTO platform.internal_callers (name, token_sha256, kinds, departements)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(token_hash(&token))
            .bind(kinds)
            .bind(&departements)
            .execute(pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    anyhow::anyhow!("le service {name} est déjà enregistré")
                }
                sqlx::Error::Database(d) if d.is_check_violation() => anyhow::anyhow!(
                    "nom invalide (minuscules, chiffres, tirets) ou aucun type de document"
                ),
                e => e.into(),
            })?;
            println!("service {name} enregistré ; jeton (affiché une seule fois) :\n{token}");
        }
        CallerCommand::List => {
            let rows: Vec<(String, Vec<String>, bool, Vec<String>)> = sqlx::query_as(
                "SELECT name, kinds, active, departements FROM platform.internal_callers
                 ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            for (name, kinds, active, departements) in rows {
                let state = if active { "actif" } else { "désactivé" };
                println!(
                    "{name}\t{state}\t{}\t{}",
                    kinds.join(","),
                    departements.join(",")
                );
            }
        }
        CallerCommand::Disable { name } => {
            let done =
                sqlx::query("UPDATE platform.internal_callers SET active = false WHERE name = $1")
                    .bind(name)
                    .execute(pool)
                    .await?;
            anyhow::ensure!(done.rows_affected() == 1, "service inconnu : {name}");
            println!("service {name} désactivé");
        }
    }
    Ok(())
}
