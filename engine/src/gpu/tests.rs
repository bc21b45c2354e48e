//! Every shader against the scalar CPU reference on random shapes with ragged tails, on the
//! subgroup path (when the adapter has it) and the plain path. Shapes stay small: lavapipe
//! runs the shaders on the CPU.

use super::buffers::{bind_group, readback, storage, uniform};
use super::context::{DeviceOptions, GpuContext};
use super::ops::attention::AttnParams;
use super::ops::dense::DenseParams;
use super::ops::embed::EmbedParams;
use super::ops::gate::GateParams;
use super::ops::int8::Int8Params;
use super::ops::norm_quant::NormParams;
use super::ops::rope::RopeParams;
use super::ops::ternary::TernaryParams;
use super::ops::topk::TopkParams;
use super::ops::{ColsParams, Params, Pipe, Pipelines, Step};
use super::pack;
use crate::formats::{i2s, DenseMatrix, TernaryMatrix, TernaryScale};
use crate::gguf::AlignedBuf;
use crate::kernels::{scalar, QuantActs};
use wgpu::Buffer;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-a, a).
    fn f(&mut self, a: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
    }
    fn vec(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| self.f(a)).collect()
    }
}

struct Gpu {
    ctx: GpuContext,
    pipes: Pipelines,
}

/// Both paths when the adapter has subgroups (else the plain path twice, said so).
fn devices() -> Vec<Gpu> {
    [true, false]
        .into_iter()
        .map(|subgroups| {
            let ctx = pollster::block_on(GpuContext::new(DeviceOptions { subgroups }))
                .unwrap_or_else(|e| panic!("the gpu feature is on but no adapter opened: {e}"));
            // The stack under test, in the output: the same tests run on each.
            eprintln!(
                "adapter {} ({:?}), {} path",
                ctx.info.name,
                ctx.info.backend,
                if ctx.subgroups { "subgroup" } else { "plain" }
            );
            if subgroups && !ctx.subgroups {
                eprintln!(
                    "{}: no subgroups, testing the plain path only",
                    ctx.info.name
                );
            }
            let pipes = Pipelines::new(&ctx.device, ctx.subgroups);
            ctx.check().unwrap();
            Gpu { ctx, pipes }
        })
        .collect()
}

impl Gpu {
    fn f32s(&self, v: &[f32]) -> Buffer {
        storage(&self.ctx, "test", &pack::f32_bytes(v))
    }
    fn i32s(&self, v: &[i32]) -> Buffer {
        storage(
            &self.ctx,
            "test",
            &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>(),
        )
    }
    fn u32s(&self, v: &[u32]) -> Buffer {
        storage(&self.ctx, "test", &pack::u32_bytes(v))
    }
    fn uni<P: Params>(&self, p: &P) -> Buffer {
        uniform(&self.ctx, "test", p)
    }
    fn step(&self, n: usize, p0: usize) -> Buffer {
        self.uni(&Step {
            n_tok: n as u32,
            p0: p0 as u32,
            last: n as u32 - 1,
            _pad: 0,
        })
    }
    fn meta(&self, a: &QuantActs) -> Buffer {
        let w: Vec<u32> = (0..a.n_tok)
            .flat_map(|t| [a.inv_scale[t].to_bits(), a.sum[t] as u32])
            .collect();
        self.u32s(&w)
    }
    fn run(&self, pipe: &Pipe, bufs: &[&Buffer], groups: (u32, u32)) {
        let bg = bind_group(&self.ctx, &pipe.layout, bufs);
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipe.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        self.ctx.queue.submit([enc.finish()]);
    }
    fn read_u32(&self, b: &Buffer, n: usize) -> Vec<u32> {
        let rb = readback(&self.ctx, (n * 4) as u64);
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(b, 0, &rb, 0, (n * 4) as u64);
        self.ctx.queue.submit([enc.finish()]);
        let bytes = pollster::block_on(self.ctx.read(&rb, (n * 4) as u64)).unwrap();
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn read_f32(&self, b: &Buffer, n: usize) -> Vec<f32> {
        self.read_u32(b, n)
            .into_iter()
            .map(f32::from_bits)
            .collect()
    }
    fn zeros(&self, n: usize) -> Buffer {
        self.f32s(&vec![0.0; n])
    }
}

fn close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = rel * (1.0 + x.abs().max(y.abs()));
        assert!((x - y).abs() <= tol, "{what}[{i}]: gpu {x} vs cpu {y}");
    }
}

