//! End-to-end DP-SGD runs on a tiny model.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device};
use pft_accountant::{Method, Segment};
use pft_train::config::TrainConfig;
use pft_train::data::{Dataset, Example};
use pft_train::fixtures::{self, TinySpec};
use pft_train::lora::{Lora, LoraConfig, Target};
use pft_train::model;
use pft_train::protection::Protector;
use pft_train::step::{self, Combine};
use pft_train::trainer::{self, Outcome, Progress, RunOptions, StepLog};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Records what a run reports; can stop it or fail it at a step.
#[derive(Default)]
struct Recorder {
    logs: Vec<StepLog>,
    messages: Vec<String>,
    stop_after: Option<(u64, &'static AtomicBool)>,
    crash_after: Option<u64>,
}

impl Progress for Recorder {
    fn message(&mut self, text: &str) {
        self.messages.push(text.to_string());
    }
    fn start(&mut self, _planned: u64, _done: u64) {}
    fn step(&mut self, log: &StepLog) {
        self.logs.push(log.clone());
        if let Some((at, flag)) = self.stop_after {
            if log.step == at {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if self.crash_after == Some(log.step) {
            panic!("simulated crash after step {}", log.step);
        }
    }
}

fn write_config(dir: &Path, model: &Path, extra_privacy: &str, steps: u64) {
    std::fs::write(
        dir.join("privacy.yaml"),
        format!(
            "privacy:\n  epsilon: 8.0\n  delta: 1e-5\n  max_grad_norm: 1.0\n{extra_privacy}  accounting_mode: pld\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("models.yaml"),
        format!(
            "models:\n  base_model: \"{}\"\n  training:\n    batch_size: 8\n    gradient_accumulation_steps: 1\n    learning_rate: 0.02\n    warmup_steps: 2\n    max_steps: {steps}\n    max_seq_len: 48\n    checkpoint_every: 3\n  adapters:\n    type: lora\n    r: 4\n    alpha: 8\n    dropout: 0.1\n    target_modules: [q_proj, v_proj, o_proj, down_proj]\n",
            model.display()
        ),
    )
    .unwrap();
}

/// A dataset a tiny model can learn quickly: counting patterns as text and
/// as chats.
fn write_data(path: &Path, n: usize) {
    let mut lines = Vec::new();
    for i in 0..n {
        let a = (b'a' + (i % 5) as u8) as char;
        if i % 2 == 0 {
            let text: String = std::iter::repeat_n(format!("{a}{a} the "), 6).collect();
            lines.push(serde_json::json!({ "text": text }).to_string());
        } else {
            lines.push(
                serde_json::json!({ "messages": [
                    {"role": "user", "content": format!("say {a}")},
                    {"role": "assistant", "content": format!("{a}{a}{a} the {a}{a}{a}")}
                ]})
                .to_string(),
            );
        }
    }
    std::fs::write(path, lines.join("\n")).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

fn fixture(steps: u64, extra_privacy: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let model_dir = root.join("model");
    fixtures::write_hf(&model_dir, &TinySpec::default()).unwrap();
    write_config(&root, &model_dir, extra_privacy, steps);
    write_data(&root.join("data.jsonl"), 64);
    Fixture { _dir: dir, root }
}

fn options(f: &Fixture, out: &str, resume: bool) -> RunOptions {
    let config = TrainConfig::load(&f.root).unwrap();
    RunOptions {
        model_path: f.root.join("model"),
        config,
        data: f.root.join("data.jsonl"),
        out: f.root.join(out),
        ledger: f.root.join("ledger.db"),
        run_name: Some(out.to_string()),
        resume,
        insecure_seed: Some(1234),
        dtype: DType::F32,
        device: Device::Cpu,
    }
}

#[test]
fn loss_falls_and_the_report_states_the_accountants_epsilon() {
    let f = fixture(40, "");
    let mut rec = Recorder::default();
    let stop = AtomicBool::new(false);
    let outcome = trainer::run(options(&f, "out", false), &mut rec, &stop).unwrap();
    let Outcome::Finished {
        report,
        report_path,
    } = outcome
    else {
        panic!("run did not finish");
    };
    assert!(
        rec.messages.iter().any(|m| m.contains("NOT private")),
        "the fixed seed must be flagged"
    );
    let mean = |logs: &[StepLog]| {
        let v: Vec<f64> = logs.iter().filter_map(|l| l.loss).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let first = mean(&rec.logs[..8]);
    let last = mean(&rec.logs[rec.logs.len() - 8..]);
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    // The report's epsilon is the accountant's for what ran.
    let history =
        [Segment::new(report.noise_multiplier, report.sample_rate, report.steps).unwrap()];
    let expected = Method::Pld.epsilon(&history, 1e-5).unwrap().epsilon;
    assert_eq!(report.epsilon, expected);
    assert!(report.epsilon <= 8.0);
    assert_eq!(report.steps, 40);
    assert!((report.sample_rate - 8.0 / 64.0).abs() < 1e-15);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    for key in [
        "epsilon",
        "delta",
        "accountant",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "clip_norm",
        "started_at",
        "finished_at",
    ] {
        assert!(on_disk.get(key).is_some(), "report lacks {key}");
    }
    assert_eq!(on_disk["dataset"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(on_disk["adapter"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(on_disk["base_model"]["sha256"].as_str().unwrap().len(), 64);
    // Finished runs leave no checkpoint (it holds the generator's state).
    assert!(!f.root.join("out").join("checkpoint.json").exists());
    // The adapter loads back.
    let m = model::load(&f.root.join("model"), DType::F32, &Device::Cpu, 48).unwrap();
    let lora = Lora::load_peft(
        &f.root.join("out"),
        &m.model.config,
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(lora.config.rank, 4);
}

fn adapter_bytes(f: &Fixture, out: &str) -> Vec<u8> {
    std::fs::read(f.root.join(out).join("adapter_model.safetensors")).unwrap()
}

static STOP: AtomicBool = AtomicBool::new(false);

#[test]
fn interrupted_and_crashed_runs_resume_bit_for_bit() {
    let f = fixture(14, "");
    let stop = AtomicBool::new(false);
    trainer::run(
        options(&f, "straight", false),
        &mut Recorder::default(),
        &stop,
    )
    .unwrap();

    // Ctrl-C after step 5: checkpoint at 5, resume.
    STOP.store(false, Ordering::SeqCst);
    let mut rec = Recorder {
        stop_after: Some((5, &STOP)),
        ..Recorder::default()
    };
    match trainer::run(options(&f, "stopped", false), &mut rec, &STOP).unwrap() {
        Outcome::Interrupted { step } => assert_eq!(step, 5),
        Outcome::Finished { .. } => panic!("the stop flag was ignored"),
    }
    STOP.store(false, Ordering::SeqCst);
    trainer::run(
        options(&f, "stopped", true),
        &mut Recorder::default(),
        &stop,
    )
    .unwrap();
    assert_eq!(adapter_bytes(&f, "straight"), adapter_bytes(&f, "stopped"));

    // A crash after step 8: the last checkpoint is step 6, steps 7 and 8
    // are already in the ledger and are replayed, not counted twice.
    let crashed = std::panic::catch_unwind(|| {
        let mut rec = Recorder {
            crash_after: Some(8),
            ..Recorder::default()
        };
        trainer::run(
            options(&f, "crashed", false),
            &mut rec,
            &AtomicBool::new(false),
        )
    });
    assert!(crashed.is_err(), "the simulated crash did not happen");
    let outcome = trainer::run(
        options(&f, "crashed", true),
        &mut Recorder::default(),
        &stop,
    )
    .unwrap();
    assert_eq!(adapter_bytes(&f, "straight"), adapter_bytes(&f, "crashed"));
    let Outcome::Finished { report, .. } = outcome else {
        panic!()
    };
    assert_eq!(
        report.steps, 14,
        "the ledger must count each step exactly once"
    );
    let log = std::fs::read_to_string(f.root.join("crashed").join("train_log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=14).collect::<Vec<_>>());
}

#[test]
fn a_fixed_noise_multiplier_stops_at_the_budget() {
    // sigma 0.6 at q = 1/8 exhausts epsilon 8 well before 200 steps.
    let f = fixture(200, "  noise_multiplier: 0.6\n");
    let stop = AtomicBool::new(false);
    let Outcome::Finished { report, .. } =
        trainer::run(options(&f, "out", false), &mut Recorder::default(), &stop).unwrap()
    else {
        panic!()
    };
    assert!(report.steps < 200);
    assert!(report.epsilon <= 8.0);
    let one_more = Method::Pld
        .epsilon(
            &[Segment::new(0.6, report.sample_rate, report.steps + 1).unwrap()],
            1e-5,
        )
        .unwrap()
        .epsilon;
    assert!(
        one_more > 8.0,
        "stopped early: {} steps, one more would be {one_more}",
        report.steps
    );
}

#[test]
fn a_dp_step_without_noise_or_clipping_is_a_plain_step() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_hf(dir.path(), &TinySpec::default()).unwrap();
    let m = model::load(dir.path(), DType::F64, &Device::Cpu, 32)
        .unwrap()
        .model;
    let cfg = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.2,
        targets: Target::ALL.to_vec(),
    };
    let lora = Lora::init(
        &cfg,
        &m.config,
        DType::F64,
        &Device::Cpu,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let examples: Vec<Example> = (0..5)
        .map(|i| Example {
            tokens: (0..6 + i).map(|t| (t * 7 + i) as u32 % 200).collect(),
            supervised: vec![true; 6 + i],
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let private = step::gradient(
        &m,
        &lora,
        &refs,
        2,
        4.0,
        Combine::Private {
            clip_norm: 1e12,
            noise_multiplier: 0.0,
        },
        &mut ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap();
    // Same micro-batching, so the dropout draws are the same.
    let plain = step::gradient(
        &m,
        &lora,
        &refs,
        2,
        4.0,
        Combine::Plain,
        &mut ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap();
    for (a, b) in private.gradient.iter().zip(&plain.gradient) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(d < 1e-15, "differ by {d}");
    }
    assert_eq!(private.losses, plain.losses);
}

#[test]
fn an_empty_poisson_batch_is_a_normal_step() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_hf(dir.path(), &TinySpec::default()).unwrap();
    let m = model::load(dir.path(), DType::F32, &Device::Cpu, 32)
        .unwrap()
        .model;
    let cfg = LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec![Target::Q],
    };
    let lora = Lora::init(
        &cfg,
        &m.config,
        DType::F32,
        &Device::Cpu,
        &mut ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let g = step::gradient(
        &m,
        &lora,
        &[],
        4,
        2.0,
        Combine::Private {
            clip_norm: 1.0,
            noise_multiplier: 1.0,
        },
        &mut ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    assert!(g.losses.is_empty());
    // Pure noise, scaled by the expected batch size: non-zero, finite.
    let total: f32 = g
        .gradient
        .iter()
        .map(|t| {
            t.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum();
    assert!(total > 0.0 && total.is_finite());
}

/// Records with e-mail addresses and card numbers, as text and as chats;
/// `protected` writes them as the guard's placeholders leave them.
fn pii_lines(n: usize, protected: bool) -> String {
    (0..n)
        .map(|i| {
            let (mail, card) = if protected {
                ("[EMAIL]".to_string(), "[PAYMENT_CARD]")
            } else {
                (format!("user{i}@example.com"), "4111 1111 1111 1111")
            };
            if i % 2 == 0 {
                serde_json::json!({ "text": format!("write to {mail} about the order") })
            } else {
                serde_json::json!({ "messages": [
                    {"role": "user", "content": format!("my card is {card}")},
                    {"role": "assistant", "content": format!("noted, I will write to {mail}")}
                ]})
            }
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const PROTECTION: &str =
    "context_protection:\n  model: false\n  strategies:\n    - type: pii_removal\n";

#[test]
fn context_protection_rewrites_the_data_before_tokenization_and_counts_it() {
    let f = fixture(3, "");
    let privacy = std::fs::read_to_string(f.root.join("privacy.yaml")).unwrap();
    std::fs::write(f.root.join("privacy.yaml"), privacy + PROTECTION).unwrap();
    // Room for a whole chat: the tiny tokenizer spends a token per byte.
    let models = std::fs::read_to_string(f.root.join("models.yaml")).unwrap();
    std::fs::write(
        f.root.join("models.yaml"),
        models.replace("max_seq_len: 48", "max_seq_len: 256"),
    )
    .unwrap();
    std::fs::write(f.root.join("data.jsonl"), pii_lines(32, false)).unwrap();
    std::fs::write(f.root.join("expected.jsonl"), pii_lines(32, true)).unwrap();

    // What the model trains on is exactly the placeholder text, while the
    // ledger still knows the dataset by the file that was read.
    let config = TrainConfig::load(&f.root).unwrap();
    let spec = config.context_protection.as_ref().unwrap();
    let protector = Protector::new(spec).unwrap();
    let tokenizer = model::load(&f.root.join("model"), DType::F32, &Device::Cpu, 256)
        .unwrap()
        .tokenizer;
    let raw = f.root.join("data.jsonl");
    let protected = Dataset::load(&raw, &tokenizer, 256, Some(&protector)).unwrap();
    let expected = Dataset::load(&f.root.join("expected.jsonl"), &tokenizer, 256, None).unwrap();
    let unprotected = Dataset::load(&raw, &tokenizer, 256, None).unwrap();
    assert_eq!(protected.truncated, 0);
    assert_eq!(protected.examples, expected.examples);
    assert_ne!(protected.examples, unprotected.examples);
    assert_eq!(protected.id, unprotected.id);

    let mut rec = Recorder::default();
    let stop = AtomicBool::new(false);
    let Outcome::Finished {
        report,
        report_path,
    } = trainer::run(options(&f, "out", false), &mut rec, &stop).unwrap()
    else {
        panic!("run did not finish");
    };
    let counts = report
        .context_protection
        .expect("the report counts protection");
    assert_eq!(counts.strategies, ["pii_removal"]);
    assert!(!counts.entity_model);
    // 16 texts and 16 chats of two messages.
    assert_eq!(counts.texts, 48);
    assert_eq!(counts.texts_changed, 48);
    assert_eq!(counts.replaced["EMAIL_ADDRESS"]["pii_removal"], 32);
    assert_eq!(counts.replaced["CREDIT_CARD"]["pii_removal"], 16);
    assert!(rec.messages.iter().any(|m| m.contains("48 spans replaced")));
    let on_disk = std::fs::read_to_string(report_path).unwrap();
    assert!(on_disk.contains("\"context_protection\""));
    assert!(!on_disk.contains("example.com") && !on_disk.contains("4111"));
}

#[test]
fn a_missing_protection_secret_stops_the_run_before_training() {
    let f = fixture(3, "");
    let privacy = std::fs::read_to_string(f.root.join("privacy.yaml")).unwrap();
    std::fs::write(
        f.root.join("privacy.yaml"),
        privacy
            + "context_protection:\n  model: false\n  strategies:\n    - type: entity_hashing\n      salt: \"${PFT_TEST_SALT_NEVER_SET}\"\n",
    )
    .unwrap();
    let mut rec = Recorder::default();
    let stop = AtomicBool::new(false);
    let Err(err) = trainer::run(options(&f, "out", false), &mut rec, &stop) else {
        panic!("the run started without its secret");
    };
    assert!(err.to_string().contains("PFT_TEST_SALT_NEVER_SET"), "{err}");
    assert!(rec.logs.is_empty());
    assert!(!f.root.join("ledger.db").exists());
}
