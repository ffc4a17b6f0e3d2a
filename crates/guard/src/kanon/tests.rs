use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn column(name: &str, kind: Kind, values: &[Option<&str>]) -> Column {
    Column {
        name: name.to_owned(),
        kind,
        values: values.iter().map(|v| v.map(str::to_owned)).collect(),
    }
}

fn present<'a>(values: &[&'a str]) -> Vec<Option<&'a str>> {
    values.iter().copied().map(Some).collect()
}

/// Whether a released value stands for the original one, checked from the
/// released text alone (independently of how it was computed).
fn covers(kind: Kind, released: Option<&str>, original: Option<&str>) -> bool {
    if released == Some("*") {
        return true;
    }
    let (Some(released), Some(original)) = (released, original) else {
        return released.is_none() && original.is_none();
    };
    if released == original {
        return true;
    }
    match kind {
        Kind::Number => {
            let Some((lo, hi)) = released
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.split_once(", "))
            else {
                return false;
            };
            let x: f64 = original.parse().unwrap_or(f64::NAN);
            lo.parse::<f64>().is_ok_and(|lo| lo <= x) && hi.parse::<f64>().is_ok_and(|hi| x <= hi)
        }
        // ISO dates of one format order as text.
        Kind::Date => released
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|r| r.split_once(", "))
            .is_some_and(|(lo, hi)| lo <= original && original <= hi),
        Kind::Postcode => {
            original.chars().count() <= released.chars().count()
                && released
                    .chars()
                    .zip(original.chars())
                    .all(|(p, c)| p == '*' || p == c)
        }
        Kind::Category => released
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .is_some_and(|set| set.split(',').any(|v| v == original)),
    }
}

/// Recount: every released combination occurs at least `k` times, and
/// every released value covers the original.
fn assert_k_anonymous(columns: &[Column], out: &Anonymized, k: usize) {
    let records = columns[0].values.len();
    let mut counts: HashMap<Vec<Option<&str>>, usize> = HashMap::new();
    for r in 0..records {
        let combination: Vec<Option<&str>> = out.columns.iter().map(|c| c[r].as_deref()).collect();
        *counts.entry(combination).or_default() += 1;
        for (c, column) in columns.iter().enumerate() {
            assert!(
                covers(
                    column.kind,
                    out.columns[c][r].as_deref(),
                    column.values[r].as_deref()
                ),
                "record {r}, column {}: {:?} does not cover {:?}",
                column.name,
                out.columns[c][r],
                column.values[r]
            );
        }
    }
    for (combination, count) in counts {
        assert!(count >= k, "{combination:?} occurs {count} < {k} times");
    }
}

#[test]
fn the_classic_example_is_two_anonymous_with_ranges_and_prefixes() {
    // Ages and zip codes of the kind used in the k-anonymity literature.
    let columns = [
        column(
            "age",
            Kind::Number,
            &present(&["25", "25", "26", "27", "41", "57", "58", "59"]),
        ),
        column(
            "zip",
            Kind::Postcode,
            &present(&[
                "53711", "53712", "53711", "53710", "53712", "53711", "53706", "53706",
            ]),
        ),
    ];
    let out = anonymize(&columns, 2).unwrap();
    assert_k_anonymous(&columns, &out, 2);
    assert_eq!(out.report.records, 8);
    assert!(out.report.classes >= 3, "{:?}", out.report);
    assert!(out.report.smallest_class >= 2);
    // The two 25-year-olds share a class, released as the narrowest range
    // and common zip prefix of that class.
    assert_eq!(out.class_of[0], out.class_of[1]);
    assert!(out.columns[1][0].as_deref().unwrap().starts_with("5371"));
    assert!(out.report.ncp > 0.0 && out.report.ncp < 1.0);
}