fn random_acts(rng: &mut Rng, n_tok: usize, cols: usize) -> QuantActs {
    let mut a = QuantActs::default();
    scalar::quantize_acts(&rng.vec(n_tok * cols, 3.0), cols, &mut a);
    a
}

fn random_ternary(rng: &mut Rng, rows: usize, cols: usize, per_block: bool) -> TernaryMatrix {
    let codes: Vec<u8> = (0..rows * cols).map(|_| rng.below(3) as u8).collect();
    let mut packed = Vec::new();
    i2s::pack_codes(&codes, &mut packed);
    TernaryMatrix {
        rows,
        cols,
        codes: AlignedBuf::from_slice(&packed),
        scale: if per_block {
            TernaryScale::PerBlock(
                (0..rows * cols / 128)
                    .map(|_| 0.1 + rng.f(1.0).abs())
                    .collect(),
            )
        } else {
            TernaryScale::PerTensor(0.37)
        },
    }
}

/// CPU tiles are row-major (`[r][t]`), GPU outputs token-major (`[t][r]`).
fn transpose(tile: &[f32], rows: usize, n_tok: usize) -> Vec<f32> {
    (0..n_tok)
        .flat_map(|t| (0..rows).map(move |r| tile[r * n_tok + t]))
        .collect()
}

#[test]
fn norm_and_quantization_match_the_cpu() {
    let mut rng = Rng(7);
    for g in devices() {
        for _ in 0..6 {
            let cols = 32 * (1 + rng.below(24));
            let n = 1 + rng.below(5);
            let mut x = rng.vec(n * cols, 4.0);
            if n > 1 {
                x[cols..2 * cols].fill(0.0); // the all-zero guard
            }
            let w = rng.vec(cols, 2.0);
            let (h, q, meta) = (g.zeros(n * cols), g.zeros(n * cols), g.zeros(2 * n));
            let params = g.uni(&NormParams {
                cols: cols as u32,
                eps: 1e-5,
                quantize: 1,
                last_only: 0,
            });
            g.run(
                &g.pipes.norm_quant,
                &[
                    &g.step(n, 0),
                    &params,
                    &g.f32s(&x),
                    &g.f32s(&w),
                    &h,
                    &q,
                    &meta,
                ],
                (n as u32, 1),
            );
            let gh = g.read_f32(&h, n * cols);
            let mut ch = vec![0.0; n * cols];
            scalar::rmsnorm(&x, &w, 1e-5, &mut ch);
            close(&gh, &ch, 1e-5, "rmsnorm");
            // The quantizer itself, on the GPU's own normalized values: bit-exact.
            let mut a = QuantActs::default();
            scalar::quantize_acts(&gh, cols, &mut a);
            let gq: Vec<i8> = g
                .read_u32(&q, n * cols)
                .iter()
                .map(|&v| v as i32 as i8)
                .collect();
            assert_eq!(gq, a.q, "int8 values");
            let gm = g.read_u32(&meta, 2 * n);
            for t in 0..n {
                assert_eq!(
                    f32::from_bits(gm[2 * t]),
                    a.inv_scale[t],
                    "scale of token {t}"
                );
                assert_eq!(gm[2 * t + 1] as i32, a.sum[t], "Σq of token {t}");
            }
        }
    }
}

