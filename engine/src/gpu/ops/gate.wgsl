// The gated FFN activation, gate = act(gate) ⊙ up, with act = relu² or SiLU.

struct GateParams { cols: u32, silu: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> p: GateParams;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> gate: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group(wid, nwg) * WG + lid;
    if (i >= step.n_tok * p.cols) { return; }
    let g = gate[i];
    var a = 0.0;
    if (p.silu != 0u) {
        a = g / (1.0 + exp(-g));
    } else {
        let r = max(g, 0.0);
        a = r * r;
    }
    gate[i] = a * up[i];
}