#[test]
fn k_equal_to_the_records_puts_everything_in_one_class() {
    let columns = [
        column("age", Kind::Number, &present(&["30", "40", "35"])),
        column("sex", Kind::Category, &present(&["F", "M", "F"])),
        column(
            "born",
            Kind::Date,
            &present(&["1990-01-05", "1985-06-30", "1990-01-05"]),
        ),
    ];
    let out = anonymize(&columns, 3).unwrap();
    assert_eq!(out.report.classes, 1);
    assert_eq!(out.report.discernibility, 9);
    // Each column's range is its whole domain: released as `*`.
    for c in &out.columns {
        assert!(c.iter().all(|v| v.as_deref() == Some("*")), "{c:?}");
    }
    assert_eq!(out.report.suppressed_cells, 9);
    assert!((out.report.ncp - 1.0).abs() < 1e-12);
    assert!((out.report.c_avg - 1.0).abs() < 1e-12);
}

#[test]
fn identical_records_lose_nothing() {
    let columns = [column("age", Kind::Number, &present(&["30"; 6]))];
    let out = anonymize(&columns, 2).unwrap();
    assert_eq!(out.report.ncp, 0.0);
    assert!(out.columns[0].iter().all(|v| v.as_deref() == Some("30")));
    // Ties stop every split: one class of six.
    assert_eq!(out.report.classes, 1);
    assert!((out.report.c_avg - 3.0).abs() < 1e-12);
}

#[test]
fn missing_values_stay_missing_or_are_suppressed_when_mixed() {
    let columns = [column(
        "age",
        Kind::Number,
        &[
            None,
            None,
            Some("30"),
            Some("31"),
            None,
            Some("50"),
            Some("52"),
        ],
    )];
    let out = anonymize(&columns, 2).unwrap();
    assert_k_anonymous(&columns, &out, 2);
    let released: Vec<Option<&str>> = out.columns[0].iter().map(|v| v.as_deref()).collect();
    // Missing values order first: the three records without an age form
    // one class; those with one are split by age.
    assert_eq!(
        released,
        [
            None,
            None,
            Some("[30, 31]"),
            Some("[30, 31]"),
            None,
            Some("[50, 52]"),
            Some("[50, 52]")
        ]
    );

    let mixed = anonymize(&columns, 4).unwrap();
    assert_k_anonymous(&columns, &mixed, 4);
    assert!(mixed.columns[0].iter().all(|v| v.as_deref() == Some("*")));
}

#[test]
fn categories_are_released_as_sets() {
    let columns = [column(
        "job",
        Kind::Category,
        &present(&["nurse", "clerk", "nurse", "doctor", "clerk", "teacher"]),
    )];
    let out = anonymize(&columns, 2).unwrap();
    assert_k_anonymous(&columns, &out, 2);
    // Sorted, the values split at the median into {clerk, clerk, doctor}
    // and {nurse, nurse, teacher}; neither half can split again at k = 2.
    let released: Vec<&str> = out.columns[0]
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(
        released,
        [
            "{nurse,teacher}",
            "{clerk,doctor}",
            "{nurse,teacher}",
            "{clerk,doctor}",
            "{clerk,doctor}",
            "{nurse,teacher}"
        ]
    );
    assert!(
        (out.report.ncp - 1.0 / 3.0).abs() < 1e-12,
        "{}",
        out.report.ncp
    );
}

