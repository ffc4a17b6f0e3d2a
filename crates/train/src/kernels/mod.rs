//! Fused kernels for the decoder's forward and backward passes.
//!
//! Composed from candle ops, an RMSNorm or an attention backward costs one
//! full pass over memory, one fresh allocation and one thread-pool hand-off
//! per elementary op; at SmolLM2 sizes that overhead was as large as the
//! matrix products themselves. On the CPU each function here runs as one
//! pass over contiguous f32 or f64 slices ([`cpu`]); on any other device, or
//! for another dtype, it composes candle ops ([`composite`]). The tests hold
//! the two paths equal, so the composite path is also the reference.

pub mod bf16;
pub(crate) mod composite;
pub(crate) mod cpu;

use std::sync::Arc;

use candle_core::{DType, Device, Storage, StorageRef, Tensor, WithDType};

use crate::error::{Result, TrainError};
pub(crate) use cpu::Heads;

/// A frozen weight (out, in) and the two products the model takes with
/// it: `x W^T` forward and `g W` for the input gradient.
#[derive(Debug, Clone)]
pub enum Frozen {
    /// Stored and multiplied in the model's dtype.
    Dense(Tensor),
    /// Stored in bf16 and multiplied with bf16 inputs and f32 accumulation
    /// ([`bf16`]); activations stay f32.
    Bf16(Arc<bf16::Matrix>),
}

impl Frozen {
    /// (out, in)
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Frozen::Dense(w) => {
                let d = w.dims();
                [d[0], d.get(1).copied().unwrap_or(1)]
            }
            Frozen::Bf16(m) => [m.rows(), m.cols()],
        }
    }

    /// The bf16 form of a dense f32 weight on the CPU.
    pub fn to_bf16(&self) -> Result<Frozen> {
        match self {
            Frozen::Bf16(_) => Ok(self.clone()),
            Frozen::Dense(w) => {
                if !w.device().is_cpu() || w.dtype() != DType::F32 {
                    return Err(TrainError::Invalid(format!(
                        "bf16 products need f32 weights on the CPU, not {:?} on {:?}",
                        w.dtype(),
                        w.device().location()
                    )));
                }
                let [rows, cols] = self.dims();
                let values = w.flatten_all()?.to_vec1::<f32>()?;
                Ok(Frozen::Bf16(Arc::new(bf16::Matrix::from_f32(
                    &values, rows, cols,
                ))))
            }
        }
    }

    /// `x W^T` for rows `x` (N, in).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Frozen::Dense(w) => Ok(x.matmul(&w.t()?)?),
            Frozen::Bf16(m) => bf16_rows(x, m.cols(), m.rows(), |x, out| m.forward_into(x, out)),
        }
    }

    /// `g W` for rows `g` (N, out).
    pub fn backward(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            Frozen::Dense(w) => Ok(g.matmul(w)?),
            Frozen::Bf16(m) => bf16_rows(g, m.rows(), m.cols(), |g, out| m.backward_into(g, out)),
        }
    }
}

/// Runs a bf16 product on f32 rows (N, width_in) into (N, width_out).
fn bf16_rows(
    x: &Tensor,
    width_in: usize,
    width_out: usize,
    product: impl FnOnce(&[f32], &mut [f32]),
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let rows = x.dim(0)?;
    if x.dims() != [rows, width_in] {
        return Err(TrainError::Invalid(format!(
            "bf16 product of a {:?} input with a weight expecting {width_in} columns",
            x.dims()
        )));
    }
    let Some([view]) = views::<f32, 1>([&x]) else {
        return Err(TrainError::Invalid(format!(
            "bf16 products take f32 activations on the CPU, not {:?} on {:?}",
            x.dtype(),
            x.device().location()
        )));
    };
    let mut out = vec![0f32; rows * width_out];
    product(view.slice(), &mut out);
    tensor(out, (rows, width_out))
}

