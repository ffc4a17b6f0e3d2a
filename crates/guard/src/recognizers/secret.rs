//! Secrets that agents leak: cloud and platform credentials with a known
//! shape (AWS access keys, GitHub, Hugging Face, Slack, Stripe, Google API
//! keys, OpenAI-style `sk-` keys), JSON Web Tokens, PEM private-key blocks,
//! and, near a word like "key", "secret", "token" or "password", any long
//! token whose characters look random (Shannon entropy at least 3.5 bits
//! per character, as scanners such as truffleHog use).

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};
use crate::validate;

pub struct Secret {
    known: Vec<(&'static str, Regex)>,
    generic: Regex,
}

const KNOWN: &[(&str, &str)] = &[
    (
        "aws access key id",
        r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}",
    ),
    (
        "github token",
        r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
    ),
    ("hugging face token", r"hf_[A-Za-z0-9]{30,}"),
    ("slack token", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("stripe key", r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google api key", r"AIza[0-9A-Za-z_-]{35}"),
    ("sk- api key", r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"),
    (
        "json web token",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "private key block",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    ),
];

impl Secret {
    pub(crate) fn new() -> Self {
        Secret {
            known: KNOWN.iter().map(|&(n, p)| (n, compile(p))).collect(),
            generic: compile(
                r#"(?i)(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|credential|access[_-]?key|auth)[a-z_-]*["']?\s*(?:[:=]|is|:=|=>)\s*["']?([A-Za-z0-9+/=_.~-]{16,})"#,
            ),
        }
    }
}

impl Recognizer for Secret {
    fn name(&self) -> &'static str {
        "secret"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for (pattern, re) in &self.known {
            for m in re.find_iter(text) {
                if !isolated(text, m.start(), m.end(), b"_") {
                    continue;
                }
                out.push(candidate(
                    self.name(),
                    m.range(),
                    Label::Secret,
                    1.0,
                    Tier::Validated,
                    pattern,
                    Some("vendor format"),
                ));
            }
        }
        for c in self.generic.captures_iter(text) {
            let Some(v) = c.get(1) else { continue };
            let s = v.as_str();
            let has_digit = s.bytes().any(|b| b.is_ascii_digit());
            let has_alpha = s.bytes().any(|b| b.is_ascii_alphabetic());
            if has_digit && has_alpha && validate::entropy_bits(s) >= 3.5 {
                out.push(candidate(
                    self.name(),
                    v.range(),
                    Label::Secret,
                    0.8,
                    Tier::Validated,
                    "assigned to a key/secret/token/password",
                    Some("entropy >= 3.5 bits/char"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_vendor_tokens_jwts_and_key_blocks() {
        let r = Secret::new();
        let text = "aws AKIAIOSFODNN7EXAMPLE gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 \
                    jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U \
                    -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        let f = found(&r, text);
        assert_eq!(f.len(), 4, "{f:?}");
        assert!(f[3].starts_with("-----BEGIN RSA") && f[3].ends_with("KEY-----"));
    }

    #[test]
    fn generic_secrets_need_a_key_word_and_randomness() {
        let r = Secret::new();
        assert_eq!(
            found(&r, "export API_KEY=\"q8Xv2LpZ7rT4nW9kB3mC\""),
            ["q8Xv2LpZ7rT4nW9kB3mC"]
        );
        assert!(found(
            &r,
            "password is correcthorsebattery, id = 12345678901234567"
        )
        .is_empty());
        assert!(found(&r, "the value q8Xv2LpZ7rT4nW9kB3mC appears alone").is_empty());
    }
}
