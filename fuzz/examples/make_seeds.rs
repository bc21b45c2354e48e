//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
//! [-- --fixtures]` (from the repository root).
//!
//! - `gguf_reader` and `load_chat`: tiny valid models (every weight type, architecture,
//!   head and template variant; a few KB each), hand-made malformed files (the classes of
//!   `engine/tests/malformed.rs`) and truncations / edits of a tiny model; with
//!   `--fixtures` also the `tests/fixtures/*.gguf` files under 4 MB.
//! - `template_tokenizer`: real chat templates (Llama-3, the BitNet Hugging Face template,
//!   bitnet.cpp's converter template, and templates using the Python methods, slicing,
//!   `raise_exception`, `strftime_now`, loops), with small vocabularies.
//!
//! The seeds are starting points: the committed corpus is the `cargo fuzz cmin` of the
//! seeds plus what fuzzing found.

use bitnet_engine::gguf::GgmlType;
use bitnet_engine::synth::CONVERTER_CHAT_TEMPLATE;
use bitnet_fuzz::{byte_char, flag, tiny_model, tt_encode, TinyModel, NO_ID};
use std::path::{Path, PathBuf};

const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const BITNET_HF_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";
const SYSTEM_MOVED_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}{% if m.role != 'system' %}{% if loop.last and messages[0].role == 'system' %}[SYS]{{ messages[0].content }}[/SYS]{% endif %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}";
const PYTHON_METHODS_TEMPLATE: &str = "{%- for m in messages %}\n    {{- m.role.upper() }}={{ m.content.strip() }}\n{% endfor %}\n{% if tools is none %}no tools{% endif %}{% if strftime_now is defined %}|{{ strftime_now('%Y-%m-%d') }}{% endif %}";
const RAISE_TEMPLATE: &str = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}{% for m in messages %}{{ m.content[:3] }}|{{ m.content.split(' ') | join(',') }}{% endfor %}";
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const FUEL_TEMPLATE: &str =
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
const BOMB_TEMPLATE: &str = "{% for a in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}";
const MACRO_TEMPLATE: &str = "{% macro turn(m) %}<{{ m.role }}>{{ m.content | tojson }}</{{ m.role }}>{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content | length %}{% endfor %}{{ ns.n }}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}";

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Little-endian byte builder for hand-made GGUF files.
#[derive(Clone, Default)]
struct B(Vec<u8>);

