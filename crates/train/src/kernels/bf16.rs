//! Products with frozen weights stored in bfloat16: `f32` activations
//! rounded to bf16 (round to nearest even), bf16 weights, `f32`
//! accumulation, on CPUs with AVX512-BF16 (`vdpbf16ps`).
//!
//! Why by hand: on this path the matrix products are most of a training
//! step, and `vdpbf16ps` does twice the multiply-adds per cycle of an f32
//! FMA. Neither candle (bf16 matmul on the CPU converts to f32 first) nor
//! the `gemm` crate (no bf16 dot-product kernel) uses it. The structure is
//! the classic one (Goto and van de Geijn, "Anatomy of high-performance
//! matrix multiplication", TOMS 2008): pack a block of the activations and
//! a panel of the weights into the order the microkernel reads, then run a
//! 12 x 32 register-blocked microkernel over the panels.
//!
//! `vdpbf16ps` multiplies pairs: lane `j` of the accumulator gains
//! `a[2j] b[2j] + a[2j+1] b[2j+1]`. So both operands are packed in pairs of
//! consecutive `k`, each pair one `u32` (even `k` in the low half); an odd
//! `k` is padded with a zero.

use rayon::prelude::*;

/// Rows of the microkernel's tile (broadcast operand).
const MR: usize = 12;
/// Columns of the microkernel's tile: two 16-lane registers.
const NR: usize = 32;
/// Pairs of `k` per packed block: the packed weight panel (KP x NR pairs)
/// stays in L1, the packed activations (M x KP pairs) in L2.
const KP: usize = 512;

/// Whether this CPU can run the bf16 products.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Round to nearest even, as `vcvtneps2bf16` does; NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// A frozen (rows, cols) matrix in bf16, a weight stored (out, in), kept
/// packed for both products it takes part in: `x W^T` (forward) and `g W`
/// (input gradient). Two packings cost as much memory as one f32 copy and
/// save repacking the weight on every call, which cost as much as the
/// product itself.
#[derive(Debug, Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    /// `B = W^T` (k = cols, n = rows), packed.
    transposed: Packed,
    /// `B = W` (k = rows, n = cols), packed.
    as_stored: Packed,
}

/// A right operand `B` (k, n) in the microkernel's order: for each panel
/// of `NR` columns, all `ceil(k / 2)` pairs of rows, each pair `NR` u32.
/// Columns past `n` and the odd row past `k` are zero.
#[derive(Debug, Clone)]
struct Packed {
    k: usize,
    n: usize,
    values: Vec<u32>,
}

impl Packed {
    fn new(k: usize, n: usize, at: impl Fn(usize, usize) -> u16 + Sync) -> Self {
        let pairs = k.div_ceil(2);
        let mut values = vec![0u32; n.div_ceil(NR) * pairs * NR];
        values
            .par_chunks_mut(pairs * NR)
            .enumerate()
            .for_each(|(panel, out)| {
                let n0 = panel * NR;
                for p in 0..pairs {
                    for j in 0..NR.min(n - n0) {
                        let lo = at(2 * p, n0 + j) as u32;
                        let hi = if 2 * p + 1 < k {
                            at(2 * p + 1, n0 + j) as u32
                        } else {
                            0
                        };
                        out[p * NR + j] = lo | (hi << 16);
                    }
                }
            });
        Packed { k, n, values }
    }

    fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }

    fn at(&self, k: usize, n: usize) -> u16 {
        let pairs = self.pairs();
        let word = self.values[(n / NR) * pairs * NR + (k / 2) * NR + n % NR];
        (word >> (16 * (k % 2))) as u16
    }
}

impl Matrix {
    pub fn from_f32(values: &[f32], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(values.len(), rows * cols);
        let w = |r: usize, c: usize| to_bf16(values[r * cols + c]);
        Matrix {
            rows,
            cols,
            transposed: Packed::new(cols, rows, |k, n| w(n, k)),
            as_stored: Packed::new(rows, cols, w),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored (rounded) weight, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for c in 0..self.cols {
                out.push(from_bf16(self.as_stored.at(r, c)));
            }
        }
        out
    }

    /// `x W^T` for rows `x` (m, cols): (m, rows).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len() / self.cols.max(1) * self.rows];
        self.forward_into(x, &mut out);
        out
    }

    /// [`Matrix::forward`] into `out` (overwritten): a buffer reused across
    /// calls is not paged in again.
    pub fn forward_into(&self, x: &[f32], out: &mut [f32]) {
        product(x, &self.transposed, out, supported())
    }

    /// `g W` for rows `g` (m, rows): (m, cols).
    pub fn backward(&self, g: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; g.len() / self.rows.max(1) * self.cols];
        self.backward_into(g, &mut out);
        out
    }

    /// [`Matrix::backward`] into `out` (overwritten).
    pub fn backward_into(&self, g: &[f32], out: &mut [f32]) {
        product(g, &self.as_stored, out, supported())
    }
}

