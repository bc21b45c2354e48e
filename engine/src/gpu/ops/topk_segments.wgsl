// Top-k, stage 1: each workgroup takes the k best of its segment of one logit row, best first.
// Logits are compared through order-preserving u32 keys (NaN read as -inf, as the sampler
// does); key 0 never comes from a float and marks "taken / empty". Ties go to the lower id,
// like the CPU sampler's ordering.

struct TopkParams {
    n: u32,        // logits in the row
    k: u32,
    seg_len: u32,  // ≤ SEG
    n_cand: u32,   // stage 2: candidates in total
}

const SEG: u32 = 1024u;

@group(0) @binding(0) var<uniform> p: TopkParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> cand: array<vec2<u32>>; // (key, id)

var<workgroup> keys: array<u32, 1024>;
var<workgroup> best_k: array<u32, 64>;
var<workgroup> best_i: array<u32, 64>;

fn order_key(v: f32) -> u32 {
    var b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) { b = 0xff800000u; }
    if ((b & 0x80000000u) != 0u) { return ~b; }
    return b | 0x80000000u;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let start = wid.x * p.seg_len;
    let len = min(p.seg_len, p.n - start);
    for (var i = lid; i < SEG; i += WG) {
        var k = 0u;
        if (i < len) { k = order_key(logits[start + i]); }
        keys[i] = k;
    }
    workgroupBarrier();
    for (var round = 0u; round < p.k; round++) {
        var bk = 0u;
        var bi = 0xffffffffu;
        for (var i = lid; i < len; i += WG) {
            let k = keys[i];
            if (k > bk) { bk = k; bi = i; }
        }
        best_k[lid] = bk;
        best_i[lid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s) {
                let ok = best_k[lid + s];
                let oi = best_i[lid + s];
                if (ok > best_k[lid] || (ok == best_k[lid] && oi < best_i[lid])) {
                    best_k[lid] = ok;
                    best_i[lid] = oi;
                }
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            let k = best_k[0];
            if (k != 0u) {
                cand[wid.x * p.k + round] = vec2<u32>(k, start + best_i[0]);
                keys[best_i[0]] = 0u;
            } else {
                cand[wid.x * p.k + round] = vec2<u32>(0u, 0xffffffffu);
            }
        }
        workgroupBarrier();
    }
}
