//! Each CPU kernel against its composite reference, in f64 (to 1e-12) and
//! f32 (to 1e-5), over shapes with grouped-query heads and odd lengths.

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{composite, Heads, Rotary};

fn random(rng: &mut ChaCha8Rng, shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("test tensor")
}

/// Largest difference relative to the reference's magnitude, floored at 1:
/// a loss of 1e-4 computed as the difference of two logits near 50 is only
/// as exact as those logits.
fn max_relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f64> = a
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = b
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0.0, |m, (x, y)| m.max((x - y).abs() / scale))
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

fn rope(rng: &mut ChaCha8Rng, seq: usize, hd: usize, dtype: DType) -> (Tensor, Tensor) {
    // Real tables are cos/sin of shared angles; any values exercise the
    // algebra, but keep them honest.
    let angles: Vec<f64> = (0..seq * hd / 2)
        .map(|_| rng.random_range(0.0..6.3))
        .collect();
    let mut cos = Vec::with_capacity(seq * hd);
    let mut sin = Vec::with_capacity(seq * hd);
    for t in 0..seq {
        for _ in 0..2 {
            for a in &angles[t * hd / 2..(t + 1) * hd / 2] {
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    let make = |v: Vec<f64>| {
        Tensor::from_vec(v, (seq, hd), &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .expect("table")
    };
    (make(cos), make(sin))
}

#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    seq: usize,
    kv_heads: usize,
    groups: usize,
    half_dim: usize,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..4,
        1usize..10,
        1usize..3,
        1usize..4,
        1usize..5,
        any::<u64>(),
    )
        .prop_map(|(batch, seq, kv_heads, groups, half_dim, seed)| Case {
            batch,
            seq,
            kv_heads,
            groups,
            half_dim,
            seed,
        })
}

fn check_all(case: Case, dtype: DType) {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
    let (b, t) = (case.batch, case.seq);
    let (kv, heads, hd) = (
        case.kv_heads,
        case.kv_heads * case.groups,
        2 * case.half_dim,
    );
    let n = b * t;
    let tol = tolerance(dtype);

    // RMSNorm forward and backward.
    let d = heads * hd;
    let (x, w, dy) = (
        random(&mut rng, &[n, d], dtype),
        random(&mut rng, &[d], dtype),
        random(&mut rng, &[n, d], dtype),
    );
    let fused = super::rms_norm(&x, &w, 1e-5).unwrap();
    assert!(max_relative_error(&fused, &composite::rms_norm(&x, &w, 1e-5).unwrap()) < tol);
    let fused = super::rms_norm_backward(&dy, &x, &w, 1e-5).unwrap();
    let reference = composite::rms_norm_backward(&dy, &x, &w, 1e-5).unwrap();
    assert!(max_relative_error(&fused, &reference) < tol);

    // Head split/merge with and without rotation.
    let (cos, sin) = rope(&mut rng, t, hd, dtype);
    let rotary = Rotary {
        cos: &cos,
        sin: &sin,
    };
    for r in [None, Some(&rotary)] {
        let fused = super::split_heads(&x, b, t, heads, r).unwrap();
        let reference = composite::split_heads(&x, (b, heads, t, hd), r).unwrap();
        assert!(max_relative_error(&fused, &reference) < tol);
        let g = random(&mut rng, &[b, heads, t, hd], dtype);
        let fused = super::merge_heads(&g, r).unwrap();
        assert!(max_relative_error(&fused, &composite::merge_heads(&g, r).unwrap()) < tol);
    }

    // Attention forward and backward with grouped KV heads.
    let q = random(&mut rng, &[b, heads, t, hd], dtype);
    let k = random(&mut rng, &[b, kv, t, hd], dtype);
    let v = random(&mut rng, &[b, kv, t, hd], dtype);
    let shape = Heads {
        batch: b,
        seq: t,
        heads,
        kv_heads: kv,
        head_dim: hd,
    };
    let scale = 1.0 / (hd as f64).sqrt();
    let (p, o) = super::attention(&q, &k, &v, scale).unwrap();
    let (p_ref, o_ref) = composite::attention(&q, &k, &v, shape, scale).unwrap();
    assert!(max_relative_error(&p, &p_ref) < tol);
    assert!(max_relative_error(&o, &o_ref) < tol);
    let d_o = random(&mut rng, &[n, heads * hd], dtype);
    let fused = super::attention_backward(&d_o, &p, &q, &k, &v, scale).unwrap();
    let reference = composite::attention_backward(&d_o, &p_ref, &q, &k, &v, shape, scale).unwrap();
    assert!(max_relative_error(&fused.0, &reference.0) < tol);
    assert!(max_relative_error(&fused.1, &reference.1) < tol);
    assert!(max_relative_error(&fused.2, &reference.2) < tol);

    // SwiGLU forward and backward.
    let (gate, up, d_act) = (
        random(&mut rng, &[n, 3 * hd], dtype),
        random(&mut rng, &[n, 3 * hd], dtype),
        random(&mut rng, &[n, 3 * hd], dtype),
    );
    let fused = super::swiglu(&gate, &up).unwrap();
    assert!(max_relative_error(&fused, &composite::swiglu(&gate, &up).unwrap()) < tol);
    let fused = super::swiglu_backward(&d_act, &gate, &up).unwrap();
    let reference = composite::swiglu_backward(&d_act, &gate, &up).unwrap();
    assert!(max_relative_error(&fused.0, &reference.0) < tol);
    assert!(max_relative_error(&fused.1, &reference.1) < tol);

    // The clip-weighted sum over examples.
    let g = random(&mut rng, &[b, 3, hd], dtype);
    let w: Vec<f64> = (0..b).map(|_| rng.random_range(0.0..1.0)).collect();
    let fused = super::weighted_batch_sum(&g, &w).unwrap();
    let reference = composite::weighted_batch_sum(&g, &w).unwrap();
    assert!(max_relative_error(&fused, &reference) < tol);

    // Cross-entropy with some rows unweighted, in chunks smaller than N.
    let vocab = 11;
    let head = random(&mut rng, &[vocab, d], dtype);
    let targets: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab as u32)).collect();
    let weights: Vec<f64> = (0..n)
        .map(|_| {
            if rng.random_bool(0.3) {
                0.0
            } else {
                rng.random_range(0.1..1.0)
            }
        })
        .collect();
    let targets = Tensor::from_vec(targets, n, &Device::Cpu).unwrap();
    let weights = Tensor::from_vec(weights, n, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let chunk = 1 + n / 2;
    let dense = super::Frozen::Dense(head.clone());
    let fused = super::cross_entropy(&x, &dense, &targets, &weights, chunk, true).unwrap();
    let reference = composite::cross_entropy(&x, &head, &targets, &weights, chunk, true).unwrap();
    assert!(max_relative_error(&fused.0, &reference.0) < tol);
    assert!(max_relative_error(&fused.1.unwrap(), &reference.1.unwrap()) < tol);
    // The loss alone is the same loss.
    let alone = super::cross_entropy(&x, &dense, &targets, &weights, chunk, false).unwrap();
    assert!(alone.1.is_none());
    assert!(max_relative_error(&alone.0, &reference.0) < tol);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn cpu_kernels_match_the_composite_reference_in_f64(case in cases()) {
        check_all(case, DType::F64);
    }

    #[test]
    fn cpu_kernels_match_the_composite_reference_in_f32(case in cases()) {
        check_all(case, DType::F32);
    }
}

/// The dispatch must actually take the CPU path for contiguous f32/f64
/// tensors (or the equality tests above would compare the reference with
/// itself), and fall back for anything else.
#[test]
fn contiguous_cpu_floats_take_the_fused_path() {
    let x = Tensor::ones((2, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(super::CpuView::of::<f32>(&x).is_some());
    assert!(super::CpuView::of::<f64>(&x).is_none());
    let strided = Tensor::ones((4, 2), DType::F32, &Device::Cpu)
        .unwrap()
        .t()
        .unwrap();
    assert!(super::CpuView::of::<f32>(&strided).is_none());
    let half = x.to_dtype(DType::BF16).unwrap();
    let w = Tensor::ones(4, DType::BF16, &Device::Cpu).unwrap();
    // BF16 has no CPU kernel: the composite path still answers.
    let y = super::rms_norm(&half, &w, 1e-5).unwrap();
    assert_eq!(y.dims(), &[2, 4]);
}

/// Queries that are the last of the key positions (incremental decoding)
/// see what the same rows of the full causal attention see.
#[test]
fn trailing_queries_match_the_full_attention() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (b, heads, kv, t, hd) = (2, 4, 2, 7, 6);
    let q = random(&mut rng, &[b, heads, t, hd], DType::F64);
    let k = random(&mut rng, &[b, kv, t, hd], DType::F64);
    let v = random(&mut rng, &[b, kv, t, hd], DType::F64);
    let (_, full) = super::attention(&q, &k, &v, 0.3).unwrap();
    let tail = 3;
    let q_tail = q.narrow(2, t - tail, tail).unwrap().contiguous().unwrap();
    let (_, part) = super::attention(&q_tail, &k, &v, 0.3).unwrap();
    let full = full.reshape((b, t, heads * hd)).unwrap();
    let want = full
        .narrow(1, t - tail, tail)
        .unwrap()
        .reshape((b * tail, heads * hd))
        .unwrap();
    assert!(max_relative_error(&part, &want) < 1e-12);
}
