// Causal grouped-query attention, one (token, head) per workgroup, for decode (one token)
// and prefill alike: scores over every cached position ≤ the token's own, a max-subtracted
// softmax, then the weighted sum of values in position order (the CPU's order).

struct AttnParams {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_ctx: u32,   // score row stride
    scale: f32,   // 1/sqrt(head_dim)
    _a: u32,
    _b: u32,
    _c: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: AttnParams;
@group(0) @binding(2) var<storage, read> q: array<f32>;       // [tok][n_head * head_dim]
@group(0) @binding(3) var<storage, read> kc: array<f32>;      // [pos][n_head_kv * head_dim]
@group(0) @binding(4) var<storage, read> vc: array<f32>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>; // [tok * n_head + head][n_ctx]
@group(0) @binding(6) var<storage, read_write> out: array<f32>;    // like q

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_group(wid, nwg);
    let t = g / p.n_head;
    if (t >= step.n_tok) { return; }
    let h = g % p.n_head;
    let hd = p.head_dim;
    let kvd = p.n_head_kv * hd;
    let kvh = h / (p.n_head / p.n_head_kv);
    let len = step.p0 + t + 1u;
    let qb = (t * p.n_head + h) * hd;
    let sb = g * p.n_ctx;

    var m = LOWEST;
    for (var j = lid; j < len; j += WG) {
        let kb = j * kvd + kvh * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s += q[qb + d] * kc[kb + d]; }
        s *= p.scale;
        scores[sb + j] = s;
        m = max(m, s);
    }
    let mx = wg_max_f(m, lid);
    var sum = 0.0;
    for (var j = lid; j < len; j += WG) {
        let e = exp(scores[sb + j] - mx);
        scores[sb + j] = e;
        sum += e;
    }
    let total = wg_sum_f(sum, lid);
    storageBarrier();
    workgroupBarrier();
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < len; j++) {
            acc += (scores[sb + j] / total) * vc[j * kvd + kvh * hd + d];
        }
        out[qb + d] = acc;
    }
}
