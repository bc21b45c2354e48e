//! Byte-level BPE tokenizer built from GGUF metadata (`tokenizer.ggml.*`), matching
//! llama.cpp's `llama_tokenize` for `gpt2`-type vocabularies (Llama-3 and friends).
//!
//! How a text becomes ids, in llama.cpp's order:
//! 1. optional BOS;
//! 2. the text is cut at occurrences of special tokens (llama.cpp's
//!    `tokenizer_st_partition`): longest token text first, over the whole text.
//!    USER_DEFINED tokens are always cut out; CONTROL and UNKNOWN tokens only when
//!    `parse_special` is set (otherwise their text is tokenized like any other text);
//! 3. every remaining piece of plain text goes through the `tokenizers` crate: the
//!    pre-tokenizer regex of the vocabulary's `pre` type, GPT-2 byte-to-unicode mapping,
//!    then BPE with the vocabulary's merges.
//!
//! The special-token cut is done here rather than through `tokenizers`' added-token
//! machinery so that one `tokenizers` instance serves both `parse_special` modes, and so
//! that the cut follows llama.cpp's longest-first rule exactly.

use std::ops::Range;

use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};

mod byte_level;
mod pretokenize;
mod special;
mod stream;

use byte_level::{byte_to_char, push_byte_level_decoded};
use pretokenize::{choose_pre, pre_config};
pub use pretokenize::{is_llama3_vocab, PreTokenizerChoice, PreTokenizerInfo};
use special::{Fragment, EOG_TEXTS, EOT_TEXTS};
pub use stream::StreamDecoder;

