//! The FFN's gated activation: `gate = act(gate) · up`, elementwise.

use super::{bindings, params, per_element};

pub(in crate::gpu) const WGSL: &str = include_str!("gate.wgsl");

params! {
    /// The FFN's gated activation: ReLU² (`silu` 0) or SiLU (1).
    GateParams in [("gate", WGSL)] { cols: u32, silu: u32, _b: u32, _c: u32 }
}

bindings! {
    Gate { step: Uniform, p: Uniform, up: Read, gate: ReadWrite }
}

/// Workgroups for `n` tokens of `cols` values.
pub(in crate::gpu) fn workgroups(n: usize, cols: usize) -> usize {
    per_element(n, cols)
}
