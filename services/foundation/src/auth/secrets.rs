//! Random tokens, their hashes, constant-time comparison, and the cipher of TOTP seeds.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random token (256 bits), URL-safe. Only its hash is ever stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token, as stored in the database.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Encrypts secrets at rest (TOTP seeds, signing keys, tenant keys) with AES-256-GCM. The key
/// version is stored with each value, and the cipher is a keyring: the current key encrypts,
/// and earlier versions given with `with_previous` still decrypt, so a rotation can roll out
/// before every row is re-wrapped. Values are bound to their row (`encrypt_for`: the row's id
/// as associated data), so a ciphertext moved to another row no longer decrypts.
#[derive(Clone)]
pub struct SeedCipher {
    cipher: Aes256Gcm,
    version: i32,
    /// Earlier key versions, for reading only.
    previous: std::sync::Arc<Vec<(i32, Aes256Gcm)>>,
    /// The key for sealing short-lived secrets in messages, derived from the seed key
    /// (HMAC-SHA-256 over a fixed label), so the seed key itself encrypts only seeds.
    sealing: Aes256Gcm,
}

/// Label of the derived key sealing secrets inside queued messages.
const SEALING_LABEL: &[u8] = b"aidants-connect/outbox-sealing/v1";

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("clé de chiffrement des seeds invalide : 32 octets encodés en base64 attendus")]
    InvalidKey,
    #[error("seed illisible avec la clé version {0}")]
    Decrypt(i32),
}

