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

use candle_core::{DType, Device, IndexOp, Tensor, D};
use rand::Rng;

use super::ModelConfig;
use crate::error::{Result, TrainError};
use crate::lora::{Lora, Target};

/// A frozen projection `y = x W^T (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in)
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Input gradient only: the weight is frozen.
    fn backward_input(&self, dy: &Tensor) -> Result<Tensor> {
        Ok(dy.matmul(&self.weight)?)
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
    pub lm_head: Tensor,
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

    fn tables(&self, len: usize) -> Result<(Tensor, Tensor)> {
        if len > self.cos.dim(0)? {
            return Err(TrainError::Invalid(format!(
                "sequence of {len} tokens exceeds the model's {} positions",
                self.cos.dim(0)?
            )));
        }
        Ok((self.cos.narrow(0, 0, len)?, self.sin.narrow(0, 0, len)?))
    }
}

/// `cat(-x2, x1)` on the last dimension.
fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

/// Transpose of [`rotate_half`]: `cat(y2, -y1)`.
fn rotate_half_transpose(y: &Tensor) -> Result<Tensor> {
    let half = y.dim(D::Minus1)? / 2;
    let y1 = y.narrow(D::Minus1, 0, half)?;
    let y2 = y.narrow(D::Minus1, half, half)?;
    Ok(Tensor::cat(&[&y2, &y1.neg()?], D::Minus1)?)
}

fn rope_forward(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok((x.broadcast_mul(cos)? + rotate_half(x)?.broadcast_mul(sin)?)?)
}

fn rope_backward(dy: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok((dy.broadcast_mul(cos)? + rotate_half_transpose(&dy.broadcast_mul(sin)?)?)?)
}

/// RMSNorm: `y = x r w` with `r = 1 / sqrt(mean(x^2) + eps)`; returns `r`
/// for the backward pass.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    Ok((x.broadcast_mul(&r)?.broadcast_mul(w)?, r))
}

/// `dx = r g - x r^3 mean(x g)` with `g = dy w`.
fn rms_norm_backward(dy: &Tensor, x: &Tensor, r: &Tensor, w: &Tensor) -> Result<Tensor> {
    let g = dy.broadcast_mul(w)?;
    let mean_xg = (x * &g)?.mean_keepdim(D::Minus1)?;
    let coef = (r.powf(3.0)? * mean_xg)?;
    Ok((g.broadcast_mul(r)? - x.broadcast_mul(&coef)?)?)
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

/// Additive causal mask (0 on and below the diagonal, -inf above).
fn causal_mask(len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(values, (len, len), device)?.to_dtype(dtype)?)
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
    r1: Tensor,
    /// Attention probabilities (B, H, T, T).
    p: Tensor,
    /// Post-rope queries (B, H, T, hd) and keys/values repeated to H heads.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    h2: Tensor,
    r2: Tensor,
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
    last_r: Tensor,
    d_normed: Tensor,
}

