//! What a model is on the GPU: its weights, activations and KV cache as buffers, and every
//! bind group the forward pass dispatches, all made once at load time ([`build`]).

use super::backend::GpuOptions;
use super::buffers::{readback, scratch, storage, uniform, Chunked, GpuLinear};
use super::context::GpuContext;
use super::ops::add::Add;
use super::ops::attention::{Attention, AttnParams};
use super::ops::dense::{Dense, DenseParams};
use super::ops::dequant::Dequant;
use super::ops::embed::{Embed, EmbedParams};
use super::ops::gate::{Gate, GateParams};
use super::ops::int8::{Int8, Int8Params};
use super::ops::norm_quant::{NormParams, NormQuant};
use super::ops::rope::{Rope, RopeParams};
use super::ops::ternary::{Ternary, TernaryParams};
use super::ops::topk::{self, Merge, Segments, TopkParams, MAX_TOP_K};
use super::ops::{ColsParams, Pipelines, Step};
use super::pack::{self, DenseKind};
use crate::error::{Error, Result};
use crate::model::{FfnActivation, Model};
use wgpu::{BindGroup, Buffer};

pub(super) struct LinOp {
    pub(super) bg: BindGroup,
    pub(super) rows: usize,
    pub(super) dense: bool,
}

pub(super) struct LayerOps {
    pub(super) attn_norm: BindGroup,
    pub(super) q: LinOp,
    pub(super) k: LinOp,
    pub(super) v: LinOp,
    pub(super) rope_q: BindGroup,
    pub(super) rope_k: BindGroup,
    pub(super) attention: BindGroup,
    pub(super) sub_norm: BindGroup,
    pub(super) o: LinOp,
    pub(super) ffn_norm: BindGroup,
    pub(super) gate: LinOp,
    pub(super) up: LinOp,
    pub(super) ffn_sub_norm: BindGroup,
    pub(super) down: LinOp,
}

/// Everything `build` makes on the GPU. `_buffers` holds every buffer the bind groups use
/// for the backend's lifetime (the web backend destroys a buffer when its handle drops).
pub(super) struct Parts {
    pub(super) step: Buffer,
    pub(super) tokens: Buffer,
    pub(super) logits: Buffer,
    pub(super) topk_params: Buffer,
    pub(super) topk_result: Buffer,
    pub(super) readback: Buffer,
    pub(super) layers: Vec<LayerOps>,
    pub(super) embed: Vec<BindGroup>,
    pub(super) final_norm_all: BindGroup,
    pub(super) final_norm_last: BindGroup,
    pub(super) head_all: Vec<(BindGroup, usize)>,
    pub(super) head_last: Vec<(BindGroup, usize)>,
    pub(super) head_int8: bool,
    pub(super) dequant_embd: BindGroup,
    pub(super) dequant_ff: BindGroup,
    pub(super) add: BindGroup,
    pub(super) gate_act: BindGroup,
    pub(super) topk_segments: BindGroup,
    pub(super) topk_merge: BindGroup,
    pub(super) _buffers: Vec<Buffer>,
}

