//! [`GpuBackend`]: the whole forward pass on a wgpu device. Weights are uploaded once, the
//! KV cache lives on the GPU, every bind group is made at load time, and a decoded token is
//! one command submission followed by one small readback (the logits, or just the top-k).

use super::context::{DeviceOptions, GpuContext};
use super::graph::{build, LinOp, Parts};
use super::ops::topk::{self, TopkParams};
use super::ops::{
    add, attention, dense, dequant, embed, gate, int8, norm_quant, rope, ternary, Pipe, Pipelines,
    Step,
};
use super::pack;
use crate::error::{Error, Result};
use crate::formats::DenseType;
use crate::model::{Logits, Model, ModelConfig};
use std::sync::Arc;
use wgpu::{BindGroup, ComputePass};

/// The most candidates [`GpuBackend::forward_top_k_async`] selects on the GPU.
pub use super::ops::topk::MAX_TOP_K;

#[derive(Debug, Clone, Copy)]
pub struct GpuOptions {
    /// KV cache capacity in tokens (`None`: the model's training context).
    pub n_ctx: Option<usize>,
    /// The most tokens one submission runs; longer inputs go in several.
    pub max_batch: usize,
    /// Caps the bytes of one storage binding below the adapter's limit (tests use it to
    /// split a small head the way the 2B4T embedding is split).
    pub max_binding: Option<u64>,
    /// Prompts through the tiled matmul shader (weights read once per 8 tokens). Off: the
    /// matvec shader loops over the batch's tokens instead (still one submission).
    pub tiled_prefill: bool,
    /// Time every forward pass on the GPU with timestamp queries (where the adapter has
    /// them), for [`crate::model::Backend::gpu_counters`]; costs one more small readback
    /// per submission.
    pub profile: bool,
    pub device: DeviceOptions,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            n_ctx: None,
            max_batch: 64,
            max_binding: None,
            tiled_prefill: true,
            profile: false,
            device: DeviceOptions::default(),
        }
    }
}

/// Which logits a submission computes.
#[derive(Clone, Copy, PartialEq)]
enum Head {
    None,
    Last,
    All,
}

pub struct GpuBackend {
    /// Only the configuration stays: once uploaded, the CPU copy of the weights can go
    /// (in a browser tab the two copies would otherwise share one memory budget).
    config: ModelConfig,
    ctx: GpuContext,
    pipes: Pipelines,
    n_ctx: usize,
    n_past: usize,
    max_batch: usize,
    tiled_prefill: bool,
    /// Buffers and bind groups made at load time.
    parts: Parts,
    profiler: Option<Profiler>,
    submissions: u64,
    /// Counted while a pass is recorded (`encode` borrows `self` immutably).
    dispatches: std::cell::Cell<u64>,
    gpu_ns: f64,
}

/// Two timestamps around each submission's compute pass, resolved into a buffer that is
/// read back after the submission.
struct Profiler {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl Profiler {
    fn new(ctx: &GpuContext) -> Profiler {
        let buffer = |label, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("forward pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: buffer(
                "resolved timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
        }
    }
}

impl GpuBackend {
    /// Opens a device and uploads `model`. Int8 activations only (BitNet's semantics).
    pub async fn new(model: Arc<Model>, opts: GpuOptions) -> Result<GpuBackend> {
        let ctx = GpuContext::new(opts.device).await?;
        Self::with_context(ctx, model, opts).await
    }

    /// Uploads `model` to an already opened device.
    pub async fn with_context(
        ctx: GpuContext,
        model: Arc<Model>,
        opts: GpuOptions,
    ) -> Result<GpuBackend> {
        if model.weights.float_head.is_some() || model.weights.head().ty == DenseType::I4 {
            // Its candidates would come back from the GPU only to be rescored here.
            return Err(Error::InvalidArgument(
                "the exact heads ('int8-exact', 'int4-exact') run on the CPU; on the GPU \
                 load with head 'int8' or 'file'"
                    .into(),
            ));
        }
        let pipes = ctx
            .scoped("compiling the shaders", || {
                Pipelines::new(&ctx.device, ctx.subgroups)
            })
            .await?;
        let built = ctx
            .scoped("uploading the model", || build(&ctx, &pipes, &model, &opts))
            .await??;
        let config = model.config.clone();
        drop(model);
        let (n_ctx, max_batch, parts) = built;
        let profiler = (opts.profile && ctx.timestamps).then(|| Profiler::new(&ctx));
        Ok(GpuBackend {
            config,
            pipes,
            n_ctx,
            n_past: 0,
            max_batch,
            tiled_prefill: opts.tiled_prefill,
            ctx,
            parts,
            profiler,
            submissions: 0,
            dispatches: std::cell::Cell::new(0),
            gpu_ns: 0.0,
        })
    }

