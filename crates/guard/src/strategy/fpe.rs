//! `SEMANTIC_ENCRYPTION`: format-preserving encryption with FF1 (NIST SP
//! 800-38G) over AES-256, reversible with the key.
//!
//! A value keeps its shape: digits stay digits, letters stay letters (in
//! a value with both, letters and digits may trade places), and every
//! other character (separators, spaces, non-ASCII letters) stays where it
//! was, so a card stays a 16-digit card. Which alphabet was used travels
//! with the ciphertext ([`Alphabet`]), since a mixed value can encrypt to
//! all letters. A card's last digit is
//! recomputed so the ciphertext passes the Luhn check downstream systems
//! run; decryption recomputes the original's. The label is the FF1 tweak,
//! so the same digits as a phone and as a card encrypt differently.
//!
//! Keys rotate on a schedule: the key of version `v` is
//! HMAC-SHA256(master, "pft-fpe" || v), and the version in use is the
//! number of rotation periods since the Unix epoch. The version travels
//! with the protected text (the CLI writes it into the record), so text
//! from any earlier period still decrypts with the same master secret.
//!
//! FF1 is only defined for domains of at least a million values (the
//! fpe crate enforces SP 800-38G's bound): a value with fewer than six
//! digits or four letters cannot be encrypted safely and gets its typed
//! placeholder instead, which no key restores.

use aes::Aes256;
use fpe::ff1::{FlexibleNumeralString, FF1};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::finding::Label;
use crate::validate;
use crate::GuardError;

/// The characters FF1 permutes in a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    Digits,
    Letters,
    Alphanumeric,
}

impl Alphabet {
    fn chars(self) -> &'static [u8] {
        match self {
            Alphabet::Digits => b"0123456789",
            Alphabet::Letters => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            Alphabet::Alphanumeric => {
                b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            }
        }
    }

    /// The alphabet a plaintext needs.
    fn of(value: &str) -> Alphabet {
        let letters = value.bytes().any(|b| b.is_ascii_alphabetic());
        let digits = value.bytes().any(|b| b.is_ascii_digit());
        match (letters, digits) {
            (false, _) => Alphabet::Digits,
            (true, false) => Alphabet::Letters,
            (true, true) => Alphabet::Alphanumeric,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alphabet::Digits => "digits",
            Alphabet::Letters => "letters",
            Alphabet::Alphanumeric => "alphanumeric",
        }
    }

    pub fn parse(s: &str) -> Option<Alphabet> {
        [Alphabet::Digits, Alphabet::Letters, Alphabet::Alphanumeric]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The master secret and the rotation period, wiped from memory when
/// dropped.
pub struct FpeKey {
    master: Zeroizing<Vec<u8>>,
    rotation_hours: u64,
}

impl std::fmt::Debug for FpeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FpeKey(..)")
    }
}

impl FpeKey {
    /// A key from a configured master secret (at least 16 bytes) that
    /// rotates every `rotation_hours` (0: never).
    pub fn new(secret: &[u8], rotation_hours: u64) -> Result<FpeKey, GuardError> {
        if secret.len() < 16 {
            return Err(GuardError::Invalid(format!(
                "the encryption key is {} bytes; use at least 16 random bytes (e.g. openssl rand -hex 32)",
                secret.len()
            )));
        }
        Ok(FpeKey {
            master: Zeroizing::new(secret.to_vec()),
            rotation_hours,
        })
    }

    /// The key version in force at `unix_seconds`.
    pub fn version_at(&self, unix_seconds: u64) -> u32 {
        match self.rotation_hours {
            0 => 0,
            h => u32::try_from(unix_seconds / (h * 3600)).unwrap_or(u32::MAX),
        }
    }

