//! A chat template and a vocabulary from the input (format: `bitnet_fuzz::TtInput`).
//!
//! 1. The template source is rendered through `ChatTemplate` with its real fuel and
//!    output limits: the whole conversation, and the last message as a continuation.
//! 2. GGUF metadata (`tokenizer.ggml.tokens/token_type/merges/pre/*_token_id`,
//!    `tokenizer.chat_template`) is built from the input and turned into a tokenizer and
//!    a template the way a model load does (`session::chat_parts`); the conversation is
//!    tokenized as a chat prompt, the text is encoded and decoded.
//!
//! Checks: no panic; every id is inside the vocabulary; the stream decoder's pieces
//! add up to `decode`.

#![no_main]

use bitnet_engine::chat::{ChatFormat, ChatMessage, ChatTemplate, BUILTIN_EOT};
use bitnet_engine::gguf::{Array, GgufFile, Metadata, Value};
use bitnet_engine::session::{chat_parts, chat_prompt_ids, LoadSettings};
use bitnet_engine::tokenizer::{PreTokenizerChoice, StreamDecoder, Tokenizer};
use bitnet_fuzz::{byte_tokens, flag, TtInput};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Renders the conversation, then (when that worked, and fast) its last message as a
/// continuation of the others. Returns whether the conversation rendered fast, to a
/// prompt short enough to tokenize.
fn render_all(t: &ChatTemplate, messages: &[ChatMessage], gen: bool) -> bool {
    let start = Instant::now();
    let Ok(p) = t.render_prompt(messages, gen) else {
        // Out of fuel, too much output, or a template error: rendering again would cost
        // as much and say the same.
        return false;
    };
    if p.text.len() > MAX_PROMPT {
        return false;
    }
    if let Some(ranges) = &p.plain {
        for r in ranges {
            assert!(
                r.start <= r.end && r.end <= p.text.len(),
                "{r:?} of {}",
                p.text.len()
            );
            assert!(p.text.is_char_boundary(r.start) && p.text.is_char_boundary(r.end));
        }
    }
    // A template that renders but uses most of its fuel takes seconds per rendering under
    // instrumentation: such a one is not rendered again (a run must stay under
    // libFuzzer's timeout).
    if start.elapsed() > SLOW_RENDER {
        return false;
    }
    if let Some((last, history)) = messages.split_last() {
        let _ = t.render_continuation_prompt(history, std::slice::from_ref(last), gen);
    }
    true
}

/// What a tokenizer depends on: the id bytes, the flag bits it reads, and the vocabulary,
/// merges and pre-tokenizer sections.
fn vocab_key(data: &[u8], input: &TtInput) -> Vec<u8> {
    let mut key = data[1..4].to_vec();
    key.push(input.flags & (flag::NO_BYTE_TOKENS | flag::NAMED_PRE | flag::ADD_BOS));
    let sections: Vec<&[u8]> = data[4..]
        .splitn(6, |&b| b == bitnet_fuzz::SECTION)
        .collect();
    for s in sections.iter().skip(2).take(3) {
        key.extend_from_slice(&(s.len() as u64).to_le_bytes());
        key.extend_from_slice(s);
    }
    key
}

const CACHE: usize = 128;

/// Rendered prompts longer than this are not tokenized: a template may write up to
/// 8 MiB, and tokenizing that takes seconds under instrumentation (far more text than
/// any context holds).
const MAX_PROMPT: usize = 64 << 10;

/// See the use.
const SLOW_RENDER: Duration = Duration::from_millis(500);

thread_local! {
    static TOKENIZERS: RefCell<Vec<(Vec<u8>, Rc<Tokenizer>)>> = const { RefCell::new(Vec::new()) };
}

fn cached(key: &[u8]) -> Option<Rc<Tokenizer>> {
    TOKENIZERS.with(|c| {
        let c = c.borrow();
        c.iter().find(|(k, _)| k == key).map(|(_, t)| t.clone())
    })
}

fn keep(key: Vec<u8>, tok: Rc<Tokenizer>) -> Rc<Tokenizer> {
    TOKENIZERS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() == CACHE {
            c.remove(0);
        }
        c.push((key, tok.clone()));
    });
    tok
}

fn check_ids(tok: &Tokenizer, ids: &[u32]) {
    let n = tok.n_vocab();
    assert!(ids.iter().all(|&id| (id as usize) < n), "an id outside {n}");
}

