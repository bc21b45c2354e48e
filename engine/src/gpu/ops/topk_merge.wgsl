// Top-k, stage 2: one workgroup picks the k best of every segment's candidates, best first,
// and writes (id, logit bits): all the CPU sampler needs, a few hundred bytes to read back.

struct TopkParams {
    n: u32,
    k: u32,
    seg_len: u32,
    n_cand: u32,
}

@group(0) @binding(0) var<uniform> p: TopkParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> cand: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> result: array<vec2<u32>>; // (id, f32 bits)

var<workgroup> best_k: array<u32, 64>;
var<workgroup> best_i: array<u32, 64>;
var<workgroup> best_at: array<u32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var round = 0u; round < p.k; round++) {
        var bk = 0u;
        var bi = 0xffffffffu;
        var ba = 0u;
        for (var c = lid; c < p.n_cand; c += WG) {
            let e = cand[c];
            if (e.x > bk || (e.x == bk && e.x != 0u && e.y < bi)) { bk = e.x; bi = e.y; ba = c; }
        }
        best_k[lid] = bk;
        best_i[lid] = bi;
        best_at[lid] = ba;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s) {
                let ok = best_k[lid + s];
                let oi = best_i[lid + s];
                if (ok > best_k[lid] || (ok == best_k[lid] && oi < best_i[lid])) {
                    best_k[lid] = ok;
                    best_i[lid] = oi;
                    best_at[lid] = best_at[lid + s];
                }
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            if (best_k[0] != 0u) {
                let id = best_i[0];
                result[round] = vec2<u32>(id, bitcast<u32>(logits[id]));
                cand[best_at[0]] = vec2<u32>(0u, 0xffffffffu);
            } else {
                result[round] = vec2<u32>(0xffffffffu, 0u);
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
}
