//! `tenant-admin`: the operators' command line — territories, tenants, schema migrations,
//! demo data, outbox checks. Bad input gets one clear line in French, a non-zero exit, and
//! changes nothing.

mod backup;
mod demo;
mod idp;
mod internal;
mod journal;
mod keys;
mod letters;
mod measures;
mod migrate;
mod pix;
mod place;
mod professionals;
mod retention;
mod seed;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use foundation::tenancy::tenants::{self, TenantKind};
use foundation::tenancy::{CommuneCode, DepartementCode};
use sqlx::PgPool;

#[derive(Parser)]
#[command(
    name = "tenant-admin",
    about = "Administration des territoires et tenants d'Aidants Connect"
)]
struct Cli {
    /// URL PostgreSQL du rôle administrateur (propriétaire des schémas).
    #[arg(long, env = "AC_ADMIN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Rôle de connexion des services, à qui les droits sont accordés.
    #[arg(long, env = "AC_APP_ROLE", default_value = "aidants_app")]
    app_role: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Référentiel des régions et départements ; sauvegarde et restauration d'un territoire.
    #[command(alias = "territory")]
    Territories {
        #[command(subcommand)]
        command: TerritoriesCommand,
    },
    /// Tenants : conseils départementaux et communes.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Migre le schéma national puis les 101 schémas départementaux (ou ceux indiqués).
    Migrate(migrate::MigrateArgs),
    /// Comptes professionnels.
    Professionals {
        #[command(subcommand)]
        command: professionals::ProfessionalsCommand,
    },
    /// Cartes TOTP physiques.
    Cards {
        #[command(subcommand)]
        command: keys::CardsCommand,
    },
    /// Résultats de certification Pix.
    Pix {
        #[command(subcommand)]
        command: pix::PixCommand,
    },
    /// Clés de chiffrement.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Structures d'un territoire.
    Structures {
        #[command(subcommand)]
        command: professionals::StructuresCommand,
    },
    /// Crée le territoire de démonstration et ses comptes de démonstration (idempotent ; refusé
    /// en production).
    Demo,
    /// Peuplement national de mesure (structures, aidants, usagers, mandats) par COPY, un
    /// territoire par transaction ; relancé, il reprend où il s'était arrêté (refusé en
    /// production).
    Seed(seed::SeedArgs),
    /// Journal d'un territoire : vérification, scellement, export pour un auditeur.
    Journal {
        #[command(subcommand)]
        command: journal::JournalCommand,
    },
    /// Fournisseur d'identité : clients OpenID et clés de signature.
    Idp {
        #[command(subcommand)]
        command: idp::IdpCommand,
    },
    /// File d'envoi : messages bloqués, remise en file.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// API interne des documents : services appelants et leurs jetons.
    Internal {
        #[command(subcommand)]
        command: internal::InternalCommand,
    },
    /// Courriers papier : lots PDF à imprimer pour les usagers sans courriel ni portable.
    Letters {
        #[command(subcommand)]
        command: letters::LettersCommand,
    },
    /// Conservation des données des mandats : plan, exécution, durées d'un tenant.
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// Mesures de protection judiciaire d'un service mandataire : import CSV.
    Measures {
        #[command(subcommand)]
        command: measures::MeasuresCommand,
    },
    /// Personnes accompagnées : effacement à leur demande.
    Usagers {
        #[command(subcommand)]
        command: retention::UsagersCommand,
    },
    /// Courriel de test, déposé dans la file d'envoi.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
}

