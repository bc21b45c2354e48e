//! Every op's Rust side against its WGSL: uniform blocks (names, types, offsets),
//! bindings (names and access, in `@binding` order) and the constants both sides use.

use super::attention::{Attention, AttnParams};
use super::dense::{Dense, DenseParams};
use super::embed::{Embed, EmbedParams};
use super::gate::{Gate, GateParams};
use super::int8::{Int8, Int8Params};
use super::norm_quant::{NormParams, NormQuant};
use super::rope::{Rope, RopeParams};
use super::ternary::{Ternary, TernaryParams, TILE_TOKENS};
use super::topk::{Merge, Segments, TopkParams, SEGMENT};
use super::*;

/// The source without `//` comments.
fn code(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(name, type)` of each field of `struct <name> { … }` in a WGSL source.
fn wgsl_fields(src: &str, name: &str) -> Vec<(String, String)> {
    let code = code(src);
    let start = code
        .find(&format!("struct {name} {{"))
        .unwrap_or_else(|| panic!("no struct {name}"));
    let body = &code[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    body.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (n, t) = f.split_once(':').unwrap();
            (n.trim().to_string(), t.trim().to_string())
        })
        .collect()
}

/// `(name, access)` of each `@group(0) @binding(i) var<…> name: …`, in binding order.
fn wgsl_bindings(src: &str) -> Vec<(String, Access)> {
    let mut out: Vec<(u32, String, Access)> = code(src)
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("@group(0) @binding(")?;
            let (index, rest) = rest.split_once(')')?;
            let rest = rest.trim().strip_prefix("var<")?;
            let (space, rest) = rest.split_once('>')?;
            let access = match space.replace(' ', "").as_str() {
                "uniform" => Access::Uniform,
                "storage,read" => Access::Read,
                "storage,read_write" => Access::ReadWrite,
                other => panic!("unknown address space {other}"),
            };
            let name = rest.split(':').next()?.trim().to_string();
            Some((index.parse().unwrap(), name, access))
        })
        .collect();
    out.sort_by_key(|b| b.0);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(b.0 as usize, i, "binding {} of {} is missing", i, b.1);
    }
    out.into_iter().map(|(_, n, a)| (n, a)).collect()
}

/// The value of `const <name>: u32 = <v>u;` in a WGSL source.
fn wgsl_const(src: &str, name: &str) -> usize {
    let code = code(src);
    let at = code
        .find(&format!("const {name}: u32 = "))
        .unwrap_or_else(|| panic!("no const {name}"));
    let value = code[at..].split('=').nth(1).unwrap();
    value
        .trim()
        .split(['u', ';'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn check_params<P: Params>() {
    // Every field is a 4-byte scalar, so WGSL's offsets are 0, 4, 8, …; a uniform
    // block's size is a multiple of 16.
    assert_eq!(std::mem::size_of::<P>(), 4 * P::FIELDS.len(), "{}", P::NAME);
    assert_eq!(std::mem::size_of::<P>() % 16, 0, "{}", P::NAME);
    for (shader, src) in P::SHADERS {
        let wgsl = wgsl_fields(src, P::NAME);
        let rust: Vec<(String, String)> = P::FIELDS
            .iter()
            .enumerate()
            .map(|(i, &(n, off, t))| {
                assert_eq!(off, 4 * i, "{}.{n}: offset", P::NAME);
                (n.to_string(), t.to_string())
            })
            .collect();
        assert_eq!(rust, wgsl, "{} in {shader}.wgsl", P::NAME);
    }
}

fn check_bindings(shader: &str, src: &str, layout: &[(&str, Access)]) {
    let rust: Vec<(String, Access)> = layout.iter().map(|&(n, a)| (n.to_string(), a)).collect();
    assert_eq!(rust, wgsl_bindings(src), "the bindings of {shader}.wgsl");
}

#[test]
fn every_uniform_block_matches_its_wgsl_struct() {
    check_params::<Step>();
    check_params::<ColsParams>();
    check_params::<GateParams>();
    check_params::<NormParams>();
    check_params::<TernaryParams>();
    check_params::<DenseParams>();
    check_params::<Int8Params>();
    check_params::<RopeParams>();
    check_params::<AttnParams>();
    check_params::<EmbedParams>();
    check_params::<TopkParams>();
}

#[test]
fn every_op_binds_what_its_shader_declares() {
    check_bindings("add", add::WGSL, add::Add::LAYOUT);
    check_bindings("dequant", dequant::WGSL, dequant::Dequant::LAYOUT);
    check_bindings("gate", gate::WGSL, Gate::LAYOUT);
    check_bindings("norm_quant", norm_quant::WGSL, NormQuant::LAYOUT);
    check_bindings("rope", rope::WGSL, Rope::LAYOUT);
    check_bindings("attention", attention::WGSL, Attention::LAYOUT);
    check_bindings("embed", embed::WGSL, Embed::LAYOUT);
    check_bindings("dense_matmul", dense::WGSL, Dense::LAYOUT);
    check_bindings("int8_matmul", int8::WGSL, Int8::LAYOUT);
    check_bindings("ternary_matvec", ternary::MATVEC_WGSL, Ternary::LAYOUT);
    check_bindings("ternary_matmul", ternary::MATMUL_WGSL, Ternary::LAYOUT);
    check_bindings("topk_segments", topk::SEGMENTS_WGSL, Segments::LAYOUT);
    check_bindings("topk_merge", topk::MERGE_WGSL, Merge::LAYOUT);
}

#[test]
fn workgroup_shapes_match_the_shaders() {
    assert_eq!(wgsl_const(COMMON, "WG"), WG);
    assert_eq!(wgsl_const(ternary::MATMUL_WGSL, "TT"), TILE_TOKENS);
    assert_eq!(wgsl_const(topk::SEGMENTS_WGSL, "SEG"), SEGMENT);
}

/// Function-scope `var`s declared without an initializer, as `(line, text)`.
fn uninitialized_vars(src: &str) -> Vec<(usize, String)> {
    code(src)
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            // `var<…>` declares a module-scope variable (uniform, storage, workgroup).
            l.starts_with("var ") && !l.contains('=')
        })
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

/// WGSL zero-initializes a `var` without an initializer each time its declaration runs,
/// but Chromium's WebGPU on SwiftShader did not for one declared in a loop (the tiled
/// ternary matmul's per-block sums carried over between blocks, while lavapipe was
/// right). No shader leaves the zero to the implementation.
#[test]
fn every_function_scope_var_has_an_initializer() {
    let shaders = [
        ("common", COMMON),
        ("add", add::WGSL),
        ("attention", attention::WGSL),
        ("dense_matmul", dense::WGSL),
        ("dequant", dequant::WGSL),
        ("embed", embed::WGSL),
        ("gate", gate::WGSL),
        ("int8_matmul", int8::WGSL),
        ("norm_quant", norm_quant::WGSL),
        ("rope", rope::WGSL),
        ("ternary_matvec", ternary::MATVEC_WGSL),
        ("ternary_matmul", ternary::MATMUL_WGSL),
        ("topk_segments", topk::SEGMENTS_WGSL),
        ("topk_merge", topk::MERGE_WGSL),
    ];
    for (name, src) in shaders {
        assert_eq!(uninitialized_vars(src), [], "{name}.wgsl");
    }
    assert_eq!(
        uninitialized_vars("fn f() {\n  for (;;) {\n    var d: array<i32, 8>;\n  }\n}"),
        [(3, "var d: array<i32, 8>;".to_string())]
    );
}

#[test]
fn the_parsers_see_a_mismatch() {
    let wgsl = "struct RopeParams {\n n_heads: u32, // heads\n n_rot: u32,\n head_dim: u32,\n at_p0: u32,\n}";
    let fields = wgsl_fields(wgsl, "RopeParams");
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["n_heads", "n_rot", "head_dim", "at_p0"]);
    let rust: Vec<&str> = RopeParams::FIELDS.iter().map(|f| f.0).collect();
    assert_ne!(names, rust);
    // A shader that swapped two bindings of the same access.
    let swapped = rope::WGSL
        .replace(
            "@binding(2) var<storage, read> table",
            "@binding(2) var<storage, read> tmp",
        )
        .replace(
            "@binding(3) var<storage, read_write> x",
            "@binding(2) var<storage, read_write> x",
        )
        .replace(
            "@binding(2) var<storage, read> tmp",
            "@binding(3) var<storage, read> table",
        );
    assert_ne!(
        wgsl_bindings(&swapped),
        Rope::LAYOUT
            .iter()
            .map(|&(n, a)| (n.to_string(), a))
            .collect::<Vec<_>>()
    );
}
