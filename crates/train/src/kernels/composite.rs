//! The same operations composed from candle ops: the path for devices and
//! dtypes the CPU kernels do not cover, and the reference the tests hold
//! the CPU kernels to.

use candle_core::{DType, Device, Tensor, D};

use super::{Heads, Rotary};
use crate::error::Result;

fn inverse_rms(x: &Tensor, eps: f64) -> Result<Tensor> {
    Ok((x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?)
}

pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let r = inverse_rms(x, eps)?;
    Ok(x.broadcast_mul(&r)?.broadcast_mul(w)?)
}

/// `dx = r g - x r^3 mean(x g)` with `g = dy w`.
pub(crate) fn rms_norm_backward(dy: &Tensor, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let r = inverse_rms(x, eps)?;
    let g = dy.broadcast_mul(w)?;
    let mean_xg = (x * &g)?.mean_keepdim(D::Minus1)?;
    let coef = (r.powf(3.0)? * mean_xg)?;
    Ok((g.broadcast_mul(&r)? - x.broadcast_mul(&coef)?)?)
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

pub(crate) fn split_heads(
    x: &Tensor,
    (b, n, t, hd): (usize, usize, usize, usize),
    rope: Option<&Rotary<'_>>,
) -> Result<Tensor> {
    let x = x.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?;
    Ok(match rope {
        Some(r) => (x.broadcast_mul(r.cos)? + rotate_half(&x)?.broadcast_mul(r.sin)?)?,
        None => x,
    })
}

pub(crate) fn merge_heads(dy: &Tensor, rope: Option<&Rotary<'_>>) -> Result<Tensor> {
    let (b, n, t, hd) = dy.dims4()?;
    let dx = match rope {
        Some(r) => (dy.broadcast_mul(r.cos)? + rotate_half_transpose(&dy.broadcast_mul(r.sin)?)?)?,
        None => dy.clone(),
    };
    Ok(dx.transpose(1, 2)?.contiguous()?.reshape((b * t, n * hd))?)
}

/// Additive causal mask for `rows` queries that are the last of `cols`
/// positions: 0 where query `i` may see key `j`, -inf after it.
fn causal_mask(rows: usize, cols: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let offset = cols - rows;
    let values: Vec<f32> = (0..rows)
        .flat_map(|i| {
            (0..cols).map(move |j| {
                if j <= i + offset {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(values, (rows, cols), device)?.to_dtype(dtype)?)
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

pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    s: Heads,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let groups = s.heads / s.kv_heads;
    let (k, v) = (repeat_kv(k, groups)?, repeat_kv(v, groups)?);
    let mask = causal_mask(s.seq, k.dim(2)?, q.dtype(), q.device())?;
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
    let p = softmax_last(&scores)?;
    let o = p
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((s.batch * s.seq, s.heads * s.head_dim))?;
    Ok((p, o))
}

pub(crate) fn attention_backward(
    d_o: &Tensor,
    p: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    s: Heads,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let groups = s.heads / s.kv_heads;
    let (k, v) = (repeat_kv(k, groups)?, repeat_kv(v, groups)?);
    let d_o = d_o
        .reshape((s.batch, s.seq, s.heads, s.head_dim))?
        .transpose(1, 2)?
        .contiguous()?;
    let dv = p.t()?.matmul(&d_o)?;
    let dp = d_o.matmul(&v.t()?)?;
    let row = (&dp * p)?.sum_keepdim(D::Minus1)?;
    let ds = (p * dp.broadcast_sub(&row)?)?;
    let dq = (ds.matmul(&k)? * scale)?;
    let dk = (ds.t()?.matmul(q)? * scale)?;
    Ok((dq, sum_kv(&dk, groups)?, sum_kv(&dv, groups)?))
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(((gate * sigmoid(gate)?)? * up)?)
}

/// `d silu(g)/dg = s (1 + g (1 - s))`.
pub(crate) fn swiglu_backward(
    d_act: &Tensor,
    gate: &Tensor,
    up: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let sig = sigmoid(gate)?;
    let d_up = (d_act * (gate * &sig)?)?;
    let dsilu = (&sig * ((gate * (1.0 - &sig)?)? + 1.0)?)?;
    let d_gate = ((d_act * up)? * dsilu)?;
    Ok((d_gate, d_up))
}

pub(crate) fn cross_entropy(
    x: &Tensor,
    head: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    chunk: usize,
    gradient: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let n = x.dim(0)?;
    let chunk = chunk.max(1);
    let mut row_losses = Vec::with_capacity(n.div_ceil(chunk));
    let mut grads = Vec::with_capacity(n.div_ceil(chunk));
    let head_t = head.t()?;
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let x = x.narrow(0, start, len)?;
        let targets = targets.narrow(0, start, len)?.unsqueeze(1)?;
        let weights = weights.narrow(0, start, len)?.unsqueeze(1)?;
        let logits = x.matmul(&head_t)?;
        let max = logits.max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let exp = shifted.exp()?;
        let sum = exp.sum_keepdim(D::Minus1)?;
        let target_logit = shifted.gather(&targets, 1)?;
        // loss = log sum exp - logit[target], weighted.
        row_losses.push(((sum.log()? - target_logit)? * &weights)?.squeeze(1)?);
        if !gradient {
            continue;
        }
        let softmax = exp.broadcast_div(&sum)?;
        let onehot = Tensor::zeros(logits.shape(), logits.dtype(), logits.device())?
            .scatter_add(&targets, &weights, 1)?;
        let d_logits = (softmax.broadcast_mul(&weights)? - onehot)?;
        grads.push(d_logits.matmul(head)?);
    }
    let dx = if gradient {
        Some(Tensor::cat(&grads, 0)?)
    } else {
        None
    };
    Ok((Tensor::cat(&row_losses, 0)?, dx))
}

pub(crate) fn weighted_batch_sum(g: &Tensor, weights: &[f64]) -> Result<Tensor> {
    let mut shape = vec![weights.len()];
    shape.extend(std::iter::repeat_n(1, g.rank() - 1));
    let w = Tensor::from_vec(weights.to_vec(), shape, g.device())?.to_dtype(g.dtype())?;
    Ok(g.broadcast_mul(&w)?.sum(0)?)
}
