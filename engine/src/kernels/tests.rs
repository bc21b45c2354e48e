//! Every fast kernel equals the scalar reference on random shapes, odd sizes and tails.

use super::*;
use crate::formats::{DenseMatrix, TernaryMatrix, TernaryScale};
use proptest::prelude::*;

fn ternary(rows: usize, blocks: usize, seed: u64, per_block: bool) -> TernaryMatrix {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut m = super::selftest::random_ternary(&mut rng, rows, blocks * 128);
    if per_block {
        m.scale = TernaryScale::PerBlock(
            (0..rows * blocks)
                .map(|i| 0.1 + (i % 7) as f32 * 0.05)
                .collect(),
        );
    }
    m
}

fn activations(n: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x % 20001) as f32 / 10000.0 - 1.0) * spread
        })
        .collect()
}

fn fast() -> Cpu {
    Cpu::new(KernelChoice::Auto, 1)
}

fn close(a: &[f32], b: &[f32], tol: f32) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        prop_assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "element {}: {} vs {}",
            i,
            x,
            y
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn quantize_matches_reference(cols in 1usize..700, n_tok in 1usize..5, seed in any::<u64>(), spread in 0.0f32..50.0) {
        let x = activations(cols * n_tok, seed, spread);
        let (mut a, mut b) = (QuantActs::default(), QuantActs::default());
        fast().quantize(&x, cols, &mut a);
        scalar::quantize_acts(&x, cols, &mut b);
        prop_assert_eq!(a.q, b.q);
        prop_assert_eq!(a.sum, b.sum);
        prop_assert_eq!(a.inv_scale, b.inv_scale);
    }

    #[test]
    fn ternary_matmul_matches_reference(rows in 1usize..40, blocks in 1usize..12, n_tok in 1usize..20, seed in any::<u64>(), per_block in any::<bool>()) {
        let w = ternary(rows, blocks, seed, per_block);
        let x = activations(w.cols * n_tok, seed ^ 5, 3.0);
        let mut a = QuantActs::default();
        scalar::quantize_acts(&x, w.cols, &mut a);
        let (mut got, mut want) = (vec![0f32; rows * n_tok], vec![0f32; rows * n_tok]);
        fast().ternary_matmul(&w, &a, &mut got, &mut Vec::new());
        Cpu::new(KernelChoice::Scalar, 1).ternary_matmul(&w, &a, &mut want, &mut Vec::new());
        // Integer dot products are exact; only the final float scaling may round differently.
        close(&got, &want, 1e-6)?;
    }

    #[test]
    fn dense_matmul_matches_reference(rows in 1usize..40, cols in 1usize..300, n_tok in 1usize..4, seed in any::<u64>(), f16 in any::<bool>()) {
        let vals = activations(rows * cols, seed, 1.0);
        let w = if f16 { DenseMatrix::from_f16(rows, cols, &vals) } else { DenseMatrix::from_f32(rows, cols, &vals) };
        let x = activations(cols * n_tok, seed ^ 9, 2.0);
        let (mut got, mut want) = (vec![0f32; rows * n_tok], vec![0f32; rows * n_tok]);
        fast().dense_matmul(&w, &x, n_tok, &mut got, &mut Vec::new());
        Cpu::new(KernelChoice::Scalar, 1).dense_matmul(&w, &x, n_tok, &mut want, &mut Vec::new());
        // Different summation order: allow float rounding relative to the sum of |terms|.
        let scale = (cols as f32).sqrt();
        close(&got, &want, 1e-5 * scale)?;
    }

    #[test]
    fn int4_matmul_matches_reference_and_the_dequantized_product(rows in 1usize..24, cols in 1usize..700, n_tok in 1usize..4, seed in any::<u64>()) {
        let mut w = DenseMatrix::from_f32(rows, cols, &activations(rows * cols, seed, 1.0));
        w.quantize_rows(crate::formats::DenseType::I4);
        let x = activations(cols * n_tok, seed ^ 3, 2.0);
        let mut a = QuantActs::default();
        scalar::quantize_acts(&x, cols, &mut a);
        let (mut got, mut want) = (vec![0f32; rows * n_tok], vec![0f32; rows * n_tok]);
        fast().quantized_matmul(&w, &a, &mut got, &mut Vec::new());
        Cpu::new(KernelChoice::Scalar, 1).quantized_matmul(&w, &a, &mut want, &mut Vec::new());
        close(&got, &want, 1e-6)?;
        // The same product in floats: the rows as row_f32 gives them, the activations dequantized.
        let deq: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let mut row = vec![0f32; cols];
                w.row_f32(r, &mut row);
                row
            })
            .collect();
        let mut float = vec![0f32; rows * n_tok];
        Cpu::new(KernelChoice::Scalar, 1).dense_matmul(&DenseMatrix::from_f32(rows, cols, &deq), &a.dequantize(), n_tok, &mut float, &mut Vec::new());
        close(&want, &float, 1e-4)?;
    }
}

#[test]
fn threads_give_the_same_result() {
    let w = ternary(333, 5, 42, false);
    let x = activations(w.cols * 3, 7, 2.0);
    let mut a = QuantActs::default();
    scalar::quantize_acts(&x, w.cols, &mut a);
    let (mut one, mut two) = (vec![0f32; 333 * 3], vec![0f32; 333 * 3]);
    Cpu::new(KernelChoice::Auto, 1).ternary_matmul(&w, &a, &mut one, &mut Vec::new());
    Cpu::new(KernelChoice::Auto, 3).ternary_matmul(&w, &a, &mut two, &mut Vec::new());
    assert_eq!(one, two);
}

#[test]
fn all_zero_activations_quantize_to_zero() {
    let mut a = QuantActs::default();
    fast().quantize(&[0.0; 256], 256, &mut a);
    assert!(a.q.iter().all(|&q| q == 0) && a.inv_scale == [0.0]);
}
