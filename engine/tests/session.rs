//! Sessions driven the way a chat client drives them: multi-turn KV reuse,
//! regenerate, stop strings, loop guard, abort, context limits.

mod common;
use bitnet_engine::chat::ChatMessage;
use bitnet_engine::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits};
use bitnet_engine::sampler::{LoopGuard, SamplerConfig};
use bitnet_engine::session::{Event, FinishReason, Flow, GenerateOptions, LoadedModel, Session};
use bitnet_engine::Error;
use common::fixture;

fn session(n_ctx: usize) -> (LoadedModel, Session) {
    session_on("tiny-b158-I2_S.gguf", n_ctx)
}

fn session_on(file: &str, n_ctx: usize) -> (LoadedModel, Session) {
    let m = LoadedModel::from_path(fixture(file)).unwrap();
    let backend = CpuBackend::new(
        m.model.clone(),
        CpuOptions {
            n_ctx: Some(n_ctx),
            ..Default::default()
        },
    );
    let s = Session::new(Box::new(backend), m.tokenizer.clone(), m.template.clone());
    (m, s)
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        loop_guard: None,
        ..Default::default()
    }
}

fn go(_: Event) -> Flow {
    Flow::Continue
}

#[test]
fn second_turn_prefills_only_the_new_tokens_and_matches_a_fresh_session() {
    let (m, mut s) = session(512);
    let mut conv = vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Hello there"),
    ];
    let first = s.chat(&conv, &greedy(8), &mut go).unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    conv.push(ChatMessage::assistant(first.text.clone()));
    conv.push(ChatMessage::user("And then?"));
    let in_cache = s.cached_tokens().len();
    let second = s.chat(&conv, &greedy(8), &mut go).unwrap();
    assert_eq!(
        second.usage.cached_tokens, in_cache,
        "the whole first turn is reused"
    );
    assert!(
        second.usage.prompt_tokens - second.usage.cached_tokens < 20,
        "only the new turn is prefilled"
    );

    // The KV cache holds exactly what a fresh prefill of the same tokens would: same next tokens.
    let tokens = s.cached_tokens().to_vec();
    let mut fresh = CpuBackend::new(
        m.model.clone(),
        CpuOptions {
            n_ctx: Some(512),
            ..Default::default()
        },
    );
    let mut again = CpuBackend::new(
        m.model.clone(),
        CpuOptions {
            n_ctx: Some(512),
            ..Default::default()
        },
    );
    let split = in_cache;
    again.forward(&tokens[..split], Logits::Last).unwrap();
    let a = again.forward(&tokens[split..], Logits::Last).unwrap();
    let b = fresh.forward(&tokens, Logits::Last).unwrap();
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-4, "incremental vs batch prefill: {max}");
}

#[test]
fn regenerate_reuses_the_prompt_and_same_seed_gives_same_text() {
    let (_, mut s) = session(512);
    let conv = vec![ChatMessage::user("Tell me a story")];
    let opts = GenerateOptions {
        max_tokens: 12,
        sampler: SamplerConfig {
            seed: 5,
            temperature: 1.0,
            ..Default::default()
        },
        loop_guard: None,
        ..Default::default()
    };
    let a = s.chat(&conv, &opts, &mut go).unwrap();
    let b = s.chat(&conv, &opts, &mut go).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(
        b.usage.cached_tokens,
        b.usage.prompt_tokens - 1,
        "only the last prompt token is re-fed"
    );
    let c = s
        .chat(
            &conv,
            &GenerateOptions {
                sampler: SamplerConfig {
                    seed: 6,
                    ..opts.sampler.clone()
                },
                ..opts.clone()
            },
            &mut go,
        )
        .unwrap();
    assert_ne!(a.tokens, c.tokens, "another seed, another sample");
}

