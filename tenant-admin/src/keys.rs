//! `tenant-admin cards import` and `tenant-admin keys rotate-totp`: the national team's card
//! import from a file, and the rotation of the key that encrypts TOTP seeds (every seed is
//! re-encrypted in one transaction; the services then run with the new key and version).

use clap::Subcommand;
use foundation::auth::cards;
use foundation::auth::secrets::SeedCipher;
use foundation::ids::TenantId;
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum CardsCommand {
    /// Importe un fichier CSV de cartes (numéro de série, clé base32, pas) ; rapport ligne à ligne.
    Import {
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Rechiffre toutes les clés TOTP avec une nouvelle clé (32 octets en base64).
    RotateTotp {
        /// Clé actuelle (par défaut celle de la configuration).
        #[arg(long, env = "AC_SECURITY__TOTP_KEY", hide_env_values = true)]
        old_key: Option<String>,
        #[arg(long, env = "AC_SECURITY__TOTP_KEY_VERSION", default_value_t = 1)]
        old_version: i32,
        /// Nouvelle clé : 32 octets aléatoires encodés en base64.
        #[arg(long, env = "AC_NEW_TOTP_KEY", hide_env_values = true)]
        new_key: String,
        #[arg(long)]
        new_version: i32,
    },
    /// Nouvelle version de la clé d'un tenant : les clés de ses documents sont rechiffrées.
    RotateTenant {
        #[arg(long)]
        tenant: TenantId,
    },
}

fn cipher_from_settings() -> anyhow::Result<SeedCipher> {
    let settings = foundation::config::Settings::load()?;
    Ok(SeedCipher::new(
        &settings.security.totp_key,
        settings.security.totp_key_version,
    )?)
}

pub async fn run_cards(pool: &PgPool, command: &CardsCommand) -> anyhow::Result<()> {
    let CardsCommand::Import { file } = command;
    let csv = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("fichier illisible {} ({e})", file.display()))?;
    let cipher = cipher_from_settings()?;
    let mut tx = pool.begin().await?;
    let report = cards::import(&mut tx, &cipher, &csv, None).await?;
    tx.commit().await?;
    for line in &report {
        match &line.outcome {
            Ok(()) => println!("ligne {} ({}) : importée", line.line, line.serial),
            Err(e) => println!("ligne {} ({}) : refusée — {e}", line.line, line.serial),
        }
    }
    let imported = report.iter().filter(|l| l.outcome.is_ok()).count();
    println!(
        "{imported} carte(s) importée(s), {} ligne(s) refusée(s)",
        report.len() - imported
    );
    Ok(())
}

type Sealed = (Uuid, Vec<u8>, Vec<u8>, i32, bool);
/// A card's serial, seed ciphertext, nonce, key version, bound to the row.
type SealedCard = (String, Vec<u8>, Vec<u8>, i32, bool);

async fn rotate_tenant(pool: &PgPool, tenant: TenantId) -> anyhow::Result<()> {
    let departement: Option<String> =
        sqlx::query_scalar("SELECT departement_code FROM platform.tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    let departement = departement.ok_or_else(|| anyhow::anyhow!("tenant inconnu {tenant}"))?;
    let settings = foundation::config::Settings::load()?;
    let vault = document_vault_bridge::vault_from_settings(&settings).await?;
    let tenancy = crate::tenancy(pool).await?;
    let territory = tenancy
        .unguarded(foundation::tenancy::DepartementCode::parse(&departement)?)
        .await?;
    let mut conn = pool.acquire().await?;
    let count = vault
        .rotate_tenant_key(&territory, &mut conn, tenant)
        .await?;
    println!("clé du tenant {tenant} renouvelée ; {count} document(s) rechiffré(s)");
    Ok(())
}

pub async fn run_keys(pool: &PgPool, command: &KeysCommand) -> anyhow::Result<()> {
    let (old_key, old_version, new_key, new_version) = match command {
        KeysCommand::RotateTenant { tenant } => return rotate_tenant(pool, *tenant).await,
        KeysCommand::RotateTotp {
            old_key,
            old_version,
            new_key,
            new_version,
        } => (old_key, old_version, new_key, new_version),
    };
    anyhow::ensure!(
        new_version != old_version,
        "la nouvelle version doit différer de l'actuelle ({old_version})"
    );
    let old = match old_key {
        Some(key) => SeedCipher::new(&SecretString::from(key.clone()), *old_version)?,
        None => cipher_from_settings()?,
    };
    let new = SeedCipher::new(&SecretString::from(new_key.clone()), *new_version)?;
    let mut tx = pool.begin().await?;
    let factors: Vec<Sealed> = sqlx::query_as(
        "SELECT id, seed_ciphertext, seed_nonce, key_version, aad_bound FROM platform.second_factors WHERE revoked_at IS NULL FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut count = 0;
    // Every seed is re-wrapped bound to its row, whether it was bound before or not.
    for (id, ciphertext, nonce, version, bound) in factors {
        let seed =
            foundation::auth::factors::open_seed(&old, id, &ciphertext, &nonce, version, bound)
                .map_err(|e| anyhow::anyhow!("facteur {id} : {e}"))?;
        let (ciphertext, nonce) = new.encrypt_for(&seed, id.as_bytes());
        sqlx::query("UPDATE platform.second_factors SET seed_ciphertext = $2, seed_nonce = $3, key_version = $4, aad_bound = true WHERE id = $1")
            .bind(id)
            .bind(ciphertext)
            .bind(nonce)
            .bind(new.version())
            .execute(&mut *tx)
            .await?;
        count += 1;
    }
    let cards: Vec<SealedCard> =
        sqlx::query_as("SELECT serial, seed_ciphertext, seed_nonce, key_version, aad_bound FROM platform.totp_cards FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    for (serial, ciphertext, nonce, version, bound) in cards {
        let seed = old
            .decrypt_for(
                &ciphertext,
                &nonce,
                version,
                bound.then_some(serial.as_bytes()),
            )
            .map_err(|e| anyhow::anyhow!("carte {serial} : {e}"))?;
        let (ciphertext, nonce) = new.encrypt_for(&seed, serial.as_bytes());
        sqlx::query("UPDATE platform.totp_cards SET seed_ciphertext = $2, seed_nonce = $3, key_version = $4, aad_bound = true WHERE serial = $1")
            .bind(&serial)
            .bind(ciphertext)
            .bind(nonce)
            .bind(new.version())
            .execute(&mut *tx)
            .await?;
        count += 1;
    }
    // Revoked factors are no longer usable: their seeds are erased rather than re-encrypted.
    sqlx::query("UPDATE platform.second_factors SET seed_ciphertext = '', seed_nonce = '' WHERE revoked_at IS NOT NULL")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    println!(
        "{count} clé(s) rechiffrée(s) en version {new_version} ; redémarrez les services avec \
         AC_SECURITY__TOTP_KEY et AC_SECURITY__TOTP_KEY_VERSION={new_version}"
    );
    Ok(())
}