#[test]
fn ternary_matvec_and_matmul_match_the_cpu() {
    let mut rng = Rng(11);
    for g in devices() {
        for case in 0..8 {
            let per_block = case % 2 == 1;
            let rows = 1 + rng.below(150);
            let cols = 128 * (1 + rng.below(4));
            let n = if case < 2 { 1 } else { 1 + rng.below(19) };
            let m = random_ternary(&mut rng, rows, cols, per_block);
            let a = random_acts(&mut rng, n, cols);
            let mut tile = vec![0.0; rows * n];
            scalar::ternary_rows(&m, &a, 0..rows, &mut tile);
            let want = transpose(&tile, rows, n);
            let (scales, pb) = pack::ternary_scales(&m);
            let params = g.uni(&TernaryParams {
                rows: rows as u32,
                cols: cols as u32,
                per_block: pb as u32,
                out_at_p0: 0,
            });
            let (w, s) = (g.u32s(&pack::ternary_words(&m)), g.f32s(&scales));
            let q = g.i32s(&a.q.iter().map(|&v| v as i32).collect::<Vec<_>>());
            let meta = g.meta(&a);
            for (pipe, groups, name) in [
                (&g.pipes.ternary_matvec, (rows as u32, 1), "matvec"),
                (
                    &g.pipes.ternary_matmul,
                    (rows.div_ceil(64) as u32, n.div_ceil(8) as u32),
                    "matmul",
                ),
            ] {
                let out = g.zeros(n * rows);
                g.run(
                    pipe,
                    &[&g.step(n, 0), &params, &w, &s, &q, &meta, &out],
                    groups,
                );
                let got = g.read_f32(&out, n * rows);
                let what = format!("{name} {rows}x{cols}, {n} tokens, per_block {per_block}");
                if per_block && name == "matvec" {
                    // Sums the per-block products in another order.
                    close(&got, &want, 1e-5, &what);
                } else {
                    assert_eq!(got, want, "{what}");
                }
            }
        }
    }
}

#[test]
fn dense_and_int8_heads_match_the_cpu() {
    let mut rng = Rng(13);
    for g in devices() {
        for case in 0..6 {
            let rows = 1 + rng.below(100);
            let cols = 4 * (1 + rng.below(40));
            let n = 1 + rng.below(4);
            let vals = rng.vec(rows * cols, 1.0);
            let x = rng.vec(n * cols, 2.0);
            let mut m = match case % 3 {
                0 => DenseMatrix::from_f32(rows, cols, &vals),
                _ => DenseMatrix::from_f16(rows, cols, &vals),
            };
            let int8 = case % 3 == 2;
            // Out rows [3, 3 + rows) of a wider output, as for one piece of a split head.
            let (off, stride) = (3, rows + 5);
            let out = g.zeros(n * stride);
            let mut tile = vec![0.0; rows * n];
            if int8 {
                m.quantize_rows_int8();
                let a = random_acts(&mut rng, n, cols);
                scalar::int8_rows(&m, &a, 0..rows, &mut tile);
                let mut scales = vec![0.0; off];
                scales.extend(&m.row_scales);
                let params = g.uni(&Int8Params {
                    rows: rows as u32,
                    cols: cols as u32,
                    out_stride: stride as u32,
                    row_offset: off as u32,
                    ..Default::default()
                });
                let q = g.i32s(&a.q.iter().map(|&v| v as i32).collect::<Vec<_>>());
                let (_, bytes) = pack::dense_rows_bytes(&m, 0..rows);
                g.run(
                    &g.pipes.int8,
                    &[
                        &g.step(n, 0),
                        &params,
                        &storage(&g.ctx, "w", &bytes),
                        &g.f32s(&scales),
                        &q,
                        &g.meta(&a),
                        &out,
                    ],
                    (rows as u32, 1),
                );
            } else {
                scalar::dense_rows(&m, &x, n, 0..rows, &mut tile);
                let (kind, bytes) = pack::dense_rows_bytes(&m, 0..rows);
                let f16 = (kind == pack::DenseKind::F16) as u32;
                let params = g.uni(&DenseParams {
                    rows: rows as u32,
                    cols: cols as u32,
                    f16,
                    out_stride: stride as u32,
                    row_offset: off as u32,
                    last_only: 0,
                    out_scale: 1.0,
                    out_at_p0: 0,
                });
                g.run(
                    &g.pipes.dense,
                    &[
                        &g.step(n, 0),
                        &params,
                        &storage(&g.ctx, "w", &bytes),
                        &g.f32s(&x),
                        &out,
                    ],
                    (rows as u32, 1),
                );
            }
            let got = g.read_f32(&out, n * stride);
            let got: Vec<f32> = (0..n)
                .flat_map(|t| got[t * stride + off..t * stride + off + rows].to_vec())
                .collect();
            let want = transpose(&tile, rows, n);
            if int8 {
                assert_eq!(got, want, "int8 {rows}x{cols}");
            } else {
                close(&got, &want, 1e-5, &format!("dense {rows}x{cols}"));
            }
        }
    }
}

