//! RMSNorm of each token's row (`h`), then, with `quantize`, its absmax int8 form (`q`
//! and `act_meta`) for the next BitLinear: one pass over the row instead of two.

use super::{bindings, params};

pub(in crate::gpu) const WGSL: &str = include_str!("norm_quant.wgsl");

params! {
    /// RMSNorm, then (with `quantize`) int8 quantization of each row.
    NormParams in [("norm_quant", WGSL)] { cols: u32, eps: f32, quantize: u32, last_only: u32 }
}

bindings! {
    NormQuant { step: Uniform, p: Uniform, x: Read, w: Read, h: ReadWrite, q: ReadWrite, act_meta: ReadWrite }
}

/// One workgroup per row: `rows` is the batch, or 1 for the last token only.
pub(in crate::gpu) fn workgroups(rows: usize) -> (u32, u32) {
    (rows as u32, 1)
}
