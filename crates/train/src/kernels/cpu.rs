//! The fused kernels on contiguous CPU slices, generic over f32 and f64.
//!
//! Layouts: rows are `(N, width)` with `N = batch * seq`; head-major
//! tensors are `(batch, heads, seq, head_dim)`. Parallelism is over rows or
//! over heads (rayon); the small per-head products call `gemm`
//! single-threaded inside the parallel loop, so no task waits on another.

use gemm::Parallelism;
use rayon::prelude::*;

use super::Real;

/// Rows per rayon task for the cheap row-wise kernels: enough work to pay
/// for a hand-off.
const MIN_ROWS_PER_TASK: usize = 32;

fn cast<T: Real>(x: f64) -> T {
    T::from(x).expect("f64 fits every float type we instantiate")
}

/// `y = x r w`, `r = 1 / sqrt(mean(x^2) + eps)`, row by row.
pub fn rms_norm<T: Real>(x: &[T], w: &[T], eps: f64, y: &mut [T]) {
    let d = w.len();
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(y, x)| {
            let r = inverse_rms(x, eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * r * w;
            }
        });
}

fn inverse_rms<T: Real>(x: &[T], eps: f64) -> T {
    let ss = x.iter().fold(T::zero(), |acc, &v| acc + v * v);
    T::one() / (ss / cast(x.len() as f64) + cast(eps)).sqrt()
}

/// `dx = r g - x r^3 mean(x g)` with `g = dy w`; `r` is recomputed, which
/// costs one pass over `x` and saves keeping it on the tape.
pub fn rms_norm_backward<T: Real>(dy: &[T], x: &[T], w: &[T], eps: f64, dx: &mut [T]) {
    let d = w.len();
    let inv_d: T = cast(1.0 / d as f64);
    dx.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(dx, (x, dy))| {
            let r = inverse_rms(x, eps);
            let mean_xg = x
                .iter()
                .zip(dy)
                .zip(w)
                .fold(T::zero(), |acc, ((&x, &dy), &w)| acc + x * dy * w)
                * inv_d;
            let coef = r * r * r * mean_xg;
            for (((dx, &x), &dy), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
                *dx = r * dy * w - x * coef;
            }
        });
}

/// Rotary tables for the rows of one sequence: `cos`, `sin` are
/// `(seq, head_dim)` with both halves of a head sharing frequencies.
#[derive(Clone, Copy)]
pub struct RopeTables<'a, T> {
    pub cos: &'a [T],
    pub sin: &'a [T],
}

/// Rows `(N, heads * hd)` to head-major `(B, heads, T, hd)`, rotating with
/// `rope` ("rotate half": `y = x cos + [-x2, x1] sin`).
pub fn split_heads<T: Real>(
    x: &[T],
    seq: usize,
    heads: usize,
    hd: usize,
    rope: Option<RopeTables<'_, T>>,
    out: &mut [T],
) {
    let half = hd / 2;
    let width = heads * hd;
    out.par_chunks_mut(seq * hd)
        .enumerate()
        .for_each(|(bh, out)| {
            let (b, h) = (bh / heads, bh % heads);
            for t in 0..seq {
                let src = &x[(b * seq + t) * width + h * hd..][..hd];
                let dst = &mut out[t * hd..][..hd];
                match rope {
                    None => dst.copy_from_slice(src),
                    Some(RopeTables { cos, sin }) => {
                        let (c, s) = (&cos[t * hd..][..hd], &sin[t * hd..][..hd]);
                        for i in 0..half {
                            dst[i] = src[i] * c[i] - src[i + half] * s[i];
                            dst[i + half] = src[i + half] * c[i + half] + src[i] * s[i + half];
                        }
                    }
                }
            }
        });
}

/// Transpose of [`split_heads`]: head-major gradients back to rows, through
/// the transposed rotation (`dx = c dy + [ (s dy)_2, -(s dy)_1 ]`).
pub fn merge_heads<T: Real>(
    dy: &[T],
    seq: usize,
    heads: usize,
    hd: usize,
    rope: Option<RopeTables<'_, T>>,
    out: &mut [T],
) {
    let half = hd / 2;
    let width = heads * hd;
    out.par_chunks_mut(width)
        .enumerate()
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(row, out)| {
            let (b, t) = (row / seq, row % seq);
            for h in 0..heads {
                let src = &dy[((b * heads + h) * seq + t) * hd..][..hd];
                let dst = &mut out[h * hd..][..hd];
                match rope {
                    None => dst.copy_from_slice(src),
                    Some(RopeTables { cos, sin }) => {
                        let (c, s) = (&cos[t * hd..][..hd], &sin[t * hd..][..hd]);
                        for i in 0..half {
                            dst[i] = src[i] * c[i] + src[i + half] * s[i + half];
                            dst[i + half] = src[i + half] * c[i + half] - src[i] * s[i];
                        }
                    }
                }
            }
        });
}

