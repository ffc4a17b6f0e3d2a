//! Kill -9 a process that records steps in a loop, many times, and check
//! that the ledger never reports fewer steps than the process released.
//!
//! The test re-executes its own binary as the writer: when
//! `PFT_LEDGER_CRASH_CHILD` is set, this same test function becomes the
//! child that records steps forever, printing `released N` only after the
//! ledger has returned the receipt for step N (the moment a trainer would
//! apply the update).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use pft_accountant::Method;
use pft_ledger::{DatasetId, Ledger, RunSpec};

const CHILD: &str = "PFT_LEDGER_CRASH_CHILD";
const ROUNDS: u64 = 40;

fn spec() -> RunSpec {
    RunSpec {
        name: "crash".into(),
        accountant: Method::Pld,
        delta: 1e-5,
        target_epsilon: None,
    }
}

fn dataset() -> DatasetId {
    DatasetId::of_bytes(b"crash test dataset")
}

fn open_run(ledger: &mut Ledger) -> pft_ledger::RunId {
    ledger
        .open_run(
            &dataset(),
            None,
            &spec(),
            UNIX_EPOCH + Duration::from_secs(1),
        )
        .expect("the run opens")
}

fn write_forever(path: &str) -> ! {
    let mut ledger = Ledger::open(path.as_ref()).expect("child opens the ledger");
    let run = open_run(&mut ledger);
    let mut step = ledger.last_step(run).expect("last step") + 1;
    loop {
        let receipt = ledger
            .record_step(run, step, 1.1, 0.01)
            .expect("child records a step");
        // Only now is the step released.
        println!("released {}", receipt.step());
        step += 1;
    }
}

#[test]
fn kill_minus_nine_never_undercounts_released_steps() {
    if let Ok(path) = std::env::var(CHILD) {
        write_forever(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut released_total = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_minus_nine_never_undercounts_released_steps",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill after a varying number of released steps; round 0 kills
        // before the first (during open and schema creation).
        let kill_after = (round * 7919) % 37;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut released = released_total;
        let mut seen = 0;
        while seen < kill_after {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("released ") {
                released = n.parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines the child printed before dying count as released too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("released ") {
                released = n.parse().unwrap();
            }
        }

        let mut ledger = Ledger::open(&path).unwrap();
        let run = open_run(&mut ledger);
        let recorded = ledger.last_step(run).unwrap();
        assert!(
            recorded >= released,
            "round {round}: ledger has {recorded} steps but {released} were released"
        );
        // At most the one step in flight when the kill landed is recorded
        // without having been released.
        assert!(
            recorded <= released + 1,
            "round {round}: {recorded} recorded, {released} released"
        );
        let history_steps: u64 = ledger
            .run_history(run)
            .unwrap()
            .iter()
            .map(|s| s.steps)
            .sum();
        assert_eq!(
            history_steps, recorded,
            "round {round}: segments disagree with last step"
        );
        released_total = recorded;
    }
    assert!(
        released_total >= ROUNDS / 2,
        "the writer made too little progress: {released_total}"
    );
}
