//! Scalar reference kernels: the source of truth for every op.

use super::QuantActs;
use crate::formats::dense::{i4_value, DenseType};
use crate::formats::{i2s, DenseMatrix, TernaryMatrix};
use half::{bf16, f16};
use std::ops::Range;

/// Per-token absmax int8 quantization (BitNet's activation scheme).
pub fn quantize_acts(x: &[f32], cols: usize, out: &mut QuantActs) {
    let n_tok = out.reset(x.len(), cols);
    for t in 0..n_tok {
        let row = &x[t * cols..(t + 1) * cols];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max == 0.0 || !max.is_finite() {
            out.zero_token(t);
            continue;
        }
        let q = &mut out.q[t * cols..(t + 1) * cols];
        let s = 127.0 / max;
        let mut sum = 0i32;
        for (o, &v) in q.iter_mut().zip(row) {
            *o = quantize_one(v, s);
            sum += *o as i32;
        }
        out.inv_scale[t] = max / 127.0;
        out.sum[t] = sum;
    }
}

#[inline]
pub fn quantize_one(v: f32, s: f32) -> i8 {
    (v * s).round_ties_even().clamp(-128.0, 127.0) as i8
}

/// Σ code·q over one row of I2_S-layout codes (codes are t+1).
pub fn code_dot(codes: &[u8], q: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (blk, qb) in codes
        .chunks_exact(i2s::BLOCK_BYTES)
        .zip(q.chunks_exact(i2s::BLOCK))
    {
        acc += block_code_dot(blk, qb);
    }
    acc
}

fn block_code_dot(blk: &[u8], qb: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (b, &byte) in blk.iter().enumerate() {
        acc += (byte >> 6 & 3) as i32 * qb[b] as i32
            + (byte >> 4 & 3) as i32 * qb[32 + b] as i32
            + (byte >> 2 & 3) as i32 * qb[64 + b] as i32
            + (byte & 3) as i32 * qb[96 + b] as i32;
    }
    acc
}

pub fn ternary_rows(w: &TernaryMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
    let n_tok = a.n_tok;
    for (i, r) in rows.enumerate() {
        let codes = w.row_codes(r);
        for t in 0..n_tok {
            let q = a.token(t);
            let y = match &w.scale {
                crate::formats::TernaryScale::PerTensor(s) => {
                    (code_dot(codes, q) - a.sum[t]) as f32 * s
                }
                crate::formats::TernaryScale::PerBlock(_) => codes
                    .chunks_exact(i2s::BLOCK_BYTES)
                    .zip(q.chunks_exact(i2s::BLOCK))
                    .enumerate()
                    .map(|(b, (blk, qb))| {
                        let qsum: i32 = qb.iter().map(|&v| v as i32).sum();
                        (block_code_dot(blk, qb) - qsum) as f32 * w.block_scale(r, b)
                    })
                    .sum(),
            };
            out[i * n_tok + t] = y * a.inv_scale[t];
        }
    }
}

/// Exact (f32 activation) ternary matmul, token-major output `out[t * rows + r]`.
pub fn ternary_matmul_f32(w: &TernaryMatrix, x: &[f32], n_tok: usize, out: &mut [f32]) {
    let cols = w.cols;
    for r in 0..w.rows {
        let codes = w.row_codes(r);
        for t in 0..n_tok {
            let xr = &x[t * cols..(t + 1) * cols];
            let mut y = 0f32;
            for (b, (blk, xb)) in codes
                .chunks_exact(i2s::BLOCK_BYTES)
                .zip(xr.chunks_exact(i2s::BLOCK))
                .enumerate()
            {
                let mut acc = 0f32;
                for (i, &xv) in xb.iter().enumerate() {
                    acc += (i2s::code_at(blk, i) as f32 - 1.0) * xv;
                }
                y += acc * w.block_scale(r, b);
            }
            out[t * w.rows + r] = y;
        }
    }
}

