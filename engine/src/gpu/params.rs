//! The uniform blocks the shaders read, one Rust struct per WGSL struct: same name, same
//! fields in the same order, written to their buffers byte for byte (`bytemuck`). The
//! test below parses each shader's struct and checks names, types and offsets, so a field
//! added on one side only fails a test instead of shifting every field after it.

use bytemuck::{Pod, Zeroable};

/// A uniform block of one or more shaders. Its constants describe the layout for the
/// test below.
#[cfg_attr(not(test), allow(dead_code))]
pub trait Params: Pod {
    /// The shader sources that declare this struct under the same name.
    const SHADERS: &'static [(&'static str, &'static str)];
    /// `(name, byte offset, type)` of each field, in order.
    const FIELDS: &'static [(&'static str, usize, &'static str)];
    const NAME: &'static str;
}

macro_rules! params {
    ($(#[$doc:meta])* $name:ident in [$($shader:literal),+] { $($field:ident: $ty:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $name {
            $(pub $field: $ty),+
        }
        impl Params for $name {
            const SHADERS: &'static [(&'static str, &'static str)] =
                &[$(($shader, include_str!(concat!("shaders/", $shader, ".wgsl")))),+];
            const FIELDS: &'static [(&'static str, usize, &'static str)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),+];
            const NAME: &'static str = stringify!($name);
        }
    };
}

params! {
    /// The batch every shader of one submission works on.
    Step in ["common"] { n_tok: u32, p0: u32, last: u32, _pad: u32 }
}
params! {
    /// Elementwise ops over `cols` values per token (residual add, dequantization).
    ColsParams in ["add", "dequant"] { cols: u32, _a: u32, _b: u32, _c: u32 }
}
params! {
    /// The FFN's gated activation: ReLU² (`silu` 0) or SiLU (1).
    GateParams in ["gate"] { cols: u32, silu: u32, _b: u32, _c: u32 }
}
params! {
    /// RMSNorm, then (with `quantize`) int8 quantization of each row.
    NormParams in ["norm_quant"] { cols: u32, eps: f32, quantize: u32, last_only: u32 }
}
params! {
    /// A ternary matrix (2-bit codes) × int8 activations.
    TernaryParams in ["ternary_matvec", "ternary_matmul"] { rows: u32, cols: u32, per_block: u32, out_at_p0: u32 }
}
params! {
    /// An f32 / f16 matrix × f32 activations; also the float LM head, in row chunks.
    DenseParams in ["dense_matmul"] {
        rows: u32, cols: u32, f16: u32, out_stride: u32,
        row_offset: u32, last_only: u32, out_scale: f32, out_at_p0: u32,
    }
}
params! {
    /// The int8 LM head (per-row scales) × int8 activations, in row chunks.
    Int8Params in ["int8_matmul"] {
        rows: u32, cols: u32, out_stride: u32, row_offset: u32,
        last_only: u32, _a: u32, _b: u32, _c: u32,
    }
}
params! {
    /// NeoX RoPE from the position table, on Q (rows from 0) or K (rows from p0).
    RopeParams in ["rope"] { n_heads: u32, head_dim: u32, n_rot: u32, at_p0: u32 }
}
params! {
    /// Causal attention over the KV cache.
    AttnParams in ["attention"] {
        n_head: u32, n_head_kv: u32, head_dim: u32, n_ctx: u32,
        scale: f32, _a: u32, _b: u32, _c: u32,
    }
}
params! {
    /// Token embedding rows (f32, f16 or int8 with row scales) from one chunk of the table.
    EmbedParams in ["embed"] { cols: u32, kind: u32, row_start: u32, row_count: u32 }
}
params! {
    /// Top-k of the last row's logits: per segment, then merged.
    TopkParams in ["topk_segments", "topk_merge"] { n: u32, k: u32, seg_len: u32, n_cand: u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, type)` of each field of `struct <name> { … }` in a WGSL source.
    fn wgsl_fields(src: &str, name: &str) -> Vec<(String, String)> {
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let start = code
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let body = &code[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (n, t) = f.split_once(':').unwrap();
                (n.trim().to_string(), t.trim().to_string())
            })
            .collect()
    }

    fn check<P: Params>() {
        // Every field is a 4-byte scalar, so WGSL's offsets are 0, 4, 8, …; a uniform
        // block's size is a multiple of 16.
        assert_eq!(std::mem::size_of::<P>(), 4 * P::FIELDS.len(), "{}", P::NAME);
        assert_eq!(std::mem::size_of::<P>() % 16, 0, "{}", P::NAME);
        for (shader, src) in P::SHADERS {
            let wgsl = wgsl_fields(src, P::NAME);
            let rust: Vec<(String, String)> = P::FIELDS
                .iter()
                .enumerate()
                .map(|(i, &(n, off, t))| {
                    assert_eq!(off, 4 * i, "{}.{n}: offset", P::NAME);
                    (n.to_string(), t.to_string())
                })
                .collect();
            assert_eq!(rust, wgsl, "{} in {shader}.wgsl", P::NAME);
        }
    }

    #[test]
    fn every_uniform_block_matches_its_wgsl_struct() {
        check::<Step>();
        check::<ColsParams>();
        check::<GateParams>();
        check::<NormParams>();
        check::<TernaryParams>();
        check::<DenseParams>();
        check::<Int8Params>();
        check::<RopeParams>();
        check::<AttnParams>();
        check::<EmbedParams>();
        check::<TopkParams>();
    }

    #[test]
    fn the_parser_sees_a_mismatch() {
        let wgsl = "struct RopeParams {\n n_heads: u32, // heads\n n_rot: u32,\n head_dim: u32,\n at_p0: u32,\n}";
        let fields = wgsl_fields(wgsl, "RopeParams");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["n_heads", "n_rot", "head_dim", "at_p0"]);
        let rust: Vec<&str> = RopeParams::FIELDS.iter().map(|f| f.0).collect();
        assert_ne!(names, rust);
    }
}
