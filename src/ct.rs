//! Comparing secrets in constant time, so that how long a comparison takes says nothing about how much
//! of a guess was right.
//!
//! MACs are checked with `hmac`'s `verify_slice` (JWT signatures, `Stripe-Signature`, CSRF tokens); this
//! is for everything else that compares a secret with a value a caller sent.

use sha2::{Digest, Sha256};

/// Whether `a == b`, in time that depends on neither their contents nor where they first differ.
/// Both sides are hashed first, so even their lengths stay hidden.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_unequal() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"whsec_abc", b"whsec_abc"));
        assert!(!ct_eq(b"whsec_abc", b"whsec_abd"));
        assert!(!ct_eq(b"whsec_abc", b"whsec_ab"));
        assert!(!ct_eq(b"", b"x"));
        assert!(!ct_eq(b"a", b"b"));
    }

    #[test]
    fn secrets_compare_with_it() {
        use crate::config::Secret;
        assert_eq!(Secret::new("s3cret"), Secret::new("s3cret"));
        assert_ne!(Secret::new("s3cret"), Secret::new("s3creT"));
        assert_ne!(Secret::new("s3cret"), Secret::new(""));
    }
}
