// int8 rows (per-row scales, 4 per u32) × int8 activations: the optional small LM head.
// The integer dot product is exact, so each logit is bit-equal to the CPU's.

struct Int8Params {
    rows: u32,
    cols: u32,
    out_stride: u32,
    row_offset: u32,
    last_only: u32,
    _a: u32,
    _b: u32,
    _c: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: Int8Params;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> row_scales: array<f32>;
@group(0) @binding(4) var<storage, read> q: array<i32>;
@group(0) @binding(5) var<storage, read> act_meta: array<ActMeta>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = flat_group(wid, nwg);
    if (r >= p.rows) { return; }
    var n = step.n_tok;
    if (p.last_only != 0u) { n = 1u; }
    let wb = r * (p.cols / 4u);
    for (var t = 0u; t < n; t++) {
        let qb = t * p.cols;
        var acc = 0;
        for (var k = lid; k < p.cols / 4u; k += WG) {
            let word = w[wb + k];
            for (var j = 0u; j < 4u; j++) {
                // Sign-extend byte j.
                let v = bitcast<i32>(word << (24u - 8u * j)) >> 24u;
                acc += v * q[qb + 4u * k + j];
            }
        }
        let tot = wg_sum_i(acc, lid);
        if (lid == 0u) {
            let row = p.row_offset + r;
            out[t * p.out_stride + row] = f32(tot) * row_scales[row] * act_meta[t].inv_scale;
        }
    }
}
