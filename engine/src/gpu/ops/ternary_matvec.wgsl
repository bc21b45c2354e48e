// Ternary weights × int8 activations, one output row per workgroup: the decode path, where
// the whole cost is streaming the weights once. Weights are 16 codes (t+1) per u32, element
// 16w+j of a row in bits 2j..2j+1 of word w (packed at load time).

struct TernaryParams {
    rows: u32,
    cols: u32,
    per_block: u32, // 0: scales[0] for the whole tensor; 1: one scale per 128 values
    out_at_p0: u32, // 1: output row t lands at row p0 + t (K and V straight into the cache)
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: TernaryParams;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<f32>;
@group(0) @binding(4) var<storage, read> q: array<i32>;
@group(0) @binding(5) var<storage, read> act_meta: array<ActMeta>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = flat_group(wid, nwg);
    if (r >= p.rows) { return; }
    let wpr = p.cols / 16u;
    let wrow = r * wpr;
    var o0 = 0u;
    if (p.out_at_p0 != 0u) { o0 = step.p0; }
    for (var t = 0u; t < step.n_tok; t++) {
        let qrow = t * p.cols;
        var acc_i = 0;
        var acc_f = 0.0;
        for (var k = lid; k < wpr; k += WG) {
            let word = w[wrow + k];
            let qb = qrow + k * 16u;
            var d = 0;
            for (var j = 0u; j < 16u; j++) {
                d += (i32((word >> (2u * j)) & 3u) - 1) * q[qb + j];
            }
            if (p.per_block != 0u) {
                acc_f += f32(d) * scales[r * (p.cols / 128u) + k / 8u];
            } else {
                acc_i += d;
            }
        }
        if (p.per_block != 0u) {
            let tot = wg_sum_f(acc_f, lid);
            if (lid == 0u) { out[(o0 + t) * p.rows + r] = tot * act_meta[t].inv_scale; }
        } else {
            // The CPU's order of operations: (Σ t·q as f32) · scale · (max/127).
            let tot = wg_sum_i(acc_i, lid);
            if (lid == 0u) { out[(o0 + t) * p.rows + r] = f32(tot) * scales[0] * act_meta[t].inv_scale; }
        }
    }
}
