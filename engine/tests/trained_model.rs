//! The trained tiny model (`brown-tiny-I2_S.gguf`, see docs/training.md) against the
//! independent float64 forward pass of `train/reference.py`: the same tokens from the
//! Hugging Face tokenizer, the same logits, the same greedy continuations.

mod common;
use bitnet_engine::model::{ActMode, CpuBackend, CpuOptions};
use bitnet_engine::sampler::SamplerConfig;
use bitnet_engine::session::{Flow, GenerateOptions, LoadedModel, Session};
use common::*;

#[test]
fn prompts_tokenize_as_the_hugging_face_tokenizer_does() {
    let m = LoadedModel::from_path(fixture(TRAINED)).unwrap();
    for case in trained_reference()["cases"].as_array().unwrap() {
        let text = case["prompt"].as_str().unwrap();
        assert_eq!(
            m.tokenizer.encode(text, true, false).unwrap(),
            ids(&case["prompt_ids"]),
            "{text}"
        );
        let continuation = ids(&case["greedy_ids"]);
        let decoded = m.tokenizer.decode(&continuation, false);
        assert_eq!(decoded, case["greedy_text"].as_str().unwrap(), "{text}");
    }
}

/// Real weights, f32 against float64: exact activations agree to float32 rounding; the
/// int8 path as [`check_int8_rows`] says.
#[test]
fn logits_match_the_float64_reference() {
    let tokens = trained_tokens();
    let model = load(TRAINED);
    let (shape, exact) = npy("brown-tiny.ref-exact.npy");
    assert_eq!(shape, vec![tokens.len(), TRAINED_VOCAB]);
    let (max, agree) = compare(
        &all_logits(&model, ActMode::F32, &tokens),
        &exact,
        TRAINED_VOCAB,
    );
    println!(
        "f32 vs brown-tiny.ref-exact.npy: max abs diff {max:.2e}, argmax agreement {agree:.3}"
    );
    assert!(max <= 1e-4, "f32: max abs diff {max}");
    assert_eq!(agree, 1.0);
    let (_, int8) = npy("brown-tiny.ref-int8.npy");
    let ours = all_logits(&model, ActMode::Int8, &tokens);
    check_int8_rows(
        "int8 vs brown-tiny.ref-int8.npy",
        &ours,
        &int8,
        TRAINED_VOCAB,
    );
}

/// A session's greedy completion writes the reference's continuation, token for token,
/// up to the reference's first near-tie (see `clear_ids` in train/reference.py).
#[test]
fn greedy_continuations_equal_the_reference() {
    let m = LoadedModel::from_path(fixture(TRAINED)).unwrap();
    for case in trained_reference()["cases"].as_array().unwrap() {
        let expected = ids(&case["clear_ids"]);
        let backend = CpuBackend::new(
            m.model.clone(),
            CpuOptions {
                n_ctx: Some(128),
                ..Default::default()
            },
        );
        let mut session = Session::new(Box::new(backend), m.tokenizer.clone(), m.template.clone());
        let opts = GenerateOptions {
            max_tokens: expected.len(),
            sampler: SamplerConfig::greedy(),
            loop_guard: None,
            ..Default::default()
        };
        let done = session
            .complete(case["prompt"].as_str().unwrap(), &opts, &mut |_| {
                Flow::Continue
            })
            .unwrap();
        let eot = m.tokenizer.eos().unwrap();
        let written: Vec<u32> = expected.iter().copied().filter(|&t| t != eot).collect();
        assert_eq!(done.tokens, written, "{}", case["prompt"]);
    }
}
