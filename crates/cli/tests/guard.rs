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
