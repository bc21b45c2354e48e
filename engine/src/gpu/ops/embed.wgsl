// Token embedding lookup from one buffer of the (possibly split) embedding matrix: rows
// outside [row_start, row_start + row_count) are left to the dispatch of their own buffer.

struct EmbedParams {
    cols: u32,
    kind: u32,      // 0: f32, 1: f16 pairs, 2: int8 quads with per-row scales
    row_start: u32,
    row_count: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: EmbedParams;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> row_scales: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group(wid, nwg) * WG + lid;
    if (i >= step.n_tok * p.cols) { return; }
    let t = i / p.cols;
    let c = i % p.cols;
    let tok = tokens[t];
    if (tok < p.row_start || tok >= p.row_start + p.row_count) { return; }
    let e = (tok - p.row_start) * p.cols + c;
    var v = 0.0;
    if (p.kind == 0u) {
        v = bitcast<f32>(w[e]);
    } else if (p.kind == 1u) {
        let pair = unpack2x16float(w[e / 2u]);
        v = select(pair.x, pair.y, (e & 1u) == 1u);
    } else {
        let b = bitcast<i32>(w[e / 4u] << (24u - 8u * (e & 3u))) >> 24u;
        v = f32(b) * row_scales[tok];
    }
    x[i] = v;
}
