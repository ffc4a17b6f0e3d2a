//! E-mail addresses: a local part (internationalized, RFC 6531), `@`, and a domain with a letter-only top
//! level, checked against RFC 5321's shape (no empty labels, no leading or
//! trailing dots or hyphens).

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct Email {
    re: Regex,
}

impl Email {
    pub(crate) fn new() -> Self {
        Email {
            re: compile(
                r"(?i)[\p{L}\p{N}][\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]*(?:\.[\p{L}\p{N}!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
            ),
        }
    }
}

impl Recognizer for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        if !text.contains('@') {
            return;
        }
        for m in self.re.find_iter(text) {
            let b = text.as_bytes();
            // A domain glued to more letters was cut by the TLD length cap.
            if m.end() < b.len() && b[m.end()].is_ascii_alphanumeric() {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.range(),
                Label::EmailAddress,
                1.0,
                Tier::Validated,
                "local@domain.tld",
                Some("rfc5321-shape"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_addresses_in_prose() {
        let r = Email::new();
        assert_eq!(
            found(
                &r,
                "Write to MarkusNusa@dayrep.com. Or to a.b-c+tag@mail.example.co.uk!"
            ),
            ["MarkusNusa@dayrep.com", "a.b-c+tag@mail.example.co.uk"]
        );
    }

    #[test]
    fn ignores_handles_and_bare_at_signs() {
        let r = Email::new();
        assert!(found(&r, "ping @alice at 5pm, user@localhost, foo@bar.c1").is_empty());
        // Markdown emphasis is not part of the address.
        assert_eq!(
            found(&r, "**security@example.com**"),
            ["security@example.com"]
        );
    }
}
