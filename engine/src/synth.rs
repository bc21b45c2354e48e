//! Synthetic BitNet models: random weights of any shape in any supported format,
//! deterministic by seed. Tests, benchmarks and browser tests use them to get a
//! 2B4T-shaped file without downloading one. Random weights make nonsense text;
//! every number is still checkable.

use crate::error::{Error, Result};
use crate::formats::{i2s, tq1_0, tq2_0};
use crate::gguf::{Array, GgmlType, GgufWriter, Value};
use half::f16;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthShape {
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_vocab: usize,
}

impl SynthShape {
    /// BitNet b1.58 2B4T's shape.
    pub const B2B4T: SynthShape = SynthShape {
        n_embd: 2560,
        n_ff: 6912,
        n_layer: 30,
        n_head: 20,
        n_head_kv: 5,
        n_vocab: 128256,
    };
    /// The shape of the shared fixtures.
    pub const TINY: SynthShape = SynthShape {
        n_embd: 256,
        n_ff: 768,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 512,
    };

    /// `2b4t`, `tiny`, or `H,FF,L,HEADS,KV,VOCAB`.
    pub fn parse(s: &str) -> Result<SynthShape> {
        match s {
            "2b4t" => return Ok(SynthShape::B2B4T),
            "tiny" => return Ok(SynthShape::TINY),
            _ => {}
        }
        let v: Vec<usize> = s
            .split(',')
            .map(|x| x.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "shape '{s}': expected 2b4t, tiny or H,FF,L,HEADS,KV,VOCAB"
                ))
            })?;
        let [n_embd, n_ff, n_layer, n_head, n_head_kv, n_vocab] = v[..] else {
            return Err(Error::InvalidArgument(format!(
                "shape '{s}' needs six numbers"
            )));
        };
        let shape = SynthShape {
            n_embd,
            n_ff,
            n_layer,
            n_head,
            n_head_kv,
            n_vocab,
        };
        shape.validate()?;
        Ok(shape)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if !self.n_embd.is_multiple_of(256)
            || !self.n_ff.is_multiple_of(256)
            || self.n_embd == 0
            || self.n_ff == 0
        {
            return bad(format!(
                "hidden {} and feed-forward {} must be non-zero multiples of 256",
                self.n_embd, self.n_ff
            ));
        }
        if self.n_head == 0
            || self.n_head_kv == 0
            || !self.n_embd.is_multiple_of(self.n_head)
            || !self.n_head.is_multiple_of(self.n_head_kv)
        {
            return bad(format!(
                "{} heads / {} KV heads do not divide hidden {}",
                self.n_head, self.n_head_kv, self.n_embd
            ));
        }
        if !(self.n_embd / self.n_head).is_multiple_of(2) || self.n_layer == 0 {
            return bad("head size must be even and there must be at least one layer".into());
        }
        if self.n_vocab < 259 {
            return bad(format!(
                "vocabulary {} is smaller than 256 bytes + 3 special tokens",
                self.n_vocab
            ));
        }
        Ok(())
    }
}

/// GPT-2's byte → printable-character map (the alphabet of byte-level BPE vocabularies).
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    if printable(b) {
        return b as char;
    }
    let shifted = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shifted).unwrap()
}

/// The 256 byte tokens every byte-level BPE vocabulary starts with.
pub fn byte_tokens() -> Vec<String> {
    (0..=255u8).map(|b| byte_char(b).to_string()).collect()
}

/// A byte-level BPE vocabulary: 256 byte tokens, merges of common letter pairs,
/// reserved fillers, then `<|begin_of_text|>`, `<|end_of_text|>`, `<|eot_id|>`.
fn vocabulary(n_vocab: usize) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens = byte_tokens();
    let mut types = vec![1i32; 256];
    let mut merges = Vec::new();
    let letters: Vec<char> = "etaoinshrdlucmfwypvbgkjqxz".chars().collect();
    let space = byte_char(b' ');
    let mut pairs: Vec<(String, String)> = letters
        .iter()
        .map(|&c| (space.to_string(), c.to_string()))
        .collect();
    for &a in &letters {
        for &b in &letters {
            pairs.push((a.to_string(), b.to_string()));
        }
    }
    let room = n_vocab - 3;
    for (a, b) in pairs {
        if tokens.len() >= room {
            break;
        }
        tokens.push(format!("{a}{b}"));
        types.push(1);
        merges.push(format!("{a} {b}"));
    }
    while tokens.len() < room {
        tokens.push(format!("<|reserved_{}|>", tokens.len()));
        types.push(3);
    }
    for special in ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    (tokens, types, merges)
}

