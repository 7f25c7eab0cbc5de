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
}

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
        Ok(Self { cipher, version })
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
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 32);
        assert!(constant_time_eq(&a, &a.clone()) && !constant_time_eq(&a, &b));
    }
}
