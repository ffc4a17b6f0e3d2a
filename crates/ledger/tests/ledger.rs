use std::time::{Duration, UNIX_EPOCH};

use pft_accountant::{pld, Method, Segment};
use pft_ledger::{DatasetId, Ledger, LedgerError, RunSpec};

fn spec(name: &str) -> RunSpec {
    RunSpec {
        name: name.into(),
        accountant: Method::Pld,
        delta: 1e-5,
        target_epsilon: Some(8.0),
    }
}

fn at(seconds: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn dataset_ids_are_content_hashes() {
    let id = DatasetId::of_bytes(b"abc");
    // SHA-256("abc") from FIPS 180-2, appendix B.1.
    assert_eq!(
        id.as_str(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(DatasetId::of_reader(&b"abc"[..]).unwrap(), id);
    assert_eq!(DatasetId::parse(&id.as_str().to_uppercase()).unwrap(), id);
    assert!(matches!(
        DatasetId::parse("abc"),
        Err(LedgerError::BadDatasetId(_))
    ));
    assert!(DatasetId::parse(&"g".repeat(64)).is_err());
}

#[test]
fn steps_accumulate_into_segments_and_the_report_composes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let data = DatasetId::of_bytes(b"conversations");
    let run = ledger
        .open_run(&data, Some("support chats"), &spec("a"), at(10))
        .unwrap();
    for step in 1..=100 {
        let receipt = ledger.record_step(run, step, 1.0, 0.01).unwrap();
        assert_eq!(receipt.step(), step);
        assert!(!receipt.replayed());
    }
    assert_eq!(
        ledger.record_steps(run, 101, 50, 2.0, 0.01).unwrap().step(),
        150
    );
    assert_eq!(
        ledger.run_history(run).unwrap(),
        vec![
            Segment::new(1.0, 0.01, 100).unwrap(),
            Segment::new(2.0, 0.01, 50).unwrap()
        ]
    );
    let report = ledger.report(None).unwrap();
    assert_eq!(report.len(), 1);
    let spend = &report[0];
    assert_eq!(spend.label.as_deref(), Some("support chats"));
    assert_eq!(spend.runs[0].steps, 150);
    let expected = pld::epsilon(&ledger.run_history(run).unwrap(), 1e-5)
        .unwrap()
        .epsilon;
    assert_eq!(spend.runs[0].epsilon, Some(expected));
    assert_eq!(spend.total.as_ref().unwrap().epsilon, expected);
}

#[test]
fn spend_on_a_dataset_adds_up_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let data = DatasetId::of_bytes(b"d1");
    let other = DatasetId::of_bytes(b"d2");
    let r1 = ledger.open_run(&data, None, &spec("first"), at(1)).unwrap();
    let r2 = ledger
        .open_run(&data, None, &spec("second"), at(2))
        .unwrap();
    let r3 = ledger
        .open_run(&other, None, &spec("first"), at(3))
        .unwrap();
    for (run, steps) in [(r1, 500), (r2, 700), (r3, 10)] {
        assert_eq!(
            ledger
                .record_steps(run, 1, steps, 1.0, 0.01)
                .unwrap()
                .step(),
            steps
        );
    }
    let report = ledger.report(Some(&data)).unwrap();
    assert_eq!(report.len(), 1);
    let total = report[0].total.as_ref().unwrap();
    assert_eq!(total.steps, 1200);
    let one_run = pld::epsilon(&[Segment::new(1.0, 0.01, 1200).unwrap()], 1e-5)
        .unwrap()
        .epsilon;
    assert!((total.epsilon - one_run).abs() <= 1e-9 * one_run);
    assert!(total.epsilon > report[0].runs[1].epsilon.unwrap());
    assert_eq!(ledger.report(None).unwrap().len(), 2);
}

#[test]
fn a_resumed_run_replays_steps_without_counting_them_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let data = DatasetId::of_bytes(b"d");
    {
        let mut ledger = Ledger::open(&path).unwrap();
        let run = ledger.open_run(&data, None, &spec("r"), at(1)).unwrap();
        assert_eq!(
            ledger.record_steps(run, 1, 20, 1.0, 0.05).unwrap().step(),
            20
        );
    }
    let mut ledger = Ledger::open(&path).unwrap();
    let run = ledger.open_run(&data, None, &spec("r"), at(2)).unwrap();
    assert_eq!(ledger.last_step(run).unwrap(), 20);
    let replay = ledger.record_step(run, 20, 1.0, 0.05).unwrap();
    assert!(replay.replayed());
    let partly = ledger.record_steps(run, 19, 4, 1.0, 0.05).unwrap();
    assert!(!partly.replayed());
    assert_eq!(partly.step(), 22);
    assert_eq!(ledger.last_step(run).unwrap(), 22);
    assert_eq!(
        ledger
            .run_history(run)
            .unwrap()
            .iter()
            .map(|s| s.steps)
            .sum::<u64>(),
        22
    );
}

#[test]
fn gaps_conflicts_and_bad_parameters_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let data = DatasetId::of_bytes(b"d");
    let run = ledger.open_run(&data, None, &spec("r"), at(1)).unwrap();
    assert_eq!(
        ledger.record_steps(run, 1, 10, 1.0, 0.05).unwrap().step(),
        10
    );
    let gap = ledger.record_step(run, 12, 1.0, 0.05).unwrap_err();
    assert!(
        matches!(gap, LedgerError::StepGap { last: 10, .. }),
        "{gap}"
    );
    let conflict = ledger.record_step(run, 5, 1.5, 0.05).unwrap_err();
    assert!(
        matches!(conflict, LedgerError::ConflictingReplay { .. }),
        "{conflict}"
    );
    let bad = ledger.record_step(run, 11, 1.0, 2.0).unwrap_err();
    assert!(bad.to_string().contains("sample_rate"), "{bad}");
    assert!(ledger.record_step(run, 0, 1.0, 0.05).is_err());
    assert_eq!(ledger.last_step(run).unwrap(), 10);
    let mismatch = ledger
        .open_run(
            &data,
            None,
            &RunSpec {
                delta: 1e-6,
                ..spec("r")
            },
            at(2),
        )
        .unwrap_err();
    assert!(
        mismatch.to_string().contains("reuse those settings"),
        "{mismatch}"
    );
}

#[test]
fn the_database_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let _ledger = Ledger::open(&path).unwrap();
    let header = std::fs::read(&path).unwrap();
    // Bytes 18 and 19 of the SQLite header (read and write format versions)
    // are 2 exactly when the database uses write-ahead logging.
    assert_eq!((header[18], header[19]), (2, 2));
}