#[derive(Subcommand)]
enum TerritoriesCommand {
    /// Charge (ou met à jour) les 18 régions et 101 départements.
    Seed,
    #[command(flatten)]
    Backup(backup::BackupCommand),
    /// Cluster Citus : nœud de chaque territoire ; déplacement d'un territoire, sans interruption.
    Place(place::PlaceArgs),
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Enregistre un tenant : --departement CODE pour un conseil départemental, --commune CODE
    /// pour une commune.
    Create(CreateTenant),
    /// Liste les tenants.
    List {
        /// Sortie JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "territory")]
struct TenantTerritory {
    /// Code INSEE du département (conseil départemental).
    #[arg(long)]
    departement: Option<String>,
    /// Code INSEE de la commune.
    #[arg(long)]
    commune: Option<String>,
}

#[derive(Args)]
struct CreateTenant {
    #[command(flatten)]
    territory: TenantTerritory,
    /// Nom affiché du tenant.
    #[arg(long)]
    name: String,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Messages abandonnés après leurs tentatives, ou dont l'envoi est resté incertain.
    Stuck,
    /// Remet un message dans la file (après vérification, pour un envoi incertain).
    Requeue {
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum MailCommand {
    /// Dépose un message de test pour cette adresse dans la file nationale.
    Test {
        #[arg(long)]
        to: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("erreur : {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How tenant-admin logs in as département roles: with the services' secret
/// (`AC_DATABASE__TENANT_ROLE_SECRET`), which the migrator also uses to set their passwords.
fn tenant_login() -> anyhow::Result<foundation::tenancy::TenantLogin> {
    Ok(foundation::config::Settings::load_tenant_login()?)
}

/// The territories, reached as the services reach them (each département's own role).
async fn tenancy(pool: &PgPool) -> anyhow::Result<foundation::tenancy::Tenancy> {
    Ok(foundation::tenancy::Tenancy::load(pool.clone(), tenant_login()?).await?)
}

async fn connect(cli: &Cli) -> anyhow::Result<PgPool> {
    let url = cli.database_url.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "AC_ADMIN_DATABASE_URL (ou --database-url) est nécessaire pour cette commande"
        )
    })?;
    foundation::tenancy::migrate::connect_admin(url, 8)
        .await
        .map_err(|e| anyhow::anyhow!("base de données injoignable ({e})"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Territories {
            command: TerritoriesCommand::Seed,
        } => {
            let pool = connect(&cli).await?;
            foundation::tenancy::migrate::migrate_platform(&pool, &cli.app_role).await?;
            println!("18 régions et 101 départements chargés");
        }
        Command::Tenants {
            command: TenantsCommand::Create(args),
        } => {
            // Parse everything before touching the database.
            let kind = match (&args.territory.departement, &args.territory.commune) {
                (Some(d), _) => TenantKind::Departement(DepartementCode::parse(d)?),
                (_, Some(c)) => TenantKind::Commune(CommuneCode::parse(c)?),
                _ => unreachable!("clap requires one of --departement, --commune"),
            };
            let pool = connect(&cli).await?;
            let tenant = tenants::create_tenant(&pool, &kind, &args.name).await?;
            println!(
                "tenant créé : {} ({}, département {})",
                tenant.id, tenant.name, tenant.departement_code
            );
        }
        Command::Tenants {
            command: TenantsCommand::List { json },
        } => {
            let pool = connect(&cli).await?;
            let list = tenants::list_tenants(&pool).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for t in list {
                    let place = t.commune_code.as_deref().unwrap_or(&t.departement_code);
                    println!("{}\t{}\t{}\t{}", t.id, t.kind, place, t.name);
                }
            }
        }
        Command::Migrate(args) => migrate::run(&cli, args).await?,
        Command::Professionals { command } => {
            professionals::run(&connect(&cli).await?, command).await?
        }
        Command::Structures { command } => {
            professionals::run_structures(&connect(&cli).await?, command).await?
        }
        Command::Outbox { command } => {
            let tenancy = tenancy(&connect(&cli).await?).await?;
            match command {
                OutboxCommand::Stuck => {
                    for m in
                        foundation::outbox::list_stuck(&tenancy, foundation::outbox::MAX_ATTEMPTS)
                            .await?
                    {
                        println!(
                            "{}\t{}\t{}\t{}\t{} tentative(s)",
                            m.id, m.scope, m.state, m.template, m.attempts
                        );
                    }
                }
                OutboxCommand::Requeue { id } => {
                    anyhow::ensure!(
                        foundation::outbox::requeue(&tenancy, *id).await?,
                        "aucun message en attente {id}"
                    );
                    println!("message {id} remis dans la file");
                }
            }
        }
        Command::Cards { command } => keys::run_cards(&connect(&cli).await?, command).await?,
        Command::Pix { command } => pix::run(&connect(&cli).await?, command).await?,
        Command::Keys { command } => keys::run_keys(&connect(&cli).await?, command).await?,
        Command::Territories {
            command: TerritoriesCommand::Backup(command),
        } => backup::run(&cli, command).await?,
        Command::Territories {
            command: TerritoriesCommand::Place(args),
        } => place::run(&connect(&cli).await?, args).await?,
        Command::Journal { command } => match journal::offline(command) {
            Some(result) => result?,
            None => journal::run(&connect(&cli).await?, command).await?,
        },
        Command::Idp { command } => idp::run(&connect(&cli).await?, command).await?,
        Command::Internal { command } => internal::run(&connect(&cli).await?, command).await?,
        Command::Letters { command } => letters::run(&connect(&cli).await?, command).await?,
        Command::Retention { command } => retention::run(&connect(&cli).await?, command).await?,
        Command::Usagers { command } => retention::usagers(&connect(&cli).await?, command).await?,
        Command::Measures { command } => measures::run(&connect(&cli).await?, command).await?,
        Command::Demo => demo::run(&connect(&cli).await?, &cli.app_role).await?,
        Command::Seed(args) => seed::run(&connect(&cli).await?, args).await?,
        Command::Mail {
            command: MailCommand::Test { to },
        } => {
            let pool = connect(&cli).await?;
            let mut tx = pool.begin().await?;
            let message = foundation::outbox::OutboxMessage {
                channel: foundation::outbox::Channel::Email,
                recipient: to.clone(),
                template: "operator_test",
                payload: serde_json::json!({ "sent_by": "tenant-admin" }),
            };
            let id = foundation::outbox::enqueue_platform(&mut tx, &message).await?;
            tx.commit().await?;
            println!("message {id} déposé dans la file d'envoi");
        }
    }
    Ok(())
}