/// The float types the CPU kernels are instantiated for.
pub(crate) trait Real:
    WithDType
    + num_traits::Float
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::SubAssign
    + Send
    + Sync
{
}
impl Real for f32 {}
impl Real for f64 {}

/// A contiguous CPU tensor's elements, borrowed for as long as the view
/// lives.
struct CpuView<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> CpuView<'a> {
    /// `None` unless `t` is a contiguous CPU tensor of element type `T`.
    fn of<T: WithDType>(t: &'a Tensor) -> Option<Self> {
        if t.dtype() != T::DTYPE {
            return None;
        }
        let (storage, layout) = t.storage_and_layout();
        if !matches!(&*storage, Storage::Cpu(_)) {
            return None;
        }
        let (start, end) = layout.contiguous_offsets()?;
        Some(CpuView {
            storage,
            start,
            end,
        })
    }

    fn slice<T: WithDType>(&self) -> &[T] {
        match &*self.storage {
            Storage::Cpu(cpu) => match cpu.as_slice::<T>() {
                Ok(all) => &all[self.start..self.end],
                Err(_) => unreachable!("CpuView::of checked the dtype"),
            },
            _ => unreachable!("CpuView::of checked the device"),
        }
    }
}

/// Views of all `tensors` as `T`, or `None` if any is not a contiguous CPU
/// tensor of that type (then the caller takes the composite path).
fn views<'a, T: WithDType, const N: usize>(tensors: [&'a Tensor; N]) -> Option<[CpuView<'a>; N]> {
    let mut out = Vec::with_capacity(N);
    for t in tensors {
        out.push(CpuView::of::<T>(t)?);
    }
    out.try_into().ok()
}

fn tensor<T: WithDType>(values: Vec<T>, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// Runs `f32_path` or `f64_path` by dtype; `None` means "not a CPU f32/f64
/// case": take the composite path.
fn by_dtype<R>(
    dtype: DType,
    f32_path: impl FnOnce() -> Result<Option<R>>,
    f64_path: impl FnOnce() -> Result<Option<R>>,
) -> Result<Option<R>> {
    match dtype {
        DType::F32 => f32_path(),
        DType::F64 => f64_path(),
        _ => Ok(None),
    }
}

/// RMSNorm `x r w` over the last dimension of rows `x` (N, d).
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    fn run<T: Real>(x: &Tensor, w: &Tensor, eps: f64) -> Result<Option<Tensor>> {
        let Some([xv, wv]) = views::<T, 2>([x, w]) else {
            return Ok(None);
        };
        let mut y = vec![T::zero(); x.elem_count()];
        cpu::rms_norm(xv.slice(), wv.slice(), eps, &mut y);
        tensor(y, x.shape()).map(Some)
    }
    match by_dtype(
        x.dtype(),
        || run::<f32>(x, w, eps),
        || run::<f64>(x, w, eps),
    )? {
        Some(y) => Ok(y),
        None => composite::rms_norm(x, w, eps),
    }
}

/// Input gradient of [`rms_norm`].
pub(crate) fn rms_norm_backward(dy: &Tensor, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    fn run<T: Real>(dy: &Tensor, x: &Tensor, w: &Tensor, eps: f64) -> Result<Option<Tensor>> {
        let Some([dyv, xv, wv]) = views::<T, 3>([dy, x, w]) else {
            return Ok(None);
        };
        let mut dx = vec![T::zero(); x.elem_count()];
        cpu::rms_norm_backward(dyv.slice(), xv.slice(), wv.slice(), eps, &mut dx);
        tensor(dx, x.shape()).map(Some)
    }
    match by_dtype(
        x.dtype(),
        || run::<f32>(dy, x, w, eps),
        || run::<f64>(dy, x, w, eps),
    )? {
        Some(dx) => Ok(dx),
        None => composite::rms_norm_backward(dy, x, w, eps),
    }
}

