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
