//! Trained checkpoints into GGUF: the latent f32 weights of a safetensors file, the
//! model's hyper-parameters (`config.json`) and a Hugging Face byte-level BPE
//! `tokenizer.json`, written as a `bitnet-b1.58` model in any format the engine loads.
//!
//! Every linear layer is quantized the way BitNet b1.58 trains it: absmean ternary,
//! s = mean|W| rounded to f16, t = clamp(round(W / s), −1, 1). The scale is rounded to
//! f16 so that TQ1_0 and TQ2_0 (f16 block scales) hold exactly the values of I2_S (one
//! f32 scale). F16 files keep the latent weights themselves, unquantized.

use std::collections::HashMap;

use half::f16;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gguf::{Array, GgmlType, GgufWriter, Value};
use crate::synth::{block_linears, block_norms, encode_linear, f16_bytes, f32_bytes};
use crate::tokenizer::token_type;

/// The hyper-parameters of a trained model (`train/model.py`'s `Config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TrainedConfig {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_ctx: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
}

/// One f32 tensor of a checkpoint, row-major with the outermost dimension first.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Deserialize)]
struct SafetensorsEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The F32 tensors of a safetensors file (a little-endian u64 header length, a JSON
/// header naming each tensor's dtype, shape and byte range, then the data).
pub fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, CheckpointTensor>> {
    let bad = |m: String| Error::Malformed(format!("safetensors: {m}"));
    let head_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| bad("shorter than its 8-byte header length".into()))?;
    let data_start = usize::try_from(head_len)
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| bad(format!("header length {head_len} past the end")))?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(format!("header: {e}")))?;
    let data = &bytes[data_start..];
    let mut out = HashMap::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let e: SafetensorsEntry =
            serde_json::from_value(entry).map_err(|e| bad(format!("{name}: {e}")))?;
        if e.dtype != "F32" {
            return Err(bad(format!("{name}: dtype {} (only F32 is read)", e.dtype)));
        }
        let n = e
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad(format!("{name}: shape {:?} overflows", e.shape)))?;
        let [start, end] = e.data_offsets;
        let raw = data
            .get(start..end)
            .filter(|r| Some(r.len()) == n.checked_mul(4))
            .ok_or_else(|| {
                bad(format!(
                    "{name}: bytes {start}..{end} do not hold {n} f32 values"
                ))
            })?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        out.insert(
            name,
            CheckpointTensor {
                shape: e.shape,
                values,
            },
        );
    }
    Ok(out)
}

/// A byte-level BPE vocabulary read from a Hugging Face `tokenizer.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfVocabulary {
    /// Token texts by id (GPT-2 byte-level unicode strings).
    pub tokens: Vec<String>,
    /// llama.cpp token types: the special added tokens are CONTROL, the rest NORMAL.
    pub token_types: Vec<i32>,
    /// `"a b"`, highest priority first.
    pub merges: Vec<String>,
    /// The `<|endoftext|>` token, when the vocabulary has one.
    pub end_of_text: Option<u32>,
}

/// Reads a `tokenizer.json` whose model is BPE and whose pre-tokenizer is GPT-2's
/// byte-level one (what `train/prepare.py` writes): the only kind this importer maps
/// onto a GGUF `gpt2` tokenizer exactly.
pub fn read_hf_tokenizer(json: &str) -> Result<HfVocabulary> {
    let bad = |m: &str| Error::Tokenizer(format!("tokenizer.json: {m}"));
    let t: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let model = &t["model"];
    if model["type"] != "BPE" {
        return Err(bad("the model is not BPE"));
    }
    let pre = &t["pre_tokenizer"];
    if pre["type"] != "ByteLevel" || pre["use_regex"] == false || pre["add_prefix_space"] == true {
        return Err(bad(
            "the pre-tokenizer is not GPT-2's byte-level one (ByteLevel, use_regex, no prefix space)",
        ));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("no model.vocab"))?;
    let mut tokens = vec![None; vocab.len()];
    for (text, id) in vocab {
        let slot = id
            .as_u64()
            .and_then(|i| tokens.get_mut(i as usize))
            .ok_or_else(|| {
                bad(&format!(
                    "token {text:?} has id {id}, outside 0..{}",
                    vocab.len()
                ))
            })?;
        *slot = Some(text.clone());
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| bad(&format!("no token has id {i}"))))
        .collect::<Result<_>>()?;
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("no model.merges"))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(p) => match (p.first(), p.get(1), p.len()) {
                (Some(serde_json::Value::String(a)), Some(serde_json::Value::String(b)), 2) => {
                    Ok(format!("{a} {b}"))
                }
                _ => Err(bad(&format!("merge {m} is not a pair of strings"))),
            },
            _ => Err(bad(&format!("merge {m} is not a string or a pair"))),
        })
        .collect::<Result<_>>()?;
    let mut token_types = vec![token_type::NORMAL; tokens.len()];
    for added in t["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().unwrap_or(u64::MAX) as usize;
        if tokens.get(id).map(String::as_str) != added["content"].as_str() {
            return Err(bad(&format!(
                "added token {added} is not in the vocabulary"
            )));
        }
        if added["special"] == true {
            token_types[id] = token_type::CONTROL;
        }
    }
    let end_of_text = tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .map(|i| i as u32);
    Ok(HfVocabulary {
        tokens,
        token_types,
        merges,
        end_of_text,
    })
}