/// Rotary tables `(seq, head_dim)` for one sequence length.
pub(crate) struct Rotary<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
}

/// Rows (B*T, heads*hd) to head-major (B, heads, T, hd), rotated by `rope`
/// when given.
pub(crate) fn split_heads(
    x: &Tensor,
    batch: usize,
    seq: usize,
    heads: usize,
    rope: Option<&Rotary<'_>>,
) -> Result<Tensor> {
    let hd = x.dim(1)? / heads;
    let shape = (batch, heads, seq, hd);
    fn go<T: Real>(
        x: &Tensor,
        s: (usize, usize, usize, usize),
        rope: Option<&Rotary<'_>>,
    ) -> Result<Option<Tensor>> {
        let (Some([xv]), Some(tables)) = (views::<T, 1>([x]), rope_views::<T>(rope)) else {
            return Ok(None);
        };
        let mut out = vec![T::zero(); x.elem_count()];
        cpu::split_heads(xv.slice(), s.2, s.1, s.3, rope_tables(&tables), &mut out);
        tensor(out, s).map(Some)
    }
    match by_dtype(
        x.dtype(),
        || go::<f32>(x, shape, rope),
        || go::<f64>(x, shape, rope),
    )? {
        Some(y) => Ok(y),
        None => composite::split_heads(x, shape, rope),
    }
}

/// CPU views of the rotary tables: `Some(None)` without rotation, `None`
/// when the tables are not CPU tensors of type `T`.
#[allow(clippy::option_option)]
fn rope_views<'a, T: WithDType>(rope: Option<&'a Rotary<'a>>) -> Option<Option<[CpuView<'a>; 2]>> {
    match rope {
        Some(r) => views::<T, 2>([r.cos, r.sin]).map(Some),
        None => Some(None),
    }
}

fn rope_tables<'a, T: WithDType>(
    views: &'a Option<[CpuView<'a>; 2]>,
) -> Option<cpu::RopeTables<'a, T>> {
    views.as_ref().map(|[c, s]| cpu::RopeTables {
        cos: c.slice(),
        sin: s.slice(),
    })
}

/// Transpose of [`split_heads`]: head-major (B, heads, T, hd) gradients to
/// rows (B*T, heads*hd).
pub(crate) fn merge_heads(dy: &Tensor, rope: Option<&Rotary<'_>>) -> Result<Tensor> {
    let shape = dy.dims4()?;
    fn go<T: Real>(
        dy: &Tensor,
        s: (usize, usize, usize, usize),
        rope: Option<&Rotary<'_>>,
    ) -> Result<Option<Tensor>> {
        let (Some([dv]), Some(tables)) = (views::<T, 1>([dy]), rope_views::<T>(rope)) else {
            return Ok(None);
        };
        let mut out = vec![T::zero(); dy.elem_count()];
        cpu::merge_heads(dv.slice(), s.2, s.1, s.3, rope_tables(&tables), &mut out);
        tensor(out, (s.0 * s.2, s.1 * s.3)).map(Some)
    }
    match by_dtype(
        dy.dtype(),
        || go::<f32>(dy, shape, rope),
        || go::<f64>(dy, shape, rope),
    )? {
        Some(y) => Ok(y),
        None => composite::merge_heads(dy, rope),
    }
}