/// Shapes shared by the attention kernels.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// A pointer that rayon tasks may share because each writes a disjoint
/// part of the buffer behind it.
#[derive(Clone, Copy)]
struct Disjoint<T>(*mut T);
// SAFETY: used only where the caller proves the tasks' writes are disjoint.
unsafe impl<T> Send for Disjoint<T> {}
unsafe impl<T> Sync for Disjoint<T> {}

impl<T> Disjoint<T> {
    /// A method, so closures capture the whole (Sync) wrapper rather than
    /// its raw-pointer field.
    fn get(self) -> *mut T {
        self.0
    }
}

/// `dst = [dst +] lhs rhs` for one small product on the calling thread;
/// strides are (row, column) in elements.
#[allow(clippy::too_many_arguments)]
unsafe fn small_gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const T,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const T,
    (rhs_rs, rhs_cs): (usize, usize),
    scale: T,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        T::one(),
        scale,
        false,
        false,
        false,
        Parallelism::None,
    )
}

/// Causal attention: `p = softmax(q k^T scale)` per head (B, H, T, T), and
/// `o = p v` written as rows (N, H * hd). Query head `h` reads KV head
/// `h / groups`, so K and V are never repeated in memory.
pub fn attention<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    shape: Heads,
    scale: f64,
    p: &mut [T],
    o: &mut [T],
) {
    let Heads {
        seq,
        heads,
        head_dim: hd,
        ..
    } = shape;
    let groups = shape.groups();
    let width = heads * hd;
    let o_ptr = Disjoint(o.as_mut_ptr());
    p.par_chunks_mut(seq * seq).enumerate().for_each(|(bh, p)| {
        let (b, h) = (bh / heads, bh % heads);
        let kv = b * (heads / groups) + h / groups;
        let (qh, kh, vh) = (
            &q[bh * seq * hd..],
            &k[kv * seq * hd..],
            &v[kv * seq * hd..],
        );
        // SAFETY: every slice spans the (seq, hd) or (seq, seq) block the
        // strides describe; this task alone writes rows b*seq.. of o in
        // columns h*hd..(h+1)*hd.
        unsafe {
            small_gemm(
                (seq, seq, hd),
                p.as_mut_ptr(),
                seq,
                false,
                qh.as_ptr(),
                (hd, 1),
                kh.as_ptr(),
                (1, hd),
                cast(scale),
            );
        }
        for (i, row) in p.chunks_mut(seq).enumerate() {
            softmax_causal_row(row, i);
        }
        unsafe {
            let dst = o_ptr.get().add(b * seq * width + h * hd);
            small_gemm(
                (seq, hd, seq),
                dst,
                width,
                false,
                p.as_ptr(),
                (seq, 1),
                vh.as_ptr(),
                (hd, 1),
                T::one(),
            );
        }
    });
}

/// Softmax over `row[..=last]`; positions after `last` are masked to 0.
fn softmax_causal_row<T: Real>(row: &mut [T], last: usize) {
    let (live, masked) = row.split_at_mut(last + 1);
    let max = live
        .iter()
        .fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
    let mut sum = T::zero();
    for v in live.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = T::one() / sum;
    live.iter_mut().for_each(|v| *v *= inv);
    masked.iter_mut().for_each(|v| *v = T::zero());
}

/// Backward of [`attention`]: from `d_o` rows (N, H * hd) to `dq`
/// (B, H, T, hd) and `dk`, `dv` (B, Hkv, T, hd), summing each KV head's
/// gradient over the query heads it serves. Tasks run per KV head, so the
/// sums need no synchronisation.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    d_o: &[T],
    p: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    shape: Heads,
    scale: f64,
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let Heads {
        seq,
        heads,
        head_dim: hd,
        kv_heads,
        ..
    } = shape;
    let groups = shape.groups();
    let width = heads * hd;
    let block = seq * hd;
    dq.par_chunks_mut(groups * block)
        .zip(dk.par_chunks_mut(block).zip(dv.par_chunks_mut(block)))
        .enumerate()
        .for_each(|(bg, (dq, (dk, dv)))| {
            let (b, g) = (bg / kv_heads, bg % kv_heads);
            let (kg, vg) = (&k[bg * block..][..block], &v[bg * block..][..block]);
            let mut ds = vec![T::zero(); seq * seq];
            for j in 0..groups {
                let h = g * groups + j;
                let bh = b * heads + h;
                let ph = &p[bh * seq * seq..][..seq * seq];
                let qh = &q[bh * block..][..block];
                let d_oh = &d_o[b * seq * width + h * hd..];
                let dqh = &mut dq[j * block..][..block];
                // SAFETY: all operands are in-bounds (seq, seq) or (seq, hd)
                // blocks with the strides given; outputs are this task's.
                unsafe {
                    // dV += P^T dO
                    small_gemm(
                        (seq, hd, seq),
                        dv.as_mut_ptr(),
                        hd,
                        j > 0,
                        ph.as_ptr(),
                        (1, seq),
                        d_oh.as_ptr(),
                        (width, 1),
                        T::one(),
                    );
                    // dP = dO V^T
                    small_gemm(
                        (seq, seq, hd),
                        ds.as_mut_ptr(),
                        seq,
                        false,
                        d_oh.as_ptr(),
                        (width, 1),
                        vg.as_ptr(),
                        (1, hd),
                        T::one(),
                    );
                }
                // dS = P (dP - rowsum(P dP)) * scale
                let scale: T = cast(scale);
                for (pr, dr) in ph.chunks(seq).zip(ds.chunks_mut(seq)) {
                    let dot = pr
                        .iter()
                        .zip(dr.iter())
                        .fold(T::zero(), |a, (&p, &d)| a + p * d);
                    for (d, &p) in dr.iter_mut().zip(pr) {
                        *d = p * (*d - dot) * scale;
                    }
                }
                unsafe {
                    // dQ = dS K
                    small_gemm(
                        (seq, hd, seq),
                        dqh.as_mut_ptr(),
                        hd,
                        false,
                        ds.as_ptr(),
                        (seq, 1),
                        kg.as_ptr(),
                        (hd, 1),
                        T::one(),
                    );
                    // dK += dS^T Q
                    small_gemm(
                        (seq, hd, seq),
                        dk.as_mut_ptr(),
                        hd,
                        j > 0,
                        ds.as_ptr(),
                        (1, seq),
                        qh.as_ptr(),
                        (hd, 1),
                        T::one(),
                    );
                }
            }
        });
}

