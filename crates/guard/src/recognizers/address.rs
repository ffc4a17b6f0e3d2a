//! The parts of a postal address the entity model misses most: secondary
//! units ("Apt. 600", "Suite 157", "Unit 4B") and US military addresses
//! ("PSC 7659, Box 3159\nAPO AP 64291", "USNS Miller\nFPO AE 12345").
//! Street lines, cities and postcodes are the model's; adjacent address
//! parts are joined into one address after overlaps are resolved
//! ([`crate::resolve::join_addresses`]).

use regex::Regex;

use super::{candidate, compile, Recognizer};
use crate::finding::{Candidate, Label, Tier};

pub struct AddressParts {
    unit: Regex,
    military: Regex,
}

impl AddressParts {
    pub(crate) fn new() -> Self {
        AddressParts {
            unit: compile(
                r"(?-u:\b)(?i:apt|apartment|suite|ste|unit|flat|room|floor|bldg|building)\.?\s?#?\s?[0-9]{1,5}[A-Za-z]?(?-u:\b)",
            ),
            military: compile(
                r"(?-u:\b)(?:(?:PSC|CMR|Unit)\s[0-9]{4},?\s(?:Box\s[0-9]{4})|(?:USNS|USNV|USS|USCGC)\s[A-Z][a-z]+)\s*\n?\s*(?:APO|FPO|DPO)\s(?:AA|AE|AP)\s[0-9]{5}(?-u:\b)",
            ),
        }
    }
}

impl Recognizer for AddressParts {
    fn name(&self) -> &'static str {
        "address_parts"
    }

    fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for m in self.military.find_iter(text) {
            out.push(candidate(
                self.name(),
                m.range(),
                Label::Address,
                0.95,
                Tier::Pattern,
                "military address (APO/FPO/DPO)",
                None,
            ));
        }
        for m in self.unit.find_iter(text) {
            // Apartments and suites are addresses; a room or floor is as
            // often a meeting place, so it needs an address word nearby.
            let postal = m.as_str().get(..2).is_some_and(|p| {
                matches!(p.to_ascii_lowercase().as_str(), "ap" | "su" | "st" | "un")
            });
            let score = if postal { 0.55 } else { 0.3 };
            out.push(candidate(
                self.name(),
                m.range(),
                Label::Address,
                score,
                Tier::Pattern,
                "secondary unit",
                None,
            ));
        }
    }

    fn context(&self) -> &'static [&'static str] {
        &[
            "address", "live", "lives", "living", "ship", "deliver", "delivery", "street", "st",
            "ave", "road", "rd", "mail", "send",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::found;
    use super::*;

    #[test]
    fn units_and_military_addresses() {
        let r = AddressParts::new();
        assert_eq!(
            found(&r, "3161 Agrippinastraat 180 Suite 176, Toronto"),
            ["Suite 176"]
        );
        assert_eq!(
            found(&r, "PSC 7659, Box 3159\nAPO AP 64291"),
            ["PSC 7659, Box 3159\nAPO AP 64291"]
        );
        assert_eq!(
            found(&r, "Unit 1979 Box 7723\nDPO AP 34860"),
            ["Unit 1979 Box 7723\nDPO AP 34860", "Unit 1979"]
        );
        assert_eq!(
            found(&r, "USNS Miller\nFPO AE 12345"),
            ["USNS Miller\nFPO AE 12345"]
        );
    }

    #[test]
    fn rooms_in_prose_score_low() {
        let r = AddressParts::new();
        let mut out = Vec::new();
        r.find("Meet me in room 12 at noon", &mut out);
        assert_eq!(out.len(), 1, "the room is proposed, weakly");
        assert!(out[0].score < 0.35);
    }
}