/// Causal attention over head-major `q` (B, H, Tq, hd) and `k`, `v`
/// (B, Hkv, Tk, hd), the queries being the last `Tq` of the `Tk`
/// positions: the probabilities (B, H, Tq, Tk) for the backward pass and
/// the output as rows (B*Tq, H*hd). The CPU kernel covers training
/// (`Tq == Tk`); incremental decoding takes the composite path.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let shape = heads_of(q, k)?;
    if k.dim(2)? != shape.seq {
        return composite::attention(q, k, v, shape, scale);
    }
    fn go<T: Real>(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        s: Heads,
        scale: f64,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let Some([qv, kv, vv]) = views::<T, 3>([q, k, v]) else {
            return Ok(None);
        };
        let mut p = vec![T::zero(); s.batch * s.heads * s.seq * s.seq];
        let mut o = vec![T::zero(); q.elem_count()];
        cpu::attention(qv.slice(), kv.slice(), vv.slice(), s, scale, &mut p, &mut o);
        Ok(Some((
            tensor(p, (s.batch, s.heads, s.seq, s.seq))?,
            tensor(o, (s.batch * s.seq, s.heads * s.head_dim))?,
        )))
    }
    match by_dtype(
        q.dtype(),
        || go::<f32>(q, k, v, shape, scale),
        || go::<f64>(q, k, v, shape, scale),
    )? {
        Some(out) => Ok(out),
        None => composite::attention(q, k, v, shape, scale),
    }
}

/// Backward of [`attention`]: `(dq, dk, dv)` head-major, `dk` and `dv`
/// summed over the query heads each KV head serves.
pub(crate) fn attention_backward(
    d_o: &Tensor,
    p: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let shape = heads_of(q, k)?;
    #[allow(clippy::type_complexity)]
    fn go<T: Real>(
        t: [&Tensor; 5],
        s: Heads,
        scale: f64,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let Some([d_o, p, q, k, v]) = views::<T, 5>(t) else {
            return Ok(None);
        };
        let mut dq = vec![T::zero(); t[2].elem_count()];
        let mut dk = vec![T::zero(); t[3].elem_count()];
        let mut dv = vec![T::zero(); t[4].elem_count()];
        cpu::attention_backward(
            d_o.slice(),
            p.slice(),
            q.slice(),
            k.slice(),
            v.slice(),
            s,
            scale,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        Ok(Some((
            tensor(dq, t[2].shape())?,
            tensor(dk, t[3].shape())?,
            tensor(dv, t[4].shape())?,
        )))
    }
    let inputs = [d_o, p, q, k, v];
    match by_dtype(
        q.dtype(),
        || go::<f32>(inputs, shape, scale),
        || go::<f64>(inputs, shape, scale),
    )? {
        Some(out) => Ok(out),
        None => composite::attention_backward(d_o, p, q, k, v, shape, scale),
    }
}

fn heads_of(q: &Tensor, k: &Tensor) -> Result<Heads> {
    let (batch, heads, seq, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    Ok(Heads {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim,
    })
}

/// `silu(gate) * up`.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    fn go<T: Real>(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
        let Some([g, u]) = views::<T, 2>([gate, up]) else {
            return Ok(None);
        };
        let mut act = vec![T::zero(); gate.elem_count()];
        cpu::swiglu(g.slice(), u.slice(), &mut act);
        tensor(act, gate.shape()).map(Some)
    }
    match by_dtype(gate.dtype(), || go::<f32>(gate, up), || go::<f64>(gate, up))? {
        Some(act) => Ok(act),
        None => composite::swiglu(gate, up),
    }
}

/// Backward of [`swiglu`]: `(d_gate, d_up)`.
pub(crate) fn swiglu_backward(
    d_act: &Tensor,
    gate: &Tensor,
    up: &Tensor,
) -> Result<(Tensor, Tensor)> {
    fn go<T: Real>(d_act: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
        let Some([d, g, u]) = views::<T, 3>([d_act, gate, up]) else {
            return Ok(None);
        };
        let mut d_gate = vec![T::zero(); gate.elem_count()];
        let mut d_up = vec![T::zero(); gate.elem_count()];
        cpu::swiglu_backward(d.slice(), g.slice(), u.slice(), &mut d_gate, &mut d_up);
        Ok(Some((
            tensor(d_gate, gate.shape())?,
            tensor(d_up, gate.shape())?,
        )))
    }
    match by_dtype(
        gate.dtype(),
        || go::<f32>(d_act, gate, up),
        || go::<f64>(d_act, gate, up),
    )? {
        Some(out) => Ok(out),
        None => composite::swiglu_backward(d_act, gate, up),
    }
}

