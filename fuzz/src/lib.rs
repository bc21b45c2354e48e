//! Shared pieces of the fuzz targets: the byte-level alphabet, the input format of
//! `template_tokenizer`, and a writer of tiny valid models (for the seed corpus).

use bitnet_engine::formats::{i2s, tq1_0, tq2_0};
use bitnet_engine::gguf::{Array, GgmlType, GgufWriter, Value};
pub use bitnet_engine::synth::{byte_char, byte_tokens};
use std::borrow::Cow;

// ---------------------------------------------------------------------------
// template_tokenizer input
// ---------------------------------------------------------------------------

/// Separates the sections of a `template_tokenizer` input.
pub const SECTION: u8 = 0x00;
/// Separates messages.
pub const RECORD: u8 = 0x1E;
/// Separates a message's role from its content.
pub const UNIT: u8 = 0x1F;

/// Flag bits (byte 0 of a `template_tokenizer` input).
pub mod flag {
    pub const ADD_GENERATION_PROMPT: u8 = 1 << 0;
    /// Bits 1–3: the chat format (see [`super::TtInput::format`]).
    pub const FORMAT_SHIFT: u8 = 1;
    pub const PARSE_SPECIAL: u8 = 1 << 4;
    pub const ADD_BOS: u8 = 1 << 5;
    /// Leave out the 256 byte tokens (the vocabulary is then only the listed entries).
    pub const NO_BYTE_TOKENS: u8 = 1 << 6;
    /// Pick the pre-tokenizer by name (section 4) instead of the file's `tokenizer.ggml.pre`.
    pub const NAMED_PRE: u8 = 1 << 7;
}

/// Special-id byte meaning "no such id".
pub const NO_ID: u8 = 0xFF;

/// A `template_tokenizer` input:
///
/// ```text
/// byte 0   flags (see [`flag`])
/// byte 1-3 bos, eos, eot id: 0xFF none; 0xF0..=0xFE the id n + (v - 0xF0), outside the
///          vocabulary of n; else n - 1 - (v mod n), counted from the end
/// then sections separated by 0x00:
///   0 chat template source (Jinja)
///   1 messages, separated by 0x1E; each `role 0x1F content`, or only a content
///     (roles then alternate user / assistant)
///   2 vocabulary entries after the byte tokens, one per line; `T:text` with T in 1..=6
///     gives the token type (3 control, 4 user-defined, …), otherwise type 1
///   3 merges, one per line (`a b`)
///   4 pre-tokenizer name (empty: the file names none)
///   5 a text to encode and decode
/// ```
/// Invalid UTF-8 is read lossily; missing sections are empty.
#[derive(Debug, Clone)]
pub struct TtInput<'a> {
    pub flags: u8,
    pub ids: [u8; 3],
    pub template: Cow<'a, str>,
    pub messages: Vec<(Option<Cow<'a, str>>, Cow<'a, str>)>,
    pub entries: Vec<(i32, Cow<'a, str>)>,
    pub merges: Vec<Cow<'a, str>>,
    pub pre: Option<Cow<'a, str>>,
    pub text: Cow<'a, str>,
}

/// At most this many messages, vocabulary entries and merges are read.
pub const MAX_ITEMS: usize = 512;