/// `c = A B` for f32 rows `A` (m, k), with the microkernel when
/// `use_kernel` (the caller checked [`supported`]), else with the portable
/// reference.
fn product(a: &[f32], b: &Packed, c: &mut [f32], use_kernel: bool) {
    let m = a.len() / b.k.max(1);
    assert_eq!(c.len(), m * b.n, "output buffer of the wrong size");
    if b.k == 0 {
        c.fill(0.0);
        return;
    }
    if m == 0 || b.n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if use_kernel {
        gemm(a, m, b, c);
        return;
    }
    debug_assert!(!use_kernel, "no bf16 kernel on this architecture");
    reference_gemm(a, m, b, c);
}

/// `a` (m, k) rounded to bf16, as u32 pairs of consecutive `k`, rows padded
/// with zeros to a multiple of `MR` (the microkernel reads whole tiles).
#[cfg(target_arch = "x86_64")]
fn convert_rows(a: &[f32], m: usize, k: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; m.div_ceil(MR) * MR * pairs];
    out.par_chunks_mut(pairs)
        .take(m)
        .enumerate()
        .with_min_len(4)
        .for_each(|(row, out)| {
            // SAFETY: `gemm` runs only where `supported()` holds.
            unsafe { convert_row(&a[row * k..(row + 1) * k], out) }
        });
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn convert_row(src: &[f32], dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let full = src.len() / 32;
    for chunk in 0..full {
        let lo = _mm512_loadu_ps(src.as_ptr().add(32 * chunk));
        let hi = _mm512_loadu_ps(src.as_ptr().add(32 * chunk + 16));
        // 32 bf16 in order: the low half from `lo`, the high from `hi`.
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(16 * chunk) as *mut _, packed);
    }
    for (p, slot) in dst.iter_mut().enumerate().skip(16 * full) {
        let lo = to_bf16(src[2 * p]) as u32;
        let hi = src.get(2 * p + 1).map_or(0, |&v| to_bf16(v) as u32);
        *slot = lo | (hi << 16);
    }
}

/// `c = A B` (m, n), `A` given as f32 rows (m, k).
#[cfg(target_arch = "x86_64")]
fn gemm(a: &[f32], m: usize, b: &Packed, c: &mut [f32]) {
    let n = b.n;
    let total_pairs = b.pairs();
    let panels_m = m.div_ceil(MR);
    let panels_n = n.div_ceil(NR);
    let a = convert_rows(a, m, b.k);
    let threads = rayon::current_num_threads().max(1);
    // Each task owns a contiguous range of column panels, so its writes to
    // `c` are disjoint from every other task's.
    let per_task = panels_n.div_ceil(threads);
    let c_ptr = SharedOutput(c.as_mut_ptr());
    (0..panels_n.div_ceil(per_task))
        .into_par_iter()
        .for_each(|task| {
            for p0 in (0..total_pairs).step_by(KP) {
                let pairs = KP.min(total_pairs - p0);
                for jn in task * per_task..((task + 1) * per_task).min(panels_n) {
                    let n0 = jn * NR;
                    let panel = &b.values[jn * total_pairs * NR + p0 * NR..][..pairs * NR];
                    let cols = NR.min(n - n0);
                    for im in 0..panels_m {
                        let rows = MR.min(m - im * MR);
                        // SAFETY: the CPU has AVX512F and AVX512-BF16 (checked
                        // by the caller through `supported`); `a` holds whole
                        // MR-row tiles of `total_pairs` pairs and the panel
                        // `pairs` groups of NR; the tile at (im*MR, n0) of `c`
                        // has `rows` x `cols` valid entries, owned by this
                        // task's column range.
                        unsafe {
                            microkernel(
                                pairs,
                                a.as_ptr().add(im * MR * total_pairs + p0),
                                total_pairs,
                                panel.as_ptr(),
                                c_ptr.get().add(im * MR * n + n0),
                                n,
                                rows,
                                cols,
                                p0 > 0,
                            );
                        }
                    }
                }
            }
        });
}

#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: tasks write disjoint column ranges of the output (see `gemm`).
unsafe impl Send for SharedOutput {}
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// A method, so closures capture the whole (Sync) wrapper rather than
    /// its raw-pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `C[0..rows, 0..cols] (+)= A_tile B_panel` for one 12 x 32 tile, adding
