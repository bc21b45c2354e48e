// Ternary weights × int8 activations for a batch (prefill): a workgroup computes 64 rows ×
// 8 tokens, staging each 128-value block of the 8 tokens' activations in workgroup memory so
// every weight word is read once per 8 tokens. Per-block scales are applied per 128-block in
// block order, exactly like the CPU reference.

struct TernaryParams {
    rows: u32,
    cols: u32,
    per_block: u32, // 0: scales[0] for the whole tensor; 1: one scale per 128 values
    out_at_p0: u32, // 1: output row t lands at row p0 + t (K and V straight into the cache)
}

const TT: u32 = 8u;      // tokens per workgroup
const BLK: u32 = 128u;   // values per staged block

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: TernaryParams;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> q: array<i32>;
@group(0) @binding(5) var<storage, read> act_meta: array<ActMeta>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> tile: array<i32, 1024>; // TT × BLK

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x * WG + lid;
    let t0 = wid.y * TT;
    let valid = r < p.rows;
    let wpr = p.cols / 16u;
    let bpr = p.cols / BLK;
    // Every var gets an explicit initializer (see ops/tests.rs): Chromium's WebGPU on
    // SwiftShader does not zero `d` below again on each pass of the loop when the
    // initializer is left implicit, and every block then adds the earlier blocks' sums.
    var acc_i = array<i32, 8>();
    var acc_f = array<f32, 8>();
    for (var b = 0u; b < bpr; b++) {
        for (var k = lid; k < TT * BLK; k += WG) {
            let t = t0 + k / BLK;
            var v = 0;
            if (t < step.n_tok) { v = q[t * p.cols + b * BLK + k % BLK]; }
            tile[k] = v;
        }
        workgroupBarrier();
        if (valid) {
            var d = array<i32, 8>();
            for (var wj = 0u; wj < 8u; wj++) {
                let word = w[r * wpr + b * 8u + wj];
                for (var j = 0u; j < 16u; j++) {
                    let c = i32((word >> (2u * j)) & 3u) - 1;
                    let col = wj * 16u + j;
                    for (var t = 0u; t < TT; t++) { d[t] += c * tile[t * BLK + col]; }
                }
            }
            if (p.per_block != 0u) {
                let s = scales[r * bpr + b];
                for (var t = 0u; t < TT; t++) { acc_f[t] += f32(d[t]) * s; }
            } else {
                for (var t = 0u; t < TT; t++) { acc_i[t] += d[t]; }
            }
        }
        workgroupBarrier();
    }
    if (!valid) { return; }
    var o0 = 0u;
    if (p.out_at_p0 != 0u) { o0 = step.p0; }
    for (var t = 0u; t < TT; t++) {
        let tok = t0 + t;
        if (tok >= step.n_tok) { break; }
        var y = 0.0;
        if (p.per_block != 0u) {
            y = acc_f[t] * act_meta[tok].inv_scale;
        } else {
            y = f32(acc_i[t]) * scales[0] * act_meta[tok].inv_scale;
        }
        out[(o0 + tok) * p.rows + r] = y;
    }
}