#[test]
fn streamed_pieces_concatenate_to_the_text() {
    let (_, mut s) = session(512);
    let mut streamed = String::new();
    let c = s
        .complete("The quick brown fox", &greedy(20), &mut |e| {
            if let Event::Token { text, .. } = e {
                streamed.push_str(text);
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!(streamed, c.text);
    assert_eq!(c.finish_reason, FinishReason::Length);
    assert_eq!(c.tokens.len(), 20);
}

#[test]
fn stop_string_cuts_the_text_and_is_never_streamed() {
    let (_, mut s) = session(512);
    let full = s
        .complete("The quick brown fox", &greedy(24), &mut go)
        .unwrap();
    // Pick a stop string from the middle of what greedy decoding produces.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = full.text.find(&stop).unwrap();
    let mut streamed = String::new();
    let opts = GenerateOptions {
        stop: vec![stop.clone()],
        ..greedy(24)
    };
    let c = s
        .complete("The quick brown fox", &opts, &mut |e| {
            if let Event::Token { text, .. } = e {
                streamed.push_str(text);
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert_eq!(c.text, full.text[..cut]);
    assert_eq!(
        streamed, c.text,
        "nothing of the stop string leaks into the stream"
    );
}

#[test]
fn loop_guard_ends_a_repeating_generation() {
    // Greedy decoding of this random model settles on one token repeated forever.
    let (_, mut s) = session_on("tiny-silu-TQ2_0.gguf", 512);
    let prompt = "The quick brown fox jumps over the lazy dog. Hello world!";
    let unguarded = s.complete(prompt, &greedy(200), &mut go).unwrap();
    assert_eq!(unguarded.finish_reason, FinishReason::Length);
    let opts = GenerateOptions {
        loop_guard: Some(LoopGuard::default()),
        ..greedy(200)
    };
    let c = s.complete(prompt, &opts, &mut go).unwrap();
    assert_eq!(c.finish_reason, FinishReason::Loop);
    assert!(c.tokens.len() < 200);
    assert_eq!(c.tokens[..], unguarded.tokens[..c.tokens.len()]);
}

#[test]
fn abort_during_prefill_and_decode_leaves_the_session_usable() {
    let (_, mut s) = session(512);
    let long: String = "word ".repeat(100);
    let opts = GenerateOptions {
        prefill_chunk: 16,
        ..greedy(10)
    };
    let mut seen = 0;
    let c = s
        .complete(&long, &opts, &mut |e| {
            if let Event::Prefill { done, .. } = e {
                seen += 1;
                if done >= 32 {
                    return Flow::Abort;
                }
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Aborted);
    assert!(c.tokens.is_empty() && seen == 3);
    assert_eq!(
        s.cached_tokens().len(),
        32,
        "the prefilled chunks stay cached"
    );

    let mut n = 0;
    let c = s
        .complete("The quick brown fox", &greedy(10), &mut |e| {
            if let Event::Token { .. } = e {
                n += 1;
                if n == 3 {
                    return Flow::Abort;
                }
            }
            Flow::Continue
        })
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::Aborted);
    // A token that ends mid-character streams nothing, so 3 pieces may take more tokens.
    assert!((3..=5).contains(&c.tokens.len()), "{}", c.tokens.len());
    let after = s
        .complete("The quick brown fox", &greedy(10), &mut go)
        .unwrap();
    assert_eq!(after.tokens.len(), 10);
}

#[test]
fn full_context_is_a_clear_error_or_finish_reason() {
    let (_, mut s) = session_on("tiny-silu-TQ2_0.gguf", 32);
    let err = s
        .complete(&"word ".repeat(40), &greedy(4), &mut go)
        .unwrap_err();
    assert!(
        matches!(err, Error::ContextFull { capacity: 32, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), "context-full");
    let c = s
        .complete(
            "The quick brown fox jumps over the lazy dog. Hello world!",
            &greedy(100),
            &mut go,
        )
        .unwrap();
    assert_eq!(c.finish_reason, FinishReason::ContextFull);
    assert_eq!(s.cached_tokens().len(), 32);
}

#[test]
fn int8_and_f32_modes_agree_on_a_fixture_prompt() {
    let m = LoadedModel::from_path(fixture("tiny-b158-I2_S.gguf")).unwrap();
    let tokens = common::reference("tiny-relu2-fold").prompt;
    let run = |act| {
        CpuBackend::new(
            m.model.clone(),
            CpuOptions {
                act,
                n_ctx: Some(64),
                ..Default::default()
            },
        )
        .forward(&tokens, Logits::Last)
        .unwrap()
    };
    let (a, b) = (run(ActMode::Int8), run(ActMode::F32));
    assert_eq!(common::argmax(&a), common::argmax(&b));
}

#[test]
fn stepping_gives_the_same_reply_as_the_callback_and_abort_keeps_the_cache() {
    use bitnet_engine::session::Step;
    let conv = vec![ChatMessage::user("Tell me a story")];
    let opts = GenerateOptions {
        prefill_chunk: 4,
        ..greedy(12)
    };
    let (_, mut a) = session(512);
    let expected = a.chat(&conv, &opts, &mut go).unwrap();

    let (_, mut b) = session(512);
    let mut g = b.begin_chat(&conv, &opts).unwrap();
    let (mut prefills, mut streamed) = (0, String::new());
    let completion = loop {
        match b.step(&mut g).unwrap() {
            Step::Prefill { done, total } => {
                prefills += 1;
                assert!(done <= total);
            }
            Step::Token { text, .. } => streamed.push_str(&text),
            Step::Done { text, completion } => {
                streamed.push_str(&text);
                break completion;
            }
        }
    };
    assert!(prefills > 1, "the prompt is prefilled in chunks");
    assert_eq!(completion.tokens, expected.tokens);
    assert_eq!(completion.text, expected.text);
    assert_eq!(streamed, expected.text);

    // Abort after three sampled tokens: the reply so far is kept, and the next
    // request reuses everything that was fed.
    let (_, mut c) = session(512);
    let mut g = c.begin_chat(&conv, &opts).unwrap();
    let mut sampled = 0;
    while sampled < 3 {
        if let Step::Token { .. } = c.step(&mut g).unwrap() {
            sampled += 1;
        }
    }
    let aborted = c.abort(g);
    assert_eq!(aborted.finish_reason, FinishReason::Aborted);
    assert_eq!(aborted.tokens, expected.tokens[..3]);
    let fed = c.cached_tokens().len();
    let again = c.chat(&conv, &opts, &mut go).unwrap();
    assert_eq!(again.tokens, expected.tokens, "regenerate after abort");
    assert_eq!(again.usage.cached_tokens, again.usage.prompt_tokens - 1);
    assert!(fed > again.usage.prompt_tokens);
}

#[test]
fn sampling_options_no_sampler_can_mean_are_refused_by_name() {
    let (_m, mut s) = session(64);
    let user = [ChatMessage::user("Hi")];
    let with = |f: &dyn Fn(&mut GenerateOptions)| {
        let mut o = greedy(4);
        f(&mut o);
        o
    };
    let cases: [(&str, GenerateOptions); 9] = [
        ("temperature", with(&|o| o.sampler.temperature = f32::NAN)),
        ("temperature", with(&|o| o.sampler.temperature = -0.5)),
        ("top_p", with(&|o| o.sampler.top_p = 0.0)),
        ("top_p", with(&|o| o.sampler.top_p = 1.5)),
        ("min_p", with(&|o| o.sampler.min_p = -0.1)),
        (
            "repetition_penalty",
            with(&|o| o.sampler.repetition_penalty = 0.0),
        ),
        ("max_tokens", with(&|o| o.max_tokens = 0)),
        ("prefill_chunk", with(&|o| o.prefill_chunk = 0)),
        ("stop", with(&|o| o.stop = vec![String::new()])),
    ];
    for (field, opts) in cases {
        match s.chat(&user, &opts, &mut go) {
            Err(Error::InvalidArgument(m)) => assert!(m.starts_with(field), "{field}: {m}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    // Nothing was changed: the next valid request runs from an empty cache.
    assert!(s.cached_tokens().is_empty());
    let c = s.chat(&user, &greedy(4), &mut go).unwrap();
    assert_eq!(c.tokens.len(), 4);
}

#[test]
fn after_a_stop_string_the_next_turn_equals_a_fresh_session_on_the_visible_conversation() {
    let (_, mut probe) = session(512);
    let mut conv = vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Hello there"),
    ];
    let full = probe.chat(&conv, &greedy(16), &mut go).unwrap();
    // A stop string from the middle of what greedy decoding says.
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let opts = GenerateOptions {
        stop: vec![stop],
        ..greedy(16)
    };
    let (_, mut resumed) = session(512);
    let first = resumed.chat(&conv, &opts, &mut go).unwrap();
    assert_eq!(first.finish_reason, FinishReason::Stop);
    assert!(first.text.len() < full.text.len());
    conv.push(ChatMessage::assistant(first.text.clone()));
    conv.push(ChatMessage::user("And then?"));
    let next = resumed.chat(&conv, &greedy(8), &mut go).unwrap();
    let (_, mut fresh) = session(512);
    let alone = fresh.chat(&conv, &greedy(8), &mut go).unwrap();
    // The model sees only what the user saw, and answers as a fresh session does.
    assert_eq!(next.prompt_ids, alone.prompt_ids);
    assert_eq!(next.tokens, alone.tokens);
    assert_eq!(next.text, alone.text);
    assert!(
        next.usage.cached_tokens > first.prompt_ids.len() / 2,
        "the prompt is reused"
    );
}
