//! The forward pass on the CPU: prompts run as a batch (matrix × matrix), decoding
//! one token at a time, with an f32 or f16 KV cache.

use super::kv_cache::{KvCache, KvLayer, KvType};
use super::weights::{LayerWeights, Linear};
use super::{ActMode, Backend, FfnActivation, Logits, Model, ModelConfig};
use crate::error::{Error, Result};
use crate::kernels::{Cpu, KernelChoice, QuantActs};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct CpuOptions {
    pub act: ActMode,
    pub kernels: KernelChoice,
    pub threads: usize,
    /// KV cache capacity in tokens (`None`: the model's training context).
    pub n_ctx: Option<usize>,
    pub kv: KvType,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            act: ActMode::Int8,
            kernels: KernelChoice::Auto,
            threads: 1,
            n_ctx: None,
            kv: KvType::F32,
        }
    }
}

pub struct CpuBackend {
    model: Arc<Model>,
    cpu: Cpu,
    act: ActMode,
    n_past: usize,
    kv: KvCache,
    s: Scratch,
}

/// A normed activation ready for the linear layers that read it: in f32, quantized to
/// int8 (int8 mode) and dequantized (only for float layers), with the matmuls' tile.
#[derive(Default)]
struct LinearInput {
    x: Vec<f32>,
    acts: QuantActs,
    deq: Vec<f32>,
    tile: Vec<f32>,
}

/// The activations of the tokens in flight, reused from layer to layer and call to call.
#[derive(Default)]
struct Scratch {
    /// The residual stream.
    x: Vec<f32>,
    input: LinearInput,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    /// One position's RoPE angles (see [`crate::kernels::scalar::rope_angles`]).
    rope_cos: Vec<f64>,
    rope_sin: Vec<f64>,
}

impl CpuBackend {
    /// A backend with an empty KV cache of `opts.n_ctx` positions. Panics where
    /// [`try_new`](Self::try_new) fails; for callers whose sizes are their own.
    pub fn new(model: Arc<Model>, opts: CpuOptions) -> CpuBackend {
        CpuBackend::try_new(model, opts, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`new`](Self::new) for sizes that come from a file or a user: the KV cache's size
    /// is computed without overflow and refused with [`Error::OutOfMemory`] past `budget`
    /// bytes or when the allocator cannot give it.
    pub fn try_new(model: Arc<Model>, opts: CpuOptions, budget: Option<u64>) -> Result<CpuBackend> {
        let cfg = &model.config;
        let n_ctx = opts.n_ctx.unwrap_or(cfg.n_ctx_train).max(1);
        let kv = KvCache::try_new(opts.kv, cfg.n_layer, n_ctx, cfg.kv_dim(), budget)?;
        Ok(CpuBackend {
            cpu: Cpu::new(opts.kernels, opts.threads),
            act: opts.act,
            n_past: 0,
            kv,
            s: Scratch::default(),
            model,
        })
    }

    pub fn kernels_name(&self) -> &'static str {
        self.cpu.kernels.name()
    }

    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.bytes()
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// One transformer layer on the `n` tokens in `self.s.x`, at positions
    /// `n_past..n_past + n`.
    fn layer(&mut self, li: usize, w: &LayerWeights, n: usize) {
        let cfg = &self.model.config;
        let ops = Ops {
            cpu: &self.cpu,
            act: self.act,
            cfg,
        };
        let (s, kv, p0) = (&mut self.s, &mut self.kv, self.n_past);
        // Attention. One normed, quantized input feeds q, k and v.
        ops.norm(&s.x, &w.attn_norm, &mut s.input, &[&w.q, &w.k, &w.v]);
        ops.linear(&w.q, &mut s.input, n, &mut s.q);
        ops.linear(&w.k, &mut s.input, n, &mut s.k);
        ops.linear(&w.v, &mut s.input, n, &mut s.v);
        // Rotary position embedding of queries and keys; keys and values are kept.
        ops.rope(p0, n, &mut s.q, &mut s.k, &mut s.rope_cos, &mut s.rope_sin);
        kv.store(li, p0, &s.k, &s.v);
        // Causal attention of each query head over its KV head's cached positions.
        ops.attention(kv.layer(li), p0, n, &s.q, &mut s.scores, &mut s.att);
        // BitNet's sub-norm before the output projection, then the residual.
        ops.norm(&s.att, &w.attn_sub_norm, &mut s.input, &[&w.o]);
        ops.linear(&w.o, &mut s.input, n, &mut s.o);
        add(&mut s.x, &s.o);
        // Feed-forward: gate and up from one input, the gated activation, sub-norm,
        // down projection, residual.
        ops.norm(&s.x, &w.ffn_norm, &mut s.input, &[&w.gate, &w.up]);
        ops.linear(&w.gate, &mut s.input, n, &mut s.gate);
        ops.linear(&w.up, &mut s.input, n, &mut s.up);
        ops.gated_activation(&mut s.gate, &s.up);
        ops.norm(&s.gate, &w.ffn_sub_norm, &mut s.input, &[&w.down]);
        ops.linear(&w.down, &mut s.input, n, &mut s.o);
        add(&mut s.x, &s.o);
    }
}

