//! `pft guard` as scripts call it: the JSONL contract, strategies, and bad
//! input that leaves nothing half-written.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn pft(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pft"));
    cmd.args(args)
        .env_remove("HASH_SALT")
        .env_remove("FPE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("pft runs");
    let written = child.stdin.take().expect("stdin is piped").write_all(stdin);
    // A command that refuses its arguments exits without reading its
    // input; that is not the test's failure.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().expect("pft finishes")
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn scan_writes_one_line_of_code_point_spans_per_input_line() {
    let input = "{\"text\": \"Grüße, mail jürgen@example.com\"}\n{\"text\": \"nothing here\"}\n";
    let out = lines(&pft(&["guard", "scan"], input.as_bytes(), &[]));
    assert_eq!(out.len(), 2);
    let span = &out[0]["spans"][0];
    assert_eq!(span["label"], "EMAIL_ADDRESS");
    assert_eq!(span["recognizer"], "email");
    let chars: Vec<char> = "Grüße, mail jürgen@example.com".chars().collect();
    let (s, e) = (
        span["start"].as_u64().unwrap() as usize,
        span["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(chars[s..e].iter().collect::<String>(), "jürgen@example.com");
    assert_eq!(out[1]["spans"].as_array().unwrap().len(), 0);
}

#[test]
fn protect_rewrites_text_and_keeps_other_fields() {
    let input = "{\"id\": 7, \"text\": \"card 4111-1111-1111-1111, ssn 151-14-2224\"}\n";
    let out = lines(&pft(
        &["guard", "protect", "--strategy", "pii-removal"],
        input.as_bytes(),
        &[],
    ));
    assert_eq!(out[0]["text"], "card [PAYMENT_CARD], ssn [SSN]");
    assert_eq!(out[0]["id"], 7);

    let key = [("HASH_SALT", "a test key of thirty-two bytes!!")];
    let twice = "{\"text\": \"4111 1111 1111 1111\"}\n{\"text\": \"4111-1111-1111-1111\"}\n";
    let out = lines(&pft(
        &["guard", "protect", "--strategy", "entity-hashing"],
        twice.as_bytes(),
        &key,
    ));
    assert_eq!(out[0]["text"], out[1]["text"]);
    assert!(out[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("[CREDIT_CARD_"));
}

#[test]
fn bad_input_names_the_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    let o = output.to_str().unwrap();
    let bad = b"{\"text\": \"fine 4111 1111 1111 1111\"}\n{\"txt\": \"no text\"}\n";
    let out = pft(&["guard", "scan", "--output", o], bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert!(!output.exists());

    let not_utf8 = b"{\"text\": \"ok\"}\n{\"text\": \"\xff\"}\n";
    let out = pft(&["guard", "scan", "--output", o], not_utf8, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: not UTF-8"));
    assert!(!output.exists());

    let out = pft(
        &["guard", "protect", "--strategy", "entity-hashing"],
        b"{\"text\": \"x\"}\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HASH_SALT"));
}

#[test]
fn explain_gives_the_evidence() {
    let out = lines(&pft(
        &["guard", "explain", "my phone is 414 0848"],
        b"",
        &[],
    ));
    let f = &out[0]["findings"][0];
    assert_eq!(f["label"], "PHONE_NUMBER");
    assert_eq!(f["text"], "414 0848");
    assert_eq!(f["reason"]["context"][0], "phone");
    assert!(f["score"].as_f64().unwrap() > f["reason"]["base_score"].as_f64().unwrap());
}

#[test]
fn semantic_encryption_round_trips_across_key_versions() {
    let key = [("FPE_KEY", "0123456789abcdef0123456789abcdef")];
    let original = "Card 4111-1111-1111-1111 for Maria Keller, phone +1 415 555 0134";
    let input = format!("{{\"text\": \"{original}\", \"id\": 7}}\n");
    let protect = |hours: &str| {
        lines(&pft(
            &[
                "guard",
                "protect",
                "--strategy",
                "semantic-encryption",
                "--key-rotation-hours",
                hours,
            ],
            input.as_bytes(),
            &key,
        ))
        .remove(0)
    };
    // Versions 0 (no rotation) and the current hour's: both restore.
    for record in [protect("0"), protect("1")] {
        let text = record["text"].as_str().unwrap();
        assert!(
            !text.contains("4111-1111-1111-1111") && !text.contains("415 555 0134"),
            "{text}"
        );
        let card: String = text["Card ".len().."Card ".len() + 19]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        assert_eq!(card.len(), 16, "{text}");
        let restored = lines(&pft(
            &["guard", "restore"],
            format!("{record}\n").as_bytes(),
            &key,
        ));
        assert_eq!(restored[0]["text"], original);
        assert_eq!(restored[0]["id"], 7);
        assert!(restored[0].get("pft_fpe").is_none());
        let wrong = pft(
            &["guard", "restore"],
            format!("{record}\n").as_bytes(),
            &[("FPE_KEY", "another key of enough bytes!!")],
        );
        assert_eq!(wrong.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&wrong.stderr).contains("not the key"));
    }
    let no_key = pft(
        &["guard", "protect", "--strategy", "semantic-encryption"],
        input.as_bytes(),
        &[],
    );
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("FPE_KEY"));
}

/// Records whose quasi-identifiers single people out: ages, zip codes and
/// birth dates, deterministic but varied.
fn people(n: usize) -> Vec<(u32, String, String, &'static str)> {
    let jobs = ["nurse", "clerk", "teacher", "engineer"];
    (0..n)
        .map(|i| {
            let i32 = i as u32;
            (
                18 + (i32 * 37) % 70,
                format!("{:05}", [2139, 2141, 94105, 94117][i % 4] + (i32 * 7) % 3),
                format!(
                    "{}-{:02}-{:02}",
                    1950 + (i32 * 13) % 50,
                    1 + i32 % 12,
                    1 + (i32 * 5) % 28
                ),
                jobs[(i * 3) % 4],
            )
        })
        .collect()
}

/// Every combination of `quasi` values in `rows` occurs at least `k` times.
fn recount(rows: &[Vec<String>], k: usize) {
    let mut counts = std::collections::HashMap::<&[String], usize>::new();
    for r in rows {
        *counts.entry(r.as_slice()).or_default() += 1;
    }
    for (combination, n) in counts {
        assert!(n >= k, "{combination:?} occurs {n} < {k} times");
    }
}

#[test]
fn kanon_makes_jsonl_records_k_anonymous_and_keeps_other_fields() {
    let input: String = people(200)
        .iter()
        .enumerate()
        .map(|(i, (age, zip, dob, job))| {
            format!("{{\"id\": {i}, \"age\": {age}, \"zip\": \"{zip}\", \"dob\": \"{dob}\", \"job\": \"{job}\", \"note\": \"x{i}\"}}\n")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let args = [
        "guard",
        "kanon",
        "--k",
        "7",
        "--quasi",
        "age,zip,dob,job",
        "--report",
        report.to_str().unwrap(),
    ];
    let out = lines(&pft(&args, input.as_bytes(), &[]));
    assert_eq!(out.len(), 200);
    let quasi: Vec<Vec<String>> = out
        .iter()
        .map(|r| {
            ["age", "zip", "dob", "job"]
                .map(|c| r[c].to_string())
                .to_vec()
        })
        .collect();
    recount(&quasi, 7);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r["id"], i);
        assert_eq!(r["note"], format!("x{i}"));
    }
    // The data were generalized, not copied: no record keeps its exact
    // birth date.
    assert!(out
        .iter()
        .all(|r| r["dob"].as_str().unwrap().starts_with('[') || r["dob"] == "*"));
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["records"], 200);
    assert!(report["smallest_class"].as_u64().unwrap() >= 7);
    assert_eq!(report["kinds"]["zip"], "postcode");
    assert_eq!(report["kinds"]["dob"], "date");
    let ncp = report["ncp"].as_f64().unwrap();
    assert!(ncp > 0.0 && ncp < 1.0, "{ncp}");
}

#[test]
fn kanon_reads_and_writes_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    let output = dir.path().join("out.csv");
    let mut csv = String::from("age,zip,diagnosis\n");
    for (age, zip, _, _) in people(60) {
        csv += &format!("{age},{zip},flu\n");
    }
    std::fs::write(&input, csv).unwrap();
    let out = pft(
        &[
            "guard",
            "kanon",
            "--k",
            "4",
            "--quasi",
            "age:number,zip",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("information loss"));
    let mut reader = csv::Reader::from_path(&output).unwrap();
    assert_eq!(reader.headers().unwrap(), vec!["age", "zip", "diagnosis"]);
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 60);
    assert!(rows.iter().all(|r| r[2] == "flu"));
    let quasi: Vec<Vec<String>> = rows.iter().map(|r| r[..2].to_vec()).collect();
    recount(&quasi, 4);
}

#[test]
fn kanon_refuses_k_above_the_records_and_unknown_columns_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    let input = "{\"age\": 30}\n{\"age\": 31}\n{\"age\": 32}\n";
    let cases: [(&[&str], &str); 3] = [
        (&["--k", "4", "--quasi", "age"], "larger than the 3 records"),
        (
            &["--k", "2", "--quasi", "agee"],
            "no record has a column \"agee\"",
        ),
        (&["--k", "2", "--quasi", "age:colour"], "is not a kind"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["guard", "kanon", "--output", output.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = pft(&args, input.as_bytes(), &[]);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{extra:?}: {err}");
        assert!(!output.exists());
    }
}
