//! TOTP (RFC 6238) checks: 6 digits, SHA-1 as authenticator apps and cards use, a step of 30 s
//! (apps) or 60 s (cards), a window of ±1 step, and a code never accepted twice (the accepted
//! step must be later than the last one used).

use totp_rs::{Algorithm, Builder, Secret, Totp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("code incorrect")]
    Wrong,
    #[error("code déjà utilisé")]
    Replayed,
}

/// SHA-1, 6 digits: what authenticator apps and TOTP cards implement. Seeds of cards may be
/// shorter than RFC 4226 recommends, hence the non-compliant builder (no length check).
fn totp(seed: &[u8], step: u64) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(step)
        .with_secret(Secret::from(seed.to_vec()))
        .build_noncompliant()
}

/// The code for a given time (seconds since the epoch).
pub fn code_at(seed: &[u8], step_seconds: u64, unix_time: u64) -> String {
    totp(seed, step_seconds).generate(unix_time).to_string()
}

/// Checks `code` at `unix_time`; returns the step it matched, which becomes the last used one.
pub fn verify(
    seed: &[u8],
    step_seconds: u64,
    code: &str,
    unix_time: u64,
    last_used_step: i64,
) -> Result<i64, TotpError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Wrong);
    }
    let current = (unix_time / step_seconds) as i64;
    let mut matched = None;
    // Every candidate is computed and compared, so timing does not tell which one matched.
    for step in [current - 1, current, current + 1] {
        let expected = code_at(seed, step_seconds, (step.max(0) as u64) * step_seconds);
        if crate::auth::secrets::constant_time_eq(&expected, code) {
            matched = Some(step);
        }
    }
    match matched {
        Some(step) if step > last_used_step => Ok(step),
        Some(_) => Err(TotpError::Replayed),
        None => Err(TotpError::Wrong),
    }
}

/// A new random seed (160 bits, as RFC 4226 recommends).
pub fn new_seed() -> Vec<u8> {
    let mut seed = vec![0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    seed
}

/// The seed in base32, as typed into an authenticator app.
pub fn seed_base32(seed: &[u8]) -> String {
    Secret::from(seed.to_vec()).to_base32()
}

/// The `otpauth://` URI shown as a QR code at enrolment.
pub fn otpauth_uri(seed: &[u8], account: &str) -> String {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::from(seed.to_vec()))
        .with_issuer(Some("Aidants Connect"))
        .with_account_name(account)
        .build_noncompliant()
        .to_url()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits); the last 6 are ours.
        assert_eq!(code_at(SEED, 30, 59), "287082");
    }

    #[test]
    fn a_code_is_never_accepted_twice() {
        let now = 1_800_000_000;
        let code = code_at(SEED, 30, now);
        let step = verify(SEED, 30, &code, now, 0).expect("accepté");
        assert_eq!(verify(SEED, 30, &code, now, step), Err(TotpError::Replayed));
        // Nor an older one once a newer has been used.
        let previous = code_at(SEED, 30, now - 30);
        assert_eq!(
            verify(SEED, 30, &previous, now, step),
            Err(TotpError::Replayed)
        );
    }

    #[test]
    fn malformed_codes_are_wrong() {
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(
                verify(SEED, 30, bad, 1_800_000_000, 0),
                Err(TotpError::Wrong),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Window ±1 step: codes of the previous, current and next step pass; two steps away fail.
        #[test]
        fn window_is_one_step_each_side(t in 1_000_000u64..4_000_000_000, step in prop::sample::select(vec![30u64, 60])) {
            for offset in [-1i64, 0, 1] {
                let at = (t as i64 + offset * step as i64) as u64;
                prop_assert!(verify(SEED, step, &code_at(SEED, step, at), t, 0).is_ok());
            }
            for offset in [-2i64, 2] {
                let at = (t as i64 + offset * step as i64) as u64;
                let code = code_at(SEED, step, at);
                // A far code may collide by chance with a near one (1 in 10^6): only then accept.
                let collides = (-1..=1).any(|o| code_at(SEED, step, (t as i64 + o * step as i64) as u64) == code);
                prop_assert_eq!(verify(SEED, step, &code, t, 0).is_ok(), collides);
            }
        }
    }
}
