//! k-anonymity for records: Mondrian multidimensional partitioning.
//!
//! **Guarantee.** Every combination of released quasi-identifier values
//! occurs in at least `k` records (Sweeney 2002). Mondrian (LeFevre,
//! DeWitt and Ramakrishnan, "Mondrian Multidimensional k-Anonymity",
//! ICDE 2006) gets there by splitting the records recursively at the
//! median of one quasi-identifier at a time, never leaving a side with
//! fewer than `k` records, and then generalizing every column of each
//! final partition to the smallest value that covers it: a number or a
//! date to its closed range, a postcode to its common prefix, a category
//! to its set of values. Partitions are disjoint and each holds at least
//! `k` records, so each released combination covers at least `k` (two
//! partitions can release the same combination, which only adds to it).
//!
//! **Assumptions.** Only the named quasi-identifiers are protected; other
//! columns pass through unchanged, so a sensitive column that is constant
//! inside a class is still disclosed (k-anonymity is not l-diversity).
//! A record that lacks a value keeps "missing" as a value; a class mixing
//! missing and present values releases `*` for that column (a suppressed
//! cell).
//!
//! **Information loss** is reported three ways: the normalized certainty
//! penalty (Xu et al., KDD 2006: the share of each column's domain a
//! released value spans, averaged over cells; 0 = nothing generalized,
//! 1 = everything suppressed), the discernibility metric (Bayardo and
//! Agrawal 2005: the sum of squared class sizes) and LeFevre's normalized
//! average class size `C_avg = (n / classes) / k` (1 is ideal).

mod mondrian;

use std::collections::BTreeSet;

/// How a quasi-identifier column is ordered and generalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Numbers: generalized to a closed range `[lo, hi]`.
    Number,
    /// ISO dates (`YYYY-MM-DD`, optionally followed by a time):
    /// generalized to a closed range.
    Date,
    /// Postal codes: generalized to their common prefix, the rest `*`.
    Postcode,
    /// Anything else: generalized to the set of its values `{a,b}`.
    Category,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "number" | "numeric" => Some(Kind::Number),
            "date" => Some(Kind::Date),
            "postcode" | "zip" => Some(Kind::Postcode),
            "category" | "categorical" => Some(Kind::Category),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Date => "date",
            Kind::Postcode => "postcode",
            Kind::Category => "category",
        }
    }

    /// The kind a column's name and values suggest: postcodes by name
    /// (their digits are not quantities), then numbers, then dates, then
    /// categories.
    pub fn infer(name: &str, values: &[Option<String>]) -> Kind {
        let lower = name.to_ascii_lowercase();
        if ["zip", "postcode", "postal", "post_code"]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Kind::Postcode;
        }
        let present = || values.iter().flatten();
        if present().next().is_none() {
            return Kind::Category;
        }
        if present().all(|v| parse_number(v).is_some()) {
            Kind::Number
        } else if present().all(|v| parse_date(v).is_some()) {
            Kind::Date
        } else {
            Kind::Category
        }
    }
}

/// One quasi-identifier column: its name, kind and one value per record
/// (`None` where the record has none).
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub values: Vec<Option<String>>,
}

/// The generalized columns, in the order given, and what it cost.
#[derive(Clone, Debug)]
pub struct Anonymized {
    /// `columns[c][r]`: the released value of column `c` for record `r`;
    /// `None` where every record of the class lacks the value.
    pub columns: Vec<Vec<Option<String>>>,
    /// The class (partition) of each record.
    pub class_of: Vec<usize>,
    pub report: Report,
}

/// What the generalization cost.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub k: usize,
    pub records: usize,
    pub classes: usize,
    pub smallest_class: usize,
    pub largest_class: usize,
    /// Normalized certainty penalty, averaged over all cells, in [0, 1].
    pub ncp: f64,
    /// The same per column, in the order given.
    pub ncp_per_column: Vec<f64>,
    /// Sum over classes of the class size squared.
    pub discernibility: u64,
    /// (records / classes) / k.
    pub c_avg: f64,
    /// Cells released as `*` (the whole domain, or missing mixed with
    /// present values).
    pub suppressed_cells: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum KanonError {
    #[error("k must be at least 1")]
    ZeroK,
    #[error("no quasi-identifier columns were given: name the columns that could identify a person together (e.g. age, zip, birth date)")]
    NoColumns,
    #[error(
        "k = {k} is larger than the {records} records: no generalization can make every combination occur {k} times; lower k or add records"
    )]
    TooFewRecords { k: usize, records: usize },
    #[error("column '{column}' has {got} values but there are {records} records")]
    Ragged {
        column: String,
        got: usize,
        records: usize,
    },
    #[error("column '{column}', record {}: {value:?} is not a {kind}; fix the value or declare the column another kind (e.g. {column}:category)", .record + 1)]
    BadValue {
        column: String,
        record: usize,
        value: String,
        kind: &'static str,
    },
}

