//! A ternary matrix (2-bit codes, per-tensor or per-block scales) times int8
//! activations: the BitLinear layers. Two shaders with one signature, so one bind group
//! serves both: the matvec (decode: one workgroup per row) and the tiled matmul
//! (prompts: each workgroup stages 8 tokens and reads its rows' weights once for all 8).

use super::{bindings, params, WG};

pub(in crate::gpu) const MATVEC_WGSL: &str = include_str!("ternary_matvec.wgsl");
pub(in crate::gpu) const MATMUL_WGSL: &str = include_str!("ternary_matmul.wgsl");

/// Tokens per workgroup of the tiled matmul (`TT` in ternary_matmul.wgsl).
pub(in crate::gpu) const TILE_TOKENS: usize = 8;

params! {
    /// A ternary matrix (2-bit codes) × int8 activations.
    TernaryParams in [("ternary_matvec", MATVEC_WGSL), ("ternary_matmul", MATMUL_WGSL)] {
        rows: u32, cols: u32, per_block: u32, out_at_p0: u32,
    }
}

bindings! {
    Ternary { step: Uniform, p: Uniform, w: Read, scales: Read, q: Read, act_meta: Read, out: ReadWrite }
}

/// The matvec: one workgroup per output row.
pub(in crate::gpu) fn matvec_workgroups(rows: usize) -> usize {
    rows
}

/// The tiled matmul: `WG` rows × `TILE_TOKENS` tokens per workgroup.
pub(in crate::gpu) fn matmul_workgroups(rows: usize, n: usize) -> (u32, u32) {
    (rows.div_ceil(WG) as u32, n.div_ceil(TILE_TOKENS) as u32)
}
