//! Overlapping findings, resolved deterministically: stronger evidence wins
//! (a validated pattern over an unvalidated one over a model's guess), then
//! the higher score, then the longer span, then the earlier one.

use std::cmp::Ordering;

use crate::finding::{Candidate, Label};

fn stronger(a: &Candidate, b: &Candidate) -> Ordering {
    b.reason
        .tier
        .cmp(&a.reason.tier)
        .then(b.score.total_cmp(&a.score))
        .then((b.end - b.start).cmp(&(a.end - a.start)))
        .then(a.start.cmp(&b.start))
        .then(a.label.cmp(&b.label))
}

/// Keeps, of every group of overlapping candidates, the strongest; returns
/// the kept ones in text order.
pub fn resolve(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(stronger);
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    // Kept spans by start; none overlap, so the one starting last before a
    // candidate's end is the only one that can overlap it from the left.
    let mut taken = std::collections::BTreeMap::<usize, usize>::new();
    for c in candidates {
        let clash = taken
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, &end)| end > c.start);
        if !clash {
            taken.insert(c.start, c.end);
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| (c.start, c.end));
    kept
}

/// Joins an address with the address parts, places and postcodes that
/// continue it (separated only by spaces, commas or line breaks): the
/// model and the patterns see a street line, a unit, a city and a country
/// separately, while the address is the whole. A place alone stays a
/// place. `kept` is in text order and disjoint, and stays so.
pub fn join_addresses(text: &str, kept: Vec<Candidate>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::with_capacity(kept.len());
    for c in kept {
        if let Some(last) = out.last_mut() {
            let parts = |l: Label| matches!(l, Label::Address | Label::Location);
            let continues = text.get(last.end..c.start).is_some_and(address_gap)
                && parts(last.label)
                && parts(c.label)
                && (last.label == Label::Address || c.label == Label::Address);
            if continues {
                last.end = c.end;
                last.label = Label::Address;
                last.score = last.score.max(c.score);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Between two parts of one address: at most a comma and line breaks.
pub(crate) fn address_gap(gap: &str) -> bool {
    gap.len() <= 4 && gap.chars().all(|c| c.is_whitespace() || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Tier;
    use crate::recognizers::candidate;
    use proptest::prelude::*;

    fn c(start: usize, end: usize, tier: Tier, score: f64) -> Candidate {
        candidate("t", start..end, Label::Person, score, tier, "p", None)
    }

    #[test]
    fn address_gaps() {
        assert!(address_gap(",\n"));
        assert!(address_gap(""));
        assert!(!address_gap(" in "));
        assert!(!address_gap(",\n\n\n\n"));
    }

    #[test]
    fn address_parts_join_and_places_alone_do_not() {
        let text = "12 Baker Street, Suite 4\nLondon, United Kingdom. Paris is nice";
        let at = |s: &str, l: Label| {
            let i = text.find(s).unwrap();
            candidate("t", i..i + s.len(), l, 0.6, Tier::Pattern, "p", None)
        };
        let joined = join_addresses(
            text,
            vec![
                at("12 Baker Street", Label::Address),
                at("Suite 4", Label::Address),
                at("London", Label::Location),
                at("United Kingdom", Label::Location),
                at("Paris", Label::Location),
            ],
        );
        let spans: Vec<(&str, Label)> = joined
            .iter()
            .map(|c| (&text[c.start..c.end], c.label))
            .collect();
        assert_eq!(
            spans,
            [
                (
                    "12 Baker Street, Suite 4\nLondon, United Kingdom",
                    Label::Address
                ),
                ("Paris", Label::Location)
            ]
        );
    }

    #[test]
    fn validated_beats_a_higher_scoring_guess() {
        let kept = resolve(vec![
            c(0, 10, Tier::Model, 0.99),
            c(2, 8, Tier::Validated, 0.6),
        ]);
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].start, kept[0].end), (2, 8));
    }

    #[test]
    fn a_model_reading_beats_a_weak_pattern() {
        // "Jordan" as a country (a weak gazetteer match) and as a person
        // (the model): the model's reading wins, even at a lower score.
        let kept = resolve(vec![c(0, 6, Tier::Weak, 0.6), c(0, 6, Tier::Model, 0.55)]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].reason.tier, Tier::Model);
    }

    proptest! {
        /// The result never overlaps, is sorted, and is the same whatever
        /// order the candidates came in.
        #[test]
        fn disjoint_sorted_and_order_independent(
            spans in proptest::collection::vec((0usize..50, 1usize..10, 0u8..4, 0u8..5), 0..30),
        ) {
            let tiers = [Tier::Weak, Tier::Model, Tier::Pattern, Tier::Validated];
            let cands: Vec<Candidate> = spans
                .iter()
                .map(|&(s, l, t, sc)| c(s, s + l, tiers[usize::from(t)], f64::from(sc) / 4.0))
                .collect();
            let kept = resolve(cands.clone());
            for w in kept.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
            let mut reversed = cands;
            reversed.reverse();
            prop_assert_eq!(resolve(reversed), kept);
        }
    }
}
