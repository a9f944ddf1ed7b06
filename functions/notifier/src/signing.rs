//! Webhook signatures, as Stripe and GitHub do them.
//!
//! Each delivery carries `Mailroom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, where the
//! MAC is over `"<t>.<body>"` with the shared secret. A receiver recomputes it, compares in
//! constant time, and rejects timestamps outside its tolerance (replay protection).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Mailroom-Signature";

type HmacSha256 = Hmac<Sha256>;

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mac = keyed(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(mac))
}

/// The MAC over `"<timestamp>.<body>"`, before finalising.
fn keyed(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Why a signature was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies a delivery as a receiver would.
///
/// # Errors
/// When the header is malformed, stale, or does not match.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", s)) => {
                signatures.push(hex::decode(s).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    // `verify_slice` compares in constant time.
    if signatures.iter().any(|candidate| {
        keyed(secret, timestamp, body)
            .verify_slice(candidate)
            .is_ok()
    }) {
        return Ok(());
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let header = sign(b"s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":1}", 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":2}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"a\":1}", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":1}", 1_700_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"s3cret", "v1=zz", b"", 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
