//! The llama-family decoder (Llama, SmolLM, Mistral, Qwen2), trainable with
//! LoRA, with a hand-written backward pass.
//!
//! Why not candle-transformers' llama with autograd: its fused ops
//! (rms_norm, softmax_last_dim, rope, sdpa) have no backward and silently
//! cut the gradient, its forward returns only the last position's logits,
//! and candle's autograd computes a matmul's gradient for both operands, so
//! every frozen weight would pay for a weight gradient nobody uses. Here the
//! forward keeps exactly what the backward needs (a [`Tape`]), and the
//! backward propagates input gradients through the frozen weights and
//! produces *per-example* gradients for the LoRA factors directly, which is
//! what DP-SGD needs: with `G` the output gradient and `U = x A^T`,
//! `dB_i = s G_i^T U_i` and `dA_i = (s G_i B)^T x_i` per example `i`, at the
//! cost of the summed gradient.
//!
//! Layout: activations are `(N, d)` with `N = batch * seq` rows, example
//! `i` owning rows `i*T .. (i+1)*T`; sequences are right-padded, so causal
//! attention alone keeps padding from reaching real tokens.

use candle_core::{DType, Device, IndexOp, Tensor};
use rand::Rng;

use super::ModelConfig;
use crate::error::{Result, TrainError};
use crate::kernels::{self, Frozen, Rotary};
use crate::lora::{Lora, Target};