/// Random ternary codes (t+1), 40% zeros like trained BitNet weights.
fn ternary_codes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut codes = vec![0u8; n];
    rng.fill_bytes(&mut codes);
    for c in codes.iter_mut() {
        *c = if *c < 102 { 1 } else { (*c & 1) * 2 };
    }
    codes
}

fn seeded(seed: u64, name: &str) -> ChaCha8Rng {
    // FNV-1a of the tensor name: each tensor's values depend only on (seed, name).
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

pub(crate) fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

pub(crate) fn f16_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter()
        .flat_map(|x| f16::from_f32(x).to_le_bytes())
        .collect()
}

/// Encodes `rows × cols` ternary weights (codes, one scale) in `ty`.
pub(crate) fn encode_linear(ty: GgmlType, codes: &[u8], scale: f32) -> Result<Vec<u8>> {
    let n = codes.len();
    Ok(match ty {
        GgmlType::I2S => i2s::quantize(codes, scale),
        GgmlType::TQ2_0 => tq2_0::quantize(codes, &vec![scale; n / 256]),
        GgmlType::TQ1_0 => tq1_0::quantize(codes, &vec![scale; n / 256]),
        GgmlType::F16 => f16_bytes(codes.iter().map(|&c| (c as f32 - 1.0) * scale)),
        GgmlType::F32 => f32_bytes(codes.iter().map(|&c| (c as f32 - 1.0) * scale)),
        GgmlType::BF16 => {
            return Err(Error::InvalidArgument(
                "BF16 linear weights are not synthesized".into(),
            ))
        }
    })
}

/// One tensor's name, type, dims and bytes.
type Payload = (String, GgmlType, Vec<u64>, Vec<u8>);