impl B {
    fn header(n_tensors: u64, n_kv: u64) -> B {
        B::default().raw(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)
    }
    fn raw(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(self, v: u32) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> B {
        self.raw(&v.to_le_bytes())
    }
    fn str(self, s: &str) -> B {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    fn pad(self) -> B {
        let n = self.0.len().next_multiple_of(32) - self.0.len();
        self.raw(&vec![0; n])
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> B {
        let mut b = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
}

fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let one = |dims: &[u64], ty: u32, offset: u64, data: usize| {
        B::header(1, 0)
            .tensor("t", dims, ty, offset)
            .pad()
            .raw(&vec![0x3c; data])
            .0
    };
    vec![
        (
            "bad-magic",
            B::default().raw(b"GGUX").u32(3).u64(0).u64(0).0,
        ),
        (
            "version-1",
            B::default().raw(b"GGUF").u32(1).u64(0).u64(0).0,
        ),
        (
            "version-4",
            B::default().raw(b"GGUF").u32(4).u64(0).u64(0).0,
        ),
        ("empty-v2", B::default().raw(b"GGUF").u32(2).u64(0).u64(0).0),
        ("empty-v3", B::header(0, 0).0),
        ("huge-kv-count", B::header(0, u64::MAX).0),
        ("huge-tensor-count", B::header(u64::MAX, 0).0),
        ("huge-key-len", B::header(0, 1).u64(u64::MAX >> 1).0),
        (
            "huge-string",
            B::header(0, 1).str("k").u32(8).u64(1 << 40).0,
        ),
        (
            "huge-array",
            B::header(0, 1).str("k").u32(9).u32(0).u64(1 << 40).0,
        ),
        (
            "nested-arrays",
            B::header(0, 1)
                .str("k")
                .u32(9)
                .u32(9)
                .u64(1)
                .u32(9)
                .u64(1)
                .u32(9)
                .u64(1)
                .u32(9)
                .u64(1)
                .u32(4)
                .u64(1)
                .u32(7)
                .0,
        ),
        (
            "unknown-value-type",
            B::header(0, 1).str("k").u32(13).u32(0).0,
        ),
        ("bool-2", B::header(0, 1).str("k").u32(7).raw(&[2]).0),
        (
            "bad-utf8-key",
            B::header(0, 1).u64(2).raw(&[0xc3, 0x28]).u32(4).u32(1).0,
        ),
        (
            "duplicate-key",
            B::header(0, 2)
                .str("k")
                .u32(4)
                .u32(1)
                .str("k")
                .u32(4)
                .u32(2)
                .0,
        ),
        (
            "alignment-0",
            B::header(0, 1).str("general.alignment").u32(4).u32(0).0,
        ),
        (
            "alignment-3",
            B::header(1, 1)
                .str("general.alignment")
                .u32(4)
                .u32(3)
                .tensor("t", &[4], 0, 0)
                .pad()
                .raw(&[0; 16])
                .0,
        ),
        ("f32-ok", one(&[4], 0, 0, 16)),
        ("zero-dims", one(&[], 0, 0, 16)),
        ("five-dims", one(&[1, 1, 1, 1, 4], 0, 0, 16)),
        ("zero-dim", one(&[4, 0], 0, 0, 16)),
        ("dims-overflow", one(&[u64::MAX, u64::MAX], 0, 0, 16)),
        ("unknown-type", one(&[4], 99, 0, 16)),
        ("tq2-partial-block", one(&[100], 35, 0, 66)),
        ("i2s-ok", one(&[128], 36, 0, 64)),
        ("tq1-ok", one(&[256], 34, 0, 54)),
        ("misaligned-offset", one(&[4], 0, 3, 32)),
        ("data-past-end", one(&[4], 0, 1 << 20, 16)),
        ("short-data", one(&[64], 0, 0, 16)),
        (
            "overlap",
            B::header(2, 0)
                .tensor("a", &[8], 0, 0)
                .tensor("b", &[8], 0, 0)
                .pad()
                .raw(&[0; 32])
                .0,
        ),
        (
            "duplicate-tensor",
            B::header(2, 0)
                .tensor("a", &[8], 0, 0)
                .tensor("a", &[8], 0, 32)
                .pad()
                .raw(&[0; 64])
                .0,
        ),
    ]
}

/// Replaces the first occurrence of `from` (same length as `to`).
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let at = out
        .windows(from.len())
        .position(|w| w == from)
        .expect("patch target");
    out[at..at + to.len()].copy_from_slice(to);
    out
}

fn models() -> Vec<(String, Vec<u8>)> {
    let base = TinyModel::default();
    let mut out = Vec::new();
    for (name, ty) in [
        ("tq2_0", GgmlType::TQ2_0),
        ("tq1_0", GgmlType::TQ1_0),
        ("i2_s", GgmlType::I2S),
        ("f16", GgmlType::F16),
        ("f32", GgmlType::F32),
    ] {
        out.push((
            format!("tiny-{name}.gguf"),
            tiny_model(&TinyModel {
                down: ty,
                ..base.clone()
            }),
        ));
    }
    let variants: Vec<(&str, TinyModel)> = vec![
        (
            "b158-i2_s",
            TinyModel {
                arch: "bitnet-b1.58",
                down: GgmlType::I2S,
                ..base.clone()
            },
        ),
        (
            "bitnet25",
            TinyModel {
                arch: "bitnet-25",
                ..base.clone()
            },
        ),
        (
            "silu-f32-dense",
            TinyModel {
                activation: Some("silu"),
                dense: GgmlType::F32,
                ..base.clone()
            },
        ),
        (
            "untied-scales-2l",
            TinyModel {
                untied: true,
                scales: true,
                n_layer: 2,
                down: GgmlType::TQ1_0,
                ..base.clone()
            },
        ),
        (
            "llama3-template",
            TinyModel {
                chat_template: Some(LLAMA3_TEMPLATE),
                ..base.clone()
            },
        ),
        (
            "hf-template",
            TinyModel {
                chat_template: Some(BITNET_HF_TEMPLATE),
                ..base.clone()
            },
        ),
        (
            "converter-template",
            TinyModel {
                arch: "bitnet-b1.58",
                down: GgmlType::I2S,
                chat_template: Some(CONVERTER_CHAT_TEMPLATE),
                pre: None,
                ..base.clone()
            },
        ),
        (
            "chatml-template",
            TinyModel {
                chat_template: Some(CHATML_TEMPLATE),
                pre: Some("qwen2"),
                ..base.clone()
            },
        ),
        (
            "base-model",
            TinyModel {
                eot_token: false,
                pre: Some("gpt-2"),
                ..base.clone()
            },
        ),
    ];
    for (name, m) in variants {
        out.push((format!("tiny-{name}.gguf"), tiny_model(&m)));
    }
    out
}

/// Edits of a valid tiny model that the model builder (not the reader) refuses.
fn broken_models() -> Vec<(String, Vec<u8>)> {
    let good = tiny_model(&TinyModel::default());
    let mut out = vec![
        (
            "arch-unknown".to_string(),
            patch(
                &good,
                b"\x06\0\0\0\0\0\0\0bitnet",
                b"\x06\0\0\0\0\0\0\0bitnot",
            ),
        ),
        (
            "activation-unknown".to_string(),
            patch(&good, b"relu2", b"gelu2"),
        ),
        (
            "tensor-renamed".to_string(),
            patch(&good, b"blk.0.ffn_up.weight", b"blk.0.ffn_uq.weight"),
        ),
        (
            "tokenizer-model".to_string(),
            patch(&good, b"gpt2", b"bert"),
        ),
        (
            "pre-unknown".to_string(),
            patch(&good, b"llama-bpe", b"llama-xyz"),
        ),
    ];
    // Truncations: inside the header and inside the data.
    for at in [16, 100, good.len() / 4, good.len() / 2, good.len() - 1] {
        out.push((format!("truncated-{at}"), good[..at].to_vec()));
    }
    out
}

fn template_seeds() -> Vec<(String, Vec<u8>)> {
    let sp = byte_char(b' ').to_string();
    let llama3_specials: Vec<(i32, &str)> = vec![
        (3, "<|begin_of_text|>"),
        (3, "<|end_of_text|>"),
        (3, "<|start_header_id|>"),
        (3, "<|end_header_id|>"),
        (3, "<|eot_id|>"),
    ];
    let merges_owned = [
        format!("{sp} t"),
        "h e".to_string(),
        format!("{sp}t he"),
        "i n".to_string(),
        format!("{sp} a"),
    ];
    let merges: Vec<&str> = merges_owned.iter().map(String::as_str).collect();
    let merged_owned = [
        format!("{sp}t"),
        "he".into(),
        format!("{sp}the"),
        "in".into(),
        format!("{sp}a"),
    ];
    let mut entries: Vec<(i32, &str)> = merged_owned.iter().map(|s| (1, s.as_str())).collect();
    entries.extend(&llama3_specials);
    let conv: Vec<(Option<&str>, &str)> = vec![
        (Some("system"), "Be brief."),
        (Some("user"), "Hello, the cat"),
        (Some("assistant"), "in the hat"),
        (Some("user"), "and <|eot_id|> then? é漢🙂"),
    ];
    let text = "The quick brown fox <|eot_id|> jumps 1234 ' 's\n\n  x";
    let gp = flag::ADD_GENERATION_PROMPT | flag::PARSE_SPECIAL | flag::ADD_BOS;
    // Counted from the end of the vocabulary (see TtInput::id): bos, eos, eot.
    let ids = [4, 3, 0];
    let mut out = Vec::new();
    let mut seed = |name: &str,
                    flags: u8,
                    ids: [u8; 3],
                    template: &str,
                    pre: Option<&str>,
                    entries: &[(i32, &str)],
                    merges: &[&str]| {
        out.push((
            format!("{name}.bin"),
            tt_encode(flags, ids, template, &conv, entries, merges, pre, text),
        ));
    };
    seed(
        "llama3",
        gp,
        ids,
        LLAMA3_TEMPLATE,
        Some("llama-bpe"),
        &entries,
        &merges,
    );
    seed(
        "bitnet-hf",
        gp,
        ids,
        BITNET_HF_TEMPLATE,
        Some("llama-bpe"),
        &entries,
        &merges,
    );
    seed(
        "converter",
        gp,
        ids,
        CONVERTER_CHAT_TEMPLATE,
        None,
        &entries,
        &merges,
    );
    seed(
        "system-moved",
        gp,
        ids,
        SYSTEM_MOVED_TEMPLATE,
        Some("gpt-2"),
        &entries,
        &merges,
    );
    seed(
        "python-methods",
        gp,
        ids,
        PYTHON_METHODS_TEMPLATE,
        Some("qwen2"),
        &entries,
        &merges,
    );
    seed(
        "raise",
        gp,
        ids,
        RAISE_TEMPLATE,
        Some("default"),
        &entries,
        &merges,
    );
    seed(
        "chatml",
        gp,
        [NO_ID, NO_ID, NO_ID],
        CHATML_TEMPLATE,
        Some("qwen2"),
        &[(3, "<|im_start|>"), (3, "<|im_end|>"), (4, "<tool>")],
        &merges,
    );
    seed(
        "macro",
        gp,
        ids,
        MACRO_TEMPLATE,
        Some("dbrx"),
        &entries,
        &merges,
    );
    seed("fuel", gp, ids, FUEL_TEMPLATE, None, &entries, &merges);
    seed("bomb", gp, ids, BOMB_TEMPLATE, None, &entries, &merges);
    seed(
        "syntax-error",
        gp,
        ids,
        "{% for m in messages %}{{ m.content }",
        None,
        &entries,
        &merges,
    );
    // The format bits: gguf, caller's Jinja, bitnet, text.
    for (name, f) in [
        ("fmt-gguf", 2u8),
        ("fmt-jinja", 3),
        ("fmt-bitnet", 4),
        ("fmt-text", 5),
    ] {
        seed(
            name,
            gp | (f << flag::FORMAT_SHIFT),
            ids,
            LLAMA3_TEMPLATE,
            Some("llama-bpe"),
            &entries,
            &merges,
        );
    }
    seed(
        "named-pre",
        gp | flag::NAMED_PRE,
        ids,
        "",
        Some("smaug-bpe"),
        &entries,
        &merges,
    );
    seed(
        "no-template",
        gp,
        ids,
        "",
        Some("llama-bpe"),
        &entries,
        &merges,
    );
    seed(
        "no-bytes",
        gp | flag::NO_BYTE_TOKENS,
        ids,
        "",
        None,
        &entries,
        &merges,
    );
    seed(
        "bad-merge",
        gp,
        ids,
        "",
        None,
        &entries,
        &["nospace", "x y"],
    );
    seed("id-outside", gp, [0xF0, 0, 0], "", None, &entries, &merges);
    seed(
        "user-defined",
        flag::ADD_GENERATION_PROMPT,
        ids,
        BITNET_HF_TEMPLATE,
        Some("llama-bpe"),
        &[
            (4, "fox"),
            (2, "<unk>"),
            (6, "<0x0A>"),
            (5, "unused"),
            (3, ""),
        ],
        &merges,
    );
    out
}

/// Every tiny model must load and chat: they are the valid seeds.
fn check_valid(name: &str, bytes: &[u8]) {
    use bitnet_engine::chat::ChatMessage;
    use bitnet_engine::gguf::GgufFile;
    use bitnet_engine::model::{CpuBackend, CpuOptions};
    use bitnet_engine::sampler::SamplerConfig;
    use bitnet_engine::session::{Flow, GenerateOptions, LoadedModel, Session};
    let m = LoadedModel::from_gguf(GgufFile::from_bytes(bytes).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = CpuOptions {
        n_ctx: Some(128),
        ..CpuOptions::default()
    };
    let backend = CpuBackend::try_new(m.model.clone(), opts, None).unwrap();
    let mut s = Session::new(Box::new(backend), m.tokenizer.clone(), m.template.clone());
    let gen = GenerateOptions {
        max_tokens: 2,
        sampler: SamplerConfig::greedy(),
        loop_guard: None,
        ..GenerateOptions::default()
    };
    let c = s
        .chat(&[ChatMessage::user("Hello")], &gen, &mut |_| Flow::Continue)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: {} bytes, format {}, prompt {} tokens, reply {:?}",
        bytes.len(),
        m.template.info().format,
        c.usage.prompt_tokens,
        c.tokens
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let fixtures = std::env::args().any(|a| a == "--fixtures");
    let mut gguf: Vec<(String, Vec<u8>)> = models();
    for (name, bytes) in &gguf {
        check_valid(name, bytes);
    }
    gguf.extend(broken_models());
    gguf.extend(
        malformed()
            .into_iter()
            .map(|(n, b)| (format!("malformed-{n}.gguf"), b)),
    );
    if fixtures {
        for e in std::fs::read_dir(root.join("../tests/fixtures")).unwrap() {
            let p = e.unwrap().path();
            let small = std::fs::metadata(&p).unwrap().len() <= 4 << 20;
            if p.extension().is_some_and(|x| x == "gguf") && small {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                gguf.push((format!("fixture-{name}"), std::fs::read(&p).unwrap()));
            }
        }
    }
    for target in ["gguf_reader", "load_chat"] {
        for (name, bytes) in &gguf {
            write(&corpus.join(target), name, bytes);
        }
    }
    let tt = template_seeds();
    for (name, bytes) in &tt {
        write(&corpus.join("template_tokenizer"), name, bytes);
    }
    eprintln!(
        "wrote {} GGUF seeds (gguf_reader, load_chat) and {} template_tokenizer seeds",
        gguf.len(),
        tt.len()
    );
}
