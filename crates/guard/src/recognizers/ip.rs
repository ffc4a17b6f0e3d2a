//! IP addresses: dotted-quad IPv4 with each octet at most 255, and IPv6 in
//! any of its textual forms, confirmed by the standard library's parser.

use std::net::Ipv6Addr;

use regex::Regex;

use super::{candidate, compile, isolated, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct IpAddress {
    v4: Regex,
    v6: Regex,
}

impl IpAddress {
    pub(crate) fn new() -> Self {
        IpAddress {
            v4: compile(
                r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
            ),
            v6: compile(
                r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3})?",
            ),
        }
    }
}

impl Recognizer for IpAddress {
    fn name(&self) -> &'static str {
        "ip_address"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.v4.find_iter(text) {
            if !isolated(text, m.start(), m.end(), b".") {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.range(),
                Label::IpAddress,
                0.95,
                Tier::Validated,
                "dotted quad",
                Some("octets <= 255"),
            ));
        }
        if !text.contains(':') {
            return;
        }
        for m in self.v6.find_iter(text) {
            let s = m.as_str();
            // A clock time (12:30:45) parses as nothing, but keep the
            // parser's work to plausible candidates.
            if s.len() < 3
                || s.parse::<Ipv6Addr>().is_err()
                || !isolated(text, m.start(), m.end(), b"")
            {
                continue;
            }
            out.push(candidate(
                self.name(),
                m.range(),
                Label::IpAddress,
                0.95,
                Tier::Validated,
                "hex groups and colons",
                Some("IPv6 parser"),
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &["ip", "address", "host", "server", "client", "ipv4", "ipv6"]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn finds_v4_and_v6() {
        let r = IpAddress::new();
        assert_eq!(
            found(&r, "from 88.211.203.193 and fccd:1f68:3907:4fd:b29a:6412:13fe:fcdf, also ::1 and fe80::1."),
            ["88.211.203.193", "fccd:1f68:3907:4fd:b29a:6412:13fe:fcdf", "::1", "fe80::1"]
        );
    }

    #[test]
    fn rejects_out_of_range_versions_and_times() {
        let r = IpAddress::new();
        assert!(found(&r, "256.1.1.1, 1.2.3.4.5, at 12:30:45 or 10:15").is_empty());
    }
}