/// The four norms of a block as the engine names them: name, length.
pub(crate) fn block_norms(n_embd: usize, n_ff: usize) -> [(&'static str, usize); 4] {
    [
        ("attn_norm", n_embd),
        ("attn_sub_norm", n_embd),
        ("ffn_norm", n_embd),
        ("ffn_sub_norm", n_ff),
    ]
}

/// The seven linear layers of a block as the engine names them, in the order the
/// writers store them: name, rows, cols.
pub(crate) fn block_linears(
    n_embd: usize,
    n_ff: usize,
    kv_dim: usize,
) -> [(&'static str, usize, usize); 7] {
    let (e, f) = (n_embd, n_ff);
    [
        ("attn_q", e, e),
        ("attn_k", kv_dim, e),
        ("attn_v", kv_dim, e),
        ("attn_output", e, e),
        ("ffn_gate", f, e),
        ("ffn_up", f, e),
        ("ffn_down", e, f),
    ]
}

/// The random tensors of a model: the F16 embedding, the F32 norms and the ternary
/// linear layers in `wtype`, each deterministic by (seed, name).
fn payloads(shape: SynthShape, wtype: GgmlType, seed: u64, n_vocab: usize) -> Result<Vec<Payload>> {
    let head_dim = shape.n_embd / shape.n_head;
    let kv = shape.n_head_kv * head_dim;
    let (e, f) = (shape.n_embd, shape.n_ff);
    let mut payloads: Vec<Payload> = Vec::new();
    let mut rng = seeded(seed, "token_embd.weight");
    payloads.push((
        "token_embd.weight".into(),
        GgmlType::F16,
        vec![e as u64, n_vocab as u64],
        f16_bytes((0..e * n_vocab).map(|_| rng.random_range(-1.0f32..1.0))),
    ));
    let norm = |name: &str, n: usize| {
        let mut rng = seeded(seed, name);
        (
            name.to_string(),
            GgmlType::F32,
            vec![n as u64],
            f32_bytes((0..n).map(|_| rng.random_range(0.8f32..1.2))),
        )
    };
    payloads.push(norm("output_norm.weight", e));
    for l in 0..shape.n_layer {
        for (name, n) in block_norms(e, f) {
            payloads.push(norm(&format!("blk.{l}.{name}.weight"), n));
        }
        for (name, rows, cols) in block_linears(e, f, kv) {
            let full = format!("blk.{l}.{name}.weight");
            let mut rng = seeded(seed, &full);
            let codes = ternary_codes(&mut rng, rows * cols);
            // Keeps activations near unit scale: Var(Σ t·x) ≈ 0.6·cols for unit x.
            let scale = 1.0 / (0.6 * cols as f32).sqrt();
            payloads.push((
                full,
                wtype,
                vec![cols as u64, rows as u64],
                encode_linear(wtype, &codes, scale)?,
            ));
        }
    }
    Ok(payloads)
}

/// Writes a random model to `out`. I2_S files use the `bitnet-b1.58` architecture
/// (like the official 2B4T file), the others llama.cpp's `bitnet` with relu².
pub fn write_model(
    shape: SynthShape,
    wtype: GgmlType,
    seed: u64,
    out: &mut impl std::io::Write,
) -> Result<()> {
    shape.validate()?;
    let arch = if wtype == GgmlType::I2S {
        "bitnet-b1.58"
    } else {
        "bitnet"
    };
    let (tokens, types, merges) = vocabulary(shape.n_vocab);
    let n_vocab = tokens.len();
    let head_dim = shape.n_embd / shape.n_head;
    let (e, f) = (shape.n_embd, shape.n_ff);
    let payloads = payloads(shape, wtype, seed, n_vocab)?;

    let mut w = GgufWriter::default();
    let k = |s: &str| format!("{arch}.{s}");
    w.kv("general.architecture", Value::String(arch.into()))
        .kv(
            "general.name",
            Value::String(format!(
                "synthetic-{arch}-{}L-{}d-{}-seed{seed}",
                shape.n_layer, e, wtype
            )),
        )
        .kv(&k("context_length"), Value::U32(4096))
        .kv(&k("embedding_length"), Value::U32(e as u32))
        .kv(&k("block_count"), Value::U32(shape.n_layer as u32))
        .kv(&k("feed_forward_length"), Value::U32(f as u32))
        .kv(&k("attention.head_count"), Value::U32(shape.n_head as u32))
        .kv(
            &k("attention.head_count_kv"),
            Value::U32(shape.n_head_kv as u32),
        )
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .kv(&k("rope.freq_base"), Value::F32(500000.0))
        .kv(&k("rope.dimension_count"), Value::U32(head_dim as u32))
        .kv(&k("vocab_size"), Value::U32(n_vocab as u32));
    if arch == "bitnet" {
        w.kv("bitnet.hidden_activation", Value::String("relu2".into()));
    }
    w.kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("llama-bpe".into()))
        .kv("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
        .kv("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))
        .kv("tokenizer.ggml.merges", Value::Array(Array::String(merges)))
        .kv(
            "tokenizer.ggml.bos_token_id",
            Value::U32(n_vocab as u32 - 3),
        )
        .kv(
            "tokenizer.ggml.eos_token_id",
            Value::U32(n_vocab as u32 - 2),
        )
        .kv(
            "tokenizer.ggml.eot_token_id",
            Value::U32(n_vocab as u32 - 1),
        )
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true));
    for (name, ty, dims, data) in &payloads {
        w.tensor(name, *ty, dims, data);
    }
    w.write_to(out)?;
    Ok(())
}

/// The chat template that bitnet.cpp's converter (`utils/convert-ms-to-gguf-bitnet.py`)
/// writes into the official 2B4T file. The `\n` are escapes inside a Jinja string
/// literal, as in the file.
pub const CONVERTER_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

/// Within a block, the official file lists tensors in the alphabetical order of their
/// Hugging Face names (input_layernorm, mlp.down_proj, mlp.ffn_layernorm, …).
const OFFICIAL_BLOCK_ORDER: [&str; 11] = [
    "attn_norm",
    "ffn_down",
    "ffn_sub_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_norm",
    "attn_sub_norm",
    "attn_k",
    "attn_output",
    "attn_q",
    "attn_v",
];

/// Writes a random I2_S model with the official 2B4T file's exact header: its 24
/// metadata keys in its order and types (no `tokenizer.ggml.pre`, no `eot_token_id`,
/// no `general.alignment`; scores all 0; `vocab`'s tokens, types and merges; the
/// converter's chat template), its tensor order (embedding first, blocks in string order
/// 0, 1, 10, …, `output_norm` last) and alignment 32. At [`SynthShape::B2B4T`] with the
/// Llama-3 vocabulary it is as long as the real file, 1,187,801,280 bytes. The vocabulary
/// sets the shape's vocabulary size.
pub fn write_official(
    shape: SynthShape,
    vocab: &crate::tokenizer::VocabSpec,
    seed: u64,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let n_vocab = vocab.tokens.len();
    let shape = SynthShape { n_vocab, ..shape };
    shape.validate()?;
    let (Some(bos), Some(eos)) = (vocab.bos, vocab.eos) else {
        return Err(Error::InvalidArgument(
            "the official layout needs a vocabulary with bos and eos ids".into(),
        ));
    };
    let token_types = if vocab.token_types.is_empty() {
        vec![1; n_vocab]
    } else {
        vocab.token_types.clone()
    };
    let mut by_name: std::collections::HashMap<String, Payload> =
        payloads(shape, GgmlType::I2S, seed, n_vocab)?
            .into_iter()
            .map(|p| (p.0.clone(), p))
            .collect();
    let mut blocks: Vec<String> = (0..shape.n_layer).map(|l| l.to_string()).collect();
    blocks.sort();
    let mut order = vec!["token_embd.weight".to_string()];
    for b in &blocks {
        for t in OFFICIAL_BLOCK_ORDER {
            order.push(format!("blk.{b}.{t}.weight"));
        }
    }
    order.push("output_norm.weight".into());
    let ordered: Vec<Payload> = order
        .iter()
        .map(|n| by_name.remove(n).expect("every tensor is synthesized"))
        .collect();

    let arch = "bitnet-b1.58";
    let k = |s: &str| format!("{arch}.{s}");
    let u32_of = |v: usize| Value::U32(v as u32);
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::String(arch.into()))
        .kv("general.name", Value::String("bitnet2b".into()))
        .kv(&k("vocab_size"), u32_of(n_vocab))
        .kv(&k("context_length"), Value::U32(4096))
        .kv(&k("embedding_length"), u32_of(shape.n_embd))
        .kv(&k("block_count"), u32_of(shape.n_layer))
        .kv(&k("feed_forward_length"), u32_of(shape.n_ff))
        .kv(
            &k("rope.dimension_count"),
            u32_of(shape.n_embd / shape.n_head),
        )
        .kv(&k("attention.head_count"), u32_of(shape.n_head))
        .kv(&k("attention.head_count_kv"), u32_of(shape.n_head_kv))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .kv(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .kv(&k("rope.freq_base"), Value::F32(500000.0))
        .kv("general.file_type", Value::U32(40))
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vocab.tokens.clone())),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; n_vocab])),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(token_types)),
        )
        .kv(
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vocab.merges.clone())),
        )
        .kv("tokenizer.ggml.bos_token_id", Value::U32(bos))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(eos))
        .kv("tokenizer.ggml.padding_token_id", Value::U32(eos))
        .kv(
            "tokenizer.chat_template",
            Value::String(CONVERTER_CHAT_TEMPLATE.into()),
        )
        .kv("general.quantization_version", Value::U32(2));
    for (name, ty, dims, data) in &ordered {
        w.tensor(name, *ty, dims, data);
    }
    w.write_to(out)?;
    Ok(())
}

