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

/// Encrypts TOTP seeds at rest with AES-256-GCM; the key version is stored with each seed so
/// that keys can be rotated (re-wrapping) without losing factors.
#[derive(Clone)]
pub struct SeedCipher {
    cipher: Aes256Gcm,
    version: i32,
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
            sealing,
        })
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

    /// Returns (ciphertext, nonce).
    pub fn encrypt(&self, seed: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self.cipher.encrypt(&nonce.into(), seed).unwrap_or_default();
        (ciphertext, nonce.to_vec())
    }

    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        nonce: &[u8],
        version: i32,
    ) -> Result<Vec<u8>, CipherError> {
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| CipherError::Decrypt(version))?;
        if version != self.version {
            return Err(CipherError::Decrypt(version));
        }
        self.cipher
            .decrypt(&nonce.into(), ciphertext)
            .map_err(|_| CipherError::Decrypt(version))
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
        let (mut ciphertext, nonce) = cipher.encrypt(b"0123456789abcdef0123");
        assert_ne!(&ciphertext[..20], b"0123456789abcdef0123");
        assert_eq!(
            cipher.decrypt(&ciphertext, &nonce, 1).expect("déchiffré"),
            b"0123456789abcdef0123"
        );
        assert!(
            cipher.decrypt(&ciphertext, &nonce, 2).is_err(),
            "autre version de clé"
        );
        ciphertext[0] ^= 1;
        assert!(
            cipher.decrypt(&ciphertext, &nonce, 1).is_err(),
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
        let (seed_ct, seed_nonce) = cipher.encrypt(b"x");
        // The sealing key is not the seed key.
        assert_eq!(
            cipher.open(&[seed_nonce, seed_ct].concat(), b""),
            None,
            "clé distincte"
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
