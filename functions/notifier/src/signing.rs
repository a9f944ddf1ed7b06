//! Webhook signatures, as [Standard Webhooks](https://www.standardwebhooks.com/) defines them,
//! so receivers verify with that project's libraries (or Svix's) in any language.
//!
//! Each delivery carries three headers: `webhook-id` (the task id: the same on every retry,
//! the receiver's deduplication key), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. The key is the
//! base64 after a `whsec_` prefix, as the libraries read it; a secret without the prefix is
//! used as raw bytes (give receivers `whsec_` + its base64 then).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The delivery's id: the task id, stable across retries.
pub const ID_HEADER: &str = "webhook-id";
/// When the delivery was signed, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// `v1,<base64 signature>`, space-separated when there are several.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a Standard Webhooks secret; the base64 key follows it.
pub const SECRET_PREFIX: &str = "whsec_";

type HmacSha256 = Hmac<Sha256>;

/// The key deliveries are signed with.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// A `whsec_` secret whose key is not base64.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the signing secret starts with `whsec_` but the rest is not base64: {0} (make one with `echo whsec_$(openssl rand -base64 32)`)"
)]
pub struct KeyError(String);

impl SigningKey {
    /// The key of `secret`: the base64 after `whsec_`, or the bytes themselves.
    ///
    /// # Errors
    /// When the secret starts with `whsec_` and the rest is not base64, or the key is empty.
    pub fn from_secret(secret: &[u8]) -> Result<Self, KeyError> {
        let key = match secret.strip_prefix(SECRET_PREFIX.as_bytes()) {
            Some(encoded) => STANDARD
                .decode(encoded)
                .map_err(|e| KeyError(e.to_string()))?,
            None => secret.to_vec(),
        };
        if key.is_empty() {
            return Err(KeyError("the key is empty".into()));
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` value for `body` sent as `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.keyed(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(mac))
    }

    /// The MAC over `"<id>.<timestamp>.<body>"`, before finalising.
    fn keyed(&self, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        m.update(id.as_bytes());
        m.update(b".");
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m
    }

    /// Verifies a delivery's three headers as a receiver does.
    ///
    /// # Errors
    /// When a header is malformed, the timestamp is outside the tolerance, or no signature
    /// matches.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: u64,
        tolerance_secs: u64,
    ) -> Result<(), SignatureError> {
        let timestamp: u64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
        if now.abs_diff(timestamp) > tolerance_secs {
            return Err(SignatureError::Stale);
        }
        let mut any = false;
        for candidate in signatures.split(' ') {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            any = true;
            let Ok(mac) = STANDARD.decode(encoded) else {
                continue;
            };
            // `verify_slice` compares in constant time.
            if self.keyed(id, timestamp, body).verify_slice(&mac).is_ok() {
                return Ok(());
            }
        }
        Err(if any {
            SignatureError::Mismatch
        } else {
            SignatureError::Malformed
        })
    }
}

/// Why a signature was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `v1,…` signature, or a timestamp that is not a number.
    #[error("malformed webhook headers")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("signature does not match")]
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::from_secret(b"whsec_czNjcmV0").expect("base64 key");
        let sig = key.sign("task-1", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1,"));
        let check =
            |id: &str, body: &[u8], now: u64| key.verify(id, "1700000000", &sig, body, now, 300);
        assert_eq!(check("task-1", b"{\"a\":1}", 1_700_000_010), Ok(()));
        assert_eq!(
            check("task-1", b"{\"a\":2}", 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("task-2", b"{\"a\":1}", 1_700_000_010),
            Err(SignatureError::Mismatch),
            "the id is signed too"
        );
        assert_eq!(
            check("task-1", b"{\"a\":1}", 1_700_001_000),
            Err(SignatureError::Stale)
        );
        let other = SigningKey::from_secret(b"other").expect("raw key");
        assert!(
            other
                .verify(
                    "task-1",
                    "1700000000",
                    &sig,
                    b"{\"a\":1}",
                    1_700_000_010,
                    300
                )
                .is_err()
        );
        assert_eq!(
            key.verify("task-1", "1700000000", "v2,zz", b"", 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
        assert!(
            key.verify(
                "task-1",
                "1700000000",
                &format!("v1,bm9wZQ== {sig}"),
                b"{\"a\":1}",
                1_700_000_000,
                300
            )
            .is_ok(),
            "any of several signatures may match"
        );
    }

    #[test]
    fn the_key_is_the_base64_after_whsec_or_the_raw_secret() {
        // "s3cret" in base64 is "czNjcmV0".
        let a = SigningKey::from_secret(b"whsec_czNjcmV0").expect("key");
        let b = SigningKey::from_secret(b"s3cret").expect("key");
        assert_eq!(a.sign("i", 1, b"x"), b.sign("i", 1, b"x"));
        assert!(SigningKey::from_secret(b"whsec_not base64!").is_err());
        assert!(SigningKey::from_secret(b"").is_err());
    }
}
