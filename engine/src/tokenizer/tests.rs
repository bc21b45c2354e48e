use super::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn spec_from(name: &str) -> VocabSpec {
    let gguf = crate::gguf::GgufFile::from_path(fixture(name)).expect("read gguf");
    VocabSpec::from_metadata(&gguf.metadata).expect("vocab spec")
}

/// The real Llama-3 tokenizer, built once for all tests.
pub(crate) fn llama3() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let spec = spec_from("llama3-vocab.gguf");
        let t0 = Instant::now();
        let tok = Tokenizer::from_spec(&spec).expect("llama3 tokenizer");
        eprintln!("llama3 tokenizer built in {:?}", t0.elapsed());
        tok
    })
}

fn texts() -> Vec<String> {
    std::fs::read_to_string(fixture("llama3-tokenizer-texts.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<String>(l).unwrap())
        .collect()
}

fn check_against(file: &str, parse_special: bool) {
    let tok = llama3();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
    assert_eq!(v["parse_special"].as_bool(), Some(parse_special));
    assert_eq!(v["add_bos"].as_bool(), Some(true));
    let results = v["results"].as_array().unwrap();
    let texts = texts();
    assert_eq!(results.len(), texts.len());
    assert_eq!(results.len(), 16);
    let mut failures = Vec::new();
    for (r, text) in results.iter().zip(&texts) {
        assert_eq!(r["text"].as_str().unwrap(), text);
        let want: Vec<u32> = r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, true, parse_special).unwrap();
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        // Pieces: llama.cpp's token_to_piece (special shown) is our token_bytes.
        for (id, piece) in want.iter().zip(r["pieces"].as_array().unwrap()) {
            let bytes = tok.token_bytes(*id);
            let lossy = String::from_utf8_lossy(bytes);
            assert_eq!(lossy, piece.as_str().unwrap(), "piece of {id}");
        }
        // Round trip (without the BOS; special text is kept verbatim either way).
        assert_eq!(got[0], 128000);
        assert_eq!(tok.decode(&got[1..], false), *text);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama3_plain_matches_llama_cpp() {
    check_against("llama3-tokenize.llamacpp-plain.json", false);
}

#[test]
fn llama3_special_matches_llama_cpp() {
    check_against("llama3-tokenize.llamacpp-special.json", true);
}

#[test]
fn llama3_metadata() {
    let tok = llama3();
    assert_eq!(tok.n_vocab(), 128256);
    assert_eq!(tok.bos(), Some(128000));
    assert_eq!(tok.eos(), Some(128001));
    assert_eq!(tok.eot(), Some(128009));
    assert!(tok.add_bos_default());
    assert_eq!(tok.stop_tokens(), vec![128001, 128009]);
    assert!(tok.is_special(128009));
    assert!(!tok.is_special(9906));
    assert_eq!(tok.token_id("<|eot_id|>"), Some(128009));
    assert_eq!(tok.token_id("Hello"), Some(9906));
    assert_eq!(tok.token_id("Ġworld"), Some(1917));
    assert_eq!(tok.token_id("no such token at all"), None);
    assert_eq!(tok.token_bytes(1917), b" world");
    assert_eq!(tok.token_bytes(128009), b"<|eot_id|>");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
    assert_eq!(tok.encode("", false, true).unwrap(), Vec::<u32>::new());
    assert_eq!(
        tok.decode(&[128000, 9906, 1917, 128009], false),
        "<|begin_of_text|>Hello world<|eot_id|>"
    );
    assert_eq!(
        tok.decode(&[128000, 9906, 1917, 128009], true),
        "Hello world"
    );
}

#[test]
fn llama3_long_text_roundtrips() {
    let tok = llama3();
    let mut text = String::new();
    for t in texts() {
        text.push_str(&t);
        text.push('\n');
    }
    let text = text.repeat(50);
    let t0 = Instant::now();
    let ids = tok.encode(&text, false, false).unwrap();
    eprintln!(
        "encoded {} bytes into {} tokens in {:?}",
        text.len(),
        ids.len(),
        t0.elapsed()
    );
    assert_eq!(tok.decode(&ids, false), text);
}

#[test]
fn tiny_vocab_reproduces_prompt_tokens() {
    let spec = spec_from("tiny-silu-F16.gguf");
    assert_eq!(spec.tokens.len(), 512);
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-silu.llamacpp-f32.json")).unwrap(),
    )
    .unwrap();
    let text = v["text"].as_str().unwrap();
    assert_eq!(
        text,
        "The quick brown fox jumps over the lazy dog. Hello world!"
    );
    let want: Vec<u32> = v["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        tok.encode(text, tok.add_bos_default(), false).unwrap(),
        want
    );
    assert_eq!(tok.bos(), Some(509));
    assert_eq!(tok.stop_tokens(), vec![510, 511]);
    assert_eq!(tok.decode(&want, true), text);
    let gen: Vec<u32> = v["generated_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        tok.decode(&gen, false),
        v["generated_text"].as_str().unwrap()
    );
}

/// A small synthetic vocabulary with a USER_DEFINED and a CONTROL token, to pin
/// llama.cpp's rule: user-defined text is always cut out, control text only with
/// parse_special.
#[test]
fn user_defined_tokens_are_parsed_without_parse_special() {
    let mut tokens: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
    let mut types = vec![token_type::NORMAL; 256];
    tokens.push("<tool>".into());
    types.push(token_type::USER_DEFINED);
    tokens.push("<|ctl|>".into());
    types.push(token_type::CONTROL);
    let spec = VocabSpec {
        model: "gpt2".into(),
        pre: Some("llama-bpe".into()),
        tokens,
        token_types: types,
        merges: vec![],
        bos: Some(257),
        eos: Some(257),
        eot: None,
        add_bos: false,
        chat_template: None,
    };
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let plain = tok.encode("a<tool>b<|ctl|>", false, false).unwrap();
    assert_eq!(plain[..3], [b'a' as u32, 256, b'b' as u32]);
    assert_eq!(plain.len(), 3 + "<|ctl|>".len());
    assert_eq!(
        tok.encode("a<tool>b<|ctl|>", false, true).unwrap(),
        vec![b'a' as u32, 256, b'b' as u32, 257]
    );
    assert_eq!(tok.encode("x", true, true).unwrap(), vec![257, b'x' as u32]);
    assert!(!tok.add_bos_default());
    assert_eq!(tok.stop_tokens(), vec![257]);
    assert_eq!(tok.decode(&[256, 257], true), "<tool>");
}

#[test]
fn tolerates_merges_outside_the_vocabulary() {
    let mut tokens: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
    tokens.push("ab".into());
    let spec = VocabSpec {
        model: "gpt2".into(),
        pre: Some("llama-bpe".into()),
        tokens,
        // "b c" makes "bc", which is not a token; llama.cpp ignores such merges.
        merges: vec!["b c".into(), "a b".into()],
        ..Default::default()
    };
    let tok = Tokenizer::from_spec(&spec).unwrap();
    assert_eq!(
        tok.encode("abc", false, false).unwrap(),
        vec![256, b'c' as u32]
    );
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.encode("a", true, true).unwrap(), vec![b'a' as u32]);
    assert!(tok.stop_tokens().is_empty());
}

#[test]
fn every_supported_pre_type_builds() {
    let tokens: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
    for pre in [
        None,
        Some("default"),
        Some("llama-bpe"),
        Some("dbrx"),
        Some("gpt-2"),
        Some("qwen2"),
    ] {
        let spec = VocabSpec {
            model: "gpt2".into(),
            pre: pre.map(str::to_string),
            tokens: tokens.clone(),
            ..Default::default()
        };
        let tok = Tokenizer::from_spec(&spec).unwrap();
        let text = "Hello, world! 123456 it's\n\n  x";
        let ids = tok.encode(text, false, false).unwrap();
        assert_eq!(ids.len(), text.len(), "{pre:?}");
        assert_eq!(tok.decode(&ids, false), text);
    }
}

#[test]
fn rejects_unsupported_vocabularies() {
    let spec = VocabSpec {
        model: "llama".into(),
        tokens: vec!["a".into()],
        ..Default::default()
    };
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(Error::Tokenizer(_))
    ));
    let tokens: Vec<String> = byte_to_char().iter().map(|c| c.to_string()).collect();
    let spec = VocabSpec {
        model: "gpt2".into(),
        pre: Some("no-such-pre".into()),
        tokens,
        ..Default::default()
    };
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(Error::Tokenizer(_))
    ));
}