/// int8 weights (per-row scales) × int8 activations (per-token scales).
pub fn int8_rows(w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
    let n_tok = a.n_tok;
    for (i, r) in rows.enumerate() {
        let wr = w.row_bytes(r);
        for t in 0..n_tok {
            let dot: i32 = wr
                .iter()
                .zip(a.token(t))
                .map(|(&q, &x)| q as i8 as i32 * x as i32)
                .sum();
            out[i * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
        }
    }
}

/// int4 weights (per-row scales, [`DenseType::I4`]'s nibble order) × int8 activations
/// (per-token scales).
pub fn int4_rows(w: &DenseMatrix, a: &QuantActs, rows: Range<usize>, out: &mut [f32]) {
    let n_tok = a.n_tok;
    for (i, r) in rows.enumerate() {
        let wr = w.row_bytes(r);
        for t in 0..n_tok {
            let dot: i32 = a
                .token(t)
                .iter()
                .enumerate()
                .map(|(c, &x)| i4_value(wr, c) as i32 * x as i32)
                .sum();
            out[i * n_tok + t] = dot as f32 * w.row_scales[r] * a.inv_scale[t];
        }
    }
}

pub fn dense_rows(w: &DenseMatrix, x: &[f32], n_tok: usize, rows: Range<usize>, out: &mut [f32]) {
    let cols = w.cols;
    for (i, r) in rows.enumerate() {
        let wb = w.row_bytes(r);
        for t in 0..n_tok {
            let xr = &x[t * cols..(t + 1) * cols];
            let y: f32 = match w.ty {
                DenseType::F32 => wb
                    .chunks_exact(4)
                    .zip(xr)
                    .map(|(b, &xv)| f32::from_le_bytes(b.try_into().unwrap()) * xv)
                    .sum(),
                DenseType::F16 => wb
                    .chunks_exact(2)
                    .zip(xr)
                    .map(|(b, &xv)| f16::from_le_bytes([b[0], b[1]]).to_f32() * xv)
                    .sum(),
                DenseType::BF16 => wb
                    .chunks_exact(2)
                    .zip(xr)
                    .map(|(b, &xv)| bf16::from_le_bytes([b[0], b[1]]).to_f32() * xv)
                    .sum(),
                DenseType::I8 => {
                    wb.iter()
                        .zip(xr)
                        .map(|(&q, &xv)| q as i8 as f32 * xv)
                        .sum::<f32>()
                        * w.row_scales[r]
                }
                DenseType::I4 => {
                    xr.iter()
                        .enumerate()
                        .map(|(c, &xv)| i4_value(wb, c) as f32 * xv)
                        .sum::<f32>()
                        * w.row_scales[r]
                }
            };
            out[i * n_tok + t] = y;
        }
    }
}

/// `out = x / sqrt(mean(x²) + eps) ⊙ weight`, row by row.
pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let inv = rms_inv(xr, eps);
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * inv * g;
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)` of one row: squares summed in order in f64 (SIMD
/// kernels call this too, so that every build scales by the same float).
pub fn rms_inv(x: &[f32], eps: f32) -> f32 {
    let ms = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64;
    (1.0 / (ms + eps as f64).sqrt()) as f32
}

/// NeoX rotary embedding on one head vector: pairs (i, i + n_rot/2).
pub fn rope_neox(head: &mut [f32], pos: usize, n_rot: usize, theta_base: f32) {
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    rope_angles(pos, n_rot, theta_base, &mut cos, &mut sin);
    rope_apply(head, &cos, &sin);
}

/// The cosines and sines of NeoX RoPE's angles pos·θ^(−2i/n_rot), one per pair i:
/// the same for every head at one position, so computed once per position.
pub fn rope_angles(
    pos: usize,
    n_rot: usize,
    theta_base: f32,
    cos: &mut Vec<f64>,
    sin: &mut Vec<f64>,
) {
    let half = n_rot / 2;
    cos.clear();
    sin.clear();
    for i in 0..half {
        let freq = (theta_base as f64).powf(-2.0 * i as f64 / n_rot as f64);
        let (s, c) = (pos as f64 * freq).sin_cos();
        cos.push(c);
        sin.push(s);
    }
}

/// Rotates the pairs (i, i + cos.len()) of one head by [`rope_angles`]' angles.
pub fn rope_apply(head: &mut [f32], cos: &[f64], sin: &[f64]) {
    rope_apply_from(head, cos, sin, 0)
}

/// [`rope_apply`] for the pairs from `first` on (a SIMD kernel's tail).
pub fn rope_apply_from(head: &mut [f32], cos: &[f64], sin: &[f64], first: usize) {
    let half = cos.len();
    for i in first..half {
        let (a, b) = (head[i] as f64, head[i + half] as f64);
        head[i] = (a * cos[i] - b * sin[i]) as f32;
        head[i + half] = (a * sin[i] + b * cos[i]) as f32;
    }
}

/// Attention scores of one query head: `out[j] = q · k_j · scale`, key j being
/// `keys[j * stride..][..q.len()]` (a head's slice of the KV cache).
pub fn attn_scores(q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(q, &keys[j * stride..j * stride + q.len()]) * scale;
    }
}

/// The attention-weighted sum `out = Σ_j probs[j] · v_j`, value j being
/// `values[j * stride..][..out.len()]`.
pub fn attn_mix(probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (j, &p) in probs.iter().enumerate() {
        let v = &values[j * stride..j * stride + out.len()];
        for (o, &vv) in out.iter_mut().zip(v) {
            *o += p * vv;
        }
    }
}

/// [`attn_scores`] over keys kept in f16 (as bits): each key element is widened to f32
/// exactly, then summed in the same order.
pub fn attn_scores_f16(q: &[f32], keys: &[u16], stride: usize, scale: f32, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        let k = &keys[j * stride..j * stride + q.len()];
        let d: f32 = q
            .iter()
            .zip(k)
            .map(|(x, &h)| x * f16::from_bits(h).to_f32())
            .sum();
        *o = d * scale;
    }
}

/// [`attn_mix`] over values kept in f16 (as bits).
pub fn attn_mix_f16(probs: &[f32], values: &[u16], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (j, &p) in probs.iter().enumerate() {
        let v = &values[j * stride..j * stride + out.len()];
        for (o, &h) in out.iter_mut().zip(v) {
            *o += p * f16::from_bits(h).to_f32();
        }
    }
}

/// In-place numerically stable softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