#[test]
fn embedding_lookup_reads_split_tables() {
    let mut rng = Rng(17);
    for g in devices() {
        for case in 0..3 {
            let (rows, cols) = (40, 8 * (1 + rng.below(8)));
            let vals = rng.vec(rows * cols, 1.0);
            let mut m = match case {
                0 => DenseMatrix::from_f32(rows, cols, &vals),
                _ => DenseMatrix::from_f16(rows, cols, &vals),
            };
            if case == 2 {
                m.quantize_rows_int8();
            }
            let toks: Vec<u32> = (0..7).map(|_| rng.below(rows) as u32).collect();
            let n = toks.len();
            let x = g.zeros(n * cols);
            let scales = g.f32s(&if m.row_scales.is_empty() {
                vec![0.0]
            } else {
                m.row_scales.clone()
            });
            // Two pieces, rows [0, 17) and [17, 40).
            for (r0, r1) in [(0, 17), (17, rows)] {
                let (kind, bytes) = pack::dense_rows_bytes(&m, r0..r1);
                let params = g.uni(&EmbedParams {
                    cols: cols as u32,
                    kind: kind.code(),
                    row_start: r0 as u32,
                    row_count: (r1 - r0) as u32,
                });
                g.run(
                    &g.pipes.embed,
                    &[
                        &g.step(n, 0),
                        &params,
                        &g.u32s(&toks),
                        &storage(&g.ctx, "w", &bytes),
                        &scales,
                        &x,
                    ],
                    ((n * cols).div_ceil(64) as u32, 1),
                );
            }
            let mut want = vec![0.0; n * cols];
            for (t, &tok) in toks.iter().enumerate() {
                m.row_f32(tok as usize, &mut want[t * cols..(t + 1) * cols]);
            }
            assert_eq!(g.read_f32(&x, n * cols), want, "embedding case {case}");
        }
    }
}

#[test]
fn rope_matches_the_cpu() {
    let mut rng = Rng(19);
    for g in devices() {
        let (hd, n_rot, heads, n, p0) = (16, 16, 3, 4, 37);
        let n_ctx = 64;
        let table = g.f32s(&pack::rope_table(n_ctx, n_rot, 10000.0));
        let x = rng.vec(n * heads * hd, 2.0);
        let buf = g.f32s(&x);
        let params = g.uni(&RopeParams {
            n_heads: heads as u32,
            head_dim: hd as u32,
            n_rot: n_rot as u32,
            at_p0: 0,
        });
        g.run(
            &g.pipes.rope,
            &[&g.step(n, p0), &params, &table, &buf],
            (2, 1),
        );
        let mut want = x.clone();
        for (i, h) in want.chunks_exact_mut(hd).enumerate() {
            scalar::rope_neox(h, p0 + i / heads, n_rot, 10000.0);
        }
        close(&g.read_f32(&buf, x.len()), &want, 1e-6, "rope");
    }
}

