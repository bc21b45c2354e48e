//! Buffer creation helpers and the uploaded weights of one model.

use super::context::GpuContext;
use super::ops::Params;
use super::pack::{self, DenseKind};
use crate::error::{Error, Result};
use crate::formats::{DenseMatrix, TernaryMatrix};
use crate::model::Linear;
use wgpu::util::DeviceExt;
use wgpu::{Buffer, BufferUsages};

/// Bytes padded to whole u32 words and at least one word (bindings cannot be empty).
fn padded(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if bytes.len() >= 4 && bytes.len().is_multiple_of(4) {
        return bytes.into();
    }
    let mut v = bytes.to_vec();
    v.resize(bytes.len().next_multiple_of(4).max(4), 0);
    v.into()
}

pub fn storage(ctx: &GpuContext, label: &str, bytes: &[u8]) -> Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &padded(bytes),
            usage: BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
        })
}

pub fn scratch(ctx: &GpuContext, label: &str, bytes: u64) -> Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.next_multiple_of(4).max(4),
        usage: BufferUsages::STORAGE | BufferUsages::COPY_DST | BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A uniform block holding `params`.
pub fn uniform<P: Params>(ctx: &GpuContext, label: &str, params: &P) -> Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: BufferUsages::UNIFORM | BufferUsages::COPY_DST,
        })
}

pub fn readback(ctx: &GpuContext, bytes: u64) -> Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.next_multiple_of(4).max(4),
        usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

pub fn bind_group(
    ctx: &GpuContext,
    layout: &wgpu::BindGroupLayout,
    bufs: &[&Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

fn check_binding(ctx: &GpuContext, name: &str, bytes: u64) -> Result<()> {
    if bytes > ctx.max_binding() {
        return Err(Error::Gpu(format!(
            "{name} needs a {bytes}-byte storage binding; this adapter allows {}",
            ctx.max_binding()
        )));
    }
    Ok(())
}

/// One linear layer on the GPU.
pub enum GpuLinear {
    Ternary {
        rows: usize,
        cols: usize,
        words: Buffer,
        scales: Buffer,
        per_block: bool,
    },
    /// A float checkpoint's layer: f16 pairs or f32, times the dequantized activations.
    Dense {
        rows: usize,
        cols: usize,
        words: Buffer,
        kind: DenseKind,
        out_scale: f32,
    },
}

impl GpuLinear {
    pub fn upload(ctx: &GpuContext, name: &str, lin: &Linear) -> Result<GpuLinear> {
        Ok(match lin {
            Linear::Ternary(m) => Self::ternary(ctx, name, m)?,
            Linear::Dense { w, out_scale } => {
                let (kind, bytes) = pack::dense_rows_bytes(w, 0..w.rows);
                check_binding(ctx, name, bytes.len() as u64)?;
                if kind == DenseKind::I8 || !w.cols.is_multiple_of(2) {
                    return Err(Error::Gpu(format!(
                        "{name}: the GPU backend takes float linear layers with an even row length"
                    )));
                }
                GpuLinear::Dense {
                    rows: w.rows,
                    cols: w.cols,
                    words: storage(ctx, name, &bytes),
                    kind,
                    out_scale: *out_scale,
                }
            }
        })
    }

    pub fn ternary(ctx: &GpuContext, name: &str, m: &TernaryMatrix) -> Result<GpuLinear> {
        let words = pack::ternary_words(m);
        check_binding(ctx, name, words.len() as u64 * 4)?;
        let (scales, per_block) = pack::ternary_scales(m);
        Ok(GpuLinear::Ternary {
            rows: m.rows,
            cols: m.cols,
            words: storage(ctx, name, &pack::u32_bytes(&words)),
            scales: storage(ctx, name, &pack::f32_bytes(&scales)),
            per_block,
        })
    }

    pub fn rows(&self) -> usize {
        match self {
            GpuLinear::Ternary { rows, .. } | GpuLinear::Dense { rows, .. } => *rows,
        }
    }

    pub fn is_dense(&self) -> bool {
        matches!(self, GpuLinear::Dense { .. })
    }
}

/// A dense matrix split by rows over as many buffers as the binding limit needs (the 2B4T
/// embedding is 0.66 GB; WebGPU guarantees only 128 MiB per binding).
pub struct Chunked {
    pub kind: DenseKind,
    /// (buffer, first row, row count)
    pub chunks: Vec<(Buffer, usize, usize)>,
    /// Int8 only: per-row scales (a one-word placeholder otherwise).
    pub row_scales: Buffer,
}

impl Chunked {
    pub fn upload(
        ctx: &GpuContext,
        name: &str,
        m: &DenseMatrix,
        max_chunk: u64,
    ) -> Result<Chunked> {
        let kind = pack::dense_kind(m.ty);
        if !(m.cols * kind.bytes_per_value()).is_multiple_of(4) {
            return Err(Error::Gpu(format!(
                "{name}: rows of {} values do not fill whole 32-bit words",
                m.cols
            )));
        }
        let row_bytes = (m.cols * kind.bytes_per_value()) as u64;
        let rows_per = (max_chunk / row_bytes).max(1) as usize;
        if row_bytes > max_chunk {
            return Err(Error::Gpu(format!(
                "{name}: one row exceeds the storage binding limit"
            )));
        }
        let mut chunks = Vec::new();
        let mut r0 = 0;
        while r0 < m.rows {
            let r1 = (r0 + rows_per).min(m.rows);
            let (_, bytes) = pack::dense_rows_bytes(m, r0..r1);
            chunks.push((storage(ctx, name, &bytes), r0, r1 - r0));
            r0 = r1;
        }
        Ok(Chunked {
            kind,
            chunks,
            row_scales: storage(ctx, "row scales", &pack::f32_bytes(&m.row_scales)),
        })
    }
}