/// `act = silu(gate) * up`.
pub fn swiglu<T: Real>(gate: &[T], up: &[T], act: &mut [T]) {
    act.par_chunks_mut(4096)
        .zip(gate.par_chunks(4096).zip(up.par_chunks(4096)))
        .for_each(|(act, (gate, up))| {
            for ((a, &g), &u) in act.iter_mut().zip(gate).zip(up) {
                *a = g * sigmoid(g) * u;
            }
        });
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Backward of [`swiglu`]: `d_up = d silu(g)`, `d_gate = d u silu'(g)` with
/// `silu'(g) = s (1 + g (1 - s))`, `s = sigmoid(g)`.
pub fn swiglu_backward<T: Real>(
    d_act: &[T],
    gate: &[T],
    up: &[T],
    d_gate: &mut [T],
    d_up: &mut [T],
) {
    d_gate
        .par_chunks_mut(4096)
        .zip(d_up.par_chunks_mut(4096))
        .zip(
            d_act
                .par_chunks(4096)
                .zip(gate.par_chunks(4096).zip(up.par_chunks(4096))),
        )
        .for_each(|((dg, du), (da, (gate, up)))| {
            for i in 0..dg.len() {
                let (g, u, d) = (gate[i], up[i], da[i]);
                let s = sigmoid(g);
                du[i] = d * g * s;
                dg[i] = d * u * s * (T::one() + g * (T::one() - s));
            }
        });
}

/// Weighted cross-entropy over rows of logits, in place: each row becomes
/// the gradient `w (softmax - onehot(target))` and `losses[r] = w (lse -
/// logit[target])`. Rows of weight 0 become zeros without a single `exp`.
pub fn cross_entropy_in_place<T: Real>(
    logits: &mut [T],
    vocab: usize,
    targets: &[u32],
    weights: &[T],
    losses: &mut [T],
) {
    logits
        .par_chunks_mut(vocab)
        .zip(losses.par_iter_mut())
        .zip(targets.par_iter().zip(weights.par_iter()))
        .for_each(|((row, loss), (&target, &w))| {
            if w == T::zero() {
                row.iter_mut().for_each(|v| *v = T::zero());
                *loss = T::zero();
                return;
            }
            let max = row
                .iter()
                .fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
            let target_logit = row[target as usize];
            let mut sum = T::zero();
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            *loss = w * (sum.ln() + max - target_logit);
            let scale = w / sum;
            row.iter_mut().for_each(|v| *v *= scale);
            row[target as usize] -= w;
        });
}

/// `out = sum_i w[i] g[i]` for `g` holding `w.len()` rows of `out.len()`.
pub fn weighted_rows_sum<T: Real>(g: &[T], w: &[T], out: &mut [T]) {
    let width = out.len();
    out.par_chunks_mut(4096)
        .enumerate()
        .for_each(|(block, out)| {
            let start = block * 4096;
            for (i, &wi) in w.iter().enumerate() {
                let row = &g[i * width + start..][..out.len()];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += wi * v;
                }
            }
        });
}

/// `c = a b^T` for row-major `a` (m, k) and `b` (n, k): the product with a
/// frozen weight stored (out, in). Multi-threaded.
pub fn matmul_transposed<T: Real>(a: &[T], b: &[T], k: usize, c: &mut [T]) {
    let (m, n) = (a.len() / k, b.len() / k);
    // SAFETY: a, b and c hold exactly m*k, n*k and m*n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// `c = a b` for row-major `a` (m, k) and `b` (k, n). Multi-threaded.
pub fn matmul<T: Real>(a: &[T], b: &[T], k: usize, c: &mut [T]) {
    let (m, n) = (a.len() / k, b.len() / k);
    // SAFETY: a, b and c hold exactly m*k, k*n and m*n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism(),
        )
    }
}

fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}
