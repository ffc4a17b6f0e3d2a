//! URLs: with a scheme (`https://...`), starting `www.`, or a bare domain
//! whose top-level domain is a well-known generic or country code. Trailing
//! sentence punctuation and an unmatched closing bracket are not part of
//! the URL.

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct Url {
    full: Regex,
    bare: Regex,
}

/// Top-level domains a bare domain may end with. Country codes that are
/// also common file extensions (`.py`, `.sh`, `.md`, `.rs`, `.pl`, `.so`,
/// `.js`-like) are left out: `main.py` is a file, not a site. With a scheme
/// or `www.`, any TLD is accepted.
const BARE_TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "io", "ai", "app", "dev", "co",
    "me", "tv", "us", "uk", "ca", "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk",
    "fi", "is", "ie", "pt", "gr", "cz", "sk", "hu", "ro", "bg", "hr", "si", "ee", "lv", "lt", "cy",
    "lu", "mt", "ru", "ua", "tr", "il", "in", "cn", "jp", "kr", "tw", "hk", "sg", "au", "nz", "za",
    "br", "ar", "mx", "cl", "uy", "tn", "eg", "ng", "ke", "ma",
];

impl Url {
    pub(crate) fn new() -> Self {
        Url {
            // Brackets, braces and the rest are not legal unescaped in a URL
            // (RFC 3986); excluding them ends a URL at a Markdown link's `](`.
            full: compile(r#"(?i)(?:(?:https?|ftp|sftp|wss?)://|www\.)[^\s<>"'`\[\]{}|\\^]+"#),
            bare: compile(r"(?i)[a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z]{2,24}(?:/[^\s<>()'`]*)?"),
        }
    }
}

/// The end of a URL once trailing punctuation and unmatched closers go.
fn trim_end(s: &str) -> usize {
    let mut end = s.len();
    loop {
        let Some(c) = s[..end].chars().next_back() else {
            return end;
        };
        let opens = |o: char| s[..end].matches(o).count();
        let strip = match c {
            '.' | ',' | ';' | ':' | '!' | '?' => true,
            ')' => opens('(') < opens(')'),
            ']' => opens('[') < opens(']'),
            _ => false,
        };
        if !strip {
            return end;
        }
        end -= c.len_utf8();
    }
}

impl Recognizer for Url {
    fn name(&self) -> &'static str {
        "url"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        let mut taken_until = 0;
        for m in self.full.find_iter(text) {
            let end = m.start() + trim_end(m.as_str());
            if end - m.start() < 8 {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.start()..end,
                Label::Url,
                0.9,
                Tier::Pattern,
                "scheme or www.",
                None,
            ));
            taken_until = taken_until.max(end);
        }
        if !text.contains('.') {
            return;
        }
        let b = text.as_bytes();
        for m in self.bare.find_iter(text) {
            if m.start() < taken_until {
                continue;
            }
            // Part of an e-mail address, a path or a longer token.
            if m.start() > 0 && matches!(b[m.start() - 1], b'@' | b'/' | b'.' | b'_' | b'-') {
                continue;
            }
            if m.end() < b.len() && matches!(b[m.end()], b'@' | b'_') {
                continue;
            }
            let s = m.as_str();
            let host_end = s.find('/').unwrap_or(s.len());
            let host = &s[..trim_end(&s[..host_end])];
            let Some(tld) = host.rsplit('.').next() else {
                continue;
            };
            if !BARE_TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld)) {
                continue;
            }
            // The name before the TLD must hold a letter (not `1.5.co`).
            let name = &host[..host.len() - tld.len()];
            if !name.bytes().any(|c| c.is_ascii_alphabetic()) {
                continue;
            }
            let end = if host_end < s.len() {
                m.start() + trim_end(s)
            } else {
                m.start() + host.len()
            };
            out.push(candidate(
                self.name(),
                m.start()..end,
                Label::Url,
                0.6,
                Tier::Pattern,
                "bare domain with a known TLD",
                None,
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "website", "site", "url", "link", "visit", "domain", "page", "http",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_urls_with_and_without_scheme() {
        let r = Url::new();
        assert_eq!(
            found(&r, "My website is https://www.AnteGame.com.ee/. See www.example.org/a?b=1, or AnteGame.com.ee."),
            ["https://www.AnteGame.com.ee/", "www.example.org/a?b=1", "AnteGame.com.ee"]
        );
        assert_eq!(
            found(&r, "(see https://en.wikipedia.org/wiki/Foo_(bar))."),
            ["https://en.wikipedia.org/wiki/Foo_(bar)"]
        );
    }

    #[test]
    fn files_versions_and_email_domains_are_not_urls() {
        let r = Url::new();
        assert!(found(
            &r,
            "run main.py or lib.rs, version 1.5.2, mail bob@example.com. e.g. this"
        )
        .is_empty());
    }
}