impl<'a> TtInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<TtInput<'a>> {
        if data.len() < 4 {
            return None;
        }
        let (head, rest) = data.split_at(4);
        let mut sections = rest.splitn(6, |&b| b == SECTION);
        let mut next = || sections.next();
        let lossy = String::from_utf8_lossy;
        let template = lossy(next().unwrap_or(b""));
        let messages = next()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split(|&b| b == RECORD)
                    .take(MAX_ITEMS)
                    .map(|m| match m.iter().position(|&b| b == UNIT) {
                        Some(p) => (Some(lossy(&m[..p])), lossy(&m[p + 1..])),
                        None => (None, lossy(m)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let lines = |s: Option<&'a [u8]>| -> Vec<&'a [u8]> {
            s.filter(|s| !s.is_empty())
                .map(|s| s.split(|&b| b == b'\n').take(MAX_ITEMS).collect())
                .unwrap_or_default()
        };
        let entries = lines(next())
            .into_iter()
            .map(|l| match l {
                [t @ b'1'..=b'6', b':', text @ ..] => ((t - b'0') as i32, lossy(text)),
                _ => (1, lossy(l)),
            })
            .collect();
        let merges = lines(next()).into_iter().map(lossy).collect();
        let pre = next().filter(|s| !s.is_empty()).map(lossy);
        let text = lossy(next().unwrap_or(b""));
        Some(TtInput {
            flags: head[0],
            ids: [head[1], head[2], head[3]],
            template,
            messages,
            entries,
            merges,
            pre,
            text,
        })
    }

    /// The chat format bits: 2 `gguf`, 3 the template as the caller's Jinja (the file
    /// then has none), 4 `bitnet`, 5 `text`, else `auto`.
    pub fn format(&self) -> u8 {
        (self.flags >> flag::FORMAT_SHIFT) & 7
    }

    /// Resolves an id byte against a vocabulary of `n` tokens.
    pub fn id(v: u8, n: usize) -> Option<u64> {
        match v {
            NO_ID => None,
            0xF0..=0xFE => Some(n as u64 + (v - 0xF0) as u64),
            _ if n == 0 => Some(0),
            _ => Some((n - 1 - (v as usize % n)) as u64),
        }
    }

    /// Role of message `i`.
    pub fn role(&self, i: usize) -> Cow<'_, str> {
        match &self.messages[i].0 {
            Some(r) => Cow::Borrowed(r.as_ref()),
            None if i.is_multiple_of(2) => Cow::Borrowed("user"),
            None => Cow::Borrowed("assistant"),
        }
    }
}

/// Builds a `template_tokenizer` input (the inverse of [`TtInput::parse`]), for seeds.
#[allow(clippy::too_many_arguments)]
pub fn tt_encode(
    flags: u8,
    ids: [u8; 3],
    template: &str,
    messages: &[(Option<&str>, &str)],
    entries: &[(i32, &str)],
    merges: &[&str],
    pre: Option<&str>,
    text: &str,
) -> Vec<u8> {
    let mut out = vec![flags, ids[0], ids[1], ids[2]];
    out.extend_from_slice(template.as_bytes());
    out.push(SECTION);
    for (i, (role, content)) in messages.iter().enumerate() {
        if i > 0 {
            out.push(RECORD);
        }
        if let Some(r) = role {
            out.extend_from_slice(r.as_bytes());
            out.push(UNIT);
        }
        out.extend_from_slice(content.as_bytes());
    }
    out.push(SECTION);
    let lines: Vec<String> = entries
        .iter()
        .map(|&(t, s)| {
            if t == 1 {
                s.to_string()
            } else {
                format!("{t}:{s}")
            }
        })
        .collect();
    out.extend_from_slice(lines.join("\n").as_bytes());
    out.push(SECTION);
    out.extend_from_slice(merges.join("\n").as_bytes());
    out.push(SECTION);
    out.extend_from_slice(pre.unwrap_or("").as_bytes());
    out.push(SECTION);
    out.extend_from_slice(text.as_bytes());
    out
}

// ---------------------------------------------------------------------------
// Tiny valid models, for the seed corpus
// ---------------------------------------------------------------------------

/// What a tiny model looks like.
#[derive(Debug, Clone)]
pub struct TinyModel<'a> {
    /// `bitnet`, `bitnet-b1.58` or `bitnet-25`.
    pub arch: &'a str,
    /// `bitnet.hidden_activation` (only written for `bitnet`).
    pub activation: Option<&'a str>,
    /// Type of `ffn_down` (256-wide rows: the only layer a ternary type fits at this size).
    pub down: GgmlType,
    /// Type of the other linear layers (F32 or F16).
    pub dense: GgmlType,
    pub n_layer: usize,
    /// An `output.weight` (else the head is tied to the embedding).
    pub untied: bool,
    /// `.scale` tensors on every linear layer.
    pub scales: bool,
    pub chat_template: Option<&'a str>,
    pub pre: Option<&'a str>,
    /// Add `<|eot_id|>` to the vocabulary (else the base-model `text` format is picked).
    pub eot_token: bool,
}

impl Default for TinyModel<'_> {
    fn default() -> Self {
        TinyModel {
            arch: "bitnet",
            activation: Some("relu2"),
            down: GgmlType::TQ2_0,
            dense: GgmlType::F16,
            n_layer: 1,
            untied: false,
            scales: false,
            chat_template: None,
            pre: Some("llama-bpe"),
            eot_token: true,
        }
    }
}

/// Deterministic little values.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 2001) as f32 / 1000.0 - 1.0
    }
    fn code(&mut self) -> u8 {
        (self.next() % 3) as u8
    }
}

fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn f16_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter()
        .flat_map(|x| half_bits(x).to_le_bytes())
        .collect()
}

/// f32 → f16 bits for the small, normal values the writer uses (round to nearest).
fn half_bits(x: f32) -> u16 {
    if x == 0.0 {
        return 0;
    }
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = b & 0x7f_ffff;
    if exp <= 0 {
        return sign;
    }
    let m = (mant + 0x1000) >> 13;
    sign | (((exp as u32) << 10) + m) as u16
}

/// A tiny vocabulary: 256 byte tokens, a few merges, then special tokens.
pub fn tiny_vocab(eot_token: bool) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens = byte_tokens();
    let mut types = vec![1; 256];
    let sp = byte_char(b' ');
    let mut merges = Vec::new();
    for (a, b) in [
        (sp.to_string(), "t".to_string()),
        ("h".into(), "e".into()),
        (format!("{sp}t"), "he".into()),
        ("i".into(), "n".into()),
        (sp.to_string(), "a".into()),
    ] {
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let mut specials = vec!["<|begin_of_text|>", "<|end_of_text|>"];
    if eot_token {
        specials.push("<|eot_id|>");
    }
    for s in specials {
        tokens.push(s.into());
        types.push(3);
    }
    (tokens, types, merges)
}