/// A frozen projection `y = x W^T (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in)
    pub weight: Frozen,
    pub bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Input gradient only: the weight is frozen.
    fn backward_input(&self, dy: &Tensor) -> Result<Tensor> {
        self.weight.backward(dy)
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Tensor,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Block {
    fn linear(&self, target: Target) -> &Linear {
        match target {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
            Target::Gate => &self.gate,
            Target::Up => &self.up,
            Target::Down => &self.down,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: ModelConfig,
    /// (vocab, d)
    pub embed: Tensor,
    pub blocks: Vec<Block>,
    pub final_norm: Tensor,
    /// (vocab, d); the embedding when tied.
    pub lm_head: Frozen,
    rope: Rope,
}

/// Rotary tables for the Hugging Face ("rotate half") convention.
#[derive(Debug, Clone)]
struct Rope {
    /// (max_len, head_dim)
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &ModelConfig, max_len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let mut cos = Vec::with_capacity(max_len * cfg.head_dim);
        let mut sin = Vec::with_capacity(max_len * cfg.head_dim);
        let freqs: Vec<f64> = (0..half)
            .map(|i| cfg.rope_theta.powf(-((2 * i) as f64) / cfg.head_dim as f64))
            .collect();
        for pos in 0..max_len {
            // Both halves of a head share the frequencies: (f, f).
            for _half in 0..2 {
                for f in &freqs {
                    let angle = pos as f64 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = (max_len, cfg.head_dim);
        Ok(Rope {
            cos: Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
        })
    }

    /// The tables for positions `start .. start + len`.
    fn tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        if start + len > self.cos.dim(0)? {
            return Err(TrainError::Invalid(format!(
                "sequence of {} tokens exceeds the model's {} positions",
                start + len,
                self.cos.dim(0)?
            )));
        }
        Ok((
            self.cos.narrow(0, start, len)?,
            self.sin.narrow(0, start, len)?,
        ))
    }
}

/// Keys and values of the positions already processed, per layer: the
/// state of incremental decoding.
pub struct KvCache {
    /// (B, Hkv, len, hd) each.
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions processed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this layer's new keys and values; returns all of them.
    fn extend(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let all = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[layer] = Some(all.clone());
        Ok(all)
    }
}

/// What the LoRA branch of one projection saved for its backward.
struct LoraTape {
    /// Dropout-scaled input (N, in), or the input itself without dropout.
    x: Tensor,
    /// Dropout mask divided by the keep rate (N, in), if dropout is on.
    mask: Option<Tensor>,
    /// `x A^T` (N, r).
    u: Tensor,
}

struct BlockTape {
    h: Tensor,
    /// Attention probabilities (B, H, T, T).
    p: Tensor,
    /// Post-rope queries (B, H, T, hd) and keys, values (B, Hkv, T, hd).
    q: Tensor,
    k: Tensor,
    v: Tensor,
    h2: Tensor,
    gate: Tensor,
    up: Tensor,
    lora: [Option<LoraTape>; 7],
}

/// Everything a forward pass saved for its backward, plus the gradient of
/// the loss with respect to the last hidden state (computed with the loss,
/// so the `(N, vocab)` logits never need to be kept).
pub struct Tape {
    batch: usize,
    seq: usize,
    blocks: Vec<BlockTape>,
    last_h: Tensor,
    d_normed: Tensor,
}

/// Which LoRA gradients [`Llama::backward`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gradients {
    /// One gradient per example (DP-SGD clips each).
    PerExample,
    /// The batch's summed gradient only (the non-private step).
    Summed,
}

/// Gradients of every LoRA factor: `layers[l][t] = (dA, dB)` with `dA`
/// (g, r, in) and `dB` (g, out, r), where `g` is the batch size for
/// [`Gradients::PerExample`] and 1 for [`Gradients::Summed`].
pub struct LoraGrads {
    pub layers: Vec<[Option<(Tensor, Tensor)>; 7]>,
}

/// A micro-batch: right-padded token ids and, per position, the weight of
/// predicting the next token (0 for unsupervised or padding positions;
/// `1 / count_i` on example `i`'s supervised positions, so each example's
/// loss is its mean token loss).
pub struct Batch {
    /// (B, T) u32
    pub tokens: Tensor,
    /// (B*T,) u32: the token each position must predict (any value where
    /// the weight is 0).
    pub targets: Tensor,
    /// (B*T,) in the model dtype.
    pub weights: Tensor,
    pub batch: usize,
    pub seq: usize,
}

/// Rows of vocabulary logits computed at once in the loss: bounds the
/// `(rows, vocab)` buffer.
const LOSS_CHUNK: usize = 256;

impl Llama {
    pub fn new(
        config: ModelConfig,
        embed: Tensor,
        blocks: Vec<Block>,
        final_norm: Tensor,
        lm_head: Option<Tensor>,
        max_len: usize,
    ) -> Result<Self> {
        let device = embed.device().clone();
        let dtype = embed.dtype();
        let rope = Rope::new(
            &config,
            max_len.min(config.max_position_embeddings),
            dtype,
            &device,
        )?;
        let lm_head = Frozen::Dense(lm_head.unwrap_or_else(|| embed.clone()));
        Ok(Llama {
            config,
            embed,
            blocks,
            final_norm,
            lm_head,
            rope,
        })
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Stores every frozen projection and the LM head in bf16 and runs
    /// their products with bf16 inputs and f32 accumulation. The embedding
    /// lookup, norms and everything trainable stay f32.
    pub fn use_bf16_products(&mut self) -> Result<()> {
        if !kernels::bf16::supported() {
            return Err(TrainError::Invalid(
                "precision bf16 needs a CPU with AVX512-BF16, which this one lacks; use precision f32 (or auto)"
                    .into(),
            ));
        }
        for block in &mut self.blocks {
            for linear in [
                &mut block.q,
                &mut block.k,
                &mut block.v,
                &mut block.o,
                &mut block.gate,
                &mut block.up,
                &mut block.down,
            ] {
                linear.weight = linear.weight.to_bf16()?;
            }
        }
        self.lm_head = self.lm_head.to_bf16()?;
        Ok(())
    }

    /// Longest sequence the rotary tables cover.
    pub fn max_len(&self) -> usize {
        self.rope.cos.dims()[0]
    }

    /// Logits for every position: (B, T, vocab).
    pub fn logits(&self, tokens: &Tensor, lora: Option<&Lora>) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let h = self
            .run_blocks(tokens, lora, None::<&mut NoRng>, false, None)?
            .0;
        let normed = kernels::rms_norm(&h, &self.final_norm, self.config.rms_norm_eps)?;
        Ok(self
            .lm_head
            .forward(&normed)?
            .reshape((b, t, self.config.vocab_size))?)
    }

    /// An empty cache for [`Llama::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![None; self.blocks.len()],
            len: 0,
        }
    }

    /// Incremental decoding: `tokens` (B, T) continue the positions in
    /// `cache`, which gains their keys and values. Returns the logits of
    /// each sequence's last new position: (B, vocab).
    pub fn forward_cached(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        lora: Option<&Lora>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let h = self
            .run_blocks(tokens, lora, None::<&mut NoRng>, false, Some(cache))?
            .0;
        let last = h
            .reshape((b, t, self.config.hidden_size))?
            .i((.., t - 1, ..))?;
        let normed = kernels::rms_norm(
            &last.contiguous()?,
            &self.final_norm,
            self.config.rms_norm_eps,
        )?;
        self.lm_head.forward(&normed)
    }

    /// Each example's weighted loss (B,), without a tape or a gradient:
    /// evaluation.
    pub fn losses(&self, batch: &Batch, lora: Option<&Lora>) -> Result<Tensor> {
        let h = self
            .run_blocks(&batch.tokens, lora, None::<&mut NoRng>, false, None)?
            .0;
        let normed = kernels::rms_norm(&h, &self.final_norm, self.config.rms_norm_eps)?;
        let (row_losses, _) = kernels::cross_entropy(
            &normed,
            &self.lm_head,
            &batch.targets,
            &batch.weights,
            LOSS_CHUNK,
            false,
        )?;
        Ok(row_losses.reshape((batch.batch, batch.seq))?.sum(1)?)
    }

    /// Forward pass for training: per-example losses (B,) and the tape for
    /// [`Llama::backward`]. LoRA dropout draws from `rng`.
    pub fn forward_train(
        &self,
        batch: &Batch,
        lora: &Lora,
        rng: &mut impl Rng,
    ) -> Result<(Tensor, Tape)> {
        let (h, blocks) = self.run_blocks(&batch.tokens, Some(lora), Some(rng), true, None)?;
        let blocks = blocks.expect("training forward records a tape");
        let normed = kernels::rms_norm(&h, &self.final_norm, self.config.rms_norm_eps)?;
        let (row_losses, d_normed) = kernels::cross_entropy(
            &normed,
            &self.lm_head,
            &batch.targets,
            &batch.weights,
            LOSS_CHUNK,
            true,
        )?;
        let d_normed = d_normed.expect("gradient requested");
        let losses = row_losses.reshape((batch.batch, batch.seq))?.sum(1)?;
        Ok((
            losses,
            Tape {
                batch: batch.batch,
                seq: batch.seq,
                blocks,
                last_h: h,
                d_normed,
            },
        ))
    }

    /// Embedding lookup and the decoder blocks; with `record`, the tape;
    /// with a `cache`, after the positions it holds.
    #[allow(clippy::type_complexity)]
    fn run_blocks<R: Rng>(
        &self,
        tokens: &Tensor,
        lora: Option<&Lora>,
        mut rng: Option<&mut R>,
        record: bool,
        mut cache: Option<&mut KvCache>,
    ) -> Result<(Tensor, Option<Vec<BlockTape>>)> {
        let cfg = &self.config;
        let (b, t) = tokens.dims2()?;
        let start = cache.as_ref().map_or(0, |c| c.len);
        if let Some(window) = cfg.sliding_window {
            if start + t > window {
                return Err(TrainError::Invalid(format!(
                    "sequence of {} tokens exceeds the model's attention window of {window}",
                    start + t
                )));
            }
        }
        let (cos, sin) = self.rope.tables(start, t)?;
        let rotary = Rotary {
            cos: &cos,
            sin: &sin,
        };
        let mut h = self.embed.index_select(&tokens.flatten_all()?, 0)?;
        let mut tapes = record.then(|| Vec::with_capacity(self.blocks.len()));
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        for (l, block) in self.blocks.iter().enumerate() {
            let mut lora_tapes: [Option<LoraTape>; 7] = Default::default();
            let mut project =
                |target: Target, x: &Tensor, rng: &mut Option<&mut R>| -> Result<Tensor> {
                    let base = block.linear(target).forward(x)?;
                    let Some(pair) = lora.and_then(|lr| lr.get(l, target)) else {
                        return Ok(base);
                    };
                    let lora_cfg = &lora.expect("checked above").config;
                    let (x_in, mask) = match rng.as_mut() {
                        Some(rng) if lora_cfg.dropout > 0.0 => {
                            let keep = 1.0 - lora_cfg.dropout;
                            let values: Vec<f32> = (0..x.elem_count())
                                .map(|_| {
                                    if rng.random::<f64>() < keep {
                                        (1.0 / keep) as f32
                                    } else {
                                        0.0
                                    }
                                })
                                .collect();
                            let mask = Tensor::from_vec(values, x.shape(), x.device())?
                                .to_dtype(x.dtype())?;
                            ((x * &mask)?, Some(mask))
                        }
                        _ => (x.clone(), None),
                    };
                    let u = x_in.matmul(&pair.a.t()?)?;
                    let out = (base + (u.matmul(&pair.b.t()?)? * lora.expect("checked").scale())?)?;
                    if record {
                        lora_tapes[slot(target)] = Some(LoraTape { x: x_in, mask, u });
                    }
                    Ok(out)
                };
            // Attention.
            let a = kernels::rms_norm(&h, &block.attn_norm, cfg.rms_norm_eps)?;
            let q = project(Target::Q, &a, &mut rng)?;
            let k = project(Target::K, &a, &mut rng)?;
            let v = project(Target::V, &a, &mut rng)?;
            let q = kernels::split_heads(&q, b, t, heads, Some(&rotary))?;
            let k = kernels::split_heads(&k, b, t, kv_heads, Some(&rotary))?;
            let v = kernels::split_heads(&v, b, t, kv_heads, None)?;
            let (k, v) = match cache.as_mut() {
                Some(cache) => cache.extend(l, k, v)?,
                None => (k, v),
            };
            let (p, o) = kernels::attention(&q, &k, &v, scale)?;
            let attn_out = project(Target::O, &o, &mut rng)?;
            let h2 = (&h + attn_out)?;
            // MLP.
            let m = kernels::rms_norm(&h2, &block.mlp_norm, cfg.rms_norm_eps)?;
            let gate = project(Target::Gate, &m, &mut rng)?;
            let up = project(Target::Up, &m, &mut rng)?;
            let act = kernels::swiglu(&gate, &up)?;
            let down = project(Target::Down, &act, &mut rng)?;
            let h3 = (&h2 + down)?;
            if let Some(tapes) = tapes.as_mut() {
                tapes.push(BlockTape {
                    h,
                    p,
                    q,
                    k,
                    v,
                    h2,
                    gate,
                    up,
                    lora: lora_tapes,
                });
            }
            h = h3;
        }
        if let Some(cache) = cache {
            cache.len += t;
        }
        Ok((h, tapes))
    }

    /// Backward pass: the gradients of every LoRA factor, per example or
    /// summed over the batch.
    pub fn backward(&self, tape: Tape, lora: &Lora, mode: Gradients) -> Result<LoraGrads> {
        let cfg = &self.config;
        let (b, t) = (tape.batch, tape.seq);
        // Summed gradients are per-example gradients of one example made
        // of all the batch's rows.
        let (groups, rows_per_group) = match mode {
            Gradients::PerExample => (b, t),
            Gradients::Summed => (1, b * t),
        };
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let eps = cfg.rms_norm_eps;
        let s = lora.scale();
        let (cos, sin) = self.rope.tables(0, t)?;
        let rotary = Rotary {
            cos: &cos,
            sin: &sin,
        };
        let mut dh =
            kernels::rms_norm_backward(&tape.d_normed, &tape.last_h, &self.final_norm, eps)?;
        let mut grads: Vec<[Option<(Tensor, Tensor)>; 7]> =
            (0..self.blocks.len()).map(|_| Default::default()).collect();
        for (l, (block, bt)) in self.blocks.iter().zip(tape.blocks).enumerate().rev() {
            // Gradient of a projection's input, with its LoRA factors'
            // per-example gradients filed on the way.
            let mut through =
                |target: Target, dy: &Tensor, want_input: bool| -> Result<Option<Tensor>> {
                    let mut dx = if want_input {
                        Some(block.linear(target).backward_input(dy)?)
                    } else {
                        None
                    };
                    if let (Some(pair), Some(lt)) =
                        (lora.get(l, target), bt.lora[slot(target)].as_ref())
                    {
                        let (da, db, dx_lora) = lora_backward(
                            &pair.a,
                            &pair.b,
                            lt,
                            dy,
                            s,
                            (groups, rows_per_group),
                            want_input,
                        )?;
                        grads[l][slot(target)] = Some((da, db));
                        if let (Some(dx), Some(extra)) = (dx.as_mut(), dx_lora) {
                            *dx = (&*dx + extra)?;
                        }
                    }
                    Ok(dx)
                };
            // MLP.
            let d_act = through(Target::Down, &dh, true)?.expect("input gradient requested");
            let (d_gate, d_up) = kernels::swiglu_backward(&d_act, &bt.gate, &bt.up)?;
            let dm = (through(Target::Gate, &d_gate, true)?.expect("requested")
                + through(Target::Up, &d_up, true)?.expect("requested"))?;
            let dh2 = (&dh + kernels::rms_norm_backward(&dm, &bt.h2, &block.mlp_norm, eps)?)?;
            // Attention.
            let d_o = through(Target::O, &dh2, true)?.expect("requested");
            let (dq, dk, dv) =
                kernels::attention_backward(&d_o, &bt.p, &bt.q, &bt.k, &bt.v, scale)?;
            let dq = kernels::merge_heads(&dq, Some(&rotary))?;
            let dk = kernels::merge_heads(&dk, Some(&rotary))?;
            let dv = kernels::merge_heads(&dv, None)?;
            // Nothing below layer 0 trains: skip its input gradient.
            let want = l > 0;
            let da_q = through(Target::Q, &dq, want)?;
            let da_k = through(Target::K, &dk, want)?;
            let da_v = through(Target::V, &dv, want)?;
            if let (Some(q), Some(k), Some(v)) = (da_q, da_k, da_v) {
                let da = ((q + k)? + v)?;
                dh = (&dh2 + kernels::rms_norm_backward(&da, &bt.h, &block.attn_norm, eps)?)?;
            }
        }
        Ok(LoraGrads { layers: grads })
    }
}

fn slot(target: Target) -> usize {
    Target::ALL
        .iter()
        .position(|t| *t == target)
        .expect("every target is in ALL")
}

/// `dA`, `dB` per group of consecutive rows (an example, or the whole
/// batch) and, if asked, the LoRA branch's input gradient.
fn lora_backward(
    a: &Tensor,
    b_factor: &Tensor,
    tape: &LoraTape,
    dy: &Tensor,
    s: f64,
    (batch, seq): (usize, usize),
    want_input: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let out = dy.dim(1)?;
    let r = a.dim(0)?;
    let fan_in = a.dim(1)?;
    // dB_i = s G_i^T U_i
    let g3 = dy.reshape((batch, seq, out))?;
    let u3 = tape.u.reshape((batch, seq, r))?;
    let db = (g3.transpose(1, 2)?.matmul(&u3)? * s)?;
    // dU = s G B; dA_i = dU_i^T x_i
    let du = (dy.matmul(b_factor)? * s)?;
    let x3 = tape.x.reshape((batch, seq, fan_in))?;
    let da = du.reshape((batch, seq, r))?.transpose(1, 2)?.matmul(&x3)?;
    let dx = if want_input {
        let dx = du.matmul(a)?;
        Some(match &tape.mask {
            Some(mask) => (dx * mask)?,
            None => dx,
        })
    } else {
        None
    };
    Ok((da, db, dx))
}

/// The generator type of passes that draw nothing (no dropout).
type NoRng = rand_chacha::ChaCha8Rng;

/// The last position's logits of each sequence: (B, vocab).
pub fn last_logits(logits: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    Ok(logits.i((.., t - 1, ..))?)
}
