// Float weights (f16 pairs unpacked with unpack2x16float, so `shader-f16` is never needed, or
// f32) × f32 activations, one row per workgroup. Serves float linear layers and the LM head,
// whose rows may be split over several buffers: `row_offset` places this chunk's rows.

struct DenseParams {
    rows: u32,        // rows in this buffer
    cols: u32,
    f16: u32,         // 1: two f16 per u32; 0: f32
    out_stride: u32,  // floats per output token row
    row_offset: u32,  // where this buffer's row 0 lands in the output row
    last_only: u32,   // 1: one input row (the head of Logits::Last)
    out_scale: f32,
    out_at_p0: u32,   // 1: output row t lands at row p0 + t (K and V straight into the cache)
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: DenseParams;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = flat_group(wid, nwg);
    if (r >= p.rows) { return; }
    var n = step.n_tok;
    if (p.last_only != 0u) { n = 1u; }
    var o0 = 0u;
    if (p.out_at_p0 != 0u) { o0 = step.p0; }
    for (var t = 0u; t < n; t++) {
        let xb = t * p.cols;
        var acc = 0.0;
        if (p.f16 != 0u) {
            let wb = r * (p.cols / 2u);
            for (var k = lid; k < p.cols / 2u; k += WG) {
                let v = unpack2x16float(w[wb + k]);
                acc += v.x * x[xb + 2u * k] + v.y * x[xb + 2u * k + 1u];
            }
        } else {
            let wb = r * p.cols;
            for (var k = lid; k < p.cols; k += WG) {
                acc += bitcast<f32>(w[wb + k]) * x[xb + k];
            }
        }
        let tot = wg_sum_f(acc, lid);
        if (lid == 0u) {
            var y = tot;
            if (p.out_scale != 1.0) { y *= p.out_scale; }
            out[(o0 + t) * p.out_stride + p.row_offset + r] = y;
        }
    }
}
