//! The entity model end to end: the real Rampart model and ONNX Runtime,
//! installed into the cache on first use (as `pft guard scan` does).

use std::sync::OnceLock;

use pft_guard::{Finding, Guard, Label, Policy, Sensitivity, Strategy};

fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let cache = pft_fetch::cache_dir().expect("a cache directory");
        let files = pft_guard::model::install(&cache).expect("the model installs");
        Guard::with_model(files.load(2).expect("the model loads"))
    })
}

fn labelled(text: &str) -> Vec<(String, Label)> {
    let chars: Vec<char> = text.chars().collect();
    guard()
        .scan(text, Sensitivity::Medium)
        .unwrap()
        .into_iter()
        .map(|f| (chars[f.start..f.end].iter().collect(), f.label))
        .collect()
}

#[test]
fn names_and_addresses_with_code_point_offsets() {
    let found = labelled("Bitte an Jürgen Müller schicken: 12 Baker Street, London.");
    assert!(
        found.contains(&("Jürgen Müller".to_string(), Label::Person)),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(t, l)| *l == Label::Address && t.starts_with("12 Baker Street")),
        "{found:?}"
    );
}

#[test]
fn validated_patterns_win_over_the_model() {
    let text = "Send it to Maria Keller, card 4111-1111-1111-1111, maria.keller@example.com";
    let out = guard()
        .protect(
            text,
            &Policy::single(Strategy::PiiRemoval, Sensitivity::Medium),
        )
        .unwrap();
    assert_eq!(
        out.text,
        "Send it to [PERSON], card [PAYMENT_CARD], [EMAIL]"
    );
}

#[test]
fn a_name_past_the_first_window_is_found_where_it_is() {
    let filler = "The quarterly numbers were reviewed again without any change. ".repeat(12);
    let text = format!("{filler}Please call Hanna Lindqvist tomorrow.");
    let names: Vec<String> = labelled(&text)
        .into_iter()
        .filter(|(_, l)| *l == Label::Person)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(names, ["Hanna Lindqvist"]);
}

#[test]
fn batches_find_what_single_texts_find() {
    let texts = [
        "Dr. Amara Okafor moved to 221B Baker Street, London NW1 6XE.",
        "no names here, just a note about the weather",
        "Ich heiße Lukas Schneider und wohne in der Hauptstraße 5, Berlin.",
        "Kontakt: Søren Kierkegaard, Nørregade 10, København",
    ];
    let spans = |f: &[Finding]| -> Vec<_> { f.iter().map(|f| (f.start, f.end, f.label)).collect() };
    let batch = guard().batch_scan(&texts, Sensitivity::Medium).unwrap();
    assert!(batch.iter().flatten().any(|f| f.label == Label::Person));
    for (text, found) in texts.iter().zip(batch) {
        let alone = guard().scan(text, Sensitivity::Medium).unwrap();
        assert_eq!(spans(&found), spans(&alone), "{text}");
    }
}
