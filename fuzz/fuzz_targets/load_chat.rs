//! The whole path a chat client drives: bytes of a GGUF, streamed in chunks (sized by the
//! input's second-to-last byte) through the int8 head's tap → `LoadedModel` (model,
//! tokenizer, chat template) → a CPU backend under a memory budget → a session →
//! one chat turn (render, tokenize, prefill, two greedy tokens) → a second turn that
//! continues the first.
//!
//! The input's last byte also picks the options (activation mode, kernels, chat format,
//! pre-tokenizer, messages, sampler), so the seed models are valid as they are.
//! Bounded: a 128-token context, at most 2 generated tokens per turn, a 32 MiB KV budget.

#![no_main]

use bitnet_engine::chat::{ChatFormat, ChatMessage};
use bitnet_engine::gguf::{GgufLoader, LoadOptions};
use bitnet_engine::kernels::KernelChoice;
use bitnet_engine::model::{ActMode, CpuBackend, CpuOptions, HeadMode, HeadTap, KvType};
use bitnet_engine::sampler::SamplerConfig;
use bitnet_engine::session::{
    FinishReason, Flow, GenerateOptions, LoadSettings, LoadedModel, Session,
};
use bitnet_engine::tokenizer::PreTokenizerChoice;
use bitnet_engine::Error;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const N_CTX: usize = 128;
const KV_BUDGET: u64 = 32 << 20;
const SLOW_TURN: Duration = Duration::from_millis(500);

const CONVERSATIONS: [&[(&str, &str)]; 4] = [
    &[("user", "Hello")],
    &[("system", "Be brief."), ("user", "the cat sat in the hat")],
    &[("user", "<|eot_id|>Assistant: <|begin_of_text|> é漢🙂")],
    &[("user", "")],
];

fuzz_target!(|data: &[u8]| {
    let sel = data.last().copied().unwrap_or(0);
    let settings = LoadSettings {
        head: if sel & 1 != 0 {
            HeadMode::Int8
        } else {
            HeadMode::File
        },
        chat_format: match (sel >> 1) & 3 {
            1 => ChatFormat::Bitnet,
            2 => ChatFormat::Text,
            _ => ChatFormat::Auto,
        },
        pre_tokenizer: if sel & 0x08 != 0 {
            PreTokenizerChoice::Named("default".into())
        } else {
            PreTokenizerChoice::Auto
        },
    };
    // Streamed as the browser streams it, through the int8 head's tap, in chunks whose
    // size the input picks (so rows split across chunks in every way).
    let chunk = data
        .get(data.len().wrapping_sub(2))
        .map_or(4096, |&b| 1 + b as usize * 17);
    let mut loader = GgufLoader::with_tap(
        LoadOptions {
            expected_len: Some(data.len() as u64),
            ..LoadOptions::default()
        },
        HeadTap::new(settings.head),
    );
    if data.chunks(chunk).any(|c| loader.push(c).is_err()) {
        return;
    }
    let Ok((file, tap)) = loader.finish_with_tap() else {
        return;
    };
    let Ok(head) = tap.into_head() else {
        return;
    };
    let Ok(m) = LoadedModel::from_gguf_and_head(file, head, &settings) else {
        return;
    };
    let opts = CpuOptions {
        act: if sel & 0x10 != 0 {
            ActMode::F32
        } else {
            ActMode::Int8
        },
        kernels: if sel & 0x20 != 0 {
            KernelChoice::Scalar
        } else {
            KernelChoice::Auto
        },
        threads: 1,
        n_ctx: Some(N_CTX),
        // The f16 cache beside the int8 head (no selector bit is left for it alone).
        kv: if sel & 0x11 == 0x01 {
            KvType::F16
        } else {
            KvType::F32
        },
    };
    let backend = match CpuBackend::try_new(m.model.clone(), opts, Some(KV_BUDGET)) {
        Ok(b) => b,
        Err(e) => {
            assert_eq!(e.kind(), "out-of-memory", "{e:?}");
            return;
        }
    };
    let mut session = Session::new(Box::new(backend), m.tokenizer.clone(), m.template.clone());
    let gen = GenerateOptions {
        max_tokens: 2,
        sampler: if sel & 0x40 != 0 {
            SamplerConfig {
                seed: sel as u64,
                ..SamplerConfig::default()
            }
        } else {
            SamplerConfig::greedy()
        },
        stop: if sel & 0x80 != 0 {
            vec!["e".into()]
        } else {
            Vec::new()
        },
        loop_guard: None,
        prefill_chunk: 16,
    };
    let mut conv: Vec<ChatMessage> = CONVERSATIONS[(sel as usize >> 2) % CONVERSATIONS.len()]
        .iter()
        .map(|&(r, c)| ChatMessage::new(r, c))
        .collect();
    let n_vocab = m.model.config.n_vocab;
    let mut go = |_: bitnet_engine::session::Event| Flow::Continue;
    for turn in 0..2 {
        let start = Instant::now();
        match session.chat(&conv, &gen, &mut go) {
            Ok(c) => {
                assert!(
                    c.tokens.len() <= gen.max_tokens,
                    "{} tokens",
                    c.tokens.len()
                );
                assert!(c.tokens.iter().all(|&t| (t as usize) < n_vocab));
                assert!(session.cached_tokens().len() <= N_CTX);
                // A turn whose template took most of its fuel takes seconds under
                // instrumentation: no second one then (a run must stay under the timeout).
                if c.finish_reason == FinishReason::ContextFull || start.elapsed() > SLOW_TURN {
                    return;
                }
                conv.push(ChatMessage::assistant(c.text));
                conv.push(ChatMessage::user(if turn == 0 { "And then?" } else { "" }));
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::ContextFull { .. }
                            | Error::Template(_)
                            | Error::Tokenizer(_)
                            | Error::InvalidArgument(_)
                            | Error::Model(_)
                    ),
                    "chat error {e:?}"
                );
                return;
            }
        }
    }
});