impl SeedCipher {
    pub fn new(key_base64: &SecretString, version: i32) -> Result<Self, CipherError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_base64.expose_secret())
            .map_err(|_| CipherError::InvalidKey)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| CipherError::InvalidKey)?;
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&key)
            .map_err(|_| CipherError::InvalidKey)?;
        hmac::Mac::update(&mut mac, SEALING_LABEL);
        let derived = hmac::Mac::finalize(mac).into_bytes();
        let sealing = Aes256Gcm::new_from_slice(&derived).map_err(|_| CipherError::InvalidKey)?;
        Ok(Self {
            cipher,
            version,
            previous: std::sync::Arc::default(),
            sealing,
        })
    }

    /// Adds earlier key versions, readable only: `version:base64key`, comma-separated
    /// (`AC_SECURITY__TOTP_PREVIOUS_KEYS=1:…`). Empty: none.
    pub fn with_previous(mut self, previous: &SecretString) -> Result<Self, CipherError> {
        let mut keys = Vec::new();
        for item in previous
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let (version, key) = item.split_once(':').ok_or(CipherError::InvalidKey)?;
            let version: i32 = version
                .trim()
                .parse()
                .map_err(|_| CipherError::InvalidKey)?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| CipherError::InvalidKey)?;
            if version == self.version {
                return Err(CipherError::InvalidKey);
            }
            keys.push((
                version,
                Aes256Gcm::new_from_slice(&key).map_err(|_| CipherError::InvalidKey)?,
            ));
        }
        self.previous = std::sync::Arc::new(keys);
        Ok(self)
    }

    fn key(&self, version: i32) -> Option<&Aes256Gcm> {
        if version == self.version {
            return Some(&self.cipher);
        }
        self.previous
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, k)| k)
    }

    /// Encrypts `plaintext` for the row named by `context` (its id): (ciphertext, nonce).
    pub fn encrypt_for(&self, plaintext: &[u8], context: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce.into(),
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_default();
        (ciphertext, nonce.to_vec())
    }

    /// Decrypts a value of the row named by `context`, sealed with key `version`; `context`
    /// is `None` for rows written before values were bound to their row.
    pub fn decrypt_for(
        &self,
        ciphertext: &[u8],
        nonce: &[u8],
        version: i32,
        context: Option<&[u8]>,
    ) -> Result<Vec<u8>, CipherError> {
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| CipherError::Decrypt(version))?;
        let key = self.key(version).ok_or(CipherError::Decrypt(version))?;
        match context {
            Some(aad) => key.decrypt(
                &nonce.into(),
                aes_gcm::aead::Payload {
                    msg: ciphertext,
                    aad,
                },
            ),
            None => key.decrypt(&nonce.into(), ciphertext),
        }
        .map_err(|_| CipherError::Decrypt(version))
    }

    /// Seals a short-lived secret bound to `context` (the row it is stored in): nonce ‖
    /// ciphertext. Opened elsewhere, or moved to another row, it does not decrypt.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .sealing
            .encrypt(
                &nonce.into(),
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_default();
        [nonce.as_slice(), &sealed].concat()
    }

    /// Opens what `seal` made for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.sealing
            .decrypt(
                &nonce.into(),
                aes_gcm::aead::Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .ok()
    }

    pub fn version(&self) -> i32 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        base64::engine::general_purpose::STANDARD
            .encode([7u8; 32])
            .into()
    }

    #[test]
    fn seeds_round_trip_and_tampering_is_detected() {
        let cipher = SeedCipher::new(&key(), 1).expect("clé");
        let (mut ciphertext, nonce) = cipher.encrypt_for(b"0123456789abcdef0123", b"f");
        assert_ne!(&ciphertext[..20], b"0123456789abcdef0123");
        assert_eq!(
            cipher
                .decrypt_for(&ciphertext, &nonce, 1, Some(b"f"))
                .expect("déchiffré"),
            b"0123456789abcdef0123"
        );
        assert!(
            cipher
                .decrypt_for(&ciphertext, &nonce, 2, Some(b"f"))
                .is_err(),
            "autre version de clé"
        );
        ciphertext[0] ^= 1;
        assert!(
            cipher
                .decrypt_for(&ciphertext, &nonce, 1, Some(b"f"))
                .is_err(),
            "altération"
        );
    }

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let cipher = SeedCipher::new(&key(), 1).expect("clé");
        let sealed = cipher.seal(b"https://x/connexion/lien?jeton=abc", b"row-1");
        assert!(!sealed.windows(3).any(|w| w == b"abc"));
        assert_eq!(
            cipher.open(&sealed, b"row-1").as_deref(),
            Some(b"https://x/connexion/lien?jeton=abc".as_slice())
        );
        assert_eq!(cipher.open(&sealed, b"row-2"), None, "autre ligne");
        let (seed_ct, seed_nonce) = cipher.encrypt_for(b"x", b"");
        // The sealing key is not the seed key.
        assert_eq!(
            cipher.open(&[seed_nonce, seed_ct].concat(), b""),
            None,
            "clé distincte"
        );
    }

    #[test]
    fn values_bound_to_a_row_open_only_there_and_old_versions_stay_readable() {
        let v1 = SeedCipher::new(&key(), 1).expect("clé");
        let (ct, nonce) = v1.encrypt_for(b"seed", b"row-a");
        assert_eq!(
            v1.decrypt_for(&ct, &nonce, 1, Some(b"row-a"))
                .expect("même ligne"),
            b"seed"
        );
        assert!(
            v1.decrypt_for(&ct, &nonce, 1, Some(b"row-b")).is_err(),
            "autre ligne"
        );
        assert!(v1.decrypt_for(&ct, &nonce, 1, None).is_err(), "sans ligne");
        // Version 2 is current; version 1 stays readable only when given as previous.
        let other: SecretString = base64::engine::general_purpose::STANDARD
            .encode([9u8; 32])
            .into();
        let v2 = SeedCipher::new(&other, 2).expect("clé");
        assert!(v2.decrypt_for(&ct, &nonce, 1, Some(b"row-a")).is_err());
        let ring = SeedCipher::new(&other, 2)
            .expect("clé")
            .with_previous(&format!("1:{}", key().expose_secret()).into())
            .expect("trousseau");
        assert_eq!(
            ring.decrypt_for(&ct, &nonce, 1, Some(b"row-a"))
                .expect("ancienne version"),
            b"seed"
        );
        assert_eq!(ring.version(), 2, "la version courante chiffre");
        assert!(
            SeedCipher::new(&other, 2)
                .expect("clé")
                .with_previous(&"2:AAAA".into())
                .is_err(),
            "une version antérieure ne peut être la courante"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 32);
        assert!(constant_time_eq(&a, &a.clone()) && !constant_time_eq(&a, &b));
    }
}