/// Make every combination of the columns' released values occur at least
/// `k` times.
pub fn anonymize(columns: &[Column], k: usize) -> Result<Anonymized, KanonError> {
    if k == 0 {
        return Err(KanonError::ZeroK);
    }
    let Some(first) = columns.first() else {
        return Err(KanonError::NoColumns);
    };
    let records = first.values.len();
    for c in columns {
        if c.values.len() != records {
            return Err(KanonError::Ragged {
                column: c.name.clone(),
                got: c.values.len(),
                records,
            });
        }
    }
    if k > records {
        return Err(KanonError::TooFewRecords { k, records });
    }
    let keyed = columns
        .iter()
        .map(KeyedColumn::new)
        .collect::<Result<Vec<_>, _>>()?;
    let classes = mondrian::partition(&keyed, k);

    let mut released = vec![vec![None; records]; columns.len()];
    let mut class_of = vec![0; records];
    let mut penalty = vec![0.0; columns.len()];
    let mut suppressed_cells = 0;
    for (class, members) in classes.iter().enumerate() {
        for &r in members {
            class_of[r] = class;
        }
        for (c, column) in keyed.iter().enumerate() {
            let (value, cost) = column.generalize(members);
            if value.as_deref() == Some(SUPPRESSED) {
                suppressed_cells += members.len();
            }
            penalty[c] += cost * members.len() as f64;
            for &r in members {
                released[c][r] = value.clone();
            }
        }
    }
    let sizes = classes.iter().map(Vec::len);
    let ncp_per_column: Vec<f64> = penalty.iter().map(|p| p / records as f64).collect();
    let report = Report {
        k,
        records,
        classes: classes.len(),
        smallest_class: sizes.clone().min().unwrap_or(0),
        largest_class: sizes.clone().max().unwrap_or(0),
        ncp: ncp_per_column.iter().sum::<f64>() / columns.len() as f64,
        ncp_per_column,
        discernibility: sizes.map(|s| (s as u64) * (s as u64)).sum(),
        c_avg: records as f64 / classes.len() as f64 / k as f64,
        suppressed_cells,
    };
    Ok(Anonymized {
        columns: released,
        class_of,
        report,
    })
}

const SUPPRESSED: &str = "*";

/// A column with an order key per record: the value for numbers, days for
/// dates, the rank among the distinct values for postcodes and
/// categories. Missing values order first.
struct KeyedColumn<'a> {
    column: &'a Column,
    keys: Vec<Option<f64>>,
    /// The domain's smallest and largest key.
    span: (f64, f64),
    /// Distinct present values, sorted (postcodes and categories).
    distinct: Vec<&'a str>,
}