/// `sum_i w_i g[i]` over the leading dimension of `g` (B, ...): the clipped
/// sum of per-example gradients. `weights` has B entries.
pub(crate) fn weighted_batch_sum(g: &Tensor, weights: &[f64]) -> Result<Tensor> {
    fn go<T: Real>(g: &Tensor, weights: &[f64]) -> Result<Option<Tensor>> {
        let Some([gv]) = views::<T, 1>([g]) else {
            return Ok(None);
        };
        let rest = g.elem_count() / weights.len().max(1);
        let w: Vec<T> = weights.iter().map(|&w| cpu_cast(w)).collect();
        let mut out = vec![T::zero(); rest];
        cpu::weighted_rows_sum(gv.slice(), &w, &mut out);
        tensor(out, &g.dims()[1..]).map(Some)
    }
    if g.dim(0)? != weights.len() {
        return Err(TrainError::Invalid(format!(
            "{} weights for a batch of {}",
            weights.len(),
            g.dim(0)?
        )));
    }
    match by_dtype(
        g.dtype(),
        || go::<f32>(g, weights),
        || go::<f64>(g, weights),
    )? {
        Some(sum) => Ok(sum),
        None => composite::weighted_batch_sum(g, weights),
    }
}

fn cpu_cast<T: Real>(x: f64) -> T {
    T::from(x).expect("f64 converts to every float type we instantiate")
}

