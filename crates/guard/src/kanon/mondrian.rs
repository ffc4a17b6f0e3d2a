//! Strict Mondrian partitioning (LeFevre et al. 2006, Algorithm 1).
//!
//! A partition is split on the column it spans most widely (relative to
//! the column's domain) at the median record; records equal to the median
//! all go to one side, so partitions never overlap. A split is allowed
//! only when both sides keep at least `k` records; when no column allows
//! one, the partition is final. With `n >= k` records every final
//! partition therefore has between `k` and `2k - 1` records, except where
//! ties on every column stop the split.

use std::cmp::Ordering;

use super::KeyedColumn;

/// The final partitions: record indices, each partition with at least `k`
/// (the caller checks that there are at least `k` records).
pub(super) fn partition(columns: &[KeyedColumn], k: usize) -> Vec<Vec<usize>> {
    let records = columns.first().map_or(0, |c| c.keys.len());
    let mut pending = vec![(0..records).collect::<Vec<usize>>()];
    let mut done = Vec::new();
    // An explicit stack rather than recursion: heavily tied data can make
    // the split tree deep on one side.
    while let Some(members) = pending.pop() {
        match split(columns, &members, k) {
            Some((left, right)) => {
                pending.push(right);
                pending.push(left);
            }
            None => done.push(members),
        }
    }
    done
}

/// The allowable split of `members` on their widest column, trying the
/// next widest when a column cannot be split.
fn split(columns: &[KeyedColumn], members: &[usize], k: usize) -> Option<(Vec<usize>, Vec<usize>)> {
    if members.len() < 2 * k {
        return None;
    }
    let mut by_width: Vec<(usize, f64)> = columns
        .iter()
        .enumerate()
        .map(|(c, column)| (c, column.width(members)))
        .filter(|(_, w)| *w > 0.0)
        .collect();
    // Widest first; ties go to the earlier column, so the result does not
    // depend on anything but the input.
    by_width.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    by_width
        .into_iter()
        .find_map(|(c, _)| split_at_median(&columns[c].keys, members, k))
}

/// Missing values order before every present value.
fn order(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    }
}

/// Split at the median value: records below it on one side and the rest
/// on the other, or records up to it and the rest, whichever is allowed
/// and more even.
fn split_at_median(
    keys: &[Option<f64>],
    members: &[usize],
    k: usize,
) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut sorted = members.to_vec();
    sorted.sort_by(|&a, &b| order(keys[a], keys[b]).then(a.cmp(&b)));
    let median = keys[sorted[sorted.len() / 2]];
    let below = sorted.partition_point(|&r| order(keys[r], median) == Ordering::Less);
    let up_to = sorted.partition_point(|&r| order(keys[r], median) != Ordering::Greater);
    let n = sorted.len();
    let allowed = |at: usize| at >= k && n - at >= k;
    let evenness = |at: usize| at.abs_diff(n - at);
    let at = [below, up_to]
        .into_iter()
        .filter(|&at| allowed(at))
        .min_by_key(|&at| evenness(at))?;
    let right = sorted.split_off(at);
    Some((sorted, right))
}
