//! Pre-tokenizers: the regexes that split text before BPE, by `tokenizer.ggml.pre` name
//! (llama.cpp's table), and which one a vocabulary gets.

use super::VocabSpec;
use crate::error::{Error, Result};

/// Llama-3's pre-tokenizer regex (from its `tokenizer.json`; llama.cpp `LLAMA3`).
const RE_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's regex (llama.cpp `GPT2`).
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Qwen2's regex (llama.cpp `QWEN2`).
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `DEFAULT` BPE pre-tokenizer: these regexes applied one after another.
const RE_DEFAULT: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// Regexes and `ignore_merges` for a `tokenizer.ggml.pre` value (llama.cpp's table).
pub(super) fn pre_config(pre: &str) -> Result<(Vec<&'static str>, bool)> {
    Ok(match pre {
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "falcon-h1" | "pixtral" => {
            (vec![RE_LLAMA3], true)
        }
        "dbrx" | "smaug-bpe" => (vec![RE_LLAMA3], false),
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" => (vec![RE_GPT2], false),
        "qwen2" | "deepseek-r1-qwen" => (vec![RE_QWEN2], false),
        "default" | "" => (RE_DEFAULT.to_vec(), false),
        other => {
            return Err(Error::Tokenizer(format!(
                "unsupported pre-tokenizer type '{other}' (supported: llama-bpe, llama3, \
                 falcon3, pixtral, dbrx, smaug-bpe, gpt-2, qwen2, default)"
            )))
        }
    })
}

/// Which pre-tokenizer splits the text before BPE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PreTokenizerChoice {
    /// The file's `tokenizer.ggml.pre`; when it names none, Llama-3's for a Llama-3
    /// vocabulary (what the model's own `tokenizer.json` does), else llama.cpp's `default`.
    #[default]
    Auto,
    /// A `tokenizer.ggml.pre` name, e.g. `default` (what bitnet.cpp uses for the 2B4T
    /// file, which names none) or `llama-bpe`.
    Named(String),
}

impl PreTokenizerChoice {
    /// `auto`, or a pre-tokenizer name.
    pub fn parse(s: &str) -> PreTokenizerChoice {
        match s {
            "" | "auto" => PreTokenizerChoice::Auto,
            name => PreTokenizerChoice::Named(name.to_string()),
        }
    }
}

/// The pre-tokenizer in use and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreTokenizerInfo {
    pub name: String,
    pub reason: String,
}

/// Whether `tokens` is Meta's Llama-3 vocabulary: its special tokens where Llama-3 has
/// them, and a few ordinary tokens at Llama-3's ids.
pub fn is_llama3_vocab(tokens: &[String]) -> bool {
    const PROBES: [(usize, &str); 7] = [
        (220, "Ġ"),
        (791, "The"),
        (9822, "ĠFrance"),
        (15339, "hello"),
        (128000, "<|begin_of_text|>"),
        (128001, "<|end_of_text|>"),
        (128009, "<|eot_id|>"),
    ];
    PROBES
        .iter()
        .all(|&(i, t)| tokens.get(i).is_some_and(|s| s == t))
}

pub(super) fn choose_pre(spec: &VocabSpec, choice: &PreTokenizerChoice) -> PreTokenizerInfo {
    let (name, reason) = match (choice, spec.pre.as_deref()) {
        (PreTokenizerChoice::Named(n), _) => (n.clone(), "chosen by the caller".to_string()),
        (PreTokenizerChoice::Auto, Some(p)) => {
            (p.to_string(), "the file's tokenizer.ggml.pre".to_string())
        }
        (PreTokenizerChoice::Auto, None) if is_llama3_vocab(&spec.tokens) => (
            "llama3".to_string(),
            "the file names no pre-tokenizer and its vocabulary is Llama-3's: split as the \
             model's tokenizer.json does (bitnet.cpp falls back to llama.cpp's 'default')"
                .to_string(),
        ),
        (PreTokenizerChoice::Auto, None) => (
            "default".to_string(),
            "the file names no pre-tokenizer: llama.cpp's 'default'".to_string(),
        ),
    };
    PreTokenizerInfo { name, reason }
}
