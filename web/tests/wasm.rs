//! The engine inside WebAssembly (run by wasm-bindgen-test under Node, and in
//! headless Chromium with `WASM_BINDGEN_USE_BROWSER=1`): kernels equal the scalar
//! reference, the fixture parity checks hold, and the JS-facing `Engine` works.
#![cfg(target_arch = "wasm32")]

use bitnet_engine::gguf::GgufFile;
use bitnet_engine::kernels::{self, KernelChoice};
use bitnet_engine::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits};
use bitnet_engine::session::LoadedModel;
use bitnet_web::Engine;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

const I2S: &[u8] = include_bytes!("../../tests/fixtures/tiny-b158-I2_S.gguf");
const TQ1: &[u8] = include_bytes!("../../tests/fixtures/tiny-relu2-fold-TQ1_0.gguf");
const F16: &[u8] = include_bytes!("../../tests/fixtures/tiny-relu2-fold-F16.gguf");
const REF_INT8: &[u8] = include_bytes!("../../tests/fixtures/tiny-relu2-fold.ref-int8.npy");
const REF_LLAMACPP: &[u8] =
    include_bytes!("../../tests/fixtures/tiny-relu2-fold.llamacpp-f32.logits.npy");
const REF_JSON: &str = include_str!("../../tests/fixtures/tiny-relu2-fold.llamacpp-f32.json");
/// The trained tiny model and its float64 reference (train/reference.py).
const TRAINED: &[u8] = include_bytes!("../../tests/fixtures/brown-tiny-I2_S.gguf");
const TRAINED_REF_INT8: &[u8] = include_bytes!("../../tests/fixtures/brown-tiny.ref-int8.npy");
const TRAINED_REF_EXACT: &[u8] = include_bytes!("../../tests/fixtures/brown-tiny.ref-exact.npy");
const TRAINED_JSON: &str = include_str!("../../tests/fixtures/brown-tiny.ref.json");
const VALID_HEAD: &str = include_str!("../../tests/fixtures/brown-valid-head.txt");

