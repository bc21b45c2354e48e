//! The forward pass on the CPU: prompts run as a batch (matrix × matrix), decoding
//! one token at a time, with an f32 KV cache.

use super::weights::{LayerWeights, Linear};
use super::{ActMode, Backend, FfnActivation, Logits, Model};
use crate::error::{Error, Result};
use crate::formats::DenseType;
use crate::kernels::{scalar, Cpu, KernelChoice, QuantActs};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct CpuOptions {
    pub act: ActMode,
    pub kernels: KernelChoice,
    pub threads: usize,
    /// KV cache capacity in tokens (`None`: the model's training context).
    pub n_ctx: Option<usize>,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            act: ActMode::Int8,
            kernels: KernelChoice::Auto,
            threads: 1,
            n_ctx: None,
        }
    }
}

pub struct CpuBackend {
    model: Arc<Model>,
    cpu: Cpu,
    act: ActMode,
    n_ctx: usize,
    n_past: usize,
    /// `[layer][position][kv_dim]`.
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    s: Scratch,
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    /// One position's RoPE angles (see [`scalar::rope_angles`]).
    rope_cos: Vec<f64>,
    rope_sin: Vec<f64>,
    tile: Vec<f32>,
    acts: QuantActs,
    deq: Vec<f32>,
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
        let what = || {
            format!(
                "the KV cache ({} layers × {n_ctx} positions × {} values, keys and values in f32)",
                cfg.n_layer,
                cfg.kv_dim()
            )
        };
        let kv_len = cfg
            .n_layer
            .checked_mul(n_ctx)
            .and_then(|n| n.checked_mul(cfg.kv_dim()));
        let bytes = kv_len.and_then(|n| (n as u64).checked_mul(8));
        let limit = budget.unwrap_or(isize::MAX as u64);
        let (Some(kv_len), Some(bytes)) = (kv_len, bytes) else {
            return Err(Error::OutOfMemory {
                what: what(),
                needed: u64::MAX,
                limit,
            });
        };
        let too_big = || Error::OutOfMemory {
            what: what(),
            needed: bytes,
            limit,
        };
        if bytes > limit {
            return Err(too_big());
        }
        let zeroed = |n: usize| -> Result<Vec<f32>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| too_big())?;
            v.resize(n, 0.0);
            Ok(v)
        };
        Ok(CpuBackend {
            cpu: Cpu::new(opts.kernels, opts.threads),
            act: opts.act,
            n_ctx,
            n_past: 0,
            k_cache: zeroed(kv_len)?,
            v_cache: zeroed(kv_len)?,
            s: Scratch::default(),
            model,
        })
    }

    pub fn kernels_name(&self) -> &'static str {
        self.cpu.kernels.name()
    }

    pub fn kv_cache_bytes(&self) -> usize {
        (self.k_cache.len() + self.v_cache.len()) * 4
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Applies `lin` to `input` (`n` rows) into `out`. In int8 mode, `acts` must hold
    /// the quantized input already (so q/k/v and gate/up share one quantization).
    /// Takes the scratch buffers one by one: they are disjoint borrows of one struct.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        cpu: &Cpu,
        act: ActMode,
        lin: &Linear,
        input: &[f32],
        acts: &QuantActs,
        deq: &[f32],
        n: usize,
        out: &mut Vec<f32>,
        tile: &mut Vec<f32>,
    ) {
        out.resize(n * lin.rows(), 0.0);
        match (lin, act) {
            (Linear::Ternary(w), ActMode::Int8) => cpu.ternary_matmul(w, acts, out, tile),
            (Linear::Ternary(w), ActMode::F32) => scalar::ternary_matmul_f32(w, input, n, out),
            (Linear::Dense { w, out_scale }, _) => {
                // A float checkpoint still sees BitNet's quantized activations.
                let x = if act == ActMode::Int8 { deq } else { input };
                cpu.dense_matmul(w, x, n, out, tile);
                if *out_scale != 1.0 {
                    out.iter_mut().for_each(|v| *v *= out_scale);
                }
            }
        }
    }

    /// RMSNorm of `x` into `out`; in int8 mode, quantized once for every linear layer
    /// that reads it, and (only when one of them is a float layer) dequantized once too.
    #[allow(clippy::too_many_arguments)]
    fn norm_input(
        cpu: &Cpu,
        act: ActMode,
        x: &[f32],
        weight: &[f32],
        eps: f32,
        out: &mut [f32],
        acts: &mut QuantActs,
        deq: &mut Vec<f32>,
        readers: &[&Linear],
    ) {
        cpu.kernels.rmsnorm(x, weight, eps, out);
        if act == ActMode::Int8 {
            cpu.quantize(out, weight.len(), acts);
            if readers.iter().any(|l| matches!(l, Linear::Dense { .. })) {
                *deq = acts.dequantize();
            }
        }
    }

    fn layer(&mut self, li: usize, layer: &LayerWeights, n: usize) {
        let cfg = &self.model.config;
        let (e, kvd, hd) = (cfg.n_embd, cfg.kv_dim(), cfg.head_dim);
        let p0 = self.n_past;
        let s = &mut self.s;
        let (cpu, act) = (&self.cpu, self.act);

        // Attention block.
        s.h.resize(n * e, 0.0);
        Self::norm_input(
            cpu,
            act,
            &s.x,
            &layer.attn_norm,
            cfg.rms_eps,
            &mut s.h,
            &mut s.acts,
            &mut s.deq,
            &[&layer.q, &layer.k, &layer.v],
        );
        Self::linear(
            cpu,
            act,
            &layer.q,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.q,
            &mut s.tile,
        );
        Self::linear(
            cpu,
            act,
            &layer.k,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.k,
            &mut s.tile,
        );
        Self::linear(
            cpu,
            act,
            &layer.v,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.v,
            &mut s.tile,
        );
        for i in 0..n {
            let pos = p0 + i;
            scalar::rope_angles(
                pos,
                cfg.n_rot,
                cfg.rope_theta,
                &mut s.rope_cos,
                &mut s.rope_sin,
            );
            let heads = s.q[i * e..(i + 1) * e].chunks_exact_mut(hd);
            for h in heads.chain(s.k[i * kvd..(i + 1) * kvd].chunks_exact_mut(hd)) {
                cpu.kernels.rope(h, &s.rope_cos, &s.rope_sin);
            }
            let at = (li * self.n_ctx + pos) * kvd;
            self.k_cache[at..at + kvd].copy_from_slice(&s.k[i * kvd..(i + 1) * kvd]);
            self.v_cache[at..at + kvd].copy_from_slice(&s.v[i * kvd..(i + 1) * kvd]);
        }
        s.att.resize(n * e, 0.0);
        let group = cfg.n_head / cfg.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let layer_k = &self.k_cache[li * self.n_ctx * kvd..];
        let layer_v = &self.v_cache[li * self.n_ctx * kvd..];
        for i in 0..n {
            let len = p0 + i + 1;
            s.scores.resize(len, 0.0);
            for h in 0..cfg.n_head {
                let kvh = h / group;
                let q = &s.q[i * e + h * hd..i * e + (h + 1) * hd];
                let (keys, values) = (&layer_k[kvh * hd..], &layer_v[kvh * hd..]);
                cpu.kernels.attn_scores(q, keys, kvd, scale, &mut s.scores);
                scalar::softmax(&mut s.scores);
                let out = &mut s.att[i * e + h * hd..i * e + (h + 1) * hd];
                cpu.kernels.attn_mix(&s.scores, values, kvd, out);
            }
        }
        Self::norm_input(
            cpu,
            act,
            &s.att,
            &layer.attn_sub_norm,
            cfg.rms_eps,
            &mut s.h,
            &mut s.acts,
            &mut s.deq,
            &[&layer.o],
        );
        Self::linear(
            cpu,
            act,
            &layer.o,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.o,
            &mut s.tile,
        );
        s.x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);

        // Feed-forward block.
        Self::norm_input(
            cpu,
            act,
            &s.x,
            &layer.ffn_norm,
            cfg.rms_eps,
            &mut s.h,
            &mut s.acts,
            &mut s.deq,
            &[&layer.gate, &layer.up],
        );
        Self::linear(
            cpu,
            act,
            &layer.gate,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.gate,
            &mut s.tile,
        );
        Self::linear(
            cpu,
            act,
            &layer.up,
            &s.h,
            &s.acts,
            &s.deq,
            n,
            &mut s.up,
            &mut s.tile,
        );
        for (g, &u) in s.gate.iter_mut().zip(&s.up) {
            let a = match cfg.activation {
                FfnActivation::Relu2 => g.max(0.0) * g.max(0.0),
                FfnActivation::Silu => *g / (1.0 + (-*g).exp()),
            };
            *g = a * u;
        }
        s.up.resize(s.gate.len(), 0.0);
        Self::norm_input(
            cpu,
            act,
            &s.gate,
            &layer.ffn_sub_norm,
            cfg.rms_eps,
            &mut s.up,
            &mut s.acts,
            &mut s.deq,
            &[&layer.down],
        );
        Self::linear(
            cpu,
            act,
            &layer.down,
            &s.up,
            &s.acts,
            &s.deq,
            n,
            &mut s.o,
            &mut s.tile,
        );
        s.x.iter_mut().zip(&s.o).for_each(|(x, o)| *x += o);
    }
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
        if self.n_past + n > self.n_ctx {
            return Err(Error::ContextFull {
                needed: self.n_past + n,
                capacity: self.n_ctx,
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
                .embd
                .row_f32(t as usize, &mut self.s.x[i * e..(i + 1) * e]);
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
        let s = &mut self.s;
        s.h.resize(nr * e, 0.0);
        self.cpu.kernels.rmsnorm(
            &s.x[rows.start * e..rows.end * e],
            &model.weights.output_norm,
            cfg.rms_eps,
            &mut s.h,
        );
        let mut logits = vec![0.0; nr * cfg.n_vocab];
        let head = model.weights.head();
        if head.ty == DenseType::I8 {
            self.cpu.quantize(&s.h, e, &mut s.acts);
            self.cpu
                .int8_matmul(head, &s.acts, &mut logits, &mut s.tile);
        } else {
            self.cpu
                .dense_matmul(head, &s.h, nr, &mut logits, &mut s.tile);
        }
        Ok(logits)
    }

    fn n_past(&self) -> usize {
        self.n_past
    }

    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn n_vocab(&self) -> usize {
        self.model.config.n_vocab
    }

    fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }
}
