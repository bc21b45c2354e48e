// Shared by every shader (prepended by the Rust side, after `enable subgroups;` when the
// adapter has them). Workgroups are 1-D with WG invocations.

const WG: u32 = 64u;

// Per-forward values, written once before each submission.
struct Step {
    n_tok: u32,   // tokens in this batch
    p0: u32,      // position of the first of them
    last: u32,    // row index of the last token (n_tok - 1)
    _pad: u32,
}

// Per token of int8 activations (written by norm_quant, read by the int8 matmuls).
struct ActMeta {
    inv_scale: f32, // max|h| / 127
    sum: i32,       // Σq: codes are t+1, so Σ t·q = Σ code·q − Σq
}

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_i: array<i32, WG>;
var<workgroup> red_out_f: f32;
var<workgroup> red_out_i: i32;

// A workgroup id from a 2-D dispatch (more than 65535 groups are needed for large heads).
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Every invocation must call these (they contain barriers); every one gets the result.
// With subgroups, one lane per subgroup (the first active one: naga has no subgroupElect)
// writes its subgroup's partial.
fn wg_sum_f(v: f32, lid: u32) -> f32 {
//#if subgroups
    red_f[lid] = 0.0;
    workgroupBarrier();
    let s = subgroupAdd(v);
    if (subgroupBroadcastFirst(lid) == lid) { red_f[lid] = s; }
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0.0;
        for (var i = 0u; i < WG; i++) { t += red_f[i]; }
        red_out_f = t;
    }
//#else
    red_f[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red_f[lid] += red_f[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { red_out_f = red_f[0]; }
//#endif
    // A uniform value: callers may branch on it around later barriers.
    return workgroupUniformLoad(&red_out_f);
}

const LOWEST: f32 = -0x1.fffffep+127f;

fn wg_max_f(v: f32, lid: u32) -> f32 {
//#if subgroups
    red_f[lid] = LOWEST;
    workgroupBarrier();
    let s = subgroupMax(v);
    if (subgroupBroadcastFirst(lid) == lid) { red_f[lid] = s; }
    workgroupBarrier();
    if (lid == 0u) {
        var t = LOWEST;
        for (var i = 0u; i < WG; i++) { t = max(t, red_f[i]); }
        red_out_f = t;
    }
//#else
    red_f[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red_f[lid] = max(red_f[lid], red_f[lid + s]); }
        workgroupBarrier();
    }
    if (lid == 0u) { red_out_f = red_f[0]; }
//#endif
    // A uniform value: callers may branch on it around later barriers.
    return workgroupUniformLoad(&red_out_f);
}

// Integer sums are exact whatever the order: the ternary dot products stay bit-equal to the CPU's.
fn wg_sum_i(v: i32, lid: u32) -> i32 {
//#if subgroups
    red_i[lid] = 0;
    workgroupBarrier();
    let s = subgroupAdd(v);
    if (subgroupBroadcastFirst(lid) == lid) { red_i[lid] = s; }
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0;
        for (var i = 0u; i < WG; i++) { t += red_i[i]; }
        red_out_i = t;
    }
//#else
    red_i[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { red_i[lid] += red_i[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { red_out_i = red_i[0]; }
//#endif
    // A uniform value: callers may branch on it around later barriers.
    return workgroupUniformLoad(&red_out_i);
}
