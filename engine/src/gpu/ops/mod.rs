//! The forward pass's compute shaders as units. Each op's file, beside its WGSL, holds
//! the op's uniform block (a `#[repr(C)]` Pod struct named and laid out as in the WGSL),
//! its bindings (a struct with one named buffer per `@binding`, in order, that makes the
//! bind group), and how many workgroups a dispatch needs. The tests below parse every
//! shader and check the Rust side against it: struct fields, offsets, binding names and
//! access, so nothing has to match silently.
//!
//! Every shader gets `common.wgsl` (the batch's [`Step`], the activations' metadata,
//! shared helpers) in front, and its `//#if subgroups` blocks specialized.

pub(super) mod add;
pub(super) mod attention;
pub(super) mod dense;
pub(super) mod dequant;
pub(super) mod embed;
pub(super) mod gate;
pub(super) mod int8;
pub(super) mod norm_quant;
pub(super) mod rope;
pub(super) mod ternary;
pub(super) mod topk;

use bytemuck::Pod;
use wgpu::{BindGroupLayout, ComputePipeline, Device};

/// Threads per workgroup of every shader (`WG` in common.wgsl).
pub(super) const WG: usize = 64;

pub(super) const COMMON: &str = include_str!("common.wgsl");

/// How a shader declares one of its bindings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Access {
    /// `var<uniform>`
    Uniform,
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// A uniform block of one or more shaders. Its constants describe the layout for the
/// tests below.
#[cfg_attr(not(test), allow(dead_code))]
pub(super) trait Params: Pod {
    /// `(file, source)` of the shaders that declare this struct under the same name.
    const SHADERS: &'static [(&'static str, &'static str)];
    /// `(name, byte offset, type)` of each field, in order.
    const FIELDS: &'static [(&'static str, usize, &'static str)];
    const NAME: &'static str;
}

/// A uniform block: `Name in [("file", SOURCE), …] { field: type, … }`.
macro_rules! params {
    ($(#[$doc:meta])* $name:ident in [$(($file:literal, $src:expr)),+] { $($field:ident: $ty:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub(in crate::gpu) struct $name {
            $(pub(in crate::gpu) $field: $ty),+
        }
        impl $crate::gpu::ops::Params for $name {
            const SHADERS: &'static [(&'static str, &'static str)] = &[$(($file, $src)),+];
            const FIELDS: &'static [(&'static str, usize, &'static str)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),+];
            const NAME: &'static str = stringify!($name);
        }
    };
}
pub(super) use params;

/// A shader's bindings: `Name { wgsl_name: Access, … }` in `@binding` order. The struct
/// holds one buffer per binding; `bind` makes the bind group for a pipeline of this
/// signature, and `LAYOUT` is what the bind group layout and the tests read.
macro_rules! bindings {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $access:ident),+ $(,)? }) => {
        $(#[$doc])*
        pub(in crate::gpu) struct $name<'a> {
            $(pub(in crate::gpu) $field: &'a wgpu::Buffer),+
        }
        impl $name<'_> {
            pub(in crate::gpu) const LAYOUT: &'static [(&'static str, $crate::gpu::ops::Access)] =
                &[$((stringify!($field), $crate::gpu::ops::Access::$access)),+];
            pub(in crate::gpu) fn bind(
                &self,
                ctx: &$crate::gpu::context::GpuContext,
                pipe: &$crate::gpu::ops::Pipe,
            ) -> wgpu::BindGroup {
                $crate::gpu::buffers::bind_group(ctx, &pipe.layout, &[$(self.$field),+])
            }
        }
    };
}
pub(super) use bindings;

params! {
    /// The batch every shader of one submission works on.
    Step in [("common", COMMON)] { n_tok: u32, p0: u32, last: u32, _pad: u32 }
}
params! {
    /// Elementwise ops over `cols` values per token (residual add, dequantization).
    ColsParams in [("add", add::WGSL), ("dequant", dequant::WGSL)] { cols: u32, _a: u32, _b: u32, _c: u32 }
}

