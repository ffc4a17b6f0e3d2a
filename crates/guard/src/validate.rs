//! Checksums and range rules that turn a pattern match into a validated
//! finding. Each takes the candidate's characters as written (separators
//! included) and says whether the value is well formed.

/// The Luhn (mod 10) check over the digits of `s`, ignoring separators.
pub fn luhn(s: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0;
    for (i, d) in s
        .bytes()
        .rev()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .enumerate()
    {
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        count += 1;
    }
    count > 1 && sum.is_multiple_of(10)
}

/// The payment-card scheme an issuer prefix and length belong to (ISO/IEC
/// 7812 ranges as the schemes publish them).
pub fn card_scheme(digits: &str) -> Option<&'static str> {
    let n = digits.len();
    let prefix = |k: usize| -> u32 { digits[..k.min(n)].parse().unwrap_or(0) };
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    if p1 == 4 && matches!(n, 13 | 16 | 19) {
        return Some("visa");
    }
    if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16 {
        return Some("mastercard");
    }
    if matches!(p2, 34 | 37) && n == 15 {
        return Some("amex");
    }
    if (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3)) && (16..=19).contains(&n) {
        return Some("discover");
    }
    if (3528..=3589).contains(&p4) && (16..=19).contains(&n) {
        return Some("jcb");
    }
    // JCB's older 15-digit ranges.
    if (p4 == 2131 || p4 == 1800) && n == 15 {
        return Some("jcb");
    }
    if ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&n) {
        return Some("diners");
    }
    if p2 == 62 && (16..=19).contains(&n) {
        return Some("unionpay");
    }
    if (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&n) {
        return Some("maestro");
    }
    if (2200..=2204).contains(&p4) && (16..=19).contains(&n) {
        return Some("mir");
    }
    None
}

/// US Social Security number rules (SSA): area not 000, 666 or 900-999,
/// group not 00, serial not 0000.
pub fn ssn_ranges(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// IBAN lengths by country (the SWIFT IBAN registry).
fn iban_length(country: &[u8]) -> Option<usize> {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BI", 27),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DJ", 27),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FK", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HN", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"LY", 25),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MN", 20),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NI", 28),
        (b"NL", 18),
        (b"NO", 15),
        (b"OM", 23),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"RU", 33),
        (b"SA", 24),
        (b"SC", 31),
        (b"SD", 18),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"SO", 23),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
        (b"YE", 30),
    ];
    LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, n)| n)
}

/// An IBAN (ISO 13616): a registered country, that country's length, and
/// the mod-97 check (ISO 7064) equal to 1. Spaces are ignored; letters may
/// be in either case.
pub fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(|b| *b != b' ')
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if compact.len() < 4 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    if iban_length(&compact[..2]) != Some(compact.len()) {
        return false;
    }
    if !compact[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem = 0u32;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Shannon entropy of `s` in bits per character.
pub fn entropy_bits(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn luhn_accepts_published_test_numbers_and_rejects_a_changed_digit() {
        for n in [
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "2223003122003222",
            "6759649826438453",
            "4222222222222",
        ] {
            assert!(luhn(n), "{n}");
            assert!(card_scheme(&n.replace([' ', '-'], "")).is_some(), "{n}");
        }
        assert!(!luhn("4111 1111 1111 1112"));
    }

    #[test]
    fn schemes_by_prefix_and_length() {
        assert_eq!(card_scheme("2221000000000009"), Some("mastercard"));
        assert_eq!(card_scheme("2720999999999996"), Some("mastercard"));
        assert_eq!(card_scheme("4000056655665556123"), Some("visa"));
        assert_eq!(card_scheme("378282246310005"), Some("amex"));
        assert_eq!(card_scheme("37828224631000"), None);
        assert_eq!(card_scheme("1234567890123456"), None);
    }

    #[test]
    fn ssn_invalid_ranges() {
        assert!(ssn_ranges(123, 45, 6789));
        for (a, g, s) in [
            (0, 45, 6789),
            (666, 45, 6789),
            (901, 45, 6789),
            (123, 0, 6789),
            (123, 45, 0),
        ] {
            assert!(!ssn_ranges(a, g, s));
        }
    }

    #[test]
    fn iban_registry_examples() {
        for s in [
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "gb82west12345698765432",
            "CH9300762011623852957",
        ] {
            assert!(iban(s), "{s}");
        }
        assert!(!iban("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban("GB82 WEST 1234 5698 7654"));
        assert!(!iban("ZZ82WEST12345698765432"));
    }

    proptest! {
        /// Changing any one digit breaks the Luhn check (it detects every
        /// single-digit error).
        #[test]
        fn luhn_detects_every_single_digit_change(
            body in proptest::collection::vec(0u8..10, 11..18),
            pos in any::<prop::sample::Index>(),
            delta in 1u8..10,
        ) {
            // Complete the body with its check digit.
            let s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
            let check = (0..10).find(|c| luhn(&format!("{s}{c}"))).unwrap();
            let full = format!("{s}{check}");
            prop_assert!(luhn(&full));
            let mut bytes = full.into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = b'0' + (bytes[i] - b'0' + delta) % 10;
            prop_assert!(!luhn(std::str::from_utf8(&bytes).unwrap()));
        }

        /// Mod-97 detects every single-character change of an IBAN's digits.
        #[test]
        fn iban_detects_single_digit_changes(pos in 4usize..22, delta in 1u8..10) {
            let good = b"GB82WEST12345698765432".to_vec();
            let mut bad = good.clone();
            if bad[pos].is_ascii_digit() {
                bad[pos] = b'0' + (bad[pos] - b'0' + delta) % 10;
                prop_assert!(!iban(std::str::from_utf8(&bad).unwrap()));
            }
        }
    }
}
