//! Causal attention of each query head over the KV cache (grouped-query: K/V heads
//! shared by `n_head / n_head_kv` query heads), scores kept in a scratch buffer.

use super::{bindings, params};

pub(in crate::gpu) const WGSL: &str = include_str!("attention.wgsl");

params! {
    /// Causal attention over the KV cache.
    AttnParams in [("attention", WGSL)] {
        n_head: u32, n_head_kv: u32, head_dim: u32, n_ctx: u32,
        scale: f32, _a: u32, _b: u32, _c: u32,
    }
}

bindings! {
    Attention { step: Uniform, p: Uniform, q: Read, kc: Read, vc: Read, scores: ReadWrite, out: ReadWrite }
}

/// One workgroup per (token, query head).
pub(in crate::gpu) fn workgroups(n: usize, n_head: usize) -> usize {
    n * n_head
}
