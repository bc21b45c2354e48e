// RMSNorm of one token row per workgroup, then (optionally) BitNet's per-token absmax int8
// quantization of the result: s = 127 / max|h|, q = clamp(round_half_even(h · s), -128, 127),
// exactly the CPU's formula (WGSL's round() rounds half to even, like round_ties_even).

struct NormParams {
    cols: u32,
    eps: f32,
    quantize: u32,
    last_only: u32, // 1: normalize only the batch's last row (the LM head of Logits::Last)
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: NormParams;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> h: array<f32>;
@group(0) @binding(5) var<storage, read_write> q: array<i32>;
@group(0) @binding(6) var<storage, read_write> act_meta: array<ActMeta>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var row = wid.x;
    if (p.last_only != 0u) { row = step.last; }
    let src = row * p.cols;
    let dst = wid.x * p.cols;
    var ss = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[src + i];
        ss += v * v;
    }
    let ms = wg_sum_f(ss, lid) / f32(p.cols);
    let inv = 1.0 / sqrt(ms + p.eps);
    var m = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[src + i] * inv * w[i];
        h[dst + i] = v;
        m = max(m, abs(v));
    }
    if (p.quantize == 0u) { return; }
    let mx = wg_max_f(m, lid);
    // Same guard as the CPU: an all-zero or non-finite row quantizes to zeros.
    let finite = (bitcast<u32>(mx) & 0x7f800000u) != 0x7f800000u;
    if (mx == 0.0 || !finite) {
        for (var i = lid; i < p.cols; i += WG) { q[dst + i] = 0; }
        if (lid == 0u) { act_meta[wid.x] = ActMeta(0.0, 0); }
        return;
    }
    let s = 127.0 / mx;
    var sum = 0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = i32(clamp(round(h[dst + i] * s), -128.0, 127.0));
        q[dst + i] = v;
        sum += v;
    }
    let total = wg_sum_i(sum, lid);
    if (lid == 0u) { act_meta[wid.x] = ActMeta(mx / 127.0, total); }
}
