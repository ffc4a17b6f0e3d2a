//! Overlapping findings, resolved deterministically: stronger evidence wins
//! (a validated pattern over an unvalidated one over a model's guess), then
//! the higher score, then the longer span, then the earlier one.

use std::cmp::Ordering;

use crate::finding::Candidate;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Label, Tier};
    use crate::recognizers::candidate;
    use proptest::prelude::*;

    fn c(start: usize, end: usize, tier: Tier, score: f64) -> Candidate {
        candidate("t", start..end, Label::Person, score, tier, "p", None)
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

    proptest! {
        /// The result never overlaps, is sorted, and is the same whatever
        /// order the candidates came in.
        #[test]
        fn disjoint_sorted_and_order_independent(
            spans in proptest::collection::vec((0usize..50, 1usize..10, 0u8..3, 0u8..5), 0..30),
        ) {
            let tiers = [Tier::Model, Tier::Pattern, Tier::Validated];
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
