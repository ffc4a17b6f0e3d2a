//! `ENTITY_HASHING`: each value becomes `[LABEL_xxxxxxxxxxxx]`, the first
//! 48 bits of HMAC-SHA256 (RFC 2104) under a secret key of the label and
//! the value's canonical form. The same entity maps to the same pseudonym
//! across documents and runs; without the key nobody can reverse it or
//! test a guess (a plain salted hash of a card number can be brute-forced,
//! an HMAC under a secret key cannot). 48 bits keep pseudonyms short;
//! two distinct values collide with probability about n^2 / 2^49 for n
//! distinct values of one label (under 1e-4 for 100,000).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::finding::Label;
use crate::GuardError;

/// The secret behind pseudonyms, wiped from memory when dropped.
pub struct HashKey(Zeroizing<Vec<u8>>);

impl HashKey {
    /// A key from a configured secret (e.g. `${HASH_SALT}`); at least 16
    /// bytes, since a short key can be guessed.
    pub fn new(secret: &[u8]) -> Result<Self, GuardError> {
        if secret.len() < 16 {
            return Err(GuardError::Invalid(format!(
                "the hashing key is {} bytes; use at least 16 random bytes (e.g. openssl rand -hex 32)",
                secret.len()
            )));
        }
        Ok(HashKey(Zeroizing::new(secret.to_vec())))
    }

    /// The pseudonym of `value` as a `label`.
    pub fn pseudonym(&self, label: Label, value: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            // HMAC takes keys of any length.
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        mac.update(label.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(canonical(label, value).as_bytes());
        let tag = mac.finalize().into_bytes();
        let hex: String = tag[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("[{}_{hex}]", label.as_str())
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// The form two spellings of one value share: digits only for numbers
/// written with separators, lower case for case-insensitive values,
/// collapsed whitespace for names.
fn canonical(label: Label, value: &str) -> String {
    match label {
        Label::CreditCard | Label::UsSsn | Label::PhoneNumber => {
            let plus = if value.trim_start().starts_with('+') {
                "+"
            } else {
                ""
            };
            format!(
                "{plus}{}",
                value
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
            )
        }
        Label::IbanCode => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase(),
        Label::EmailAddress | Label::Url | Label::IpAddress => value.trim().to_lowercase(),
        _ => value.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_across_spellings_and_keyed() {
        let k = HashKey::new(b"0123456789abcdef0123").unwrap();
        let a = k.pseudonym(Label::CreditCard, "4111-1111-1111-1111");
        assert_eq!(a, k.pseudonym(Label::CreditCard, "4111 1111 1111 1111"));
        assert!(a.starts_with("[CREDIT_CARD_") && a.len() == "[CREDIT_CARD_]".len() + 12);
        assert_ne!(a, k.pseudonym(Label::CreditCard, "4111-1111-1111-1112"));
        let other = HashKey::new(b"another key of enough length").unwrap();
        assert_ne!(a, other.pseudonym(Label::CreditCard, "4111-1111-1111-1111"));
        // The label is part of the input: the same digits as a phone differ.
        assert_ne!(
            a[13..],
            k.pseudonym(Label::PhoneNumber, "4111111111111111")[14..]
        );
    }

    #[test]
    fn short_keys_are_refused_and_never_printed() {
        let e = HashKey::new(b"short").unwrap_err().to_string();
        assert!(e.contains("5 bytes") && !e.contains("short"));
        let k = HashKey::new(b"0123456789abcdef").unwrap();
        assert_eq!(format!("{k:?}"), "HashKey(<redacted>)");
    }
}
