//! The database roles of one database and how processes log in as a département's role.
//!
//! Roles are cluster-wide, databases are not: every role name starts with a prefix that
//! identifies its database. A database name that is already a short lowercase identifier
//! (`aidants`, the tests' `t_…`) is its own prefix; any other is cleaned, cut to 30 characters
//! and followed by 8 hex digits of the SHA-256 of its exact name. The migrator also marks each
//! role it creates with the SHA-256 of its database (role comment) and refuses a role marked
//! for another database, so two databases of one cluster never share a role.
//!
//! Each département role logs in (one small pool per territory, opened lazily): its password
//! is HMAC-SHA256(`database.tenant_role_secret`, role name), known to the migrator (which sets
//! it as a SCRAM verifier, never in clear) and to the services. The application's own login
//! role is a member of no département role, so no SQL it runs can switch to one.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::DepartementCode;

/// The longest database name kept as it is in role names.
const PLAIN_PREFIX_MAX: usize = 40;

/// The prefix of every role of the database named `database`.
pub fn role_prefix(database: &str) -> String {
    let plain = !database.is_empty()
        && database.len() <= PLAIN_PREFIX_MAX
        && database
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        return database.to_owned();
    }
    let cleaned: String = database
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    format!("{cleaned}_{}", &database_mark(database)[..8])
}

/// What the migrator writes as the comment of the roles of `database`.
pub fn database_mark(database: &str) -> String {
    hex::encode(Sha256::digest(database.as_bytes()))
}

/// The role holding a département's rights in the database named `database`.
pub fn departement_role(database: &str, departement: DepartementCode) -> String {
    format!("{}_{}", role_prefix(database), departement.schema_name())
}

/// The role owning the journal's sealing functions (NOLOGIN).
pub fn sealer_role(database: &str) -> String {
    format!("{}_journal_sealer", role_prefix(database))
}

/// How processes log in as département roles. Cheap to clone; the secret never prints.
#[derive(Clone)]
pub struct TenantLogin {
    secret: SecretString,
    max_connections: u32,
}

impl std::fmt::Debug for TenantLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLogin")
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl TenantLogin {
    pub fn new(secret: SecretString, max_connections: u32) -> Self {
        TenantLogin {
            secret,
            max_connections: max_connections.max(1),
        }
    }

    pub fn from_settings(settings: &crate::config::DatabaseSettings) -> Self {
        Self::new(
            settings.tenant_role_secret.clone(),
            settings.tenant_max_connections,
        )
    }

    /// Most connections of one territory's pool.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The password of `role`: HMAC-SHA256 of its name, hex.
    pub fn password(&self, role: &str) -> String {
        hex::encode(hmac(
            self.secret.expose_secret().as_bytes(),
            role.as_bytes(),
        ))
    }

    /// The SCRAM-SHA-256 verifier PostgreSQL stores for `role`'s password, with a fresh salt:
    /// `ALTER ROLE … PASSWORD` gets this, so the password itself never reaches the server
    /// (nor its logs).
    pub fn scram_verifier(&self, role: &str) -> String {
        scram_verifier(&self.password(role), uuid::Uuid::new_v4().as_bytes(), 4096)
    }

    /// Whether `stored` (a verifier as `pg_authid` keeps it) accepts `role`'s password: the
    /// migrator then leaves the role's password as it is. Anything else (another password, a
    /// secret rotated since, an MD5 hash, no password) answers false.
    pub fn verifier_accepts(&self, role: &str, stored: &str) -> bool {
        use base64::Engine;
        use subtle::ConstantTimeEq;
        let parsed = stored
            .strip_prefix("SCRAM-SHA-256$")
            .and_then(|rest| rest.split_once('$'))
            .and_then(|(params, _)| params.split_once(':'))
            .and_then(|(iterations, salt)| {
                let iterations = iterations.parse::<u32>().ok()?;
                let salt = base64::engine::general_purpose::STANDARD
                    .decode(salt)
                    .ok()?;
                // The work is bounded: PostgreSQL's own verifiers use 4096 iterations.
                (1..=100_000)
                    .contains(&iterations)
                    .then_some((iterations, salt))
            });
        let Some((iterations, salt)) = parsed else {
            return false;
        };
        let expected = scram_verifier(&self.password(role), &salt, iterations);
        expected.as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// RFC 5802 / RFC 7677 verifier, in PostgreSQL's text form.
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Hi(password, salt, i) = PBKDF2-HMAC-SHA256 with one output block.
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password.as_bytes(), &block);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(u) {
            *s ^= x;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_database_names_are_their_own_prefix_and_others_never_collide() {
        assert_eq!(role_prefix("aidants"), "aidants");
        assert_eq!(role_prefix("t_0123456789ab"), "t_0123456789ab");
        let code = DepartementCode::parse("2A").expect("code");
        assert_eq!(departement_role("aidants", code), "aidants_dep_2a");
        // Names that cleaning or cutting would have merged stay apart.
        let long = "a".repeat(50);
        let longer = "a".repeat(51);
        let names = ["Aidants", "aidants-prod", "aidants_prod", &long, &longer];
        let prefixes: std::collections::HashSet<_> = names.iter().map(|n| role_prefix(n)).collect();
        assert_eq!(prefixes.len(), names.len(), "{prefixes:?}");
        for n in names {
            let role = sealer_role(n);
            assert!(role.len() <= 63, "{role}");
            assert!(
                role.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }

    #[test]
    fn passwords_are_stable_per_role_and_secret() {
        let login = TenantLogin::new("s".to_owned().into(), 4);
        let other = TenantLogin::new("t".to_owned().into(), 4);
        assert_eq!(login.password("r"), login.password("r"));
        assert_eq!(login.password("r").len(), 64);
        assert_ne!(login.password("r"), login.password("r2"));
        assert_ne!(login.password("r"), other.password("r"));
        // PostgreSQL checks the verifier at each login (the tenancy tests log in with it).
        assert!(login.scram_verifier("r").starts_with("SCRAM-SHA-256$4096:"));
    }

    #[test]
    fn a_verifier_is_accepted_only_for_its_own_role_and_secret() {
        let login = TenantLogin::new("s".to_owned().into(), 4);
        let rotated = TenantLogin::new("t".to_owned().into(), 4);
        let stored = login.scram_verifier("r");
        assert!(login.verifier_accepts("r", &stored));
        assert!(!login.verifier_accepts("r2", &stored));
        assert!(!rotated.verifier_accepts("r", &stored));
        // A verifier of the same password with another salt is accepted: the salt is read.
        assert!(login.verifier_accepts("r", &login.scram_verifier("r")));
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push('A');
        for bad in [
            tampered.as_str(),
            "",
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$0:AAAA$x:y",
            "SCRAM-SHA-256$4096000:AAAA$x:y",
            "SCRAM-SHA-256$4096:%%%$x:y",
        ] {
            assert!(!login.verifier_accepts("r", bad), "{bad}");
        }
    }
}
