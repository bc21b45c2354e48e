// NeoX rotary embedding in place: pairs (i, i + n_rot/2) of every head. cos/sin come from a
// table built on the CPU in f64 (as the CPU reference computes them): GPU sin/cos lose
// accuracy on the large angles of late positions.

struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    at_p0: u32, // 1: the rows start at row p0 (K, rotated in the cache)
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: RopeParams;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>; // [pos][n_rot/2] (cos, sin)
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let half = p.n_rot / 2u;
    let id = flat_group(wid, nwg) * WG + lid;
    if (id >= step.n_tok * p.n_heads * half) { return; }
    let i = id % half;
    let th = id / half;          // token * n_heads + head
    let t = th / p.n_heads;
    var base = th * p.head_dim;
    if (p.at_p0 != 0u) { base += step.p0 * p.n_heads * p.head_dim; }
    let cs = table[(step.p0 + t) * half + i];
    let a = x[base + i];
    let b = x[base + i + half];
    x[base + i] = a * cs.x - b * cs.y;
    x[base + i + half] = a * cs.y + b * cs.x;
}