    pub fn name(&self) -> String {
        format!(
            "gpu-wgpu ({}, {:?}{})",
            self.ctx.info.name,
            self.ctx.info.backend,
            if self.ctx.subgroups {
                ", subgroups"
            } else {
                ""
            }
        )
    }

    /// The device, e.g. to destroy it in a test of device loss.
    pub fn device(&self) -> wgpu::Device {
        self.ctx.device.clone()
    }

    pub fn uses_subgroups(&self) -> bool {
        self.ctx.subgroups
    }

    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_vocab(&self) -> usize {
        self.config.n_vocab
    }

    /// Forgets every position from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    pub fn kv_cache_bytes(&self) -> usize {
        2 * self.config.n_layer * self.n_ctx * self.config.kv_dim() * 4
    }

    /// Appends `tokens` at `n_past()` and returns `n_vocab` logits per requested row.
    pub async fn forward_async(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.validate(tokens)?;
        let v = self.config.n_vocab;
        let mut out = Vec::new();
        let n_parts = tokens.len().div_ceil(self.max_batch);
        for (i, part) in tokens.chunks(self.max_batch).enumerate() {
            let head = match which {
                Logits::All => Head::All,
                Logits::Last if i + 1 == n_parts => Head::Last,
                Logits::Last => Head::None,
            };
            let rows = match head {
                Head::None => 0,
                Head::Last => 1,
                Head::All => part.len(),
            };
            self.submit(part, head, None).await?;
            if rows > 0 {
                let bytes = self
                    .ctx
                    .read(&self.parts.readback, (rows * v * 4) as u64)
                    .await?;
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
                );
            }
        }
        Ok(out)
    }

    /// Like `forward_async(tokens, Logits::Last)`, but returns only the `k` best (id, logit)
    /// of the last position, best first, ties to the lower id, NaN read as -inf: the sampler's
    /// order. Selection runs on the GPU, so only `8·k` bytes come back.
    pub async fn forward_top_k_async(
        &mut self,
        tokens: &[u32],
        k: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let v = self.config.n_vocab;
        let k = k.min(v);
        if k > MAX_TOP_K {
            let logits = self.forward_async(tokens, Logits::Last).await?;
            return Ok(crate::sampler::top_k(&logits, k));
        }
        self.validate(tokens)?;
        let n_parts = tokens.len().div_ceil(self.max_batch);
        for (i, part) in tokens.chunks(self.max_batch).enumerate() {
            if i + 1 < n_parts {
                self.submit(part, Head::None, None).await?;
            } else {
                self.submit(part, Head::Last, Some(k)).await?;
            }
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let bytes = self.ctx.read(&self.parts.readback, (k * 8) as u64).await?;
        Ok(bytes
            .chunks_exact(8)
            .map(|b| {
                let id = u32::from_le_bytes(b[..4].try_into().unwrap());
                let l = f32::from_le_bytes(b[4..].try_into().unwrap());
                (id, if l.is_nan() { f32::NEG_INFINITY } else { l })
            })
            .filter(|&(id, _)| (id as usize) < v)
            .collect())
    }

    fn validate(&self, tokens: &[u32]) -> Result<()> {
        let v = self.config.n_vocab;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        if self.n_past + tokens.len() > self.n_ctx {
            return Err(Error::ContextFull {
                needed: self.n_past + tokens.len(),
                capacity: self.n_ctx,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {v}"
            )));
        }
        self.ctx.check()
    }

    /// One command submission: `part` through every layer, then the head (and top-k).
    async fn submit(&mut self, part: &[u32], head: Head, top_k: Option<usize>) -> Result<()> {
        let n = part.len();
        let step = Step {
            n_tok: n as u32,
            p0: self.n_past as u32,
            last: n as u32 - 1,
            _pad: 0,
        };
        self.ctx
            .queue
            .write_buffer(&self.parts.step, 0, bytemuck::bytes_of(&step));
        self.ctx
            .queue
            .write_buffer(&self.parts.tokens, 0, &pack::u32_bytes(part));
        let v = self.config.n_vocab;
        let n_seg = v.div_ceil(topk::SEGMENT);
        if let Some(k) = top_k {
            let p = TopkParams {
                n: v as u32,
                k: k as u32,
                seg_len: topk::SEGMENT as u32,
                n_cand: (n_seg * k) as u32,
            };
            self.ctx
                .queue
                .write_buffer(&self.parts.topk_params, 0, bytemuck::bytes_of(&p));
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let timestamp_writes =
                self.profiler
                    .as_ref()
                    .map(|p| wgpu::ComputePassTimestampWrites {
                        query_set: &p.set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            });
            self.encode(&mut pass, n, head);
            if top_k.is_some_and(|k| k > 0) {
                self.run(
                    &mut pass,
                    &self.pipes.topk_segments,
                    &self.parts.topk_segments,
                    topk::segment_workgroups(v),
                );
                self.run(
                    &mut pass,
                    &self.pipes.topk_merge,
                    &self.parts.topk_merge,
                    (1, 1),
                );
            }
        }
        match (top_k, head) {
            (Some(k), _) if k > 0 => enc.copy_buffer_to_buffer(
                &self.parts.topk_result,
                0,
                &self.parts.readback,
                0,
                (k * 8) as u64,
            ),
            (None, Head::Last) => enc.copy_buffer_to_buffer(
                &self.parts.logits,
                0,
                &self.parts.readback,
                0,
                (v * 4) as u64,
            ),
            (None, Head::All) => enc.copy_buffer_to_buffer(
                &self.parts.logits,
                0,
                &self.parts.readback,
                0,
                (n * v * 4) as u64,
            ),
            _ => {}
        }
        if let Some(p) = &self.profiler {
            enc.resolve_query_set(&p.set, 0..2, &p.resolved, 0);
            enc.copy_buffer_to_buffer(&p.resolved, 0, &p.readback, 0, 16);
        }
        let ctx = &self.ctx;
        ctx.scoped("running the forward pass", || {
            ctx.queue.submit([enc.finish()]);
        })
        .await?;
        self.n_past += n;
        self.submissions += 1;
        if let Some(p) = &self.profiler {
            let bytes = ctx.read(&p.readback, 16).await?;
            let at = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap());
            let ticks = at(1).saturating_sub(at(0));
            self.gpu_ns += ticks as f64 * f64::from(ctx.queue.get_timestamp_period());
        }
        Ok(())
    }

    /// Submissions, dispatches and (when profiling) GPU time so far.
    pub fn counters(&self) -> crate::model::GpuCounters {
        crate::model::GpuCounters {
            submissions: self.submissions,
            dispatches: self.dispatches.get(),
            gpu_ns: self.profiler.as_ref().map(|_| self.gpu_ns),
        }
    }

    fn grid(&self, groups: usize) -> (u32, u32) {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as usize;
        if groups <= max {
            (groups as u32, 1)
        } else {
            (max as u32, groups.div_ceil(max) as u32)
        }
    }

    fn run(&self, pass: &mut ComputePass, pipe: &Pipe, bg: &BindGroup, groups: (u32, u32)) {
        self.dispatches.set(self.dispatches.get() + 1);
        pass.set_pipeline(&pipe.pipeline);
        pass.set_bind_group(0, bg, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    fn linear(&self, pass: &mut ComputePass, op: &LinOp, n: usize) {
        let p = &self.pipes;
        if op.dense {
            self.run(
                pass,
                &p.dense,
                &op.bg,
                self.grid(dense::workgroups(op.rows)),
            );
        } else if n == 1 || !self.tiled_prefill {
            let groups = self.grid(ternary::matvec_workgroups(op.rows));
            self.run(pass, &p.ternary_matvec, &op.bg, groups);
        } else {
            let groups = ternary::matmul_workgroups(op.rows, n);
            self.run(pass, &p.ternary_matmul, &op.bg, groups);
        }
    }

    /// The whole forward pass of `n` tokens into one compute pass: embedding, every
    /// layer, then the final norm and the head for the rows `head` asks for.
    fn encode(&self, pass: &mut ComputePass, n: usize, head: Head) {
        let cfg = &self.config;
        let p = &self.pipes;
        let parts = &self.parts;
        let (e, ff) = (cfg.n_embd, cfg.n_ff);
        let rows = norm_quant::workgroups(n);
        for bg in &parts.embed {
            self.run(pass, &p.embed, bg, self.grid(embed::workgroups(n, e)));
        }
        let dequant_e = self.grid(dequant::workgroups(n, e));
        let add_e = self.grid(add::workgroups(n, e));
        for l in &parts.layers {
            // Attention block.
            self.run(pass, &p.norm_quant, &l.attn_norm, rows);
            if l.q.dense || l.k.dense || l.v.dense {
                self.run(pass, &p.dequant, &parts.dequant_embd, dequant_e);
            }
            self.linear(pass, &l.q, n);
            self.linear(pass, &l.k, n);
            self.linear(pass, &l.v, n);
            let rope_q = self.grid(rope::workgroups(n, cfg.n_head, cfg.n_rot));
            let rope_k = self.grid(rope::workgroups(n, cfg.n_head_kv, cfg.n_rot));
            self.run(pass, &p.rope, &l.rope_q, rope_q);
            self.run(pass, &p.rope, &l.rope_k, rope_k);
            let heads = self.grid(attention::workgroups(n, cfg.n_head));
            self.run(pass, &p.attention, &l.attention, heads);
            self.run(pass, &p.norm_quant, &l.sub_norm, rows);
            if l.o.dense {
                self.run(pass, &p.dequant, &parts.dequant_embd, dequant_e);
            }
            self.linear(pass, &l.o, n);
            self.run(pass, &p.add, &parts.add, add_e);
            // Feed-forward block.
            self.run(pass, &p.norm_quant, &l.ffn_norm, rows);
            if l.gate.dense || l.up.dense {
                self.run(pass, &p.dequant, &parts.dequant_embd, dequant_e);
            }
            self.linear(pass, &l.gate, n);
            self.linear(pass, &l.up, n);
            let act = self.grid(gate::workgroups(n, ff));
            self.run(pass, &p.gate, &parts.gate_act, act);
            self.run(pass, &p.norm_quant, &l.ffn_sub_norm, rows);
            if l.down.dense {
                let groups = self.grid(dequant::workgroups(n, ff));
                self.run(pass, &p.dequant, &parts.dequant_ff, groups);
            }
            self.linear(pass, &l.down, n);
            self.run(pass, &p.add, &parts.add, add_e);
        }
        let (norm, chunks, head_rows) = match head {
            Head::None => return,
            Head::Last => (&parts.final_norm_last, &parts.head_last, 1),
            Head::All => (&parts.final_norm_all, &parts.head_all, n),
        };
        self.run(pass, &p.norm_quant, norm, norm_quant::workgroups(head_rows));
        for (bg, chunk_rows) in chunks {
            if parts.head_int8 {
                self.run(pass, &p.int8, bg, self.grid(int8::workgroups(*chunk_rows)));
            } else {
                self.run(
                    pass,
                    &p.dense,
                    bg,
                    self.grid(dense::workgroups(*chunk_rows)),
                );
            }
        }
    }
}

impl crate::model::Backend for GpuBackend {
    fn name(&self) -> String {
        GpuBackend::name(self)
    }
    fn gpu_counters(&self) -> Option<crate::model::GpuCounters> {
        Some(self.counters())
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        pollster::block_on(self.forward_async(tokens, which))
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn forward_top_k(&mut self, tokens: &[u32], k: usize) -> Result<Vec<(u32, f32)>> {
        pollster::block_on(self.forward_top_k_async(tokens, k))
    }
    /// A page cannot wait for its GPU: only the async methods work there.
    #[cfg(target_arch = "wasm32")]
    fn forward(&mut self, _: &[u32], _: Logits) -> Result<Vec<f32>> {
        Err(Error::Gpu(
            "the WebGPU backend only runs asynchronously (Session::step_async)".into(),
        ))
    }
    fn forward_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        which: Logits,
    ) -> crate::model::BackendFuture<'a, Vec<f32>> {
        Box::pin(GpuBackend::forward_async(self, tokens, which))
    }
    fn forward_top_k_async<'a>(
        &'a mut self,
        tokens: &'a [u32],
        k: usize,
    ) -> crate::model::BackendFuture<'a, Vec<(u32, f32)>> {
        Box::pin(GpuBackend::forward_top_k_async(self, tokens, k))
    }
    fn n_past(&self) -> usize {
        self.n_past
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn n_vocab(&self) -> usize {
        self.config.n_vocab
    }
    fn truncate(&mut self, n: usize) {
        GpuBackend::truncate(self, n)
    }
}