/// The CPU backend's attention loop, for one layer.
#[allow(clippy::too_many_arguments)]
fn cpu_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    p0: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
) -> Vec<f32> {
    let (e, kvd) = (nh * hd, nkv * hd);
    let mut out = vec![0.0; n * e];
    for i in 0..n {
        let len = p0 + i + 1;
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let qh = &q[i * e + h * hd..i * e + (h + 1) * hd];
            let mut s: Vec<f32> = (0..len)
                .map(|j| {
                    scalar::dot(qh, &k[j * kvd + kvh * hd..j * kvd + (kvh + 1) * hd])
                        / (hd as f32).sqrt()
                })
                .collect();
            scalar::softmax(&mut s);
            for (j, &p) in s.iter().enumerate() {
                for d in 0..hd {
                    out[i * e + h * hd + d] += p * v[j * kvd + kvh * hd + d];
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_the_cpu() {
    let mut rng = Rng(23);
    for g in devices() {
        for (nh, nkv, hd, n, p0) in [
            (4, 2, 16, 1, 70),
            (6, 3, 8, 5, 3),
            (2, 1, 32, 9, 0),
            (4, 4, 8, 2, 130),
        ] {
            let n_ctx = 160;
            let (e, kvd) = (nh * hd, nkv * hd);
            let q = rng.vec(n * e, 2.0);
            let k = rng.vec(n_ctx * kvd, 2.0);
            let v = rng.vec(n_ctx * kvd, 2.0);
            let want = cpu_attention(&q, &k, &v, n, p0, nh, nkv, hd);
            let params = g.uni(&AttnParams {
                n_head: nh as u32,
                n_head_kv: nkv as u32,
                head_dim: hd as u32,
                n_ctx: n_ctx as u32,
                scale: 1.0 / (hd as f32).sqrt(),
                ..Default::default()
            });
            let (scores, out) = (g.zeros(n * nh * n_ctx), g.zeros(n * e));
            g.run(
                &g.pipes.attention,
                &[
                    &g.step(n, p0),
                    &params,
                    &g.f32s(&q),
                    &g.f32s(&k),
                    &g.f32s(&v),
                    &scores,
                    &out,
                ],
                ((n * nh) as u32, 1),
            );
            close(
                &g.read_f32(&out, n * e),
                &want,
                1e-5,
                &format!("attention {nh}/{nkv}x{hd}, {n} at {p0}"),
            );
        }
    }
}

#[test]
fn residual_gate_and_dequant_match_the_cpu() {
    let mut rng = Rng(29);
    for g in devices() {
        let (n, cols) = (3, 200);
        let (a, b) = (rng.vec(n * cols, 3.0), rng.vec(n * cols, 3.0));
        let x = g.f32s(&a);
        g.run(
            &g.pipes.add,
            &[
                &g.step(n, 0),
                &g.uni(&ColsParams {
                    cols: cols as u32,
                    ..Default::default()
                }),
                &g.f32s(&b),
                &x,
            ],
            (10, 1),
        );
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, o)| x + o).collect();
        assert_eq!(g.read_f32(&x, n * cols), want, "add");
        for silu in [false, true] {
            let gate = g.f32s(&a);
            g.run(
                &g.pipes.gate,
                &[
                    &g.step(n, 0),
                    &g.uni(&GateParams {
                        cols: cols as u32,
                        silu: silu as u32,
                        ..Default::default()
                    }),
                    &g.f32s(&b),
                    &gate,
                ],
                (10, 1),
            );
            let want: Vec<f32> = a
                .iter()
                .zip(&b)
                .map(|(&g, &u)| {
                    if silu {
                        g / (1.0 + (-g).exp()) * u
                    } else {
                        g.max(0.0) * g.max(0.0) * u
                    }
                })
                .collect();
            close(&g.read_f32(&gate, n * cols), &want, 1e-6, "gate");
        }
        let acts = random_acts(&mut rng, n, cols);
        let out = g.zeros(n * cols);
        let q = g.i32s(&acts.q.iter().map(|&v| v as i32).collect::<Vec<_>>());
        g.run(
            &g.pipes.dequant,
            &[
                &g.step(n, 0),
                &g.uni(&ColsParams {
                    cols: cols as u32,
                    ..Default::default()
                }),
                &q,
                &g.meta(&acts),
                &out,
            ],
            (10, 1),
        );
        assert_eq!(g.read_f32(&out, n * cols), acts.dequantize(), "dequant");
    }
}

#[test]
fn top_k_matches_the_sampler_order() {
    let mut rng = Rng(31);
    for g in devices() {
        for (n, k) in [(1, 1), (700, 5), (3000, 40), (2500, 256), (5000, 1)] {
            // Coarse values: many ties; plus NaN and -inf, which the sampler reads as -inf.
            let mut logits: Vec<f32> = (0..n).map(|_| (rng.f(8.0) * 4.0).round() / 4.0).collect();
            for _ in 0..3 {
                logits[rng.below(n)] = f32::NAN;
                logits[rng.below(n)] = f32::NEG_INFINITY;
            }
            let want = crate::sampler::top_k(&logits, k);
            let n_seg = n.div_ceil(1024);
            let params = g.uni(&TopkParams {
                n: n as u32,
                k: k as u32,
                seg_len: 1024,
                n_cand: (n_seg * k) as u32,
            });
            let lb = g.f32s(&logits);
            let cand = g.zeros(n_seg * k * 2);
            let result = g.zeros(k * 2);
            g.run(
                &g.pipes.topk_segments,
                &[&params, &lb, &cand],
                (n_seg as u32, 1),
            );
            g.run(&g.pipes.topk_merge, &[&params, &lb, &cand, &result], (1, 1));
            let got: Vec<(u32, f32)> = g
                .read_u32(&result, 2 * k)
                .chunks_exact(2)
                .map(|c| {
                    let l = f32::from_bits(c[1]);
                    (c[0], if l.is_nan() { f32::NEG_INFINITY } else { l })
                })
                .collect();
            assert_eq!(got, want, "top-{k} of {n}");
        }
    }
}
