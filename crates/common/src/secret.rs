//! Comparing secrets (API keys, admin tokens) without telling an attacker anything: both sides
//! are reduced to SHA-256 digests and compared in constant time, so neither how long a check
//! takes nor where two values differ depends on the secret.

use sha2::{Digest as _, Sha256};

/// The SHA-256 digest of a secret, the only form in which one is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// A digest written as 64 hex digits.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let bytes = hex::decode(hex_digits).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The digest as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether two digests are equal, in time that does not depend on where they differ.
    pub fn matches(&self, other: &Self) -> bool {
        self.0.iter().zip(&other.0).fold(0_u8, |differ, (x, y)| differ | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_secrets_match_and_others_do_not() {
        let digest = SecretDigest::of(b"rk_1");
        assert!(digest.matches(&SecretDigest::of(b"rk_1")));
        assert!(!digest.matches(&SecretDigest::of(b"rk_2")));
        assert_eq!(SecretDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(SecretDigest::from_hex("abc"), None);
    }
}
