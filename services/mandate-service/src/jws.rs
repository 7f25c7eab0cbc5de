//! Compact JWS (JSON Web Signature) as OpenID Connect uses it: verification with a JWK set,
//! ES256 and RS256 only — `none`, HMAC and anything else are refused whatever the key set
//! holds — and ES256 signing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One public key of a JWK set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// A JWK set document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("jeton mal formé")]
    Malformed,
    #[error("algorithme de signature refusé : {0}")]
    RefusedAlgorithm(String),
    #[error("clé de signature inconnue")]
    UnknownKey,
    #[error("signature invalide")]
    BadSignature,
}

/// The protected header fields we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
}

fn parts(token: &str) -> Result<(&str, &str, &str), JwsError> {
    let mut it = token.trim().split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(JwsError::Malformed),
    }
}

/// Reads the header without verifying anything (to pick the key).
pub fn header(token: &str) -> Result<Header, JwsError> {
    let (h, _, _) = parts(token)?;
    let bytes = B64.decode(h).map_err(|_| JwsError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed)
}

fn key_for<'a>(keys: &'a [Jwk], header: &Header) -> Result<&'a Jwk, JwsError> {
    let kty = if header.alg == "ES256" { "EC" } else { "RSA" };
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.kty == kty && k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == header.alg))
        .collect();
    match &header.kid {
        Some(kid) => candidates
            .into_iter()
            .find(|k| k.kid.as_deref() == Some(kid.as_str()))
            .ok_or(JwsError::UnknownKey),
        // Without a kid, only an unambiguous key set is acceptable.
        None if candidates.len() == 1 => Ok(candidates[0]),
        None => Err(JwsError::UnknownKey),
    }
}

fn decode_field(value: &Option<String>) -> Result<Vec<u8>, JwsError> {
    value
        .as_deref()
        .and_then(|v| B64.decode(v).ok())
        .ok_or(JwsError::UnknownKey)
}

/// The payload of a token, unverified (only to learn which client claims to have signed it).
pub fn unverified_claims(token: &str) -> Result<Value, JwsError> {
    let (_, p, _) = parts(token)?;
    let payload = B64.decode(p).map_err(|_| JwsError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| JwsError::Malformed)
}

/// Verifies the signature of `token` with one of `keys` and returns its payload (JSON).
pub fn verify(token: &str, keys: &[Jwk]) -> Result<Value, JwsError> {
    let (h, p, s) = parts(token)?;
    let header = header(token)?;
    if header.alg != "ES256" && header.alg != "RS256" {
        return Err(JwsError::RefusedAlgorithm(header.alg));
    }
    let key = key_for(keys, &header)?;
    let signature = B64.decode(s).map_err(|_| JwsError::BadSignature)?;
    let signed = format!("{h}.{p}");
    match header.alg.as_str() {
        "ES256" => {
            if key.crv.as_deref() != Some("P-256") {
                return Err(JwsError::UnknownKey);
            }
            let (x, y) = (decode_field(&key.x)?, decode_field(&key.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err(JwsError::UnknownKey);
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| JwsError::UnknownKey)?;
            let sig = p256::ecdsa::Signature::from_slice(&signature)
                .map_err(|_| JwsError::BadSignature)?;
            vk.verify(signed.as_bytes(), &sig)
                .map_err(|_| JwsError::BadSignature)?;
        }
        _ => {
            let (n, e) = (decode_field(&key.n)?, decode_field(&key.e)?);
            if n.len() < 256 {
                // RSA below 2048 bits is refused.
                return Err(JwsError::UnknownKey);
            }
            let n = rsa::BoxedUint::from_be_slice_vartime(&n);
            let e = rsa::BoxedUint::from_be_slice_vartime(&e);
            let public = rsa::PublicKey::new(n, e).map_err(|_| JwsError::UnknownKey)?;
            let vk = rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(public);
            let sig = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
                .map_err(|_| JwsError::BadSignature)?;
            vk.verify(signed.as_bytes(), &sig)
                .map_err(|_| JwsError::BadSignature)?;
        }
    }
    let payload = B64.decode(p).map_err(|_| JwsError::Malformed)?;
    serde_json::from_slice(&payload).map_err(|_| JwsError::Malformed)
}

fn signing_input(alg: &str, kid: &str, claims: &Value) -> String {
    let header = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid });
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// Signs `claims` with an ES256 key, naming it `kid`.
pub fn sign_es256(claims: &Value, key: &p256::ecdsa::SigningKey, kid: &str) -> String {
    let signed = signing_input("ES256", kid, claims);
    let sig: p256::ecdsa::Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", B64.encode(sig.to_bytes()))
}

/// An ES256 key as the identity provider signs with it: the same key in AWS-LC (via
/// `aws-lc-rs`), whose P-256 signature costs a fraction of RustCrypto's on the token and
/// userinfo path; `p256` keeps generating keys, publishing them and verifying.
pub struct Es256Signer(aws_lc_rs::signature::EcdsaKeyPair);

