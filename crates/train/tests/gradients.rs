//! The hand-written backward pass against finite differences and against
//! running each example alone, in float64.

use candle_core::{DType, Device, Tensor};
use pft_train::data::Example;
use pft_train::fixtures::{self, TinySpec};
use pft_train::lora::{Lora, LoraConfig, Target};
use pft_train::model::{self, Batch, Gradients, Llama};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn tiny_model(spec: &TinySpec) -> Llama {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_hf(dir.path(), spec).unwrap();
    model::load(dir.path(), DType::F64, &Device::Cpu, 64)
        .unwrap()
        .model
}

/// LoRA on every projection with random (non-zero) B, so every factor has
/// a gradient.
fn random_lora(model: &Llama, seed: u64) -> Lora {
    let cfg = LoraConfig {
        rank: 2,
        alpha: 3.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut lora = Lora::init(&cfg, &model.config, DType::F64, &Device::Cpu, &mut rng).unwrap();
    let values: Vec<Tensor> = lora
        .parameters()
        .into_iter()
        .map(|(_, t)| {
            let n = t.elem_count();
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-0.3..0.3)).collect();
            Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap()
        })
        .collect();
    lora.set_parameters(values).unwrap();
    lora
}

fn examples() -> Vec<Example> {
    let seqs: [(&[u32], &[bool]); 3] = [
        (
            &[3, 50, 60, 70, 80, 90, 100, 110],
            &[false, false, true, true, true, true, true, true],
        ),
        (&[9, 8, 7, 6, 5], &[true, true, true, true, true]),
        (
            &[200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210],
            &[
                false, false, false, false, false, true, true, false, true, true, true,
            ],
        ),
    ];
    seqs.iter()
        .map(|(t, s)| Example {
            tokens: t.to_vec(),
            supervised: s.to_vec(),
        })
        .collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Per-example losses and gradients, flattened in parameter order:
/// `result[i]` = example i's gradient vector.
fn per_example(model: &Llama, lora: &Lora, batch: &[&Example]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let b = Batch::from_examples(batch, DType::F64, &Device::Cpu).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let (losses, tape) = model.forward_train(&b, lora, &mut rng).unwrap();
    let grads = model.backward(tape, lora, Gradients::PerExample).unwrap();
    let mut per = vec![Vec::new(); batch.len()];
    for layer in &grads.layers {
        for (da, db) in layer.iter().flatten() {
            for (i, row) in per.iter_mut().enumerate() {
                row.extend(flat(&da.get(i).unwrap()));
                row.extend(flat(&db.get(i).unwrap()));
            }
        }
    }
    (flat(&losses), per)
}

#[test]
fn batched_per_example_gradients_equal_each_example_run_alone() {
    for spec in [
        TinySpec::default(),
        TinySpec {
            tied: false,
            qkv_bias: true,
            ..TinySpec::default()
        },
    ] {
        let model = tiny_model(&spec);
        let lora = random_lora(&model, 11);
        let ex = examples();
        let refs: Vec<&Example> = ex.iter().collect();
        let (losses, batched) = per_example(&model, &lora, &refs);
        for (i, e) in ex.iter().enumerate() {
            let (alone_loss, alone) = per_example(&model, &lora, &[e]);
            assert!((losses[i] - alone_loss[0]).abs() <= 1e-12 * alone_loss[0].abs());
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let (nb, na) = (norm(&batched[i]), norm(&alone[0]));
            assert!(na > 1e-3, "example {i} has a vanishing gradient");
            assert!(
                (nb - na).abs() <= 1e-9 * na,
                "example {i}: norm {nb} batched vs {na} alone"
            );
            let diff = norm(
                &batched[i]
                    .iter()
                    .zip(&alone[0])
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>(),
            );
            assert!(diff <= 1e-9 * na, "example {i}: gradients differ by {diff}");
        }
    }
}

#[test]
fn per_example_gradients_match_finite_differences() {
    let model = tiny_model(&TinySpec {
        tied: false,
        ..TinySpec::default()
    });
    let mut lora = random_lora(&model, 5);
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let (_, analytic) = per_example(&model, &lora, &refs);
    let params: Vec<Tensor> = lora.tensors();
    let sizes: Vec<usize> = params.iter().map(|t| t.elem_count()).collect();
    let total: usize = sizes.iter().sum();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let eps = 1e-6;
    for _ in 0..40 {
        let coordinate = rng.random_range(0..total);
        // Locate the tensor and index.
        let (mut which, mut offset) = (0, coordinate);
        while offset >= sizes[which] {
            offset -= sizes[which];
            which += 1;
        }
        let loss_with = |lora: &mut Lora, delta: f64| -> Vec<f64> {
            let mut values = params.clone();
            let mut v = flat(&values[which]);
            v[offset] += delta;
            values[which] = Tensor::from_vec(v, params[which].shape(), &Device::Cpu).unwrap();
            lora.set_parameters(values).unwrap();
            let b = Batch::from_examples(&refs, DType::F64, &Device::Cpu).unwrap();
            let mut r = ChaCha20Rng::seed_from_u64(0);
            flat(&model.forward_train(&b, lora, &mut r).unwrap().0)
        };
        let plus = loss_with(&mut lora, eps);
        let minus = loss_with(&mut lora, -eps);
        for i in 0..ex.len() {
            let numeric = (plus[i] - minus[i]) / (2.0 * eps);
            let a = analytic[i][coordinate];
            let tolerance = 1e-6 * a.abs().max(1e-3);
            assert!(
                (numeric - a).abs() <= tolerance,
                "coordinate {coordinate} (tensor {which}) example {i}: analytic {a}, numeric {numeric}"
            );
        }
    }
    lora.set_parameters(params).unwrap();
}
