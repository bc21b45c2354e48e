//! Top-k of the last row's logits on the GPU, so only `8·k` bytes come back: the best
//! `k` of each segment of `SEGMENT` logits, then one workgroup merges the candidates.

use super::{bindings, params};

pub(in crate::gpu) const SEGMENTS_WGSL: &str = include_str!("topk_segments.wgsl");
pub(in crate::gpu) const MERGE_WGSL: &str = include_str!("topk_merge.wgsl");

/// Logits per segment (`SEG` in topk_segments.wgsl).
pub(in crate::gpu) const SEGMENT: usize = 1024;
/// The largest `k` the shaders select; larger ones read all logits back.
pub const MAX_TOP_K: usize = 256;

params! {
    /// Top-k of the last row's logits: per segment, then merged.
    TopkParams in [("topk_segments", SEGMENTS_WGSL), ("topk_merge", MERGE_WGSL)] {
        n: u32, k: u32, seg_len: u32, n_cand: u32,
    }
}

bindings! {
    Segments { p: Uniform, logits: Read, cand: ReadWrite }
}

bindings! {
    Merge { p: Uniform, logits: Read, cand: ReadWrite, result: ReadWrite }
}

/// One workgroup per segment of `n_vocab` logits.
pub(in crate::gpu) fn segment_workgroups(n_vocab: usize) -> (u32, u32) {
    (n_vocab.div_ceil(SEGMENT) as u32, 1)
}