fn decode_all(tok: &Tokenizer, ids: &[u32]) {
    let whole = tok.decode(ids, false);
    let _ = tok.decode(ids, true);
    let mut d = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in ids {
        streamed.push_str(&d.push(tok, id));
    }
    streamed.push_str(&d.flush());
    assert_eq!(streamed, whole, "stream decoding differs from decode");
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = TtInput::parse(data) else {
        return;
    };
    let gen = input.flags & flag::ADD_GENERATION_PROMPT != 0;
    let messages: Vec<ChatMessage> = (0..input.messages.len())
        .map(|i| ChatMessage::new(input.role(i).into_owned(), input.messages[i].1.as_ref()))
        .collect();

    // 1. The template on its own (Llama-3's BOS/EOS texts).
    let jinja_renders = match ChatTemplate::new(
        Some(&input.template),
        "<|begin_of_text|>",
        "<|end_of_text|>",
    ) {
        Ok(t) => render_all(&t, &messages, gen),
        Err(_) => false,
    };

    // 2. A vocabulary in GGUF metadata, loaded as a model load does.
    let mut tokens = if input.flags & flag::NO_BYTE_TOKENS != 0 {
        Vec::new()
    } else {
        byte_tokens()
    };
    let mut types = vec![1i32; tokens.len()];
    for (ty, text) in &input.entries {
        tokens.push(text.to_string());
        types.push(*ty);
    }
    let n = tokens.len();
    let mut md = Metadata::default();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(Array::String(tokens)),
    );
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(Array::I32(types)),
    );
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(Array::String(
            input.merges.iter().map(|m| m.to_string()).collect(),
        )),
    );
    if let (Some(p), false) = (&input.pre, input.flags & flag::NAMED_PRE != 0) {
        md.insert("tokenizer.ggml.pre".into(), Value::String(p.to_string()));
    }
    for (key, v) in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
    ]
    .into_iter()
    .zip(input.ids)
    {
        if let Some(id) = TtInput::id(v, n) {
            md.insert(key.into(), Value::U32(id.min(u32::MAX as u64) as u32));
        }
    }
    md.insert(
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(input.flags & flag::ADD_BOS != 0),
    );
    let caller_jinja = input.format() == 3;
    if !caller_jinja {
        md.insert(
            "tokenizer.chat_template".into(),
            Value::String(input.template.to_string()),
        );
    }
    let settings = LoadSettings {
        chat_format: match input.format() {
            2 => ChatFormat::Gguf,
            3 => ChatFormat::Jinja(input.template.to_string()),
            4 => ChatFormat::Bitnet,
            5 => ChatFormat::Text,
            _ => ChatFormat::Auto,
        },
        pre_tokenizer: match (&input.pre, input.flags & flag::NAMED_PRE != 0) {
            (Some(p), true) => PreTokenizerChoice::Named(p.to_string()),
            (None, true) => PreTokenizerChoice::Named(String::new()),
            _ => PreTokenizerChoice::Auto,
        },
        ..LoadSettings::default()
    };
    // The pre-tokenizer regexes are compiled for every tokenizer built, which costs
    // ~100 times the rest of a run under instrumentation; so tokenizers are kept for the
    // inputs whose vocabulary part (ids, entries, merges, pre-tokenizer, flags) repeats.
    // A kept tokenizer is the one `chat_parts` built from the same metadata.
    let key = vocab_key(data, &input);
    let tok = match cached(&key) {
        Some(tok) => tok,
        None => {
            let file = GgufFile {
                version: 3,
                metadata: md,
                tensors: Vec::new(),
                tapped: Vec::new(),
                data_start: 0,
            };
            let Ok((tok, _)) = chat_parts(&file, &settings) else {
                return;
            };
            keep(key, Rc::new(tok))
        }
    };
    // The template as `chat_parts` chooses it.
    let token_text = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(tok.token_bytes(i)).into_owned())
            .unwrap_or_default()
    };
    let file_template = (!caller_jinja).then_some(input.template.as_ref());
    let Ok(template) = ChatTemplate::choose(
        file_template,
        &settings.chat_format,
        &token_text(tok.bos()),
        &token_text(tok.eos()),
        tok.token_id(BUILTIN_EOT).is_some(),
    ) else {
        return;
    };
    // A Jinja template was rendered above (other BOS/EOS texts); one that failed there
    // is not run again.
    let jinja = matches!(template.info().format.as_str(), "gguf" | "jinja");
    if !jinja {
        render_all(&template, &messages, gen);
    }
    let prompt = (!jinja || jinja_renders).then(|| chat_prompt_ids(&tok, &template, &messages));
    if let Some(Ok(ids)) = prompt {
        check_ids(&tok, &ids);
        decode_all(&tok, &ids);
    }
    let parse_special = input.flags & flag::PARSE_SPECIAL != 0;
    let add_bos = input.flags & flag::ADD_BOS != 0;
    if let Ok(ids) = tok.encode(&input.text, add_bos, parse_special) {
        check_ids(&tok, &ids);
        decode_all(&tok, &ids);
    }
    let _ = tok.special_text_in(&input.text);
    let _ = tok.token_id(&input.text);
    // Ids straight from the text's bytes, some outside the vocabulary.
    let raw: Vec<u32> = input
        .text
        .as_bytes()
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .collect();
    decode_all(&tok, &raw);
    for &id in tok.stop_tokens() {
        assert!((id as usize) < tok.n_vocab());
    }
});
