//! Compute kernels behind one interface.
//!
//! [`scalar`] is the reference for every op and the source of truth; the SIMD
//! modules implement the hot ops (ternary × int8 matmul, activation quantization,
//! the dense LM head; in wasm also RMSNorm, RoPE and attention) and are
//! property-tested against it. [`Cpu`] picks the best
//! kernels the running CPU supports and splits rows across threads.

pub mod scalar;
pub mod selftest;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod wasm;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::formats::{DenseMatrix, TernaryMatrix};
use std::ops::Range;

/// Per-token int8 activations, BitNet's absmax scheme: `q = round(x · 127/max|x|)`.
#[derive(Debug, Clone, Default)]
pub struct QuantActs {
    pub cols: usize,
    pub n_tok: usize,
    /// `n_tok × cols`.
    pub q: Vec<i8>,
    /// Per token, `max|x| / 127`: multiplies an integer dot product back to floats.
    pub inv_scale: Vec<f32>,
    /// Per token, Σq: ternary codes are t+1, so Σ t·q = Σ code·q − Σ q.
    pub sum: Vec<i32>,
}

impl QuantActs {
    /// Sizes the buffers for `n_values / cols` tokens of `cols` values; returns the token count.
    pub fn reset(&mut self, n_values: usize, cols: usize) -> usize {
        let n_tok = n_values / cols;
        self.cols = cols;
        self.n_tok = n_tok;
        self.q.resize(n_tok * cols, 0);
        self.inv_scale.resize(n_tok, 0.0);
        self.sum.resize(n_tok, 0);
        n_tok
    }

    /// Token `t` quantizes to zeros (its max |x| is 0 or not finite).
    pub fn zero_token(&mut self, t: usize) {
        self.q[t * self.cols..(t + 1) * self.cols].fill(0);
        self.inv_scale[t] = 0.0;
        self.sum[t] = 0;
    }

    pub fn token(&self, t: usize) -> &[i8] {
        &self.q[t * self.cols..(t + 1) * self.cols]
    }

    /// The activations the int8 path actually multiplies, as floats (q / s).
    pub fn dequantize(&self) -> Vec<f32> {
        (0..self.n_tok)
            .flat_map(|t| {
                let s = self.inv_scale[t];
                self.token(t).iter().map(move |&q| q as f32 * s)
            })
            .collect()
    }
}

/// The hot ops a CPU kernel set provides. Outputs of the `*_rows` ops are tiles
/// laid out row by row: `out[(r - rows.start) * n_tok + t]` = row r · token t.
pub trait Kernels: Send + Sync {
    fn name(&self) -> &'static str;
    fn quantize_acts(&self, x: &[f32], cols: usize, out: &mut QuantActs);
    fn ternary_rows(&self, w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]);
    fn dense_rows(
        &self,
        w: &DenseMatrix,
        x: &[f32],
        n_tok: usize,
        rows: Range<usize>,
        out: &mut [f32],
    );
    /// int8 rows (`DenseType::I8`) × int8 activations: the small LM head.
    fn int8_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        scalar::int8_rows(w, a, rows, out)
    }
    /// int4 rows (`DenseType::I4`) × int8 activations: the smallest LM head.
    fn int4_rows(&self, w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        scalar::int4_rows(w, a, rows, out)
    }
    /// Ternary rows × f32 activations (f32 mode, the reference's arithmetic): see
    /// [`scalar::ternary_matmul_f32`].
    fn ternary_matmul_f32(&self, w: &TernaryMatrix, x: &[f32], n_tok: usize, out: &mut [f32]) {
        scalar::ternary_matmul_f32(w, x, n_tok, out)
    }
    /// See [`scalar::rmsnorm`].
    fn rmsnorm(&self, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
        scalar::rmsnorm(x, weight, eps, out)
    }
    /// See [`scalar::rope_apply`].
    fn rope(&self, head: &mut [f32], cos: &[f64], sin: &[f64]) {
        scalar::rope_apply(head, cos, sin)
    }
    /// See [`scalar::rope_angles`].
    fn rope_angles(
        &self,
        pos: usize,
        n_rot: usize,
        theta: f32,
        cos: &mut Vec<f64>,
        sin: &mut Vec<f64>,
    ) {
        scalar::rope_angles(pos, n_rot, theta, cos, sin)
    }
    /// See [`scalar::attn_scores`].
    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        scalar::attn_scores(q, keys, stride, scale, out)
    }
    /// See [`scalar::attn_mix`].
    fn attn_mix(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        scalar::attn_mix(probs, values, stride, out)
    }
    /// See [`scalar::attn_scores_f16`].
    fn attn_scores_f16(&self, q: &[f32], keys: &[u16], stride: usize, scale: f32, out: &mut [f32]) {
        scalar::attn_scores_f16(q, keys, stride, scale, out)
    }
    /// See [`scalar::attn_mix_f16`].
    fn attn_mix_f16(&self, probs: &[f32], values: &[u16], stride: usize, out: &mut [f32]) {
        scalar::attn_mix_f16(probs, values, stride, out)
    }
    /// See [`scalar::softmax`].
    fn softmax(&self, x: &mut [f32]) {
        scalar::softmax(x)
    }
}

