//! Idempotent redemption. A client may send its token request with an `Idempotency-Key`
//! header (16 to 255 visible ASCII characters, random per request). If the answer is lost (a
//! network error after sending), the same request with the same key, within a minute of the
//! redemption, gets the same answer again — the same tokens, with no second journal entry or
//! receipt — instead of the replay refusal that revokes them. Anything else (no key, another
//! key, after the minute, another client or redirect URI) is a replay as before.
//!
//! The answer is stored with the redemption, sealed (AES-256-GCM) with a key derived from the
//! code and the idempotency key, both of which only the client holds: the database keeps the
//! key's hash and the code's hash, never a usable token.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The request header (the IETF draft « The Idempotency-Key HTTP Header Field »).
pub const HEADER: &str = "idempotency-key";
/// How long after a redemption a retry gets the first answer.
pub const RETRY_SECONDS: i64 = 60;

/// 16 to 255 visible ASCII characters.
pub fn valid(key: &str) -> bool {
    (16..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"aidants-connect idp retry key\n")
        .chain_update(key.as_bytes())
        .finalize()
        .to_vec()
}

fn cipher(key: &str, code: &str) -> Aes256Gcm {
    let derived = Sha256::new()
        .chain_update(b"aidants-connect idp retry answer\n")
        .chain_update(key.as_bytes())
        .chain_update(b"\n")
        .chain_update(code.as_bytes())
        .finalize();
    Aes256Gcm::new(&derived)
}

/// The answer sealed for a retry: nonce (12 bytes) then ciphertext.
pub fn seal(key: &str, code: &str, answer: &Value) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let clear = answer.to_string();
    let sealed = cipher(key, code)
        .encrypt(&nonce.into(), clear.as_bytes())
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend(sealed);
    out
}

/// The first answer, if `sealed` opens with this key and code.
pub fn open(key: &str, code: &str, sealed: &[u8]) -> Option<Value> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let clear = cipher(key, code).decrypt(&nonce.into(), body).ok()?;
    serde_json::from_slice(&clear).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_opens_only_with_its_key_and_code() {
        let answer = serde_json::json!({ "access_token": "33.secret", "token_type": "Bearer" });
        let sealed = seal("clé-de-reprise-0001", "33.code", &answer);
        assert_eq!(
            open("clé-de-reprise-0001", "33.code", &sealed),
            Some(answer)
        );
        assert_eq!(open("clé-de-reprise-0002", "33.code", &sealed), None);
        assert_eq!(open("clé-de-reprise-0001", "33.autre", &sealed), None);
        assert!(!String::from_utf8_lossy(&sealed).contains("secret"));
        assert!(valid("0123456789abcdef"));
        assert!(!valid("court"));
        assert!(!valid("avec des espaces dedans"));
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