fn ternary(ty: GgmlType, codes: &[u8], scale: f32) -> Vec<u8> {
    match ty {
        GgmlType::TQ2_0 => tq2_0::quantize(codes, &vec![scale; codes.len() / 256]),
        GgmlType::TQ1_0 => tq1_0::quantize(codes, &vec![scale; codes.len() / 256]),
        GgmlType::I2S => i2s::quantize(codes, scale),
        GgmlType::F16 => f16_bytes(codes.iter().map(|&c| (c as f32 - 1.0) * scale)),
        _ => f32_bytes(codes.iter().map(|&c| (c as f32 - 1.0) * scale)),
    }
}

/// A tiny model (hidden 8, 2 heads, 1 KV head, feed-forward 256, vocabulary ~263) that
/// loads and chats: a few KB.
pub fn tiny_model(m: &TinyModel) -> Vec<u8> {
    const E: usize = 8;
    const F: usize = 256;
    const KV: usize = 4;
    let (tokens, types, merges) = tiny_vocab(m.eot_token);
    let n_vocab = tokens.len();
    let mut rng = Lcg(0x5eed ^ n_vocab as u64);
    let dense = |rng: &mut Lcg, ty: GgmlType, n: usize| match ty {
        GgmlType::F32 => f32_bytes((0..n).map(|_| rng.unit() * 0.5)),
        _ => f16_bytes((0..n).map(|_| rng.unit() * 0.5)),
    };
    let mut payloads: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)> = vec![(
        "token_embd.weight".into(),
        GgmlType::F16,
        vec![E as u64, n_vocab as u64],
        f16_bytes((0..E * n_vocab).map(|_| rng.unit())),
    )];
    if m.untied {
        payloads.push((
            "output.weight".into(),
            GgmlType::F32,
            vec![E as u64, n_vocab as u64],
            dense(&mut rng, GgmlType::F32, E * n_vocab),
        ));
    }
    let norm = |n: usize| f32_bytes((0..n).map(|i| 0.9 + (i % 5) as f32 * 0.05));
    payloads.push((
        "output_norm.weight".into(),
        GgmlType::F32,
        vec![E as u64],
        norm(E),
    ));
    for l in 0..m.n_layer {
        for (name, n) in [
            ("attn_norm", E),
            ("attn_sub_norm", E),
            ("ffn_norm", E),
            ("ffn_sub_norm", F),
        ] {
            payloads.push((
                format!("blk.{l}.{name}.weight"),
                GgmlType::F32,
                vec![n as u64],
                norm(n),
            ));
        }
        for (name, rows, cols) in [
            ("attn_q", E, E),
            ("attn_k", KV, E),
            ("attn_v", KV, E),
            ("attn_output", E, E),
            ("ffn_gate", F, E),
            ("ffn_up", F, E),
            ("ffn_down", E, F),
        ] {
            let ty = if name == "ffn_down" { m.down } else { m.dense };
            let codes: Vec<u8> = (0..rows * cols).map(|_| rng.code()).collect();
            let scale = 1.0 / (cols as f32).sqrt();
            payloads.push((
                format!("blk.{l}.{name}.weight"),
                ty,
                vec![cols as u64, rows as u64],
                ternary(ty, &codes, scale),
            ));
            if m.scales {
                payloads.push((
                    format!("blk.{l}.{name}.scale"),
                    GgmlType::F32,
                    vec![1],
                    f32_bytes([0.75]),
                ));
            }
        }
    }
    let mut w = GgufWriter::default();
    let arch = m.arch;
    let k = |s: &str| format!("{arch}.{s}");
    w.kv("general.architecture", Value::String(arch.into()))
        .kv("general.name", Value::String("fuzz-seed".into()))
        .kv(&k("context_length"), Value::U32(128))
        .kv(&k("embedding_length"), Value::U32(E as u32))
        .kv(&k("block_count"), Value::U32(m.n_layer as u32))
        .kv(&k("feed_forward_length"), Value::U32(F as u32))
        .kv(&k("attention.head_count"), Value::U32(2))
        .kv(&k("attention.head_count_kv"), Value::U32(1))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .kv(&k("rope.freq_base"), Value::F32(500000.0))
        .kv(&k("rope.dimension_count"), Value::U32(4))
        .kv(&k("vocab_size"), Value::U32(n_vocab as u32));
    if let (Some(a), "bitnet") = (m.activation, arch) {
        w.kv("bitnet.hidden_activation", Value::String(a.into()));
    }
    w.kv("tokenizer.ggml.model", Value::String("gpt2".into()));
    if let Some(p) = m.pre {
        w.kv("tokenizer.ggml.pre", Value::String(p.into()));
    }
    let bos = tokens
        .iter()
        .position(|t| t == "<|begin_of_text|>")
        .unwrap();
    let eos = tokens.iter().position(|t| t == "<|end_of_text|>").unwrap();
    w.kv("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
        .kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))
        .kv("tokenizer.ggml.merges", Value::Array(Array::String(merges)))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(bos as u32))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(eos as u32))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true));
    if let Some(t) = m.chat_template {
        w.kv("tokenizer.chat_template", Value::String(t.into()));
    }
    for (name, ty, dims, data) in &payloads {
        w.tensor(name, *ty, dims, data);
    }
    w.to_bytes()
}
