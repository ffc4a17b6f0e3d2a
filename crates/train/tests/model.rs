//! The decoder against candle-transformers' llama on the same weights, and
//! the two loading paths against each other.

use candle_core::{DType, Device, Tensor, D};
use pft_train::fixtures::{self, TinySpec};
use pft_train::model;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn reference_last_logits(dir: &std::path::Path, tokens: &Tensor) -> Tensor {
    use candle_transformers::models::llama as reference;
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg: reference::LlamaConfig = serde_json::from_str(&text).unwrap();
    let cfg = cfg.into_config(false);
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    let llama = reference::Llama::load(vb, &cfg).unwrap();
    let mut cache = reference::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
    llama.forward(tokens, 0, &mut cache).unwrap()
}

#[test]
fn logits_match_candle_transformers_llama() {
    for tied in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let spec = TinySpec {
            tied,
            ..TinySpec::default()
        };
        fixtures::write_hf(dir.path(), &spec).unwrap();
        let loaded = model::load(dir.path(), DType::F32, &Device::Cpu, 64).unwrap();
        let ids: Vec<u32> = vec![5, 17, 42, 99, 123, 7, 64, 200, 31, 2];
        let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let ours = loaded.model.logits(&tokens, None).unwrap();
        let ours_last = model::llama::last_logits(&ours).unwrap();
        let theirs = reference_last_logits(dir.path(), &tokens);
        let diff = max_abs_diff(&ours_last, &theirs);
        let scale = max_abs_diff(&theirs, &theirs.zeros_like().unwrap());
        assert!(
            scale > 0.1,
            "reference logits too small to compare: {scale}"
        );
        assert!(diff < 1e-4, "tied={tied}: logits differ by {diff}");
    }
}

#[test]
fn gguf_and_safetensors_load_the_same_model() {
    for qkv_bias in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = TinySpec {
            qkv_bias,
            ..TinySpec::default()
        };
        let weights = fixtures::write_hf(dir.path(), &spec).unwrap();
        let gguf = dir.path().join("tiny.gguf");
        fixtures::write_gguf(&gguf, &spec, &weights).unwrap();
        let hf = model::load(dir.path(), DType::F32, &Device::Cpu, 64).unwrap();
        let gg = model::load(&gguf, DType::F32, &Device::Cpu, 64).unwrap();
        assert_eq!(hf.model.config, gg.model.config);
        let ids: Vec<u32> = (0..12).map(|i| (i * 37 % 250) as u32).collect();
        let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let a = hf.model.logits(&tokens, None).unwrap();
        let b = gg.model.logits(&tokens, None).unwrap();
        assert!(max_abs_diff(&a, &b) < 1e-5, "bias={qkv_bias}");
        // The tokenizer rebuilt from GGUF metadata agrees with tokenizer.json.
        let text = "<|im_start|>user\nthe theory of the thing<|im_end|>\n";
        assert_eq!(
            hf.tokenizer.encode(text, false).unwrap().ids,
            gg.tokenizer.encode(text, false).unwrap().ids
        );
        assert_eq!(hf.tokenizer.eos_id(), gg.tokenizer.eos_id());
        assert_ne!(hf.weights_hash, gg.weights_hash);
    }
}

/// bf16 products change the numbers a little and nothing else: logits and
/// the LoRA gradient stay within bf16's rounding of their f32 values. On a
/// CPU without AVX512-BF16 the switch must refuse with a clear error.
#[test]
fn bf16_products_stay_close_to_f32() {
    use pft_train::data::Example;
    use pft_train::lora::{Lora, LoraConfig, Target};
    use pft_train::step::{self, Combine};
    use rand::{Rng, SeedableRng};

    let dir = tempfile::tempdir().unwrap();
    fixtures::write_hf(dir.path(), &TinySpec::default()).unwrap();
    let exact = model::load(dir.path(), DType::F32, &Device::Cpu, 64)
        .unwrap()
        .model;
    let mut fast = exact.clone();
    if let Err(e) = fast.use_bf16_products() {
        assert!(!pft_train::kernels::bf16::supported());
        assert!(e.to_string().contains("AVX512-BF16"), "{e}");
        return;
    }
    let ids: Vec<u32> = (0..16).map(|i| (i * 53 % 250) as u32).collect();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let a = exact.logits(&tokens, None).unwrap();
    let b = fast.logits(&tokens, None).unwrap();
    let diff = max_abs_diff(&a, &b);
    let scale = max_abs_diff(&a, &a.zeros_like().unwrap());
    assert!(diff > 0.0, "the bf16 products did not run");
    assert!(
        diff < 0.02 * scale,
        "bf16 logits off by {diff} (scale {scale})"
    );

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: Target::ALL.to_vec(),
    };
    let mut lora = Lora::init(&cfg, &exact.config, DType::F32, &Device::Cpu, &mut rng).unwrap();
    let values: Vec<Tensor> = lora
        .parameters()
        .into_iter()
        .map(|(_, t)| {
            let v: Vec<f32> = (0..t.elem_count())
                .map(|_| rng.random_range(-0.2..0.2))
                .collect();
            Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap()
        })
        .collect();
    lora.set_parameters(values).unwrap();
    let examples: Vec<Example> = (0..3)
        .map(|e| Example {
            tokens: (0..12).map(|i| ((e * 31 + i * 17) % 250) as u32).collect(),
            supervised: vec![true; 12],
        })
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let gradient = |m: &model::Llama| -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        step::gradient(m, &lora, &refs, 3, 3.0, Combine::Plain, &mut rng)
            .unwrap()
            .gradient
            .iter()
            .flat_map(|g| {
                g.flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    };
    let (g32, g16) = (gradient(&exact), gradient(&fast));
    let norm = g32.iter().map(|v| v * v).sum::<f64>().sqrt();
    let err = g32
        .iter()
        .zip(&g16)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(norm > 0.0);
    assert!(
        err < 0.02 * norm,
        "bf16 gradient off by {err} (norm {norm})"
    );
}

/// Incremental decoding with the key/value cache gives, position by
/// position, the logits of the full forward pass.
#[test]
fn cached_decoding_matches_the_full_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        qkv_bias: true,
        ..TinySpec::default()
    };
    fixtures::write_hf(dir.path(), &spec).unwrap();
    let m = model::load(dir.path(), DType::F32, &Device::Cpu, 64)
        .unwrap()
        .model;
    let ids: Vec<u32> = (0..11).map(|i| (i * 29 % 250) as u32).collect();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let full = m.logits(&tokens, None).unwrap().squeeze(0).unwrap();
    let mut cache = m.new_cache();
    let prompt = 6;
    let first = m
        .forward_cached(&tokens.narrow(1, 0, prompt).unwrap(), &mut cache, None)
        .unwrap();
    let mut pairs = vec![(first.squeeze(0).unwrap(), full.get(prompt - 1).unwrap())];
    for pos in prompt..ids.len() {
        let next = m
            .forward_cached(&tokens.narrow(1, pos, 1).unwrap(), &mut cache, None)
            .unwrap();
        pairs.push((next.squeeze(0).unwrap(), full.get(pos).unwrap()));
    }
    assert_eq!(cache.len(), ids.len());
    for (i, (step, whole)) in pairs.iter().enumerate() {
        let diff = max_abs_diff(step, whole);
        assert!(diff < 1e-4, "position {i}: cached logits differ by {diff}");
    }
}