/// Uploads the weights, allocates the activations and KV cache, and makes every bind group.
pub(super) fn build(
    ctx: &GpuContext,
    pipes: &Pipelines,
    model: &Model,
    opts: &GpuOptions,
) -> Result<(usize, usize, Parts)> {
    let cfg = &model.config;
    let w = &model.weights;
    let (e, ff, kvd, hd, v) = (
        cfg.n_embd,
        cfg.n_ff,
        cfg.kv_dim(),
        cfg.head_dim,
        cfg.n_vocab,
    );
    let n_ctx = opts.n_ctx.unwrap_or(cfg.n_ctx_train).max(1);
    let max_bind = ctx.max_binding().min(opts.max_binding.unwrap_or(u64::MAX));
    // The scores scratch (batch × heads × context) and the logits (batch × vocab) must each
    // fit one binding: shrink the batch if they would not.
    let per_tok = ((cfg.n_head * n_ctx).max(v) * 4) as u64;
    let max_batch = opts.max_batch.max(1).min((max_bind / per_tok) as usize);
    if max_batch == 0 {
        return Err(Error::Gpu(format!(
            "one token's attention scores or logits ({per_tok} bytes) exceed this adapter's storage binding limit ({max_bind} bytes)"
        )));
    }
    let b = max_batch;
    let wide = e.max(ff);
    // Interior mutability: several closures below record the buffers they make.
    let keep = std::cell::RefCell::new(Vec::new());
    let hold = |buf: Buffer| {
        keep.borrow_mut().push(buf.clone());
        buf
    };
    let step = hold(uniform(ctx, "step", &Step::default()));
    let tokens = hold(scratch(ctx, "tokens", (b * 4) as u64));
    let x = hold(scratch(ctx, "x", (b * e * 4) as u64));
    let h = hold(scratch(ctx, "h", (b * wide * 4) as u64));
    let acts = hold(scratch(ctx, "acts", (b * wide * 4) as u64));
    let act_meta = hold(scratch(ctx, "act meta", (b * 8) as u64));
    let deq = hold(scratch(ctx, "dequantized acts", (b * wide * 4) as u64));
    let q = hold(scratch(ctx, "q", (b * e * 4) as u64));
    let att = hold(scratch(ctx, "attention out", (b * e * 4) as u64));
    let o = hold(scratch(ctx, "o", (b * e * 4) as u64));
    let gate = hold(scratch(ctx, "gate", (b * ff * 4) as u64));
    let up = hold(scratch(ctx, "up", (b * ff * 4) as u64));
    let scores = hold(scratch(ctx, "scores", (b * cfg.n_head * n_ctx * 4) as u64));
    let logits = hold(scratch(ctx, "logits", (b * v * 4) as u64));
    let n_seg = v.div_ceil(topk::SEGMENT);
    let topk_params = hold(uniform(ctx, "top-k", &TopkParams::default()));
    let topk_cand = hold(scratch(
        ctx,
        "top-k candidates",
        (n_seg * MAX_TOP_K * 8) as u64,
    ));
    let topk_result = hold(scratch(ctx, "top-k result", (MAX_TOP_K * 8) as u64));
    let readback = hold(readback(ctx, ((b * v * 4).max(MAX_TOP_K * 8)) as u64));
    let table = hold(storage(
        ctx,
        "rope table",
        &pack::f32_bytes(&pack::rope_table(n_ctx, cfg.n_rot, cfg.rope_theta)),
    ));

    let norm_params = |cols: usize, quantize: bool, last_only: bool| {
        let p = NormParams {
            cols: cols as u32,
            eps: cfg.rms_eps,
            quantize: quantize as u32,
            last_only: last_only as u32,
        };
        uniform(ctx, "norm", &p)
    };
    let norm_e = hold(norm_params(e, true, false));
    let norm_ff = hold(norm_params(ff, true, false));
    let head_int8 = w.head().ty == crate::formats::DenseType::I8;
    let norm_final_all = hold(norm_params(e, head_int8, false));
    let norm_final_last = hold(norm_params(e, head_int8, true));

    let norm_bg = |params: &Buffer, input: &Buffer, weight: &Buffer| {
        NormQuant {
            step: &step,
            p: params,
            x: input,
            w: weight,
            h: &h,
            q: &acts,
            act_meta: &act_meta,
        }
        .bind(ctx, &pipes.norm_quant)
    };

    let mut layers = Vec::with_capacity(w.layers.len());
    for (li, lw) in w.layers.iter().enumerate() {
        let k_cache = hold(scratch(ctx, "k cache", (n_ctx * kvd * 4) as u64));
        let v_cache = hold(scratch(ctx, "v cache", (n_ctx * kvd * 4) as u64));
        let lin =
            |name: &str, l: &crate::model::Linear, out: &Buffer, at_p0: bool| -> Result<LinOp> {
                let g = GpuLinear::upload(ctx, &format!("blk.{li}.{name}"), l)?;
                let rows = g.rows();
                let dense = g.is_dense();
                let bg = match &g {
                    GpuLinear::Ternary {
                        rows,
                        cols,
                        words,
                        scales,
                        per_block,
                    } => {
                        let p = TernaryParams {
                            rows: *rows as u32,
                            cols: *cols as u32,
                            per_block: *per_block as u32,
                            out_at_p0: at_p0 as u32,
                        };
                        let params = uniform(ctx, name, &p);
                        let bg = Ternary {
                            step: &step,
                            p: &params,
                            w: words,
                            scales,
                            q: &acts,
                            act_meta: &act_meta,
                            out,
                        }
                        .bind(ctx, &pipes.ternary_matvec);
                        keep.borrow_mut()
                            .extend([params, words.clone(), scales.clone()]);
                        bg
                    }
                    GpuLinear::Dense {
                        rows,
                        cols,
                        words,
                        kind,
                        out_scale,
                    } => {
                        let p = DenseParams {
                            rows: *rows as u32,
                            cols: *cols as u32,
                            f16: (*kind == DenseKind::F16) as u32,
                            out_stride: *rows as u32,
                            row_offset: 0,
                            last_only: 0,
                            out_scale: *out_scale,
                            out_at_p0: at_p0 as u32,
                        };
                        let params = uniform(ctx, name, &p);
                        let bg = Dense {
                            step: &step,
                            p: &params,
                            w: words,
                            x: &deq,
                            out,
                        }
                        .bind(ctx, &pipes.dense);
                        keep.borrow_mut().extend([params, words.clone()]);
                        bg
                    }
                };
                Ok(LinOp { bg, rows, dense })
            };
        let ops_q = lin("attn_q", &lw.q, &q, false)?;
        let ops_k = lin("attn_k", &lw.k, &k_cache, true)?;
        let ops_v = lin("attn_v", &lw.v, &v_cache, true)?;
        let ops_o = lin("attn_output", &lw.o, &o, false)?;
        let ops_gate = lin("ffn_gate", &lw.gate, &gate, false)?;
        let ops_up = lin("ffn_up", &lw.up, &up, false)?;
        let ops_down = lin("ffn_down", &lw.down, &o, false)?;
        let vec = |name: &str, data: &[f32]| storage(ctx, name, &pack::f32_bytes(data));
        let attn_norm = hold(vec("attn_norm", &lw.attn_norm));
        let attn_sub_norm = hold(vec("attn_sub_norm", &lw.attn_sub_norm));
        let ffn_norm = hold(vec("ffn_norm", &lw.ffn_norm));
        let ffn_sub_norm = hold(vec("ffn_sub_norm", &lw.ffn_sub_norm));
        let rope_params = |heads: usize, at_p0: bool| {
            let p = RopeParams {
                n_heads: heads as u32,
                head_dim: hd as u32,
                n_rot: cfg.n_rot as u32,
                at_p0: at_p0 as u32,
            };
            uniform(ctx, "rope", &p)
        };
        let rope_q_params = hold(rope_params(cfg.n_head, false));
        let rope_k_params = hold(rope_params(cfg.n_head_kv, true));
        let attn = AttnParams {
            n_head: cfg.n_head as u32,
            n_head_kv: cfg.n_head_kv as u32,
            head_dim: hd as u32,
            n_ctx: n_ctx as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            ..Default::default()
        };
        let attn_params = hold(uniform(ctx, "attention", &attn));
        layers.push(LayerOps {
            attn_norm: norm_bg(&norm_e, &x, &attn_norm),
            q: ops_q,
            k: ops_k,
            v: ops_v,
            rope_q: Rope {
                step: &step,
                p: &rope_q_params,
                table: &table,
                x: &q,
            }
            .bind(ctx, &pipes.rope),
            rope_k: Rope {
                step: &step,
                p: &rope_k_params,
                table: &table,
                x: &k_cache,
            }
            .bind(ctx, &pipes.rope),
            attention: Attention {
                step: &step,
                p: &attn_params,
                q: &q,
                kc: &k_cache,
                vc: &v_cache,
                scores: &scores,
                out: &att,
            }
            .bind(ctx, &pipes.attention),
            sub_norm: norm_bg(&norm_e, &att, &attn_sub_norm),
            o: ops_o,
            ffn_norm: norm_bg(&norm_e, &x, &ffn_norm),
            gate: ops_gate,
            up: ops_up,
            ffn_sub_norm: norm_bg(&norm_ff, &gate, &ffn_sub_norm),
            down: ops_down,
        });
    }

    // The head, split by the binding limit; the embedding reuses it when tied.
    let head = Chunked::upload(ctx, "output", w.head(), max_bind)?;
    let embd_own;
    let embd = match &w.output {
        Some(_) => {
            embd_own = Chunked::upload(ctx, "token_embd", &w.embd, max_bind)?;
            &embd_own
        }
        None => &head,
    };
    let mut embed = Vec::new();
    for (buf, r0, rows) in &embd.chunks {
        let p = EmbedParams {
            cols: e as u32,
            kind: embd.kind.code(),
            row_start: *r0 as u32,
            row_count: *rows as u32,
        };
        let params = hold(uniform(ctx, "embed", &p));
        embed.push(
            Embed {
                step: &step,
                p: &params,
                tokens: &tokens,
                w: buf,
                row_scales: &embd.row_scales,
                x: &x,
            }
            .bind(ctx, &pipes.embed),
        );
    }
    let head_int8_kind = head.kind == DenseKind::I8;
    let head_bgs = |last_only: bool| {
        let mut out = Vec::new();
        for (buf, r0, rows) in &head.chunks {
            let (bg, params) = if head_int8_kind {
                let p = Int8Params {
                    rows: *rows as u32,
                    cols: e as u32,
                    out_stride: v as u32,
                    row_offset: *r0 as u32,
                    last_only: last_only as u32,
                    ..Default::default()
                };
                let params = uniform(ctx, "head", &p);
                let bg = Int8 {
                    step: &step,
                    p: &params,
                    w: buf,
                    row_scales: &head.row_scales,
                    q: &acts,
                    act_meta: &act_meta,
                    out: &logits,
                }
                .bind(ctx, &pipes.int8);
                (bg, params)
            } else {
                let p = DenseParams {
                    rows: *rows as u32,
                    cols: e as u32,
                    f16: (head.kind == DenseKind::F16) as u32,
                    out_stride: v as u32,
                    row_offset: *r0 as u32,
                    last_only: last_only as u32,
                    out_scale: 1.0,
                    out_at_p0: 0,
                };
                let params = uniform(ctx, "head", &p);
                let bg = Dense {
                    step: &step,
                    p: &params,
                    w: buf,
                    x: &h,
                    out: &logits,
                }
                .bind(ctx, &pipes.dense);
                (bg, params)
            };
            keep.borrow_mut().push(params);
            out.push((bg, *rows));
        }
        out
    };
    let head_all = head_bgs(false);
    let head_last = head_bgs(true);
    {
        let mut k = keep.borrow_mut();
        k.extend(head.chunks.iter().map(|c| c.0.clone()));
        k.push(head.row_scales.clone());
        if w.output.is_some() {
            k.extend(embd.chunks.iter().map(|c| c.0.clone()));
            k.push(embd.row_scales.clone());
        }
    }
    let final_norm_w = hold(storage(
        ctx,
        "output_norm",
        &pack::f32_bytes(&w.output_norm),
    ));
    let cols_params = |cols: usize| {
        let p = ColsParams {
            cols: cols as u32,
            ..Default::default()
        };
        uniform(ctx, "cols", &p)
    };
    let cols_e = hold(cols_params(e));
    let cols_ff = hold(cols_params(ff));
    let gate_p = GateParams {
        cols: ff as u32,
        silu: (cfg.activation == FfnActivation::Silu) as u32,
        ..Default::default()
    };
    let gate_params = hold(uniform(ctx, "gate", &gate_p));
    let parts = Parts {
        final_norm_all: norm_bg(&norm_final_all, &x, &final_norm_w),
        final_norm_last: norm_bg(&norm_final_last, &x, &final_norm_w),
        dequant_embd: Dequant {
            step: &step,
            p: &cols_e,
            q: &acts,
            act_meta: &act_meta,
            out: &deq,
        }
        .bind(ctx, &pipes.dequant),
        dequant_ff: Dequant {
            step: &step,
            p: &cols_ff,
            q: &acts,
            act_meta: &act_meta,
            out: &deq,
        }
        .bind(ctx, &pipes.dequant),
        add: Add {
            step: &step,
            p: &cols_e,
            o: &o,
            x: &x,
        }
        .bind(ctx, &pipes.add),
        gate_act: Gate {
            step: &step,
            p: &gate_params,
            up: &up,
            gate: &gate,
        }
        .bind(ctx, &pipes.gate),
        topk_segments: Segments {
            p: &topk_params,
            logits: &logits,
            cand: &topk_cand,
        }
        .bind(ctx, &pipes.topk_segments),
        topk_merge: Merge {
            p: &topk_params,
            logits: &logits,
            cand: &topk_cand,
            result: &topk_result,
        }
        .bind(ctx, &pipes.topk_merge),
        step,
        tokens,
        logits,
        topk_params,
        topk_result,
        readback,
        layers,
        embed,
        head_all,
        head_last,
        head_int8,
        _buffers: keep.take(),
    };
    Ok((n_ctx, max_batch, parts))
}
