//! The timing loop shared by `bitnet bench` and the wasm `Engine.benchmark`: prefill a
//! fixed prompt, then decode greedily, on a backend whose cache is emptied first.

use crate::error::Result;
use crate::model::Backend;
use web_time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Speed {
    pub prefill_tps: f64,
    pub decode_tps: f64,
    /// On a GPU backend: what one decoded token cost it.
    pub decode_gpu: Option<GpuPerToken>,
}

/// One decoded token on a GPU backend, averaged over the decode loop.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GpuPerToken {
    pub submissions: f64,
    pub dispatches: f64,
    /// Time in the compute pass (timestamp queries), when measured.
    pub gpu_ms: Option<f64>,
    /// Wall time per token.
    pub wall_ms: f64,
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
    // Greedy through `forward_top_k(.., 1)`: a GPU backend then reads back one candidate,
    // the CPU backend takes the argmax of its logits as before.
    let best = |top: Vec<(u32, f32)>| top.first().map_or(0, |c| c.0);
    let t = Instant::now();
    let mut next = best(backend.forward_top_k(&prompt, 1)?);
    let prefill_s = t.elapsed().as_secs_f64();
    let before = backend.gpu_counters();
    let t = Instant::now();
    for _ in 0..gen_tokens {
        next = best(backend.forward_top_k(&[next], 1)?);
    }
    let decode_s = t.elapsed().as_secs_f64();
    let per = |x: f64| x / gen_tokens.max(1) as f64;
    let decode_gpu = before
        .zip(backend.gpu_counters())
        .map(|(a, b)| GpuPerToken {
            submissions: per((b.submissions - a.submissions) as f64),
            dispatches: per((b.dispatches - a.dispatches) as f64),
            gpu_ms: a.gpu_ns.zip(b.gpu_ns).map(|(a, b)| per(b - a) / 1e6),
            wall_ms: per(decode_s * 1e3),
        });
    Ok(Speed {
        prefill_tps: prompt_tokens as f64 / prefill_s,
        decode_tps: gen_tokens as f64 / decode_s,
        decode_gpu,
    })
}

/// Decode tokens/s of `backend` over `steps` greedy steps after a warm-up (a two-token
/// prompt and one step: the first submissions compile and upload what a GPU needs), from
/// an empty cache, left empty afterwards. Async, so it also times a browser's WebGPU: the
/// device choice of `auto` compares it with the CPU's.
pub async fn decode_rate(backend: &mut dyn Backend, steps: usize) -> Result<f64> {
    let n_vocab = backend.n_vocab() as u32;
    backend.truncate(0);
    let best = |top: Vec<(u32, f32)>| top.first().map_or(0, |c| c.0);
    let mut next = best(
        backend
            .forward_top_k_async(&[1 % n_vocab, 2 % n_vocab], 1)
            .await?,
    );
    next = best(backend.forward_top_k_async(&[next], 1).await?);
    let t = Instant::now();
    for _ in 0..steps {
        next = best(backend.forward_top_k_async(&[next], 1).await?);
    }
    let secs = t.elapsed().as_secs_f64();
    backend.truncate(0);
    Ok(steps as f64 / secs.max(1e-9))
}
