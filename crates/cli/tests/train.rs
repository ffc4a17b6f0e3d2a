//! `pft train`, `pft eval` and `pft generate` as users run them, on a tiny
//! model the test writes; and `kill -9` at arbitrary points of a run.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use pft_train::fixtures::{self, TinySpec};
use serde_json::Value;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new(steps: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let model = root.join("model");
        fixtures::write_hf(&model, &TinySpec::default()).unwrap();
        let config = root.join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("privacy.yaml"),
            "privacy:\n  epsilon: 6.0\n  delta: 1e-5\n  max_grad_norm: 1.0\n",
        )
        .unwrap();
        std::fs::write(
            config.join("models.yaml"),
            format!(
                "models:\n  base_model: \"{}\"\n  training:\n    batch_size: 8\n    learning_rate: 0.02\n    warmup_steps: 2\n    max_steps: {steps}\n    max_seq_len: 48\n    checkpoint_every: 4\n  adapters:\n    type: lora\n    r: 4\n    alpha: 8\n    target_modules: [q_proj, v_proj]\n",
                model.display()
            ),
        )
        .unwrap();
        let lines: Vec<String> = (0..64)
            .map(|i| {
                let a = (b'a' + (i % 5) as u8) as char;
                serde_json::json!({ "messages": [
                    {"role": "user", "content": format!("say {a}")},
                    {"role": "assistant", "content": format!("{a}{a}{a} the {a}{a}{a}")}
                ]})
                .to_string()
            })
            .collect();
        std::fs::write(root.join("data.jsonl"), lines.join("\n")).unwrap();
        Setup { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `pft train` arguments writing into `out`, with a fixed seed so two
    /// runs can be compared.
    fn train_args(&self, out: &str) -> Vec<String> {
        [
            "train",
            "--config",
            self.path("config").to_str().unwrap(),
            "--data",
            self.path("data.jsonl").to_str().unwrap(),
            "--out",
            self.path(out).to_str().unwrap(),
            "--ledger",
            self.path("ledger.db").to_str().unwrap(),
            "--run",
            out,
            "--precision",
            "f32",
            "--insecure-seed",
            "99",
        ]
        .map(String::from)
        .to_vec()
    }
}

fn pft(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pft"))
        .args(args)
        .env_remove("PFT_LEDGER")
        .output()
        .expect("pft runs")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn ledger_steps(s: &Setup, run: &str) -> u64 {
    let v = json(&pft(&strings(&[
        "ledger",
        "show",
        "--ledger",
        s.path("ledger.db").to_str().unwrap(),
        "--json",
    ])));
    v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["runs"].as_array().unwrap().iter())
        .filter(|r| r["run"] == run)
        .map(|r| r["steps"].as_u64().unwrap())
        .sum()
}

#[test]
fn train_then_evaluate_and_generate_with_the_adapter() {
    let s = Setup::new(12);
    let mut args = s.train_args("run");
    args.push("--json".into());
    let report = json(&pft(&args));
    let epsilon = report["epsilon"].as_f64().unwrap();
    assert!(epsilon > 0.0 && epsilon <= 6.0, "{epsilon}");
    assert_eq!(report["steps"], 12);
    assert_eq!(report["precision"], "f32");
    for file in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "privacy_report.json",
        "train_log.jsonl",
    ] {
        assert!(s.path("run").join(file).is_file(), "{file}");
    }
    assert_eq!(ledger_steps(&s, "run"), 12);

    let data = s.path("data.jsonl");
    let eval = |extra: &[&str]| -> f64 {
        let mut a = strings(&["eval", "--data", data.to_str().unwrap(), "--json"]);
        a.extend(strings(extra));
        let v = json(&pft(&a));
        assert_eq!(v["examples"], 64);
        v["loss"].as_f64().unwrap()
    };
    let adapter = s.path("run");
    let model = s.path("model");
    let tuned = eval(&["--adapter", adapter.to_str().unwrap()]);
    let base = eval(&["--model", model.to_str().unwrap()]);
    assert!(tuned.is_finite() && base.is_finite());
    assert!(
        tuned < base,
        "the adapter should fit its training data: {tuned} vs {base}"
    );

    let v = json(&pft(&strings(&[
        "generate",
        "--adapter",
        adapter.to_str().unwrap(),
        "--prompt",
        "say a",
        "--max-new-tokens",
        "5",
        "--json",
    ])));
    assert!(v["new_tokens"].as_u64().unwrap() <= 5);
    assert!(v["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let s = Setup::new(4);
    std::fs::write(s.path("bad.jsonl"), "{\"text\": \"fine\"}\n{\"nope\": 1}\n").unwrap();
    let mut args = s.train_args("run");
    let data = args.iter().position(|a| a == "--data").unwrap();
    args[data + 1] = s.path("bad.jsonl").to_str().unwrap().into();
    let out = pft(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    // Nothing was spent on a run that could not start.
    assert_eq!(ledger_steps(&s, "run"), 0);
}

/// Starts a run and SIGKILLs it as soon as it reports step `at` (or later).
/// Returns whether the kill landed before the run finished.
fn run_and_kill(args: &[String], at: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pft"))
        .args(args)
        .env_remove("PFT_LEDGER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        eprintln!("child: {line}");
        let step = line
            .strip_prefix("step ")
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse::<u64>().ok());
        if step.is_some_and(|s| s >= at) {
            // SIGKILL: no handler runs, no checkpoint is written.
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    !status.success()
}

#[test]
fn kill_nine_anywhere_loses_no_budget_and_resumes_bit_for_bit() {
    let planned = 30;
    let s = Setup::new(planned);
    // The uninterrupted reference.
    assert!(pft(&s.train_args("whole")).status.success());
    let reference = std::fs::read(s.path("whole").join("adapter_model.safetensors")).unwrap();

    // The same run, killed three times at different points (between
    // checkpoints, so the resumed run replays steps the ledger holds).
    let mut args = s.train_args("killed");
    let mut kills = 0;
    for at in [3, 10, 21] {
        if run_and_kill(&args, at) {
            kills += 1;
        }
        let recorded = ledger_steps(&s, "killed");
        assert!(
            recorded >= at,
            "step {at} was reported but the ledger holds {recorded}"
        );
        if !args.iter().any(|a| a == "--resume") {
            args.push("--resume".into());
        }
    }
    assert!(kills >= 2, "the runs finished before they could be killed");
    let out = pft(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = std::fs::read(s.path("killed").join("adapter_model.safetensors")).unwrap();
    assert!(
        resumed == reference,
        "the resumed adapter differs from the uninterrupted one"
    );
    // Every step counted once: replays after a kill are not counted again.
    assert_eq!(ledger_steps(&s, "killed"), planned);
    assert_eq!(ledger_steps(&s, "whole"), planned);
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(s.path("killed").join("privacy_report.json")).unwrap(),
    )
    .unwrap();
    let whole: Value = serde_json::from_str(
        &std::fs::read_to_string(s.path("whole").join("privacy_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["epsilon"], whole["epsilon"]);
}