/// Weighted cross-entropy of the logits `x head^T` for rows `x` (N, d)
/// against `targets` (N,) u32 with `weights` (N,): per-row losses (N,) and,
/// with `gradient`, the gradient with respect to `x`. The `(rows, vocab)`
/// logits exist only `chunk` rows at a time, and rows of weight 0 cost
/// nothing.
pub(crate) fn cross_entropy(
    x: &Tensor,
    head: &Frozen,
    targets: &Tensor,
    weights: &Tensor,
    chunk: usize,
    gradient: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (n, d) = x.dims2()?;
    let finish = |(losses, dx): (Vec<_>, Option<Vec<_>>)| -> Result<(Tensor, Option<Tensor>)> {
        Ok((
            tensor(losses, n)?,
            dx.map(|dx| tensor(dx, (n, d))).transpose()?,
        ))
    };
    fn dense<T: Real>(
        x: &Tensor,
        head: &Tensor,
        targets: &Tensor,
        weights: &Tensor,
        chunk: usize,
        gradient: bool,
    ) -> Result<Option<(Tensor, Option<Tensor>)>> {
        let (Some([xv, hv, wv]), Some([tv])) = (
            views::<T, 3>([x, head, weights]),
            views::<u32, 1>([targets]),
        ) else {
            return Ok(None);
        };
        let (n, d) = x.dims2()?;
        let vocab = head.dim(0)?;
        let h = hv.slice::<T>();
        let rows = RowsLoss::new(xv.slice(), wv.slice(), tv.slice(), d, vocab, chunk);
        let backward = |g: &[T], dx: &mut [T]| cpu::matmul(g, h, vocab, dx);
        let (losses, dx) = rows.run(
            |x, logits| cpu::matmul_transposed(x, h, d, logits),
            gradient.then_some(&backward as &HeadProduct<'_, T>),
        );
        Ok(Some((
            tensor(losses, n)?,
            dx.map(|dx| tensor(dx, (n, d))).transpose()?,
        )))
    }
    match head {
        Frozen::Dense(w) => match by_dtype(
            x.dtype(),
            || dense::<f32>(x, w, targets, weights, chunk, gradient),
            || dense::<f64>(x, w, targets, weights, chunk, gradient),
        )? {
            Some(out) => Ok(out),
            None => composite::cross_entropy(x, w, targets, weights, chunk, gradient),
        },
        Frozen::Bf16(m) => {
            let (Some([xv, wv]), Some([tv])) =
                (views::<f32, 2>([x, weights]), views::<u32, 1>([targets]))
            else {
                return Err(TrainError::Invalid(format!(
                    "bf16 products take f32 activations on the CPU, not {:?} on {:?}",
                    x.dtype(),
                    x.device().location()
                )));
            };
            let rows = RowsLoss::new(xv.slice(), wv.slice(), tv.slice(), d, m.rows(), chunk);
            let backward = |g: &[f32], dx: &mut [f32]| m.backward_into(g, dx);
            finish(rows.run(
                |x, l| m.forward_into(x, l),
                gradient.then_some(&backward as &HeadProduct<'_, f32>),
            ))
        }
    }
}

/// A product with the LM head, writing into its second argument.
type HeadProduct<'a, T> = dyn Fn(&[T], &mut [T]) + 'a;

/// The cross-entropy's inputs as slices, for [`cross_entropy`].
struct RowsLoss<'a, T> {
    x: &'a [T],
    weights: &'a [T],
    targets: &'a [u32],
    width: usize,
    vocab: usize,
    chunk: usize,
}

impl<'a, T: Real> RowsLoss<'a, T> {
    fn new(
        x: &'a [T],
        weights: &'a [T],
        targets: &'a [u32],
        width: usize,
        vocab: usize,
        chunk: usize,
    ) -> Self {
        RowsLoss {
            x,
            weights,
            targets,
            width,
            vocab,
            chunk: chunk.max(1),
        }
    }

    /// Per-row losses and, given `backward`, the gradient rows; `forward`
    /// computes `logits = x head^T`, `backward` `dx = g head`.
    fn run(
        &self,
        forward: impl Fn(&[T], &mut [T]),
        backward: Option<&HeadProduct<'_, T>>,
    ) -> (Vec<T>, Option<Vec<T>>) {
        let (d, vocab) = (self.width, self.vocab);
        let n = self.weights.len();
        // Only weighted rows need logits: gather them, then scatter back.
        let rows: Vec<usize> = (0..n).filter(|&r| self.weights[r] != T::zero()).collect();
        let mut losses = vec![T::zero(); n];
        let mut dx = backward.map(|_| vec![T::zero(); n * d]);
        let most = self.chunk.min(rows.len());
        let mut gathered = Vec::with_capacity(most * d);
        // Reused across chunks: a fresh (chunk, vocab) buffer per chunk
        // would be paged in again every time.
        let mut logits = vec![T::zero(); most * vocab];
        let mut d_rows = vec![T::zero(); if backward.is_some() { most * d } else { 0 }];
        for block in rows.chunks(self.chunk) {
            gathered.clear();
            for &r in block {
                gathered.extend_from_slice(&self.x[r * d..(r + 1) * d]);
            }
            let logits = &mut logits[..block.len() * vocab];
            forward(&gathered, logits);
            let targets: Vec<u32> = block.iter().map(|&r| self.targets[r]).collect();
            let weights: Vec<T> = block.iter().map(|&r| self.weights[r]).collect();
            let mut block_losses = vec![T::zero(); block.len()];
            cpu::cross_entropy_in_place(logits, vocab, &targets, &weights, &mut block_losses);
            for (i, &r) in block.iter().enumerate() {
                losses[r] = block_losses[i];
            }
            if let (Some(backward), Some(dx)) = (backward, dx.as_mut()) {
                let d_rows = &mut d_rows[..block.len() * d];
                backward(logits, d_rows);
                for (i, &r) in block.iter().enumerate() {
                    dx[r * d..(r + 1) * d].copy_from_slice(&d_rows[i * d..(i + 1) * d]);
                }
            }
        }
        (losses, dx)
    }
}

#[cfg(test)]
mod tests;