    /// The key version in force now.
    pub fn current_version(&self) -> u32 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.version_at(now)
    }

    /// HMAC-SHA256 of `purpose` and `version` under the master secret.
    fn derive(&self, purpose: &[u8], version: u32) -> Zeroizing<[u8; 32]> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.master) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        mac.update(purpose);
        mac.update(&version.to_be_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// A public check value for key `version`: FF1 cannot tell a wrong
    /// key from a right one, so output records this and restore compares
    /// it before decrypting. It is a MAC output and reveals nothing of the
    /// key.
    pub fn check_value(&self, version: u32) -> String {
        self.derive(b"pft-fpe-check", version)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn cipher(&self, version: u32, radix: u32) -> FF1<Aes256> {
        let key = self.derive(b"pft-fpe", version);
        match FF1::<Aes256>::new(key.as_slice(), radix) {
            Ok(c) => c,
            Err(_) => unreachable!("radix 10, 52 and 62 are valid"),
        }
    }

    /// `value` encrypted under key `version` and the alphabet used, or
    /// `None` when its domain is too small for FF1.
    pub fn encrypt(&self, version: u32, label: Label, value: &str) -> Option<(String, Alphabet)> {
        let alphabet = Alphabet::of(value);
        self.transform(version, label, alphabet, value, Direction::Encrypt)
            .ok()
            .map(|c| (c, alphabet))
    }

    /// The value `encrypt` was given.
    pub fn decrypt(
        &self,
        version: u32,
        label: Label,
        alphabet: Alphabet,
        value: &str,
    ) -> Result<String, GuardError> {
        self.transform(version, label, alphabet, value, Direction::Decrypt)
    }

    fn transform(
        &self,
        version: u32,
        label: Label,
        alphabet: Alphabet,
        value: &str,
        direction: Direction,
    ) -> Result<String, GuardError> {
        let mut bytes = value.as_bytes().to_vec();
        // Positions of the characters FF1 rewrites (all ASCII, so each is
        // one byte and the text keeps its length and layout).
        let mut positions: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_alphanumeric())
            .map(|(i, _)| i)
            .collect();
        let card = label == Label::CreditCard && alphabet == Alphabet::Digits;
        if card {
            // The check digit is recomputed, not encrypted.
            positions.pop();
        }
        let chars = alphabet.chars();
        let numerals: Vec<u16> = positions
            .iter()
            .map(|&i| chars.iter().position(|&a| a == bytes[i]).unwrap_or(0) as u16)
            .collect();
        if positions.iter().any(|&i| !chars.contains(&bytes[i])) {
            return Err(GuardError::Invalid(format!(
                "{label} ciphertext has characters outside its {} alphabet",
                alphabet.as_str()
            )));
        }
        let ff1 = self.cipher(version, chars.len() as u32);
        let tweak = label.as_str().as_bytes();
        let input = FlexibleNumeralString::from(numerals);
        let output = match direction {
            Direction::Encrypt => ff1.encrypt(tweak, &input),
            Direction::Decrypt => ff1.decrypt(tweak, &input),
        }
        .map_err(|e| GuardError::Invalid(format!("{label} value cannot be encrypted: {e}")))?;
        for (&i, n) in positions.iter().zip(Vec::<u16>::from(output)) {
            bytes[i] = chars[usize::from(n)];
        }
        if card {
            fix_luhn(&mut bytes);
        }
        String::from_utf8(bytes)
            .map_err(|_| GuardError::Invalid("encryption broke UTF-8 (a bug)".into()))
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

/// Sets the last digit of a card number so the number passes Luhn.
fn fix_luhn(bytes: &mut [u8]) {
    let Some(last) = bytes.iter().rposition(u8::is_ascii_digit) else {
        return;
    };
    for d in b'0'..=b'9' {
        bytes[last] = d;
        let digits: String = bytes
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        if validate::luhn(&digits) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> FpeKey {
        FpeKey::new(b"an fpe master secret of 32 bytes", 24).unwrap()
    }

    #[test]
    fn a_card_stays_a_card_and_passes_luhn() {
        let k = key();
        let (c, a) = k
            .encrypt(7, Label::CreditCard, "4111-1111-1111-1111")
            .unwrap();
        assert_ne!(c, "4111-1111-1111-1111");
        assert_eq!(c.len(), 19);
        assert_eq!(&c[4..5], "-");
        let digits: String = c.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(digits.len(), 16);
        assert!(validate::luhn(&digits), "{c}");
        assert_eq!(
            k.decrypt(7, Label::CreditCard, a, &c).unwrap(),
            "4111-1111-1111-1111"
        );
    }

    #[test]
    fn names_keep_their_shape() {
        let k = key();
        let (c, a) = k.encrypt(1, Label::Person, "Jürgen Müller").unwrap();
        assert_eq!(a, Alphabet::Letters);
        assert_eq!(c.chars().count(), "Jürgen Müller".chars().count());
        assert!(c.contains('ü') && c.contains(' '));
        assert_ne!(c, "Jürgen Müller");
        assert_eq!(k.decrypt(1, Label::Person, a, &c).unwrap(), "Jürgen Müller");
    }

    #[test]
    fn small_domains_are_refused() {
        let k = key();
        assert!(k.encrypt(1, Label::Age, "37").is_none());
        assert!(k.encrypt(1, Label::Person, "Ann").is_none());
        assert!(k.encrypt(1, Label::PhoneNumber, "12345").is_none());
        assert!(k.encrypt(1, Label::PhoneNumber, "123456").is_some());
    }

    #[test]
    fn versions_and_labels_change_the_ciphertext() {
        let k = key();
        let phone = |v: u32, l: Label| k.encrypt(v, l, "+1 415 555 0134").unwrap().0;
        let (v1, v2, ssn) = (
            phone(1, Label::PhoneNumber),
            phone(2, Label::PhoneNumber),
            phone(1, Label::UsSsn),
        );
        let d = Alphabet::Digits;
        assert_ne!(v1, v2);
        assert_ne!(v1, ssn);
        assert_eq!(
            k.decrypt(1, Label::PhoneNumber, d, &v1).unwrap(),
            "+1 415 555 0134"
        );
        assert_eq!(
            k.decrypt(2, Label::PhoneNumber, d, &v2).unwrap(),
            "+1 415 555 0134"
        );
        let other = FpeKey::new(b"another master secret, 32 bytes!", 24).unwrap();
        assert_ne!(
            other.decrypt(1, Label::PhoneNumber, d, &v1).unwrap(),
            "+1 415 555 0134"
        );
    }

    #[test]
    fn check_values_tell_keys_and_versions_apart() {
        let k = key();
        let other = FpeKey::new(b"another master secret, 32 bytes!", 24).unwrap();
        assert_eq!(k.check_value(3), key().check_value(3));
        assert_ne!(k.check_value(3), k.check_value(4));
        assert_ne!(k.check_value(3), other.check_value(3));
    }

    #[test]
    fn versions_follow_the_rotation_schedule() {
        let k = key();
        assert_eq!(k.version_at(0), 0);
        assert_eq!(k.version_at(24 * 3600 - 1), 0);
        assert_eq!(k.version_at(24 * 3600), 1);
        let never = FpeKey::new(&[7; 16], 0).unwrap();
        assert_eq!(never.version_at(1 << 40), 0);
        assert!(FpeKey::new(b"short", 1).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_and_preserves_classes(value in "[A-Za-z0-9 .@é-]{0,40}", version in 0u32..1000) {
            let k = key();
            let encrypted = k.encrypt(version, Label::Organization, &value);
            // Eight characters of any alphabet exceed FF1's million-value floor.
            let alphanumerics = value.bytes().filter(u8::is_ascii_alphanumeric).count();
            if alphanumerics >= 8 {
                prop_assert!(encrypted.is_some());
            }
            if let Some((c, a)) = encrypted {
                prop_assert_eq!(c.len(), value.len());
                for (a, b) in value.chars().zip(c.chars()) {
                    prop_assert_eq!(a.is_ascii_alphanumeric(), b.is_ascii_alphanumeric());
                    if !a.is_ascii_alphanumeric() { prop_assert_eq!(a, b); }
                }
                prop_assert_eq!(k.decrypt(version, Label::Organization, a, &c).unwrap(), value);
            }
        }
    }
}