/// to `C` when `accumulate`; `a` points at the tile's first row, rows `lda`
/// u32 apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn microkernel(
    pairs: usize,
    a: *const u32,
    lda: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 2 * MR];
    for p in 0..pairs {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR) as *const _));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16) as *const _));
        for i in 0..MR {
            let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i * lda + p) as i32));
            acc[2 * i] = _mm512_dpbf16_ps(acc[2 * i], ai, b0);
            acc[2 * i + 1] = _mm512_dpbf16_ps(acc[2 * i + 1], ai, b1);
        }
    }
    let mask = |from: usize| -> __mmask16 {
        let live = cols.saturating_sub(from).min(16);
        ((1u32 << live) - 1) as __mmask16
    };
    let (m0, m1) = (mask(0), mask(16));
    for i in 0..rows {
        let row = c.add(i * ldc);
        let (mut lo, mut hi) = (acc[2 * i], acc[2 * i + 1]);
        if accumulate {
            lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(m0, row));
            hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(m1, row.add(16)));
        }
        _mm512_mask_storeu_ps(row, m0, lo);
        if m1 != 0 {
            _mm512_mask_storeu_ps(row.add(16), m1, hi);
        }
    }
}

/// The same product without AVX512-BF16, in plain Rust on the rounded
/// operands: the answer on other CPUs, and the tests' reference.
fn reference_gemm(a: &[f32], m: usize, b: &Packed, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    c.par_chunks_mut(n)
        .take(m)
        .enumerate()
        .for_each(|(i, c_row)| {
            let a_row: Vec<f32> = a[i * k..(i + 1) * k]
                .iter()
                .map(|&v| from_bf16(to_bf16(v)))
                .collect();
            for (j, c) in c_row.iter_mut().enumerate() {
                let mut sum = 0f64;
                for (kk, &av) in a_row.iter().enumerate() {
                    sum += av as f64 * from_bf16(b.at(kk, j)) as f64;
                }
                *c = sum as f32;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties
        // go to the even mantissa (1).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), to_bf16(1.0));
        // 1 + 3 * 2^-8 ties between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(from_bf16(to_bf16(-3.5)), -3.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// The exact product of the rounded operands, in f64.
    fn exact(a: &[f32], w: &Matrix, transposed: bool) -> (Vec<f64>, Vec<f64>) {
        let (k, n) = if transposed {
            (w.cols, w.rows)
        } else {
            (w.rows, w.cols)
        };
        let m = a.len() / k;
        let wf = w.to_f32();
        let at = |kk: usize, j: usize| -> f64 {
            if transposed {
                wf[j * w.cols + kk] as f64
            } else {
                wf[kk * w.cols + j] as f64
            }
        };
        let mut out = vec![0f64; m * n];
        let mut magnitude = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    let x = from_bf16(to_bf16(a[i * k + kk])) as f64 * at(kk, j);
                    out[i * n + j] += x;
                    magnitude[i * n + j] += x.abs();
                }
            }
        }
        (out, magnitude)
    }

    fn check(m: usize, rows: usize, cols: usize, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let w = Matrix::from_f32(&w, rows, cols);
        for transposed in [true, false] {
            let k = if transposed { cols } else { rows };
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-3.0..3.0)).collect();
            let packed = if transposed {
                &w.transposed
            } else {
                &w.as_stored
            };
            let (want, magnitude) = exact(&a, &w, transposed);
            let paths: &[bool] = if supported() {
                &[true, false]
            } else {
                &[false]
            };
            for &use_kernel in paths {
                // Stale values in the buffer must be overwritten.
                let mut got = vec![f32::NAN; want.len()];
                product(&a, packed, &mut got, use_kernel);
                assert_eq!(got.len(), want.len());
                for ((g, w), mag) in got.iter().zip(&want).zip(&magnitude) {
                    // Only the f32 accumulation differs from the exact sum.
                    let bound = (k + 2) as f64 * f32::EPSILON as f64 * mag + 1e-30;
                    assert!(
                        (*g as f64 - w).abs() <= bound,
                        "{g} vs {w} (bound {bound}, kernel {use_kernel})"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        /// Every edge: rows and columns not multiples of the tile, odd k,
        /// k spanning several packed blocks.
        #[test]
        fn products_equal_the_exact_product_of_the_rounded_operands(
            m in 1usize..40, rows in 1usize..80, cols in 1usize..300, seed in any::<u64>()
        ) {
            check(m, rows, cols, seed);
        }
    }

    #[test]
    fn a_large_reduction_stays_accurate() {
        check(13, 70, 2 * KP * 2 + 3, 7);
    }

    #[test]
    fn the_kernel_is_used_where_the_cpu_supports_it() {
        // On a CPU with AVX512-BF16 the products above exercised the
        // microkernel; say which path this machine took, so a green run on
        // a machine without it is not mistaken for a kernel test.
        eprintln!("bf16 microkernel available: {}", supported());
        let w = Matrix::from_f32(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        assert_eq!(w.forward(&[1.0, 1.0]), vec![3.0, 7.0]);
        assert_eq!(w.backward(&[1.0, 1.0]), vec![4.0, 6.0]);
    }
}
