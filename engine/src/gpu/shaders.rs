//! The WGSL sources (`shaders/` beside this file: inside the crate, so `cargo package`
//! keeps them), specialized for subgroups or not, and one compute pipeline per shader
//! with an explicit bind group layout (so one bind group serves every pipeline of the
//! same signature, e.g. the decode and prefill matmuls).

use wgpu::{BindGroupLayout, ComputePipeline, Device};

const COMMON: &str = include_str!("shaders/common.wgsl");

/// How a shader sees binding i.
#[derive(Clone, Copy)]
enum B {
    Uniform,
    Read,
    Write,
}
use B::*;

const NORM_QUANT: &[B] = &[Uniform, Uniform, Read, Read, Write, Write, Write];
const TERNARY: &[B] = &[Uniform, Uniform, Read, Read, Read, Read, Write];
const IN_OUT: &[B] = &[Uniform, Uniform, Read, Write];
const IN2_OUT: &[B] = &[Uniform, Uniform, Read, Read, Write];
const EMBED: &[B] = &[Uniform, Uniform, Read, Read, Read, Write];
const ATTENTION: &[B] = &[Uniform, Uniform, Read, Read, Read, Write, Write];
const TOPK_SEGMENTS: &[B] = &[Uniform, Read, Write];
const TOPK_MERGE: &[B] = &[Uniform, Read, Write, Write];

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
        let layout = |sig: &[B]| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = sig
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                    binding: i as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match b {
                            Uniform => wgpu::BufferBindingType::Uniform,
                            Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Write => wgpu::BufferBindingType::Storage { read_only: false },
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
        macro_rules! p {
            ($file:literal, $sig:expr) => {
                pipe(
                    $file,
                    include_str!(concat!("shaders/", $file, ".wgsl")),
                    layout($sig),
                )
            };
        }
        let ternary = layout(TERNARY);
        Pipelines {
            norm_quant: p!("norm_quant", NORM_QUANT),
            dequant: p!("dequant", IN2_OUT),
            ternary_matvec: pipe(
                "ternary_matvec",
                include_str!("shaders/ternary_matvec.wgsl"),
                ternary.clone(),
            ),
            ternary_matmul: pipe(
                "ternary_matmul",
                include_str!("shaders/ternary_matmul.wgsl"),
                ternary,
            ),
            dense: p!("dense_matmul", IN2_OUT),
            int8: p!("int8_matmul", TERNARY),
            embed: p!("embed", EMBED),
            rope: p!("rope", IN_OUT),
            attention: p!("attention", ATTENTION),
            add: p!("add", IN_OUT),
            gate: p!("gate", IN_OUT),
            topk_segments: p!("topk_segments", TOPK_SEGMENTS),
            topk_merge: p!("topk_merge", TOPK_MERGE),
        }
    }
}