impl<'a> KeyedColumn<'a> {
    fn new(column: &'a Column) -> Result<Self, KanonError> {
        let distinct: Vec<&str> = match column.kind {
            Kind::Postcode | Kind::Category => column
                .values
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Kind::Number | Kind::Date => Vec::new(),
        };
        let key = |record: usize, v: &str| -> Result<f64, KanonError> {
            let parsed = match column.kind {
                Kind::Number => parse_number(v),
                Kind::Date => parse_date(v),
                Kind::Postcode | Kind::Category => {
                    distinct.binary_search(&v).ok().map(|rank| rank as f64)
                }
            };
            parsed.ok_or_else(|| KanonError::BadValue {
                column: column.name.clone(),
                record,
                value: v.to_owned(),
                kind: column.kind.name(),
            })
        };
        let keys = column
            .values
            .iter()
            .enumerate()
            .map(|(r, v)| v.as_deref().map(|v| key(r, v)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let span = keys
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        Ok(KeyedColumn {
            column,
            keys,
            span,
            distinct,
        })
    }

    /// The share of the domain that `members` span, in [0, 1]: what
    /// Mondrian splits first, and (for ranges) the certainty penalty.
    fn width(&self, members: &[usize]) -> f64 {
        match self.extent(members) {
            Extent::Missing => 0.0,
            Extent::Mixed => 1.0,
            Extent::Present { lo, hi } => self.share_between(lo, hi),
        }
    }

    /// The share of the domain between the keys of records `lo` and `hi`.
    fn share_between(&self, lo: usize, hi: usize) -> f64 {
        let domain = self.span.1 - self.span.0;
        if domain > 0.0 {
            (self.keys[hi].unwrap_or(0.0) - self.keys[lo].unwrap_or(0.0)) / domain
        } else {
            0.0
        }
    }

    fn extent(&self, members: &[usize]) -> Extent {
        let mut lo: Option<usize> = None;
        let mut hi: Option<usize> = None;
        let mut missing = false;
        for &r in members {
            match self.keys[r] {
                None => missing = true,
                Some(x) => {
                    if lo.is_none_or(|l| x < self.keys[l].unwrap_or(f64::INFINITY)) {
                        lo = Some(r);
                    }
                    if hi.is_none_or(|h| x > self.keys[h].unwrap_or(f64::NEG_INFINITY)) {
                        hi = Some(r);
                    }
                }
            }
        }
        match (lo, hi, missing) {
            (Some(lo), Some(hi), false) => Extent::Present { lo, hi },
            (Some(_), Some(_), true) => Extent::Mixed,
            _ => Extent::Missing,
        }
    }

    /// The released value for a class and its certainty penalty.
    fn generalize(&self, members: &[usize]) -> (Option<String>, f64) {
        let (lo, hi) = match self.extent(members) {
            Extent::Missing => return (None, 0.0),
            Extent::Mixed => return (Some(SUPPRESSED.to_owned()), 1.0),
            Extent::Present { lo, hi } => (lo, hi),
        };
        let text = |r: usize| self.column.values[r].as_deref().unwrap_or_default();
        if self.keys[lo] == self.keys[hi] {
            return (Some(text(lo).to_owned()), 0.0);
        }
        match self.column.kind {
            Kind::Number | Kind::Date => {
                let cost = self.share_between(lo, hi);
                if cost >= 1.0 {
                    (Some(SUPPRESSED.to_owned()), 1.0)
                } else {
                    (Some(format!("[{}, {}]", text(lo), text(hi))), cost)
                }
            }
            Kind::Postcode => {
                let values: Vec<&str> = members.iter().map(|&r| text(r)).collect();
                let pattern = prefix_pattern(&values);
                let covered = self
                    .distinct
                    .iter()
                    .filter(|v| matches_prefix_pattern(&pattern, v))
                    .count();
                let cost = share(covered, self.distinct.len());
                if pattern.chars().all(|c| c == '*') {
                    (Some(SUPPRESSED.to_owned()), 1.0)
                } else {
                    (Some(pattern), cost)
                }
            }
            Kind::Category => {
                let set: BTreeSet<&str> = members.iter().map(|&r| text(r)).collect();
                if set.len() == self.distinct.len() {
                    return (Some(SUPPRESSED.to_owned()), 1.0);
                }
                let cost = share(set.len(), self.distinct.len());
                let joined = set.into_iter().collect::<Vec<_>>().join(",");
                (Some(format!("{{{joined}}}")), cost)
            }
        }
    }
}

enum Extent {
    /// No member has a value.
    Missing,
    /// Some members have a value, some do not.
    Mixed,
    /// Every member has one; `lo` and `hi` are records holding the least
    /// and the greatest.
    Present { lo: usize, hi: usize },
}

/// Certainty penalty of a value that covers `covered` of `domain` distinct
/// values: 0 for one value, 1 for all of them.
fn share(covered: usize, domain: usize) -> f64 {
    if domain <= 1 {
        0.0
    } else {
        (covered.saturating_sub(1)) as f64 / (domain - 1) as f64
    }
}

/// The values' longest common prefix, padded with `*` to the longest
/// value's length: `94105`, `94110` give `941**`.
fn prefix_pattern(values: &[&str]) -> String {
    let Some(first) = values.first() else {
        return String::new();
    };
    let mut prefix: Vec<char> = first.chars().collect();
    let mut longest = prefix.len();
    for v in &values[1..] {
        let common = prefix
            .iter()
            .zip(v.chars())
            .take_while(|(a, b)| **a == *b)
            .count();
        prefix.truncate(common);
        longest = longest.max(v.chars().count());
    }
    let stars = longest - prefix.len();
    prefix
        .into_iter()
        .chain(std::iter::repeat_n('*', stars))
        .collect()
}

/// Whether `value` is one of the values `pattern` (from
/// [`prefix_pattern`]) stands for.
fn matches_prefix_pattern(pattern: &str, value: &str) -> bool {
    let fixed = pattern.trim_end_matches('*');
    value.starts_with(fixed) && value.chars().count() <= pattern.chars().count()
}

fn parse_number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Days since 1970-01-01 (with the time of day as a fraction) of an ISO
/// date or date-time; `None` for anything else, impossible dates included.
fn parse_date(v: &str) -> Option<f64> {
    let v = v.trim();
    let date = v.get(..10)?;
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month {
        return None;
    }
    let fraction = match &v[10..] {
        "" => 0.0,
        rest => time_fraction(rest)?,
    };
    Some(days_from_civil(year, month, day) as f64 + fraction)
}

/// The fraction of a day of `THH:MM[:SS]...` (or with a space for `T`);
/// whatever follows the seconds (fractions, zone) is ignored.
fn time_fraction(rest: &str) -> Option<f64> {
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let mut parts = rest.get(..rest.len().min(8))?.split(':');
    let mut field = |max: u32| -> Option<u32> {
        parts
            .next()
            .map(|p| p.parse::<u32>().ok().filter(|x| *x < max))
            .unwrap_or(Some(0))
    };
    let (h, m, s) = (field(24)?, field(60)?, field(61)?);
    Some(f64::from(h * 3600 + m * 60 + s) / 86_400.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