/// Per-example gradients of every LoRA factor: `layers[l][t] = (dA, dB)`
/// with `dA` (batch, r, in) and `dB` (batch, out, r).
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
        let lm_head = lm_head.unwrap_or_else(|| embed.clone());
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

    /// Longest sequence the rotary tables cover.
    pub fn max_len(&self) -> usize {
        self.rope.cos.dims()[0]
    }

    /// Logits for every position: (B, T, vocab).
    pub fn logits(&self, tokens: &Tensor, lora: Option<&Lora>) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let h = self
            .run_blocks(tokens, lora, None::<&mut rand::rngs::ThreadRng>, false)?
            .0;
        let (normed, _) = rms_norm(&h, &self.final_norm, self.config.rms_norm_eps)?;
        Ok(normed
            .matmul(&self.lm_head.t()?)?
            .reshape((b, t, self.config.vocab_size))?)
    }

    /// Forward pass for training: per-example losses (B,) and the tape for
    /// [`Llama::backward`]. LoRA dropout draws from `rng`.
    pub fn forward_train(
        &self,
        batch: &Batch,
        lora: &Lora,
        rng: &mut impl Rng,
    ) -> Result<(Tensor, Tape)> {
        let (h, blocks) = self.run_blocks(&batch.tokens, Some(lora), Some(rng), true)?;
        let blocks = blocks.expect("training forward records a tape");
        let (normed, r) = rms_norm(&h, &self.final_norm, self.config.rms_norm_eps)?;
        let (losses, d_normed) = self.loss_and_gradient(&normed, batch)?;
        Ok((
            losses,
            Tape {
                batch: batch.batch,
                seq: batch.seq,
                blocks,
                last_h: h,
                last_r: r,
                d_normed,
            },
        ))
    }

    /// Weighted cross-entropy per example and its gradient with respect to
    /// the normed hidden states, in row chunks.
    fn loss_and_gradient(&self, normed: &Tensor, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let n = batch.batch * batch.seq;
        let mut row_losses = Vec::with_capacity(n.div_ceil(LOSS_CHUNK));
        let mut grads = Vec::with_capacity(n.div_ceil(LOSS_CHUNK));
        let head_t = self.lm_head.t()?;
        for start in (0..n).step_by(LOSS_CHUNK) {
            let len = LOSS_CHUNK.min(n - start);
            let x = normed.narrow(0, start, len)?;
            let targets = batch.targets.narrow(0, start, len)?;
            let weights = batch.weights.narrow(0, start, len)?.unsqueeze(1)?;
            let logits = x.matmul(&head_t)?;
            let max = logits.max_keepdim(D::Minus1)?;
            let shifted = logits.broadcast_sub(&max)?;
            let exp = shifted.exp()?;
            let sum = exp.sum_keepdim(D::Minus1)?;
            let target_logit = shifted.gather(&targets.unsqueeze(1)?, 1)?;
            // loss = log sum exp - logit[target], weighted.
            row_losses.push(((sum.log()? - target_logit)? * &weights)?);
            let softmax = exp.broadcast_div(&sum)?;
            let onehot = Tensor::zeros(logits.shape(), logits.dtype(), logits.device())?
                .scatter_add(&targets.unsqueeze(1)?, &weights, 1)?;
            let d_logits = (softmax.broadcast_mul(&weights)? - onehot)?;
            grads.push(d_logits.matmul(&self.lm_head)?);
        }
        let row_losses = Tensor::cat(&row_losses, 0)?.reshape((batch.batch, batch.seq))?;
        Ok((row_losses.sum(1)?, Tensor::cat(&grads, 0)?))
    }

    /// Embedding lookup and the decoder blocks; with `record`, the tape.
    #[allow(clippy::type_complexity)]
    fn run_blocks<R: Rng>(
        &self,
        tokens: &Tensor,
        lora: Option<&Lora>,
        mut rng: Option<&mut R>,
        record: bool,
    ) -> Result<(Tensor, Option<Vec<BlockTape>>)> {
        let cfg = &self.config;
        let (b, t) = tokens.dims2()?;
        if let Some(window) = cfg.sliding_window {
            if t > window {
                return Err(TrainError::Invalid(format!(
                    "sequence of {t} tokens exceeds the model's attention window of {window}"
                )));
            }
        }
        let (cos, sin) = self.rope.tables(t)?;
        let mask = causal_mask(t, self.dtype(), self.device())?;
        let mut h = self.embed.index_select(&tokens.flatten_all()?, 0)?;
        let mut tapes = record.then(|| Vec::with_capacity(self.blocks.len()));
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads;
        let groups = heads / kv_heads;
        let hd = cfg.head_dim;
        let scale = 1.0 / (hd as f64).sqrt();
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
            let (a, r1) = rms_norm(&h, &block.attn_norm, cfg.rms_norm_eps)?;
            let q = project(Target::Q, &a, &mut rng)?;
            let k = project(Target::K, &a, &mut rng)?;
            let v = project(Target::V, &a, &mut rng)?;
            let heads_first = |x: Tensor, n: usize| -> Result<Tensor> {
                Ok(x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
            };
            let q = rope_forward(&heads_first(q, heads)?, &cos, &sin)?;
            let k = rope_forward(&heads_first(k, kv_heads)?, &cos, &sin)?;
            let v = heads_first(v, kv_heads)?;
            let (k, v) = (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let p = softmax_last(&scores)?;
            let o = p
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * t, heads * hd))?;
            let attn_out = project(Target::O, &o, &mut rng)?;
            let h2 = (&h + attn_out)?;
            // MLP.
            let (m, r2) = rms_norm(&h2, &block.mlp_norm, cfg.rms_norm_eps)?;
            let gate = project(Target::Gate, &m, &mut rng)?;
            let up = project(Target::Up, &m, &mut rng)?;
            let act = ((&gate * sigmoid(&gate)?)? * &up)?;
            let down = project(Target::Down, &act, &mut rng)?;
            let h3 = (&h2 + down)?;
            if let Some(tapes) = tapes.as_mut() {
                tapes.push(BlockTape {
                    h,
                    r1,
                    p,
                    q,
                    k,
                    v,
                    h2,
                    r2,
                    gate,
                    up,
                    lora: lora_tapes,
                });
            }
            h = h3;
        }
        Ok((h, tapes))
    }

    /// Backward pass: per-example gradients of every LoRA factor.
    pub fn backward(&self, tape: Tape, lora: &Lora) -> Result<LoraGrads> {
        let cfg = &self.config;
        let (b, t) = (tape.batch, tape.seq);
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads;
        let groups = heads / kv_heads;
        let hd = cfg.head_dim;
        let scale = 1.0 / (hd as f64).sqrt();
        let s = lora.scale();
        let (cos, sin) = self.rope.tables(t)?;
        let mut dh =
            rms_norm_backward(&tape.d_normed, &tape.last_h, &tape.last_r, &self.final_norm)?;
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
                        let (da, db, dx_lora) =
                            lora_backward(pair.a.clone(), &pair.b, lt, dy, s, b, t, want_input)?;
                        grads[l][slot(target)] = Some((da, db));
                        if let (Some(dx), Some(extra)) = (dx.as_mut(), dx_lora) {
                            *dx = (&*dx + extra)?;
                        }
                    }
                    Ok(dx)
                };
            // MLP.
            let d_act = through(Target::Down, &dh, true)?.expect("input gradient requested");
            let sig = sigmoid(&bt.gate)?;
            let silu = (&bt.gate * &sig)?;
            let d_up = (&d_act * &silu)?;
            // d silu(g)/dg = sig (1 + g (1 - sig))
            let dsilu = (&sig * ((&bt.gate * (1.0 - &sig)?)? + 1.0)?)?;
            let d_gate = ((&d_act * &bt.up)? * dsilu)?;
            let dm = (through(Target::Gate, &d_gate, true)?.expect("requested")
                + through(Target::Up, &d_up, true)?.expect("requested"))?;
            let dh2 = (&dh + rms_norm_backward(&dm, &bt.h2, &bt.r2, &block.mlp_norm)?)?;
            // Attention.
            let d_o = through(Target::O, &dh2, true)?.expect("requested");
            let d_o = d_o
                .reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let dv = bt.p.t()?.matmul(&d_o)?;
            let dp = d_o.matmul(&bt.v.t()?)?;
            let row = (&dp * &bt.p)?.sum_keepdim(D::Minus1)?;
            let ds = (&bt.p * dp.broadcast_sub(&row)?)?;
            let dq = (ds.matmul(&bt.k)? * scale)?;
            let dk = (ds.t()?.matmul(&bt.q)? * scale)?;
            let dq = rope_backward(&dq, &cos, &sin)?;
            let dk = rope_backward(&sum_kv(&dk, groups)?, &cos, &sin)?;
            let dv = sum_kv(&dv, groups)?;
            let rows_first = |x: Tensor, n: usize| -> Result<Tensor> {
                Ok(x.transpose(1, 2)?.contiguous()?.reshape((b * t, n * hd))?)
            };
            let (dq, dk, dv) = (
                rows_first(dq, heads)?,
                rows_first(dk, kv_heads)?,
                rows_first(dv, kv_heads)?,
            );
            // Nothing below layer 0 trains: skip its input gradient.
            let want = l > 0;
            let da_q = through(Target::Q, &dq, want)?;
            let da_k = through(Target::K, &dk, want)?;
            let da_v = through(Target::V, &dv, want)?;
            if let (Some(q), Some(k), Some(v)) = (da_q, da_k, da_v) {
                let da = ((q + k)? + v)?;
                dh = (&dh2 + rms_norm_backward(&da, &bt.h, &bt.r1, &block.attn_norm)?)?;
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

/// Per-example `dA`, `dB` and, if asked, the LoRA branch's input gradient.
#[allow(clippy::too_many_arguments)]
fn lora_backward(
    a: Tensor,
    b_factor: &Tensor,
    tape: &LoraTape,
    dy: &Tensor,
    s: f64,
    batch: usize,
    seq: usize,
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
        let dx = du.matmul(&a)?;
        Some(match &tape.mask {
            Some(mask) => (dx * mask)?,
            None => dx,
        })
    } else {
        None
    };
    Ok((da, db, dx))
}

/// (B, Hkv, T, hd) -> (B, Hkv * groups, T, hd), each KV head serving
/// `groups` consecutive query heads.
fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hd) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, groups, t, hd))?
        .contiguous()?
        .reshape((b, kv * groups, t, hd))?)
}

/// Backward of [`repeat_kv`]: sum each group's gradients.
fn sum_kv(dx: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(dx.clone());
    }
    let (b, h, t, hd) = dx.dims4()?;
    Ok(dx.reshape((b, h / groups, groups, t, hd))?.sum(2)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// The last position's logits of each sequence: (B, vocab).
pub fn last_logits(logits: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    Ok(logits.i((.., t - 1, ..))?)
}