/// What every step of a layer reads: the kernels, the activation mode, the model's shape.
struct Ops<'a> {
    cpu: &'a Cpu,
    act: ActMode,
    cfg: &'a ModelConfig,
}

impl Ops<'_> {
    /// RMSNorm of `x` into `into`; in int8 mode quantized once for every linear layer
    /// in `readers`, and (only when one of them is a float layer) dequantized once too.
    fn norm(&self, x: &[f32], weight: &[f32], into: &mut LinearInput, readers: &[&Linear]) {
        into.x.resize(x.len(), 0.0);
        self.cpu
            .kernels
            .rmsnorm(x, weight, self.cfg.rms_eps, &mut into.x);
        if self.act == ActMode::Int8 {
            self.cpu.quantize(&into.x, weight.len(), &mut into.acts);
            if readers.iter().any(|l| matches!(l, Linear::Dense { .. })) {
                into.deq = into.acts.dequantize();
            }
        }
    }

    /// `lin` applied to the `n` rows of `input` (normed by [`norm`](Self::norm)) into `out`.
    fn linear(&self, lin: &Linear, input: &mut LinearInput, n: usize, out: &mut Vec<f32>) {
        let cpu = self.cpu;
        out.resize(n * lin.rows(), 0.0);
        match (lin, self.act) {
            (Linear::Ternary(w), ActMode::Int8) => {
                cpu.ternary_matmul(w, &input.acts, out, &mut input.tile)
            }
            (Linear::Ternary(w), ActMode::F32) => {
                cpu.kernels.ternary_matmul_f32(w, &input.x, n, out)
            }
            (Linear::Dense { w, out_scale }, act) => {
                // A float checkpoint still sees BitNet's quantized activations.
                let x = if act == ActMode::Int8 {
                    &input.deq
                } else {
                    &input.x
                };
                cpu.dense_matmul(w, x, n, out, &mut input.tile);
                if *out_scale != 1.0 {
                    out.iter_mut().for_each(|v| *v *= out_scale);
                }
            }
        }
    }

    /// NeoX RoPE on every query and key head of the `n` tokens from position `p0` on.
    fn rope(
        &self,
        p0: usize,
        n: usize,
        q: &mut [f32],
        k: &mut [f32],
        cos: &mut Vec<f64>,
        sin: &mut Vec<f64>,
    ) {
        let (cfg, kernels) = (self.cfg, &self.cpu.kernels);
        let (e, kvd, hd) = (cfg.n_embd, cfg.kv_dim(), cfg.head_dim);
        for i in 0..n {
            kernels.rope_angles(p0 + i, cfg.n_rot, cfg.rope_theta, cos, sin);
            let q_heads = q[i * e..(i + 1) * e].chunks_exact_mut(hd);
            for h in q_heads.chain(k[i * kvd..(i + 1) * kvd].chunks_exact_mut(hd)) {
                kernels.rope(h, cos, sin);
            }
        }
    }

    /// Causal softmax attention of the `n` tokens from position `p0` on over the layer's
    /// cached keys and values; query head h reads KV head `h / (n_head / n_head_kv)`.
    fn attention(
        &self,
        kv: KvLayer<'_>,
        p0: usize,
        n: usize,
        q: &[f32],
        scores: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let (cfg, kernels) = (self.cfg, &self.cpu.kernels);
        let (e, kvd, hd) = (cfg.n_embd, cfg.kv_dim(), cfg.head_dim);
        let group = cfg.n_head / cfg.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        out.resize(n * e, 0.0);
        for i in 0..n {
            scores.resize(p0 + i + 1, 0.0);
            for h in 0..cfg.n_head {
                let at = (h / group) * hd;
                let head = i * e + h * hd..i * e + (h + 1) * hd;
                let (q, out) = (&q[head.clone()], &mut out[head]);
                match kv {
                    KvLayer::F32(keys, values) => {
                        kernels.attn_scores(q, &keys[at..], kvd, scale, scores);
                        kernels.softmax(scores);
                        kernels.attn_mix(scores, &values[at..], kvd, out);
                    }
                    KvLayer::F16(keys, values) => {
                        kernels.attn_scores_f16(q, &keys[at..], kvd, scale, scores);
                        kernels.softmax(scores);
                        kernels.attn_mix_f16(scores, &values[at..], kvd, out);
                    }
                }
            }
        }
    }

    /// `gate = act(gate) · up`, act being the model's ReLU² or SiLU.
    fn gated_activation(&self, gate: &mut [f32], up: &[f32]) {
        for (g, &u) in gate.iter_mut().zip(up) {
            let a = match self.cfg.activation {
                FfnActivation::Relu2 => g.max(0.0) * g.max(0.0),
                FfnActivation::Silu => *g / (1.0 + (-*g).exp()),
            };
            *g = a * u;
        }
    }
}

