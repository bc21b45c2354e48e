//! Kernel throughput on 2B4T-sized matrices: `cargo bench -p bitnet-engine --bench kernels`.
//! Prints one JSON line per kernel with the median time and the bytes of weights read per second.

use bitnet_engine::formats::{DenseMatrix, TernaryMatrix};
use bitnet_engine::kernels::{self, KernelChoice, QuantActs};
use std::time::Instant;

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn ternary(rows: usize, cols: usize) -> TernaryMatrix {
    use rand::SeedableRng;
    kernels::selftest::random_ternary(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1), rows, cols)
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    for choice in [KernelChoice::Auto, KernelChoice::Scalar] {
        let cpu = kernels::Cpu::new(choice, 1);
        let name = cpu.kernels.name();
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let reps = if choice == KernelChoice::Scalar {
            3
        } else {
            15
        };
        for (label, rows, cols, n_tok) in [
            ("ffn_up matvec", 6912, 2560, 1),
            ("ffn_down matvec", 2560, 6912, 1),
            ("ffn_up matmul x64", 6912, 2560, 64),
        ] {
            if choice == KernelChoice::Scalar && n_tok > 1 {
                continue;
            }
            let w = ternary(rows, cols);
            let x: Vec<f32> = (0..cols * n_tok)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let mut acts = QuantActs::default();
            cpu.quantize(&x, cols, &mut acts);
            let mut out = vec![0f32; rows * n_tok];
            let mut tile = Vec::new();
            let ms = median_ms(|| cpu.ternary_matmul(&w, &acts, &mut out, &mut tile), reps);
            let gbps = (rows * cols / 4) as f64 / ms / 1e6;
            println!("{{\"kernels\":\"{name}\",\"op\":\"ternary {label}\",\"rows\":{rows},\"cols\":{cols},\"tokens\":{n_tok},\"median_ms\":{ms:.3},\"weight_GBps\":{gbps:.2}}}");
        }
        let (rows, cols) = (
            if choice == KernelChoice::Scalar {
                16032
            } else {
                128256
            },
            2560,
        );
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 64.0)
            .collect();
        let head = DenseMatrix::from_f16(rows, cols, &vals);
        drop(vals);
        let x: Vec<f32> = (0..cols).map(|i| (i % 7) as f32 / 7.0).collect();
        let mut out = vec![0f32; rows];
        let mut tile = Vec::new();
        let ms = median_ms(
            || cpu.dense_matmul(&head, &x, 1, &mut out, &mut tile),
            reps.min(7),
        );
        let gbps = (rows * cols * 2) as f64 / ms / 1e6;
        println!("{{\"kernels\":\"{name}\",\"op\":\"f16 lm head matvec\",\"rows\":{rows},\"cols\":{cols},\"tokens\":1,\"median_ms\":{ms:.3},\"weight_GBps\":{gbps:.2}}}");
        let x: Vec<f32> = (0..2560 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let mut acts = QuantActs::default();
        let ms = median_ms(|| cpu.quantize(&x, 2560, &mut acts), reps);
        println!("{{\"kernels\":\"{name}\",\"op\":\"quantize 64x2560\",\"median_ms\":{ms:.4}}}");
    }
}