/// Workgroups for one thread per element of `n` tokens × `cols` values.
pub(super) fn per_element(n: usize, cols: usize) -> usize {
    (n * cols).div_ceil(WG)
}

/// Keeps the lines between `//#if subgroups` and `//#else` (or `//#endif`) when
/// `subgroups`, the `//#else` branch otherwise.
pub fn specialize(src: &str, subgroups: bool) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    // Browsers require the directive; naga (wgpu natively) rejects it and instead allows the
    // builtins whenever the device has Features::SUBGROUP.
    if subgroups && cfg!(target_arch = "wasm32") {
        out.push_str("enable subgroups;\n");
    }
    // None: outside any block; Some(true): in the branch being kept.
    let mut keep: Option<bool> = None;
    for line in src.lines() {
        match line.trim() {
            "//#if subgroups" => keep = Some(subgroups),
            "//#else" => keep = keep.map(|k| !k),
            "//#endif" => keep = None,
            _ if keep != Some(false) => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

pub struct Pipe {
    pub pipeline: ComputePipeline,
    pub layout: BindGroupLayout,
}

/// One compute pipeline per shader, each with an explicit bind group layout; the two
/// ternary shaders share theirs, so one bind group serves decode and prefill.
pub struct Pipelines {
    pub norm_quant: Pipe,
    pub dequant: Pipe,
    pub ternary_matvec: Pipe,
    pub ternary_matmul: Pipe,
    pub dense: Pipe,
    pub int8: Pipe,
    pub embed: Pipe,
    pub rope: Pipe,
    pub attention: Pipe,
    pub add: Pipe,
    pub gate: Pipe,
    pub topk_segments: Pipe,
    pub topk_merge: Pipe,
}

impl Pipelines {
    pub fn new(device: &Device, subgroups: bool) -> Pipelines {
        let layout = |sig: &[(&str, Access)]| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = sig
                .iter()
                .enumerate()
                .map(|(i, (_, access))| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match access {
                            Access::Uniform => wgpu::BufferBindingType::Uniform,
                            Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Access::ReadWrite => {
                                wgpu::BufferBindingType::Storage { read_only: false }
                            }
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            })
        };
        let pipe = |name: &str, src: &str, bgl: BindGroupLayout| {
            let code = specialize(&format!("{COMMON}\n{src}"), subgroups);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            Pipe {
                pipeline,
                layout: bgl,
            }
        };
        let ternary = layout(ternary::Ternary::LAYOUT);
        Pipelines {
            norm_quant: pipe(
                "norm_quant",
                norm_quant::WGSL,
                layout(norm_quant::NormQuant::LAYOUT),
            ),
            dequant: pipe("dequant", dequant::WGSL, layout(dequant::Dequant::LAYOUT)),
            ternary_matvec: pipe("ternary_matvec", ternary::MATVEC_WGSL, ternary.clone()),
            ternary_matmul: pipe("ternary_matmul", ternary::MATMUL_WGSL, ternary),
            dense: pipe("dense_matmul", dense::WGSL, layout(dense::Dense::LAYOUT)),
            int8: pipe("int8_matmul", int8::WGSL, layout(int8::Int8::LAYOUT)),
            embed: pipe("embed", embed::WGSL, layout(embed::Embed::LAYOUT)),
            rope: pipe("rope", rope::WGSL, layout(rope::Rope::LAYOUT)),
            attention: pipe(
                "attention",
                attention::WGSL,
                layout(attention::Attention::LAYOUT),
            ),
            add: pipe("add", add::WGSL, layout(add::Add::LAYOUT)),
            gate: pipe("gate", gate::WGSL, layout(gate::Gate::LAYOUT)),
            topk_segments: pipe(
                "topk_segments",
                topk::SEGMENTS_WGSL,
                layout(topk::Segments::LAYOUT),
            ),
            topk_merge: pipe("topk_merge", topk::MERGE_WGSL, layout(topk::Merge::LAYOUT)),
        }
    }
}

#[cfg(test)]
mod tests;
