//! The timing loop shared by `bitnet bench` and the wasm `Engine.benchmark`: prefill a
//! fixed prompt, then decode greedily, on a backend whose cache is emptied first.

use crate::error::Result;
use crate::model::{Backend, Logits};
use web_time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Speed {
    pub prefill_tps: f64,
    pub decode_tps: f64,
}

pub fn measure(
    backend: &mut dyn Backend,
    prompt_tokens: usize,
    gen_tokens: usize,
) -> Result<Speed> {
    let n_vocab = backend.n_vocab() as u32;
    // Fixed pseudo-random ids: the speed does not depend on which tokens they are.
    let prompt: Vec<u32> = (0..prompt_tokens as u32)
        .map(|i| (i * 7919 + 13) % n_vocab)
        .collect();
    backend.truncate(0);
    let t = Instant::now();
    let mut logits = backend.forward(&prompt, Logits::Last)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..gen_tokens {
        let next = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        logits = backend.forward(&[next as u32], Logits::Last)?;
    }
    let decode_s = t.elapsed().as_secs_f64();
    Ok(Speed {
        prefill_tps: prompt_tokens as f64 / prefill_s,
        decode_tps: gen_tokens as f64 / decode_s,
    })
}