#[test]
fn bad_input_is_refused_with_what_to_fix() {
    let ages = column("age", Kind::Number, &present(&["30", "31"]));
    let err = anonymize(std::slice::from_ref(&ages), 3).unwrap_err();
    assert!(
        matches!(err, KanonError::TooFewRecords { k: 3, records: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("lower k"));
    assert!(matches!(
        anonymize(std::slice::from_ref(&ages), 0),
        Err(KanonError::ZeroK)
    ));
    assert!(matches!(anonymize(&[], 2), Err(KanonError::NoColumns)));

    let ragged = [
        ages.clone(),
        column("zip", Kind::Postcode, &present(&["1"])),
    ];
    assert!(matches!(
        anonymize(&ragged, 1),
        Err(KanonError::Ragged { .. })
    ));

    let bad = [column("age", Kind::Number, &present(&["30", "thirty"]))];
    let err = anonymize(&bad, 1).unwrap_err();
    assert!(
        matches!(&err, KanonError::BadValue { record: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("age:category"), "{err}");
    let bad_date = [column("born", Kind::Date, &present(&["2023-02-29"]))];
    assert!(anonymize(&bad_date, 1).is_err());
}

#[test]
fn kinds_are_inferred_from_names_and_values() {
    let owned = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(Kind::infer("zip_code", &owned(&["02139"])), Kind::Postcode);
    assert_eq!(Kind::infer("age", &owned(&["31", "4.5"])), Kind::Number);
    assert_eq!(
        Kind::infer("dob", &owned(&["1990-01-02", "1990-01-03T04:05:06Z"])),
        Kind::Date
    );
    assert_eq!(Kind::infer("sex", &owned(&["F", "M"])), Kind::Category);
    assert_eq!(Kind::infer("x", &[None]), Kind::Category);
}

#[test]
fn dates_count_days_from_the_epoch() {
    assert_eq!(parse_date("1970-01-01"), Some(0.0));
    assert_eq!(parse_date("2000-03-01"), Some(11_017.0));
    assert_eq!(parse_date("2000-02-29"), Some(11_016.0));
    assert_eq!(parse_date("1969-12-31"), Some(-1.0));
    assert_eq!(parse_date("1970-01-02T12:00:00Z"), Some(1.5));
    assert_eq!(parse_date("1900-02-29"), None);
    assert_eq!(parse_date("2021-13-01"), None);
    assert_eq!(parse_date("2021-01-01Tnoon"), None);
    assert_eq!(parse_date("01/02/2021"), None);
}

#[test]
fn postcode_patterns_keep_the_common_prefix() {
    assert_eq!(prefix_pattern(&["94105", "94110"]), "941**");
    assert_eq!(prefix_pattern(&["SW1A 1AA", "SW1A 2AB"]), "SW1A ***");
    assert_eq!(prefix_pattern(&["123", "12345"]), "123**");
    assert!(matches_prefix_pattern("941**", "94199"));
    assert!(!matches_prefix_pattern("941**", "942"));
    assert!(!matches_prefix_pattern("941**", "941000"));
}

fn table() -> impl Strategy<Value = (Vec<Column>, usize)> {
    (1usize..60).prop_flat_map(|n| {
        let maybe = |s: BoxedStrategy<String>| prop::option::weighted(0.9, s);
        let ages = prop::collection::vec(maybe((0u32..100).prop_map(|a| a.to_string()).boxed()), n);
        let zips = prop::collection::vec(maybe("[0-9]{3,5}".boxed()), n);
        let days = prop::collection::vec(
            maybe(
                (1990u32..1993, 1u32..13, 1u32..29)
                    .prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"))
                    .boxed(),
            ),
            n,
        );
        let jobs = prop::collection::vec(maybe("[a-e]{1,2}".boxed()), n);
        (ages, zips, days, jobs, 1..=n).prop_map(|(ages, zips, days, jobs, k)| {
            let col = |name: &str, kind, values| Column {
                name: name.to_owned(),
                kind,
                values,
            };
            (
                vec![
                    col("age", Kind::Number, ages),
                    col("zip", Kind::Postcode, zips),
                    col("born", Kind::Date, days),
                    col("job", Kind::Category, jobs),
                ],
                k,
            )
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_output_is_k_anonymous_and_the_report_adds_up((columns, k) in table()) {
        let out = anonymize(&columns, k).unwrap();
        assert_k_anonymous(&columns, &out, k);
        let records = columns[0].values.len();
        let mut sizes = vec![0usize; out.report.classes];
        for &c in &out.class_of {
            sizes[c] += 1;
        }
        prop_assert!(sizes.iter().all(|&s| s >= k));
        prop_assert_eq!(sizes.iter().sum::<usize>(), records);
        prop_assert_eq!(out.report.smallest_class, *sizes.iter().min().unwrap());
        prop_assert_eq!(
            out.report.discernibility,
            sizes.iter().map(|&s| (s * s) as u64).sum::<u64>()
        );
        prop_assert!((0.0..=1.0).contains(&out.report.ncp));
        // Records of one class release the same values.
        for r in 0..records {
            for s in 0..records {
                if out.class_of[r] == out.class_of[s] {
                    for c in &out.columns {
                        prop_assert_eq!(&c[r], &c[s]);
                    }
                }
            }
        }
    }
}
