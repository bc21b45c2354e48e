//! Checks a kernel set against the scalar reference on random shapes, odd sizes
//! and tails. Native builds also run property tests (see `tests.rs`); this
//! dependency-free version runs anywhere, including inside wasm under Node and
//! in a browser.

use super::{scalar, Kernels, QuantActs};
use crate::formats::{i2s, DenseMatrix, DenseType, TernaryMatrix, TernaryScale};
use crate::gguf::{AlignedBuf, GgmlType, Tensor, TensorInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A random `rows × cols` ternary matrix in the kernel layout (also used by tests and benches).
pub fn random_ternary(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> TernaryMatrix {
    let codes: Vec<u8> = (0..rows * cols).map(|_| rng.random_range(0..3u8)).collect();
    ternary_from_codes(&codes, rows, cols, rng.random_range(0.01f32..1.0))
}

fn ternary_from_codes(codes: &[u8], rows: usize, cols: usize, scale: f32) -> TernaryMatrix {
    let bytes = i2s::quantize(codes, scale);
    TernaryMatrix::from_tensor(Tensor {
        info: TensorInfo {
            name: "selftest".into(),
            ty: GgmlType::I2S,
            dims: vec![cols as u64, rows as u64],
            offset: 0,
            nbytes: bytes.len() as u64,
        },
        data: AlignedBuf::from_slice(&bytes),
    })
    .expect("a well-formed random I2_S tensor")
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) -> Result<(), String> {
    close_within(what, got, want, |_, w| tol * (1.0 + w.abs()))
}

/// `got` equals `want` within `bound(i, want[i])` where finite, exactly elsewhere.
fn close_within(
    what: &str,
    got: &[f32],
    want: &[f32],
    bound: impl Fn(usize, f32) -> f32,
) -> Result<(), String> {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let off = if w.is_finite() {
            (g - w).abs() > bound(i, *w)
        } else {
            // Infinities must match exactly, NaN with NaN.
            !(g == w || (g.is_nan() && w.is_nan()))
        };
        if off {
            return Err(format!("{what}: element {i}: {g} vs reference {w}"));
        }
    }
    Ok(())
}

/// Runs `cases` random comparisons of `k` against the scalar kernels.
pub fn check_against_scalar(k: &dyn Kernels, cases: usize, seed: u64) -> Result<(), String> {
    check_extremes(k)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..cases {
        let cols = 128 * rng.random_range(1..9usize);
        let rows = rng.random_range(1..24usize);
        let n_tok = rng.random_range(1..11usize);
        let spread = rng.random_range(0.0f32..20.0);
        let x: Vec<f32> = (0..cols * n_tok)
            .map(|_| rng.random_range(-spread..=spread))
            .collect();

        let odd_cols = rng.random_range(1..300usize);
        let y: Vec<f32> = (0..odd_cols * 2)
            .map(|_| rng.random_range(-spread..=spread))
            .collect();
        let (mut a, mut b) = (QuantActs::default(), QuantActs::default());
        k.quantize_acts(&y, odd_cols, &mut a);
        scalar::quantize_acts(&y, odd_cols, &mut b);
        if a.q != b.q || a.sum != b.sum || a.inv_scale != b.inv_scale {
            return Err(format!(
                "case {case}: quantize differs ({odd_cols} columns)"
            ));
        }

        let mut w = random_ternary(&mut rng, rows, cols);
        if case % 4 == 3 {
            w.scale = TernaryScale::PerBlock(
                (0..rows * cols / 128)
                    .map(|_| rng.random_range(0.1f32..1.0))
                    .collect(),
            );
        }
        let mut acts = QuantActs::default();
        scalar::quantize_acts(&x, cols, &mut acts);
        // Some calls start past row 0, as a thread's share of the rows does.
        let first = rng.random_range(0..rows);
        let n = (rows - first) * n_tok;
        let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
        k.ternary_rows(&w, &acts, first..rows, &mut got);
        scalar::ternary_rows(&w, &acts, first..rows, &mut want);
        close(
            &format!("case {case}: ternary rows {first}..{rows} x{cols}x{n_tok}"),
            &got,
            &want,
            1e-6,
        )?;

        let dense_cols = rng.random_range(1..300usize);
        // Mostly ordinary weights, some f16 subnormals and some near f16's maximum;
        // now and then an infinity (the fast f16 paths must notice it).
        let mut vals: Vec<f32> = (0..rows * dense_cols)
            .map(|_| match rng.random_range(0..10) {
                0 => rng.random_range(-5e-5f32..5e-5),
                1 => rng.random_range(-60000f32..60000.0),
                _ => rng.random_range(-1.0f32..1.0),
            })
            .collect();
        if case % 8 == 4 {
            let i = rng.random_range(0..vals.len());
            vals[i] = f32::INFINITY;
        }
        let x_spread = if case % 8 == 6 { 1e5f32 } else { 2.0 };
        let d = if case % 2 == 0 {
            DenseMatrix::from_f16(rows, dense_cols, &vals)
        } else {
            DenseMatrix::from_f32(rows, dense_cols, &vals)
        };
        let xd: Vec<f32> = (0..dense_cols * 2)
            .map(|_| rng.random_range(-x_spread..x_spread))
            .collect();
        let (mut got, mut want) = (vec![0f32; rows * 2], vec![0f32; rows * 2]);
        k.dense_rows(&d, &xd, 2, 0..rows, &mut got);
        scalar::dense_rows(&d, &xd, 2, 0..rows, &mut want);
        // Huge weights cancel: a sum's rounding error scales with Σ|w·x|, not with
        // the sum, so that is what the tolerance is relative to.
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let d_abs = if case % 2 == 0 {
            DenseMatrix::from_f16(rows, dense_cols, &abs(&vals))
        } else {
            DenseMatrix::from_f32(rows, dense_cols, &abs(&vals))
        };
        let mut mag = vec![0f32; rows * 2];
        scalar::dense_rows(&d_abs, &abs(&xd), 2, 0..rows, &mut mag);
        let tol = 1e-5 * (dense_cols as f32).sqrt();
        close_within(
            &format!("case {case}: dense {rows}x{dense_cols}"),
            &got,
            &want,
            |i, w| tol * mag[i].max(1.0 + w.abs()),
        )?;

        check_attention_ops(k, &mut rng, case, spread)?;

        if case % 8 == 4 {
            // An infinite weight makes the int8 copy meaningless.
            continue;
        }
        let mut xq = QuantActs::default();
        scalar::quantize_acts(&xd, dense_cols, &mut xq);
        // The int4 head's rows are whole 128-value blocks and a tail: give it more columns,
        // and one to three tokens (decode's one, and a prefill's pairs and odd last one).
        let cols4 = dense_cols + 128 * (case % 4);
        let n4 = 1 + case % 3;
        let xd4: Vec<f32> = (0..cols4 * n4)
            .map(|_| rng.random_range(-x_spread..x_spread))
            .collect();
        let mut xq4 = QuantActs::default();
        scalar::quantize_acts(&xd4, cols4, &mut xq4);
        let vals4: Vec<f32> = (0..rows * cols4)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut q8 = d.clone();
        q8.quantize_rows_int8();
        let mut q4 = DenseMatrix::from_f16(rows, cols4, &vals4);
        q4.quantize_rows(DenseType::I4);
        for (m, xq) in [(&q8, &xq), (&q4, &xq4)] {
            let what = format!(
                "case {case}: {:?} {rows}x{}, {} tokens",
                m.ty, m.cols, xq.n_tok
            );
            check_quantized_rows(k, m, xq, &what)?;
        }
    }
    Ok(())
}

/// The integer matmuls where their sums are largest: every weight at one extreme (ternary
/// +1 or −1, int8 ±127, int4 ±7) against activations all at ±127, on rows long enough
/// that a kernel summing in narrow lanes must widen them in time (the 2B4T's rows are
/// 2560 and 6912 long).
fn check_extremes(k: &dyn Kernels) -> Result<(), String> {
    let cols = 128 * 54;
    for (code, x) in [(2u8, 1f32), (2, -1.0), (0, 1.0), (0, -1.0)] {
        let w = ternary_from_codes(&vec![code; 3 * cols], 3, cols, 0.5);
        // Tokens all at the extreme and alternating in sign, by turns: one (decode), two
        // and five (a prompt's tiles of four and two, and an odd last token).
        let xs: Vec<f32> = (0..5 * cols)
            .map(|i| {
                if (i / cols) % 2 == 0 || i % 2 == 0 {
                    x
                } else {
                    -x
                }
            })
            .collect();
        for n_tok in [1, 2, 5] {
            let mut acts = QuantActs::default();
            scalar::quantize_acts(&xs[..n_tok * cols], cols, &mut acts);
            let (mut got, mut want) = (vec![0f32; 3 * n_tok], vec![0f32; 3 * n_tok]);
            k.ternary_rows(&w, &acts, 0..3, &mut got);
            scalar::ternary_rows(&w, &acts, 0..3, &mut want);
            close(
                &format!("ternary rows of code {code} against x = {x}, {n_tok} tokens"),
                &got,
                &want,
                1e-6,
            )?;
        }
    }
    // The int8 and int4 heads the same way: rows of one extreme value (q = ±127, ±7).
    for (v, x) in [(1f32, 1f32), (-1.0, 1.0), (1.0, -1.0)] {
        let xs: Vec<f32> = vec![x; 2 * cols];
        let mut acts = QuantActs::default();
        scalar::quantize_acts(&xs, cols, &mut acts);
        for to in [DenseType::I8, DenseType::I4] {
            let mut m = DenseMatrix::from_f32(2, cols, &vec![v; 2 * cols]);
            m.quantize_rows(to);
            check_quantized_rows(k, &m, &acts, &format!("{to:?} rows of {v} against x = {x}"))?;
        }
    }
    Ok(())
}

/// `k`'s rows of a quantized head (`m` in int8 or int4) against the scalar kernel's.
fn check_quantized_rows(
    k: &dyn Kernels,
    m: &DenseMatrix,
    x: &QuantActs,
    what: &str,
) -> Result<(), String> {
    let n = m.rows * x.n_tok;
    let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
    if m.ty == DenseType::I4 {
        k.int4_rows(m, x, 0..m.rows, &mut got);
        scalar::int4_rows(m, x, 0..m.rows, &mut want);
    } else {
        k.int8_rows(m, x, 0..m.rows, &mut got);
        scalar::int8_rows(m, x, 0..m.rows, &mut want);
    }
    close(what, &got, &want, 1e-6)
}

/// RMSNorm, RoPE and one head's attention on a random head size (the usual 64 and
/// 128, or anything) over a random number of cached positions. All four must match to
/// the bit: a greedy reply must not depend on the build.
fn check_attention_ops(
    k: &dyn Kernels,
    rng: &mut ChaCha8Rng,
    case: usize,
    spread: f32,
) -> Result<(), String> {
    let d = [64, 128, rng.random_range(1..200usize)][case % 3];
    let n_keys = rng.random_range(1..40usize);
    // Other heads sit between one position's values and the next.
    let stride = d + 16 * rng.random_range(0..3usize);
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-spread..=spread)).collect() };
    let cache = random(n_keys * stride);
    let q = random(d);
    let weight = random(d);
    let what = |op: &str| format!("case {case}: {op}, {n_keys} positions of {d}");

    let (mut got, mut want) = (vec![0f32; n_keys * d], vec![0f32; n_keys * d]);
    k.rmsnorm(&cache[..n_keys * d], &weight, 1e-5, &mut got);
    scalar::rmsnorm(&cache[..n_keys * d], &weight, 1e-5, &mut want);
    if got != want {
        return Err(what("rmsnorm differs"));
    }

    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    scalar::rope_angles(
        rng.random_range(0..5000),
        d / 2 * 2,
        10000.0,
        &mut cos,
        &mut sin,
    );
    let (mut got, mut want) = (q.clone(), q.clone());
    k.rope(&mut got, &cos, &sin);
    scalar::rope_apply(&mut want, &cos, &sin);
    if got != want {
        return Err(what("rope differs"));
    }

    let scale = 1.0 / (d as f32).sqrt();
    let (mut got, mut want) = (vec![0f32; n_keys], vec![0f32; n_keys]);
    k.attn_scores(&q, &cache, stride, scale, &mut got);
    scalar::attn_scores(&q, &cache, stride, scale, &mut want);
    if got != want {
        return Err(what("attention scores differ"));
    }

    let probs: Vec<f32> = (0..n_keys).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let (mut got, mut want) = (vec![1f32; d], vec![0f32; d]);
    k.attn_mix(&probs, &cache, stride, &mut got);
    scalar::attn_mix(&probs, &cache, stride, &mut want);
    if got != want {
        return Err(what("attention-weighted sum differs"));
    }

    // The same over an f16 cache (the f16 KV cache's kernels).
    let cache16: Vec<u16> = cache
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let (mut got, mut want) = (vec![0f32; n_keys], vec![0f32; n_keys]);
    k.attn_scores_f16(&q, &cache16, stride, scale, &mut got);
    scalar::attn_scores_f16(&q, &cache16, stride, scale, &mut want);
    if got != want {
        return Err(what("attention scores over f16 keys differ"));
    }
    let (mut got, mut want) = (vec![1f32; d], vec![0f32; d]);
    k.attn_mix_f16(&probs, &cache16, stride, &mut got);
    scalar::attn_mix_f16(&probs, &cache16, stride, &mut want);
    if got != want {
        return Err(what("attention-weighted sum over f16 values differs"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn detected_kernels_pass_the_self_test() {
        for k in super::super::self_test_sets() {
            super::check_against_scalar(k.as_ref(), 200, 1).unwrap();
        }
    }
}