/// BitNet b1.58's absmean ternary quantization of one weight matrix: codes t+1 ∈
/// {0, 1, 2} and the scale s = mean|W| rounded to f16.
pub fn absmean_ternary(values: &[f32]) -> (Vec<u8>, f32) {
    let mean = values.iter().map(|v| v.abs() as f64).sum::<f64>() / values.len().max(1) as f64;
    let scale = f16::from_f64(mean.max(1e-8)).to_f32();
    let codes = values
        .iter()
        .map(|&v| ((v as f64 / scale as f64).round().clamp(-1.0, 1.0) + 1.0) as u8)
        .collect();
    (codes, scale)
}

fn linear_layers(c: &TrainedConfig) -> [(&'static str, usize, usize); 7] {
    block_linears(c.n_embd, c.n_ff, c.n_head_kv * (c.n_embd / c.n_head))
}

/// Writes a trained model as GGUF with linear layers in `wtype` (I2_S, TQ2_0, TQ1_0, or
/// F16 for the latent weights). I2_S files use the `bitnet-b1.58` architecture, like the
/// official 2B4T file; the others llama.cpp's `bitnet` with relu².
pub fn write_trained(
    config: &TrainedConfig,
    tensors: &HashMap<String, CheckpointTensor>,
    vocab: &HfVocabulary,
    wtype: GgmlType,
    name: &str,
    out: &mut impl std::io::Write,
) -> Result<()> {
    if !matches!(
        wtype,
        GgmlType::I2S | GgmlType::TQ2_0 | GgmlType::TQ1_0 | GgmlType::F16
    ) {
        return Err(Error::InvalidArgument(format!(
            "{wtype}: a trained model is written as I2_S, TQ2_0, TQ1_0 or F16"
        )));
    }
    let c = config;
    if c.n_head == 0
        || c.n_head_kv == 0
        || !c.n_embd.is_multiple_of(c.n_head)
        || !c.n_head.is_multiple_of(c.n_head_kv)
    {
        return Err(Error::Model(format!("inconsistent heads in {c:?}")));
    }
    if vocab.tokens.len() != c.n_vocab {
        return Err(Error::Model(format!(
            "the tokenizer has {} tokens, the config {}",
            vocab.tokens.len(),
            c.n_vocab
        )));
    }
    let get = |name: &str, shape: &[usize]| -> Result<&[f32]> {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::Model(format!("the checkpoint has no {name}")))?;
        if t.shape != shape {
            return Err(Error::Model(format!(
                "{name} has shape {:?}, the config needs {shape:?}",
                t.shape
            )));
        }
        Ok(&t.values)
    };
    let mut payloads: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)> = vec![
        (
            "token_embd.weight".into(),
            GgmlType::F16,
            vec![c.n_embd as u64, c.n_vocab as u64],
            f16_bytes(
                get("token_embd.weight", &[c.n_vocab, c.n_embd])?
                    .iter()
                    .copied(),
            ),
        ),
        (
            "output_norm.weight".into(),
            GgmlType::F32,
            vec![c.n_embd as u64],
            f32_bytes(get("output_norm.weight", &[c.n_embd])?.iter().copied()),
        ),
    ];
    for l in 0..c.n_layer {
        for (norm, n) in block_norms(c.n_embd, c.n_ff) {
            let full = format!("blk.{l}.{norm}.weight");
            let data = f32_bytes(get(&full, &[n])?.iter().copied());
            payloads.push((full, GgmlType::F32, vec![n as u64], data));
        }
        for (linear, rows, cols) in linear_layers(c) {
            let full = format!("blk.{l}.{linear}.weight");
            let w = get(&full, &[rows, cols])?;
            let data = if wtype == GgmlType::F16 {
                f16_bytes(w.iter().copied())
            } else {
                let (codes, scale) = absmean_ternary(w);
                encode_linear(wtype, &codes, scale)?
            };
            payloads.push((full, wtype, vec![cols as u64, rows as u64], data));
        }
    }

    let arch = if wtype == GgmlType::I2S {
        "bitnet-b1.58"
    } else {
        "bitnet"
    };
    let eot = vocab.end_of_text.ok_or_else(|| {
        Error::Tokenizer("the vocabulary has no <|endoftext|> to start and end documents".into())
    })?;
    let k = |s: &str| format!("{arch}.{s}");
    let u32_of = |v: usize| Value::U32(v as u32);
    let mut w = GgufWriter::default();
    w.kv("general.architecture", Value::String(arch.into()))
        .kv("general.name", Value::String(name.into()))
        .kv(&k("vocab_size"), u32_of(c.n_vocab))
        .kv(&k("context_length"), u32_of(c.n_ctx))
        .kv(&k("embedding_length"), u32_of(c.n_embd))
        .kv(&k("block_count"), u32_of(c.n_layer))
        .kv(&k("feed_forward_length"), u32_of(c.n_ff))
        .kv(&k("rope.dimension_count"), u32_of(c.n_embd / c.n_head))
        .kv(&k("attention.head_count"), u32_of(c.n_head))
        .kv(&k("attention.head_count_kv"), u32_of(c.n_head_kv))
        .kv(
            &k("attention.layer_norm_rms_epsilon"),
            Value::F32(c.rms_eps),
        )
        .kv(&k("rope.freq_base"), Value::F32(c.rope_theta));
    if arch == "bitnet" {
        w.kv("bitnet.hidden_activation", Value::String("relu2".into()));
    }
    // Training put <|endoftext|> between documents, so it is also what starts one.
    w.kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("gpt-2".into()))
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vocab.tokens.clone())),
        )
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vocab.token_types.clone())),
        )
        .kv(
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vocab.merges.clone())),
        )
        .kv("tokenizer.ggml.bos_token_id", Value::U32(eot))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(eot))
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true));
    for (name, ty, dims, data) in &payloads {
        w.tensor(name, *ty, dims, data);
    }
    w.write_to(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::{ActMode, Backend, CpuBackend, CpuOptions, Logits};
    use crate::session::LoadedModel;
    use rand::{Rng, SeedableRng};

    const CONFIG: TrainedConfig = TrainedConfig {
        n_vocab: 300,
        n_embd: 256,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_ff: 512,
        n_ctx: 64,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
    };

    fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, shape, values) in tensors {
            let start = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let head = serde_json::to_vec(&header).unwrap();
        let mut out = (head.len() as u64).to_le_bytes().to_vec();
        out.extend(head);
        out.extend(data);
        out
    }

    fn random_checkpoint(c: &TrainedConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut t = vec![("token_embd.weight".to_string(), vec![c.n_vocab, c.n_embd])];
        t.push(("output_norm.weight".into(), vec![c.n_embd]));
        for l in 0..c.n_layer {
            for (n, size) in block_norms(c.n_embd, c.n_ff) {
                t.push((format!("blk.{l}.{n}.weight"), vec![size]));
            }
            for (n, rows, cols) in linear_layers(c) {
                t.push((format!("blk.{l}.{n}.weight"), vec![rows, cols]));
            }
        }
        t.into_iter()
            .map(|(name, shape)| {
                let n = shape.iter().product();
                let values = (0..n)
                    .map(|_| {
                        if shape.len() == 1 {
                            rng.random_range(0.8..1.2)
                        } else {
                            rng.random_range(-0.05..0.05)
                        }
                    })
                    .collect();
                (name, shape, values)
            })
            .collect()
    }

    /// A byte-level vocabulary of the 256 byte characters, merges and `<|endoftext|>`.
    fn tokenizer_json(n_vocab: usize) -> String {
        let bytes: Vec<String> = (0..=255u8)
            .map(|b| crate::synth::byte_char(b).to_string())
            .collect();
        let mut vocab = serde_json::Map::new();
        vocab.insert("<|endoftext|>".into(), 0.into());
        for (i, b) in bytes.iter().enumerate() {
            vocab.insert(b.clone(), (i + 1).into());
        }
        let mut merges = Vec::new();
        for i in 0..n_vocab - 257 {
            let (a, b) = (
                &bytes[b'a' as usize + i % 26],
                &bytes[b'a' as usize + i / 26],
            );
            vocab.insert(format!("{a}{b}"), (257 + i).into());
            merges.push(serde_json::json!([a, b]));
        }
        serde_json::json!({
            "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": true}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "model": {"type": "BPE", "vocab": vocab, "merges": merges},
        })
        .to_string()
    }

    fn write(c: &TrainedConfig, ckpt: &[u8], tok: &str, ty: GgmlType) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        write_trained(
            c,
            &read_safetensors(ckpt)?,
            &read_hf_tokenizer(tok)?,
            ty,
            "test",
            &mut out,
        )?;
        Ok(out)
    }

    fn logits(bytes: &[u8], act: ActMode) -> Vec<f32> {
        let m = LoadedModel::from_gguf(GgufFile::from_bytes(bytes).unwrap()).unwrap();
        let mut b = CpuBackend::new(
            m.model.clone(),
            CpuOptions {
                act,
                n_ctx: Some(8),
                ..Default::default()
            },
        );
        b.forward(&[0, 72, 101, 290], Logits::All).unwrap()
    }

    #[test]
    fn ternary_formats_hold_exactly_the_same_model() {
        let ckpt = safetensors(&random_checkpoint(&CONFIG));
        let tok = tokenizer_json(CONFIG.n_vocab);
        let files: Vec<Vec<u8>> = [GgmlType::I2S, GgmlType::TQ2_0, GgmlType::TQ1_0]
            .into_iter()
            .map(|ty| write(&CONFIG, &ckpt, &tok, ty).unwrap())
            .collect();
        for act in [ActMode::Int8, ActMode::F32] {
            let reference = logits(&files[0], act);
            for f in &files[1..] {
                assert_eq!(logits(f, act), reference, "{act:?}");
            }
        }
        let latent = logits(
            &write(&CONFIG, &ckpt, &tok, GgmlType::F16).unwrap(),
            ActMode::F32,
        );
        assert_ne!(
            latent,
            logits(&files[0], ActMode::F32),
            "F16 keeps the latent weights"
        );
        let m = LoadedModel::from_gguf(GgufFile::from_bytes(&files[0]).unwrap()).unwrap();
        assert_eq!(m.model.config.arch, "bitnet-b1.58");
        assert_eq!(m.model.config.n_ctx_train, CONFIG.n_ctx);
        assert_eq!(m.tokenizer.bos(), Some(0));
        assert_eq!(m.tokenizer.stop_tokens(), &[0]);
        assert_eq!(m.template.info().format, "text");
    }

    #[test]
    fn absmean_rounds_the_scale_to_f16_and_clamps() {
        let (codes, s) = absmean_ternary(&[0.3, -0.05, 0.9, -2.0, 0.0, 0.1]);
        let mean = (0.3f64 + 0.05 + 0.9 + 2.0 + 0.0 + 0.1) / 6.0;
        assert_eq!(s, f16::from_f64(mean).to_f32());
        // w / s = 0.53, -0.09, 1.61, -3.6, 0, 0.18
        assert_eq!(codes, [2, 1, 2, 0, 1, 1]);
    }

    #[test]
    fn mismatched_inputs_are_typed_errors() {
        let ckpt = safetensors(&random_checkpoint(&CONFIG));
        let tok = tokenizer_json(CONFIG.n_vocab);
        let wider = TrainedConfig {
            n_ff: 768,
            ..CONFIG
        };
        let e = write(&wider, &ckpt, &tok, GgmlType::I2S).unwrap_err();
        assert!(
            e.to_string()
                .contains("blk.0.ffn_sub_norm.weight has shape"),
            "{e}"
        );
        let e = write(&CONFIG, &ckpt, &tokenizer_json(290), GgmlType::I2S).unwrap_err();
        assert!(
            e.to_string().contains("the tokenizer has 290 tokens"),
            "{e}"
        );
        let e = write(&CONFIG, &ckpt, &tok, GgmlType::F32).unwrap_err();
        assert_eq!(e.kind(), "invalid-argument");
        for bad in [
            &ckpt[..4],
            &ckpt[..ckpt.len() - 1],
            b"\xff\xff\xff\xff\xff\xff\xff\xff{}",
        ] {
            assert_eq!(read_safetensors(bad).unwrap_err().kind(), "corrupt-model");
        }
        let prefixed = tok.replace("\"add_prefix_space\":false", "\"add_prefix_space\":true");
        assert_ne!(prefixed, tok);
        assert!(read_hf_tokenizer(&prefixed).is_err());
        let gap = tok.replace("\"<|endoftext|>\":0", "\"<|endoftext|>\":9999");
        assert!(read_hf_tokenizer(&gap).is_err());
    }
}