/// The residual connection `x += y`.
fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!(
            "cpu-{} ({} thread{})",
            self.cpu.kernels.name(),
            self.cpu.threads(),
            if self.cpu.threads() == 1 { "" } else { "s" }
        )
    }

    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        let model = Arc::clone(&self.model);
        let cfg = &model.config;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        if self.n_past + n > self.kv.n_ctx {
            return Err(Error::ContextFull {
                needed: self.n_past + n,
                capacity: self.kv.n_ctx,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.n_vocab
            )));
        }
        let e = cfg.n_embd;
        self.s.x.resize(n * e, 0.0);
        for (i, &t) in tokens.iter().enumerate() {
            model
                .weights
                .embed(t as usize, &mut self.s.x[i * e..(i + 1) * e])?;
        }
        for (li, layer) in model.weights.layers.iter().enumerate() {
            self.layer(li, layer, n);
        }
        self.n_past += n;

        let rows = match which {
            Logits::Last => n - 1..n,
            Logits::All => 0..n,
        };
        let nr = rows.len();
        let (x, h) = (&self.s.x, &mut self.s.input);
        h.x.resize(nr * e, 0.0);
        self.cpu.kernels.rmsnorm(
            &x[rows.start * e..rows.end * e],
            &model.weights.output_norm,
            cfg.rms_eps,
            &mut h.x,
        );
        let mut logits = vec![0.0; nr * cfg.n_vocab];
        let head = model.weights.head();
        if head.ty.is_quantized() {
            self.cpu.quantize(&h.x, e, &mut h.acts);
            self.cpu
                .quantized_matmul(head, &h.acts, &mut logits, &mut h.tile);
            if let Some(rows) = &model.weights.float_head {
                // On this thread: a host's file may only be readable from it (the browser's).
                if let Err(e) = rows.rescore(self.cpu.kernels.as_ref(), &h.x, &mut logits) {
                    // The tokens were not run, as far as the caller can tell.
                    self.n_past -= n;
                    return Err(e);
                }
            }
        } else {
            self.cpu
                .dense_matmul(head, &h.x, nr, &mut logits, &mut h.tile);
        }
        Ok(logits)
    }

    fn n_past(&self) -> usize {
        self.n_past
    }

    fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    fn n_vocab(&self) -> usize {
        self.model.config.n_vocab
    }

    fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    fn set_threads(&mut self, n: usize) -> bool {
        self.cpu.set_threads(n);
        true
    }
}