impl Es256Signer {
    pub fn new(key: &p256::ecdsa::SigningKey) -> Result<Self, String> {
        let public = key.verifying_key().to_sec1_bytes();
        aws_lc_rs::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.to_bytes(),
            &public,
        )
        .map(Self)
        .map_err(|e| e.to_string())
    }

    /// A compact JWS of `claims` (signature `r ‖ s`, 64 bytes, as JWS asks), naming `kid`.
    pub fn sign(&self, claims: &Value, kid: &str) -> Result<String, String> {
        let signed = signing_input("ES256", kid, claims);
        let sig = self
            .0
            .sign(&aws_lc_rs::rand::SystemRandom::new(), signed.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!("{signed}.{}", B64.encode(sig.as_ref())))
    }
}

/// An RS256 key in AWS-LC, read from its PKCS #1 DER (RSASSA-PKCS1-v1_5, SHA-256).
pub struct Rs256Signer(aws_lc_rs::signature::RsaKeyPair);

impl Rs256Signer {
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, String> {
        aws_lc_rs::signature::RsaKeyPair::from_der(der)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// A compact JWS of `claims`, naming `kid`.
    pub fn sign(&self, claims: &Value, kid: &str) -> Result<String, String> {
        let signed = signing_input("RS256", kid, claims);
        let mut sig = vec![0u8; self.0.public_modulus_len()];
        self.0
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|e| e.to_string())?;
        Ok(format!("{signed}.{}", B64.encode(&sig)))
    }
}

/// Signs `claims` with an RS256 key (RSASSA-PKCS1-v1_5, SHA-256), naming it `kid`, with
/// RustCrypto: the yardstick `bench-idp` measures [`Rs256Signer`] against.
pub fn sign_rs256(
    claims: &Value,
    key: &rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>,
    kid: &str,
) -> String {
    let signed = signing_input("RS256", kid, claims);
    use rsa::signature::SignatureEncoding;
    let sig: rsa::pkcs1v15::Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", B64.encode(sig.to_vec()))
}

/// The public JWK of an RS256 key.
pub fn rs256_jwk(key: &rsa::PrivateKey, kid: &str) -> Jwk {
    use rsa::traits::PublicKeyParts;
    let n = key.n().to_be_bytes_trimmed_vartime();
    let e = key.e().to_be_bytes_trimmed_vartime();
    Jwk {
        kty: "RSA".into(),
        kid: Some(kid.into()),
        alg: Some("RS256".into()),
        use_: Some("sig".into()),
        crv: None,
        x: None,
        y: None,
        n: Some(B64.encode(n)),
        e: Some(B64.encode(e)),
    }
}

/// The public JWK of an ES256 key.
pub fn es256_jwk(key: &p256::ecdsa::SigningKey, kid: &str) -> Jwk {
    let point = key.verifying_key().to_sec1_bytes();
    Jwk {
        kty: "EC".into(),
        kid: Some(kid.into()),
        alg: Some("ES256".into()),
        use_: Some("sig".into()),
        crv: Some("P-256".into()),
        x: Some(B64.encode(&point[1..33])),
        y: Some(B64.encode(&point[33..65])),
        n: None,
        e: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("scalar")
    }

    #[test]
    fn es256_round_trip_and_refusals() {
        let k = key(3);
        let keys = vec![es256_jwk(&k, "k1")];
        let token = sign_es256(&json!({"sub": "x"}), &k, "k1");
        assert_eq!(verify(&token, &keys).expect("valid")["sub"], "x");

        // Another key, same kid: bad signature.
        let forged = sign_es256(&json!({"sub": "x"}), &key(4), "k1");
        assert_eq!(verify(&forged, &keys), Err(JwsError::BadSignature));
        // Unknown kid.
        let other = sign_es256(&json!({"sub": "x"}), &k, "k2");
        assert_eq!(verify(&other, &keys), Err(JwsError::UnknownKey));
        // Payload changed after signing.
        let (h, _, s) = parts(&token).expect("parts");
        let changed = format!("{h}.{}.{s}", B64.encode(json!({"sub": "y"}).to_string()));
        assert_eq!(verify(&changed, &keys), Err(JwsError::BadSignature));
        // alg=none and HS256 are refused before any key is looked at.
        for alg in ["none", "HS256", "ES384"] {
            let h = B64.encode(json!({"alg": alg, "kid": "k1"}).to_string());
            let t = format!("{h}.{}.", B64.encode("{}"));
            assert_eq!(
                verify(&t, &keys),
                Err(JwsError::RefusedAlgorithm(alg.into()))
            );
        }
        assert_eq!(verify("a.b", &keys), Err(JwsError::Malformed));
    }
}
