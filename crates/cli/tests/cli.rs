//! The `pft` binary as users and scripts call it.

use std::process::{Command, Output};

use pft_accountant::{calibrate, Method, Segment};
use serde_json::Value;

fn pft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pft"))
        .args(args)
        .env_remove("PFT_LEDGER")
        .output()
        .expect("pft runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object per line: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn epsilon_json_carries_the_contract_fields_and_the_library_value() {
    let out = pft(&[
        "privacy",
        "epsilon",
        "--sample-rate",
        "0.01",
        "--noise-multiplier",
        "1.1",
        "--steps",
        "5000",
        "--delta",
        "1e-5",
        "--json",
    ]);
    let v = json(&out);
    let expected = Method::Pld
        .epsilon(&[Segment::new(1.1, 0.01, 5000).unwrap()], 1e-5)
        .unwrap()
        .epsilon;
    assert_eq!(v["epsilon"].as_f64().unwrap(), expected);
    assert_eq!(v["delta"].as_f64().unwrap(), 1e-5);
    assert_eq!(v["accountant"], "pld");
    assert_eq!(v["upper_bound"], true);
    for accountant in ["rdp", "gdp"] {
        let v = json(&pft(&[
            "privacy",
            "epsilon",
            "--sample-rate",
            "0.01",
            "--noise-multiplier",
            "1.1",
            "--steps",
            "5000",
            "--delta",
            "1e-5",
            "--accountant",
            accountant,
            "--json",
        ]));
        assert_eq!(v["accountant"], accountant);
        assert_eq!(v["upper_bound"], accountant == "rdp");
        assert!(v["epsilon"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn noise_and_steps_invert_each_other() {
    let v = json(&pft(&[
        "privacy",
        "noise",
        "--target-epsilon",
        "2",
        "--delta",
        "1e-6",
        "--sample-rate",
        "0.02",
        "--steps",
        "2000",
        "--json",
    ]));
    let sigma = v["noise_multiplier"].as_f64().unwrap();
    let eps = v["epsilon"].as_f64().unwrap();
    assert!(eps <= 2.0, "{v}");
    let library = calibrate::noise_multiplier(Method::Pld, 2.0, 1e-6, 0.02, 2000).unwrap();
    assert_eq!(sigma, library.noise_multiplier);

    let sigma_text = format!("{sigma}");
    let v = json(&pft(&[
        "privacy",
        "steps",
        "--target-epsilon",
        "2",
        "--delta",
        "1e-6",
        "--sample-rate",
        "0.02",
        "--noise-multiplier",
        &sigma_text,
        "--json",
    ]));
    assert!(v["steps"].as_u64().unwrap() >= 2000, "{v}");
    assert!(v["epsilon"].as_f64().unwrap() <= 2.0);
}

#[test]
fn bad_input_is_one_line_naming_the_argument_with_exit_code_two() {
    let base = |over: &[(&str, &str)]| {
        let mut args = vec![
            ("--sample-rate", "0.01"),
            ("--noise-multiplier", "1.0"),
            ("--steps", "100"),
            ("--delta", "1e-5"),
        ];
        for (flag, value) in over {
            args.iter_mut().find(|(f, _)| f == flag).unwrap().1 = value;
        }
        let mut v = vec!["privacy", "epsilon"];
        for (f, value) in args {
            v.push(f);
            v.push(value);
        }
        pft(&v)
    };
    let cases: [(&str, &str, &str); 8] = [
        ("--sample-rate", "1.5", "(0, 1]"),
        ("--sample-rate", "0", "(0, 1]"),
        ("--noise-multiplier", "0", "(0, inf)"),
        ("--noise-multiplier", "-1", "(0, inf)"),
        ("--steps", "0", "[1, 1e9]"),
        ("--delta", "1", "(0, 1)"),
        ("--delta", "0", "(0, 1)"),
        ("--sample-rate", "nan", "(0, 1]"),
    ];
    for (flag, value, range) in cases {
        let out = base(&[(flag, value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    let out = base(&[("--steps", "ten")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--steps"), "{stderr}");
}

#[test]
fn unreachable_targets_are_clear_errors() {
    let out = pft(&[
        "privacy",
        "noise",
        "--target-epsilon",
        "0.000001",
        "--delta",
        "1e-5",
        "--sample-rate",
        "1",
        "--steps",
        "10000000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no noise multiplier"), "{stderr}");
    let out = pft(&[
        "privacy",
        "steps",
        "--target-epsilon",
        "0.01",
        "--delta",
        "1e-5",
        "--sample-rate",
        "0.5",
        "--noise-multiplier",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("single step"));
}

#[test]
fn every_subcommand_has_help_and_the_binary_a_version() {
    let version = pft(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("pft "));
    for path in [
        &["--help"][..],
        &["privacy", "--help"],
        &["privacy", "epsilon", "--help"],
        &["privacy", "noise", "--help"],
        &["privacy", "steps", "--help"],
        &["ledger", "--help"],
        &["ledger", "show", "--help"],
        &["ledger", "record", "--help"],
        &["bench", "--help"],
        &["bench", "accountant", "--help"],
    ] {
        let out = pft(path);
        assert!(out.status.success(), "{path:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{path:?}"
        );
    }
}

#[test]
fn ledger_records_and_shows_spend_per_dataset_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let ledger = ledger.to_str().unwrap();
    let data = dir.path().join("train.jsonl");
    std::fs::write(&data, "{\"text\": \"hello\"}\n").unwrap();
    let data = data.to_str().unwrap();

    let empty = json(&pft(&["ledger", "show", "--ledger", ledger, "--json"]));
    assert_eq!(empty["datasets"].as_array().unwrap().len(), 0);

    let record = |run: &str, steps: &str| {
        json(&pft(&[
            "ledger",
            "record",
            "--ledger",
            ledger,
            "--dataset",
            data,
            "--run",
            run,
            "--steps",
            steps,
            "--noise-multiplier",
            "1.0",
            "--sample-rate",
            "0.01",
            "--delta",
            "1e-5",
            "--json",
        ]))
    };
    let first = record("first", "3000");
    assert_eq!(first["first_step"], 1);
    assert_eq!(first["last_step"], 3000);
    let more = record("first", "1000");
    assert_eq!(more["first_step"], 3001);
    record("second", "2000");

    let shown = json(&pft(&[
        "ledger",
        "show",
        "--ledger",
        ledger,
        "--dataset",
        data,
        "--json",
    ]));
    let datasets = shown["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 1);
    let d = &datasets[0];
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["steps"], 4000);
    let total = d["total"]["epsilon"].as_f64().unwrap();
    let expected = Method::Pld
        .epsilon(&[Segment::new(1.0, 0.01, 6000).unwrap()], 1e-5)
        .unwrap()
        .epsilon;
    assert!(
        (total - expected).abs() <= 1e-9 * expected,
        "{total} vs {expected}"
    );

    // The dataset is found by its hash too, and the text view lists it.
    let hash = d["dataset"].as_str().unwrap().to_string();
    let text = pft(&["ledger", "show", "--ledger", ledger, "--dataset", &hash]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&hash) && text.contains("second") && text.contains("total"),
        "{text}"
    );

    let gap = pft(&[
        "ledger",
        "record",
        "--ledger",
        ledger,
        "--dataset",
        &hash,
        "--run",
        "first",
        "--first-step",
        "9000",
        "--steps",
        "1",
        "--noise-multiplier",
        "1.0",
        "--sample-rate",
        "0.01",
        "--delta",
        "1e-5",
    ]);
    assert_eq!(gap.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gap.stderr).contains("gap"));
    let bad = pft(&[
        "ledger",
        "show",
        "--ledger",
        ledger,
        "--dataset",
        "not-a-hash",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn bench_case_list_is_json_for_the_peer_script() {
    let v = json(&pft(&["bench", "accountant", "--print-cases"]));
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 100);
    assert_eq!(cases[0]["set"], "headline");
    assert_eq!(cases[0]["steps"], 10000);
    assert!(!v["calibrations"].as_array().unwrap().is_empty());
}