/// The reference kernel set.
pub struct Scalar;

impl Kernels for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }
    fn quantize_acts(&self, x: &[f32], cols: usize, out: &mut QuantActs) {
        scalar::quantize_acts(x, cols, out)
    }
    fn ternary_rows(&self, w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
        scalar::ternary_rows(w, a, rows, out)
    }
    fn dense_rows(
        &self,
        w: &DenseMatrix,
        x: &[f32],
        n_tok: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        scalar::dense_rows(w, x, n_tok, rows, out)
    }
}

/// Which kernel set to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChoice {
    /// The best the CPU supports (runtime feature detection).
    Auto,
    Scalar,
}

/// The best kernel set for this CPU.
pub fn detect(choice: KernelChoice) -> Box<dyn Kernels> {
    if choice == KernelChoice::Scalar {
        return Box::new(Scalar);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86::detect() {
        return k;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Box::new(wasm::Simd128::chosen());
    #[allow(unreachable_code)]
    Box::new(Scalar)
}

/// The kernel sets a build's self-test checks: the detected one, or on the relaxed wasm
/// build both ways of summing integer products (the detected set is one of them; which
/// one a load uses is timed, see `wasm::choose_dot_sums`).
pub fn self_test_sets() -> Vec<Box<dyn Kernels>> {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    let sets = [wasm::DotSums::Lanes16, wasm::DotSums::Lanes32]
        .into_iter()
        .map(|sums| Box::new(wasm::Simd128 { sums }) as Box<dyn Kernels>)
        .collect();
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    let sets = vec![detect(KernelChoice::Auto)];
    sets
}

/// Kernels plus the threads to run them on.
pub struct Cpu {
    pub kernels: Box<dyn Kernels>,
    #[cfg(feature = "threads")]
    threads: usize,
    #[cfg(feature = "threads")]
    pool: Option<Pool>,
}

#[cfg(feature = "threads")]
enum Pool {
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Own(rayon::ThreadPool),
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Global,
}

impl Cpu {
    pub fn new(choice: KernelChoice, threads: usize) -> Cpu {
        Cpu::with_kernels(detect(choice), threads)
    }

    /// The same kernels on `threads` threads from here on.
    pub fn set_threads(&mut self, threads: usize) {
        let kernels = std::mem::replace(&mut self.kernels, Box::new(Scalar));
        *self = Cpu::with_kernels(kernels, threads);
    }

    #[cfg_attr(not(feature = "threads"), allow(unused_variables))]
    fn with_kernels(kernels: Box<dyn Kernels>, threads: usize) -> Cpu {
        let threads = threads.max(1);
        Cpu {
            kernels,
            #[cfg(feature = "threads")]
            threads,
            #[cfg(feature = "threads")]
            pool: (threads > 1).then(|| {
                // WebAssembly cannot start threads itself: its pool is rayon's global
                // one, whose threads JavaScript started (web workers on a shared memory).
                #[cfg(target_arch = "wasm32")]
                return Pool::Global;
                #[cfg(not(target_arch = "wasm32"))]
                Pool::Own(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .expect("building a thread pool"),
                )
            }),
        }
    }

    pub fn threads(&self) -> usize {
        #[cfg(feature = "threads")]
        return self.threads;
        #[cfg(not(feature = "threads"))]
        return 1;
    }

    pub fn quantize(&self, x: &[f32], cols: usize, out: &mut QuantActs) {
        self.kernels.quantize_acts(x, cols, out)
    }

    /// `out[t * rows + r]` = Σ_c w[r][c] · a[t][c] (dequantized), for every token.
    pub fn ternary_matmul(
        &self,
        w: &TernaryMatrix,
        a: &QuantActs,
        out: &mut [f32],
        tile: &mut Vec<f32>,
    ) {
        self.run_rows(w.rows, a.n_tok, out, tile, |rows, o| {
            self.kernels.ternary_rows(w, a, rows, o)
        });
    }

    /// An int8 or int4 matrix (`DenseType::I8` / `I4`) × int8 activations.
    pub fn quantized_matmul(
        &self,
        w: &DenseMatrix,
        a: &QuantActs,
        out: &mut [f32],
        tile: &mut Vec<f32>,
    ) {
        let int4 = w.ty == crate::formats::DenseType::I4;
        self.run_rows(w.rows, a.n_tok, out, tile, |rows, o| {
            if int4 {
                self.kernels.int4_rows(w, a, rows, o)
            } else {
                self.kernels.int8_rows(w, a, rows, o)
            }
        });
    }

    pub fn dense_matmul(
        &self,
        w: &DenseMatrix,
        x: &[f32],
        n_tok: usize,
        out: &mut [f32],
        tile: &mut Vec<f32>,
    ) {
        self.run_rows(w.rows, n_tok, out, tile, |rows, o| {
            self.kernels.dense_rows(w, x, n_tok, rows, o)
        });
    }

    /// Splits `n_rows` across threads, then transposes the row-major tile into token-major `out`.
    fn run_rows(
        &self,
        n_rows: usize,
        n_tok: usize,
        out: &mut [f32],
        tile: &mut Vec<f32>,
        f: impl Fn(Range<usize>, &mut [f32]) + Sync,
    ) {
        assert_eq!(out.len(), n_rows * n_tok);
        let target: &mut [f32] = if n_tok == 1 {
            out
        } else {
            tile.resize(n_rows * n_tok, 0.0);
            tile
        };
        self.for_row_chunks(n_rows, n_tok, target, &f);
        if n_tok > 1 {
            for r in 0..n_rows {
                for t in 0..n_tok {
                    out[t * n_rows + r] = tile[r * n_tok + t];
                }
            }
        }
    }

    #[cfg_attr(not(feature = "threads"), allow(unused_variables))]
    fn for_row_chunks(
        &self,
        n_rows: usize,
        n_tok: usize,
        target: &mut [f32],
        f: &(impl Fn(Range<usize>, &mut [f32]) + Sync),
    ) {
        #[cfg(feature = "threads")]
        if let Some(pool) = &self.pool {
            use rayon::prelude::*;
            // Several chunks per thread so a slow core does not hold everyone back.
            let chunk_rows = n_rows.div_ceil(self.threads * 4).max(16);
            let mut run = || {
                target
                    .par_chunks_mut(chunk_rows * n_tok)
                    .enumerate()
                    .for_each(|(i, o)| {
                        let r0 = i * chunk_rows;
                        f(r0..(r0 + chunk_rows).min(n_rows), o)
                    })
            };
            match pool {
                Pool::Own(p) => p.install(run),
                Pool::Global => run(),
            }
            return;
        }
        f(0..n_rows, target);
    }
}

#[cfg(test)]
mod tests;