/// Everything the tokenizer needs, as read from GGUF metadata (`tokenizer.ggml.*`).
#[derive(Debug, Clone, Default)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`; must be `"gpt2"` (byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`, e.g. `"llama-bpe"`; selects the pre-tokenizer regex.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens` (GPT-2 byte-level unicode strings).
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte). Empty means all normal.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges` (`"a b"`, highest priority first).
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Token string → id. On duplicate strings the later id wins, as in llama.cpp's
/// `token_to_id`.
fn bpe_vocab(spec: &VocabSpec) -> BpeVocab {
    spec.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// Splits `"a b"` merges like llama.cpp (at the first space after the first byte).
/// With `only_in`, merges whose parts or result are not in that vocabulary are dropped.
fn parse_merges(spec: &VocabSpec, only_in: Option<&BpeVocab>) -> Result<Vec<(String, String)>> {
    let mut merges = Vec::with_capacity(spec.merges.len());
    for (i, m) in spec.merges.iter().enumerate() {
        let p = m
            .as_bytes()
            .iter()
            .skip(1)
            .position(|&b| b == b' ')
            .map(|p| p + 1);
        let Some(p) = p else {
            return Err(Error::Tokenizer(format!("merge {i} ('{m}') has no space")));
        };
        let (a, b) = (&m[..p], &m[p + 1..]);
        if let Some(vocab) = only_in {
            if !(vocab.contains_key(a)
                && vocab.contains_key(b)
                && vocab.contains_key(&format!("{a}{b}")))
            {
                continue;
            }
        }
        merges.push((a.to_string(), b.to_string()));
    }
    Ok(merges)
}

/// A byte-level BPE tokenizer with llama.cpp's semantics.
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    types: Vec<i32>,
    /// Concatenated raw bytes of every token; token `i` is `bytes[offsets[i]..offsets[i+1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// Tokens cut out of the text before BPE (CONTROL, USER_DEFINED, UNKNOWN),
    /// longest text first (llama.cpp's `cache_special_tokens`).
    specials: Vec<(String, u32, i32)>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    /// Every token that ends a generation: EOS, EOT, and llama.cpp's end-of-generation
    /// texts found in the vocabulary (ascending ids).
    eog: Vec<u32>,
    pre: PreTokenizerInfo,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("n_vocab", &self.n_vocab())
            .field("n_special", &self.specials.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer of `spec`, with the pre-tokenizer picked by [`PreTokenizerChoice::Auto`].
    pub fn from_spec(spec: &VocabSpec) -> Result<Tokenizer> {
        Tokenizer::from_spec_with(spec, &PreTokenizerChoice::Auto)
    }

    pub fn from_spec_with(spec: &VocabSpec, pre_choice: &PreTokenizerChoice) -> Result<Tokenizer> {
        if spec.model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "unsupported tokenizer model '{}' (only byte-level BPE, 'gpt2', is supported)",
                spec.model
            )));
        }
        let n = spec.tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!("bad vocabulary size {n}")));
        }
        let types: Vec<i32> = if spec.token_types.is_empty() {
            vec![token_type::NORMAL; n]
        } else if spec.token_types.len() == n {
            spec.token_types.clone()
        } else {
            return Err(Error::Tokenizer(format!(
                "{} token types for {n} tokens",
                spec.token_types.len()
            )));
        };
        for (what, id) in [("bos", spec.bos), ("eos", spec.eos), ("eot", spec.eot)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(Error::Tokenizer(format!(
                        "{what} id {id} is outside the vocabulary of {n}"
                    )));
                }
            }
        }
        let pre_info = choose_pre(spec, pre_choice);
        let (regexes, ignore_merges) = pre_config(&pre_info.name)?;

        let vocab = bpe_vocab(spec);
        let byte_chars = byte_to_char();
        if let Some(b) =
            (0..256).find(|&b| !vocab.contains_key(byte_chars[b].encode_utf8(&mut [0; 4]) as &str))
        {
            return Err(Error::Tokenizer(format!(
                "the vocabulary has no byte-level token for byte 0x{b:02x}; not a byte-level BPE vocabulary"
            )));
        }
        let merges = parse_merges(spec, None)?;
        let build = |vocab, merges| {
            BPE::builder()
                .vocab_and_merges(vocab, merges)
                .ignore_merges(ignore_merges)
                .build()
        };
        let bpe = match build(vocab, merges) {
            Ok(bpe) => bpe,
            Err(_) => {
                // Some merge names a token (or produces one) that is not in the
                // vocabulary (llama.cpp accepts that; such a merge can never yield a
                // token). Rare, so only then pay for a second pass that drops them.
                let vocab = bpe_vocab(spec);
                let merges = parse_merges(spec, Some(&vocab))?;
                build(vocab, merges).map_err(|e| Error::Tokenizer(format!("building BPE: {e}")))?
            }
        };

        let mut pre: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
        for re in regexes {
            let split = Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
            pre.push(split.into());
        }
        pre.push(ByteLevel::new(false, true, false).into());
        let mut hf = tokenizers::Tokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(Sequence::new(pre)));

        // Raw bytes of every token, as llama.cpp's token_to_piece gives them:
        // CONTROL / USER_DEFINED / UNKNOWN tokens are their text, others byte-level decoded.
        let mut bytes = Vec::with_capacity(spec.tokens.iter().map(|t| t.len()).sum());
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (t, &ty) in spec.tokens.iter().zip(&types) {
            match ty {
                token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN => {
                    bytes.extend_from_slice(t.as_bytes())
                }
                _ => push_byte_level_decoded(t, &mut bytes),
            }
            let end = u32::try_from(bytes.len())
                .map_err(|_| Error::Tokenizer("vocabulary text is larger than 4 GiB".into()))?;
            offsets.push(end);
        }

        let mut specials: Vec<(String, u32, i32)> = spec
            .tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (t, &ty))| {
                !t.is_empty()
                    && matches!(
                        ty,
                        token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                    )
            })
            .map(|(i, (t, &ty))| (t.clone(), i as u32, ty))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let id_of = |text: &str| spec.tokens.iter().position(|t| t == text).map(|i| i as u32);
        let eot = spec.eot.or_else(|| EOT_TEXTS.iter().find_map(|t| id_of(t)));
        let mut eog: Vec<u32> = [spec.eos, eot]
            .into_iter()
            .flatten()
            .chain(EOT_TEXTS.iter().chain(EOG_TEXTS).filter_map(|t| id_of(t)))
            .collect();
        eog.sort_unstable();
        eog.dedup();

        Ok(Tokenizer {
            hf,
            types,
            bytes,
            offsets,
            specials,
            bos: spec.bos,
            eos: spec.eos,
            eot,
            eog,
            pre: pre_info,
            add_bos: spec.add_bos,
        })
    }

    /// Ids for `text`. `add_bos` prepends BOS when the vocabulary has one;
    /// `parse_special` makes CONTROL-token text such as `<|eot_id|>` become that token
    /// (llama.cpp's `parse_special`). USER_DEFINED tokens are matched either way.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        self.encode_parts(text, add_bos, parse_special, &[])
    }

    /// Ids for a rendered chat prompt: CONTROL-token text becomes that token except
    /// inside the `plain` byte ranges (message contents), which are tokenized as text.
    /// The cut at special tokens is the only difference from [`encode`](Self::encode)
    /// with `parse_special`: plain ranges and the text around them go through BPE
    /// together, so a prompt without special text in its contents tokenizes the same.
    pub fn encode_chat(&self, text: &str, plain: &[Range<usize>]) -> Result<Vec<u32>> {
        self.encode_parts(text, false, true, plain)
    }

    fn encode_parts(
        &self,
        text: &str,
        add_bos: bool,
        parse_special: bool,
        plain: &[Range<usize>],
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            if let Some(bos) = self.bos {
                out.push(bos);
            }
        }
        for frag in self.partition(text, parse_special, plain) {
            match frag {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(a, b) => {
                    let enc = self
                        .hf
                        .encode_fast(&text[a..b], false)
                        .map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
                    out.extend_from_slice(enc.get_ids());
                }
            }
        }
        Ok(out)
    }

    /// Raw bytes of one token (byte-level decoded; CONTROL / USER_DEFINED tokens: their
    /// text). Empty for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i + 1 >= self.offsets.len() {
            return &[];
        }
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Text of `ids` (invalid UTF-8 becomes U+FFFD). `skip_special` leaves out
    /// CONTROL tokens (BOS, EOS, `<|eot_id|>`, ...).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut buf = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if skip_special && self.is_special(id) {
                continue;
            }
            buf.extend_from_slice(self.token_bytes(id));
        }
        match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.types.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// `tokenizer.ggml.add_bos_token`: whether a raw prompt should start with BOS.
    pub fn add_bos_default(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether `id` is a CONTROL token.
    pub fn is_special(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&token_type::CONTROL)
    }

    /// The token type (`token_type::*`), if `id` is in the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.types.get(id as usize).copied()
    }

    /// Tokens that end generation, like llama.cpp's end-of-generation set: EOS, EOT
    /// (from the metadata, or found by its text), and every other end-of-turn text of
    /// llama.cpp's list that the vocabulary has (ascending ids).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// The first CONTROL or UNKNOWN token text that occurs in `text` (what
    /// `parse_special` would turn into a token), if any.
    pub fn special_text_in(&self, text: &str) -> Option<&str> {
        self.specials
            .iter()
            .find(|(t, _, ty)| *ty != token_type::USER_DEFINED && text.contains(t.as_str()))
            .map(|(t, _, _)| t.as_str())
    }

    /// The pre-tokenizer in use and why.
    pub fn pre_tokenizer(&self) -> &PreTokenizerInfo {
        &self.pre
    }

    /// The id of the vocabulary entry spelled exactly `text` (byte-level form for
    /// normal tokens, e.g. `"Ġworld"`; plain text for special ones, e.g. `"<|eot_id|>"`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.hf.token_to_id(text)
    }
}

#[cfg(test)]
pub(crate) mod tests;