/// The first array of integers under `"key": [` in a JSON text.
fn int_array(json: &str, k: &str) -> Vec<u32> {
    let start = json.find(&format!("\"{k}\": [")).unwrap() + k.len() + 5;
    let end = start + json[start..].find(']').unwrap();
    json[start..end]
        .split(',')
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

/// The number after `"key": ` in a JSON text, from byte `from` on.
fn number_after(json: &str, from: usize, k: &str) -> f64 {
    let start = from + json[from..].find(&format!("\"{k}\": ")).unwrap() + k.len() + 4;
    let end = start + json[start..].find([',', '\n', '}']).unwrap();
    json[start..end].trim().parse().unwrap()
}

fn tokens() -> Vec<u32> {
    [
        int_array(REF_JSON, "prompt_tokens"),
        int_array(REF_JSON, "generated_tokens"),
    ]
    .concat()
}

fn npy(bytes: &[u8]) -> Vec<f32> {
    npyz::NpyFile::new(bytes)
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[wasm_bindgen_test]
fn simd_kernels_equal_the_scalar_reference() {
    let k = kernels::detect(KernelChoice::Auto);
    assert!(
        k.name().starts_with("wasm-") || !cfg!(target_feature = "simd128"),
        "{}",
        k.name()
    );
    for set in kernels::self_test_sets() {
        kernels::selftest::check_against_scalar(set.as_ref(), 60, 7).unwrap();
    }
}

/// The relaxed build's timed choice between 16- and 32-bit sums ends whatever the clock
/// does, and the kernels a load detects afterwards are the ones it chose.
#[cfg(target_feature = "relaxed-simd")]
#[wasm_bindgen_test]
fn the_timed_choice_of_sums_ends_and_the_kernels_follow_it() {
    use bitnet_engine::kernels::Kernels;
    use kernels::wasm::{choose_dot_sums, Simd128};
    let chosen = |sums| Simd128 { sums }.name();
    // A clock that stands still: only the cap on batches ends each phase.
    let pick = choose_dot_sums(&|| 0.0, 10.0);
    assert_eq!(kernels::detect(KernelChoice::Auto).name(), chosen(pick));
    // A clock that moves a millisecond a reading.
    let t = std::cell::Cell::new(0.0);
    let pick = choose_dot_sums(
        &|| {
            t.set(t.get() + 1.0);
            t.get()
        },
        10.0,
    );
    assert_eq!(kernels::detect(KernelChoice::Auto).name(), chosen(pick));
}

#[wasm_bindgen_test]
fn the_self_test_passes_and_its_test_only_switch_fails_it() {
    assert!(bitnet_web::kernel_self_test(None).is_ok());
    assert!(bitnet_web::kernel_self_test(Some(false)).is_ok());
    assert!(bitnet_web::kernel_self_test(Some(true)).is_err());
}

fn logits(bytes: &[u8], act: ActMode) -> Vec<f32> {
    logits_of(bytes, act, &tokens())
}

fn logits_of(bytes: &[u8], act: ActMode, t: &[u32]) -> Vec<f32> {
    let m = LoadedModel::from_gguf(GgufFile::from_bytes(bytes).unwrap()).unwrap();
    CpuBackend::new(
        Arc::clone(&m.model),
        CpuOptions {
            act,
            n_ctx: Some(t.len()),
            ..Default::default()
        },
    )
    .forward(t, Logits::All)
    .unwrap()
}

#[wasm_bindgen_test]
fn fixture_parity_holds_inside_wasm() {
    let reference = npy(REF_INT8);
    for (name, bytes) in [("I2_S", I2S), ("TQ1_0", TQ1)] {
        let d = max_diff(&logits(bytes, ActMode::Int8), &reference);
        assert!(d <= 2e-2, "{name} int8 vs ref-int8: {d}");
    }
    let d = max_diff(&logits(F16, ActMode::F32), &npy(REF_LLAMACPP));
    assert!(d <= 1e-2, "F16 f32 vs llama.cpp: {d}");
    let trained = [
        int_array(TRAINED_JSON, "prompt_ids"),
        int_array(TRAINED_JSON, "greedy_ids"),
    ]
    .concat();
    // Exact activations agree to float32 rounding; the int8 path as
    // engine/tests/common.rs's check_int8_rows explains (rounding ties).
    let d = max_diff(
        &logits_of(TRAINED, ActMode::F32, &trained),
        &npy(TRAINED_REF_EXACT),
    );
    assert!(d <= 1e-4, "trained I2_S f32 vs its float64 reference: {d}");
    let d = max_diff(
        &logits_of(TRAINED, ActMode::Int8, &trained),
        &npy(TRAINED_REF_INT8),
    );
    assert!(
        d <= 0.148,
        "trained I2_S int8 vs its float64 reference: {d}"
    );
}

/// `quality::perplexity` inside wasm on held-out text equals the float64 reference's, as
/// `bitnet perplexity` does natively (cli/tests/trained_model.rs).
#[wasm_bindgen_test]
fn trained_model_perplexity_inside_wasm() {
    let m = LoadedModel::from_gguf(GgufFile::from_bytes(TRAINED).unwrap()).unwrap();
    let tokens = m.tokenizer.encode(VALID_HEAD, true, false).unwrap();
    let ppl_at = TRAINED_JSON.find("\"ppl\": {").unwrap();
    for (act, key, within) in [(ActMode::Int8, "int8", 1e-3), (ActMode::F32, "exact", 1e-5)] {
        let mut backend = CpuBackend::new(
            Arc::clone(&m.model),
            CpuOptions {
                act,
                n_ctx: Some(128),
                ..Default::default()
            },
        );
        let r = bitnet_engine::quality::perplexity(
            &mut backend,
            &tokens,
            128,
            m.tokenizer.bos(),
            |_, _| Ok(()),
        )
        .unwrap();
        let reference = number_after(TRAINED_JSON, ppl_at, key);
        assert!(
            (r.ppl / reference - 1.0).abs() < within,
            "{key}: perplexity {} in wasm, {reference} from the reference",
            r.ppl
        );
    }
}

#[wasm_bindgen_test]
fn engine_loads_chunks_and_streams_a_completion() {
    let opts = js_sys::Object::new();
    js_sys::Reflect::set(&opts, &"expectedBytes".into(), &(I2S.len() as f64).into()).unwrap();
    let mut engine = Engine::new(opts.into()).unwrap();
    for chunk in I2S.chunks(4093) {
        engine.push(chunk).unwrap();
    }
    let info = engine.finish().unwrap();
    assert_eq!(
        js_sys::Reflect::get(&info, &"architecture".into()).unwrap(),
        "bitnet-b1.58"
    );
    assert_eq!(
        engine.tokenize("The quick", true, false).unwrap(),
        vec![509, 293, 32, 485]
    );

    // Streams through step() the way the worker does, and stops after five pieces.
    let options =
        js_sys::JSON::parse(r#"{"max_tokens": 12, "temperature": 0, "loop_guard": false}"#)
            .unwrap();
    engine
        .begin_complete("The quick brown fox", options)
        .unwrap();
    let field = |v: &JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).unwrap();
    let mut pieces = String::new();
    let mut tokens = 0;
    while tokens < 5 {
        let step = engine.step().unwrap();
        assert_ne!(field(&step, "type"), "done", "ended after {tokens} tokens");
        if field(&step, "type") == "token" {
            pieces += &field(&step, "text").as_string().unwrap();
            tokens += 1;
        }
    }
    let out = engine.abort_generation().unwrap();
    assert_eq!(field(&out, "finish_reason"), "aborted");
    assert_eq!(field(&out, "text").as_string().unwrap(), pieces);
}

#[wasm_bindgen_test]
fn errors_are_typed_js_errors() {
    let mut engine = Engine::new(JsValue::UNDEFINED).unwrap();
    let err = engine.push(b"NOPE this is not a model").unwrap_err();
    let err: js_sys::Error = err.dyn_into().unwrap();
    assert_eq!(
        js_sys::Reflect::get(&err, &"kind".into()).unwrap(),
        "corrupt-model"
    );
    assert!(err
        .message()
        .as_string()
        .unwrap()
        .contains("not a GGUF file"));

    let too_big = js_sys::JSON::parse(r#"{"expectedBytes": 5000000000}"#).unwrap();
    let err: js_sys::Error = Engine::new(too_big).err().unwrap().dyn_into().unwrap();
    assert_eq!(
        js_sys::Reflect::get(&err, &"kind".into()).unwrap(),
        "out-of-memory"
    );

    let mut engine = Engine::new(JsValue::UNDEFINED).unwrap();
    engine.push(&I2S[..I2S.len() / 2]).unwrap();
    let err: js_sys::Error = engine.finish().unwrap_err().dyn_into().unwrap();
    assert_eq!(
        js_sys::Reflect::get(&err, &"kind".into()).unwrap(),
        "corrupt-model"
    );
    assert!(err.message().as_string().unwrap().contains("incomplete"));
}

/// One memory budget for the whole model: the parts of a split model share it.
#[wasm_bindgen_test]
fn split_model_parts_share_one_memory_budget() {
    let file = GgufFile::from_bytes(I2S).unwrap();
    let tensor_bytes: u64 = file.tensors.iter().map(|t| t.info.nbytes).sum();
    let parts: Vec<Vec<u8>> = bitnet_engine::gguf::split_writers(&file, 2)
        .unwrap()
        .iter()
        .map(|w| w.to_bytes())
        .collect();
    // 512 MiB stay for the KV cache and scratch; the model gets three quarters of its size.
    let limit = (512u64 << 20) + tensor_bytes * 3 / 4;
    let options = |limit: u64, bytes: usize| {
        js_sys::JSON::parse(&format!(
            r#"{{"memoryLimit": {limit}, "expectedBytes": {bytes}}}"#
        ))
        .unwrap()
    };
    let kind = |e: JsValue| {
        let e: js_sys::Error = e.dyn_into().unwrap();
        js_sys::Reflect::get(&e, &"kind".into()).unwrap()
    };
    // Each part alone fits, the two together do not.
    let mut engine = Engine::new(options(limit, parts[0].len())).unwrap();
    engine.push(&parts[0]).unwrap();
    let refused = match engine.next_part(Some(parts[1].len() as f64)) {
        Ok(()) => engine.push(&parts[1]).unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(kind(refused), "out-of-memory");
    // So does the whole file.
    assert_eq!(
        kind(Engine::new(options(limit, I2S.len())).err().unwrap()),
        "out-of-memory"
    );
    // With room for both, the split model loads.
    let mut engine = Engine::new(options(limit + tensor_bytes, parts[0].len())).unwrap();
    engine.push(&parts[0]).unwrap();
    engine.next_part(Some(parts[1].len() as f64)).unwrap();
    engine.push(&parts[1]).unwrap();
    engine.finish().unwrap();
}