pub fn model_bytes(shape: SynthShape, wtype: GgmlType, seed: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_model(shape, wtype, seed, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits};
    use crate::session::LoadedModel;

    #[test]
    fn every_format_loads_and_agrees() {
        let mut reference: Option<Vec<f32>> = None;
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::TQ2_0,
            GgmlType::TQ1_0,
            GgmlType::I2S,
        ] {
            let bytes = model_bytes(SynthShape::TINY, ty, 3).unwrap();
            assert_eq!(
                bytes,
                model_bytes(SynthShape::TINY, ty, 3).unwrap(),
                "deterministic by seed"
            );
            let m = LoadedModel::from_gguf(GgufFile::from_bytes(&bytes).unwrap()).unwrap();
            let mut b = CpuBackend::new(
                m.model.clone(),
                CpuOptions {
                    act: ActMode::F32,
                    n_ctx: Some(16),
                    ..Default::default()
                },
            );
            let logits = b.forward(&[1, 2, 3, 300], Logits::All).unwrap();
            assert!(logits.iter().all(|v| v.is_finite()));
            match &reference {
                None => reference = Some(logits),
                Some(r) => {
                    let max = r
                        .iter()
                        .zip(&logits)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    // F16 and ternary scales round the f32 scale to f16 (TQ) or keep it (I2_S).
                    assert!(max < 2e-2, "{ty}: {max}");
                }
            }
        }
        assert_ne!(
            model_bytes(SynthShape::TINY, GgmlType::I2S, 3).unwrap(),
            model_bytes(SynthShape::TINY, GgmlType::I2S, 4).unwrap()
        );
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(SynthShape::parse("2b4t").unwrap(), SynthShape::B2B4T);
        assert_eq!(
            SynthShape::parse("256,768,2,4,2,512").unwrap(),
            SynthShape::TINY
        );
        assert!(SynthShape::parse("100,768,2,4,2,512").is_err());
        assert!(SynthShape::parse("256,768").is_err());
    }
}
