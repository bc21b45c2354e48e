//! The `bitnet` command used the way a person uses it.

mod common;
use common::{bitnet, fixture, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitnet-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn info_describes_the_official_layout() {
    let (ok, out, _) = bitnet(&["info", "--model", &fixture("tiny-b158-I2_S.gguf")]);
    assert!(ok);
    let v = json(&out);
    assert_eq!(v["architecture"], "bitnet-b1.58");
    assert_eq!(v["config"]["Ok"]["activation"], "relu2");
    assert_eq!(v["tied_embeddings"], true);
    assert_eq!(v["tensor_types"]["I2_S"]["count"], 14);
    assert_eq!(
        v["tensors"]["blk.0.ffn_down.weight"]["dims"],
        serde_json::json!([768, 256])
    );
}

#[test]
fn tokenize_matches_llamacpp() {
    let texts = std::fs::read_to_string(fixture("llama3-tokenizer-texts.jsonl")).unwrap();
    let reference =
        json(&std::fs::read_to_string(fixture("llama3-tokenize.llamacpp-special.json")).unwrap());
    let text: String = serde_json::from_str(texts.lines().nth(3).unwrap()).unwrap();
    let (ok, out, err) = bitnet(&[
        "tokenize",
        "--model",
        &fixture("llama3-vocab.gguf"),
        "--text",
        &text,
        "--special",
    ]);
    assert!(ok, "{err}");
    let ids = json(&out);
    assert_eq!(
        reference["results"][3]["text"].as_str(),
        Some(text.as_str())
    );
    assert_eq!(ids, reference["results"][3]["tokens"]);
    let (_, no_bos, _) = bitnet(&[
        "tokenize",
        "--model",
        &fixture("llama3-vocab.gguf"),
        "--text",
        "Hello",
        "--no-bos",
    ]);
    assert_eq!(json(&no_bos), serde_json::json!([9906]));
}

/// llama.cpp's reference run on the tiny relu² fixture, and its prompt's ids.
fn llamacpp_reference() -> (serde_json::Value, Vec<u64>) {
    let r = json(&std::fs::read_to_string(fixture("tiny-relu2-fold.llamacpp-f32.json")).unwrap());
    let ids = r["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    (r, ids)
}

#[test]
fn logits_npy_matches_the_reference() {
    let (_, prompt) = llamacpp_reference();
    let ids: Vec<String> = prompt.iter().map(u64::to_string).collect();
    let out = tmp("logits.npy");
    let (ok, _, err) = bitnet(&[
        "logits",
        "--model",
        &fixture("tiny-b158-I2_S.gguf"),
        "--tokens",
        &ids.join(","),
        "--act",
        "f32",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&out).unwrap();
    let ours = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(ours.shape(), &[ids.len() as u64, 512]);
    let ours = ours.into_vec::<f32>().unwrap();
    let reference = npy_f32(&fixture("tiny-relu2-fold.ref-exact.npy"));
    let max = ours
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-2, "{max}");
}

/// Greedy in f32 mode gives llama.cpp's tokens: on a TQ2_0 file with its F16 head, and
/// on the tied I2_S file with `--head int8-exact` and `int4-exact` (the small head's
/// memory, the float head's choices).
#[test]
fn generate_json_reproduces_llamacpp_greedy_tokens() {
    let r = json(&std::fs::read_to_string(fixture("tiny-relu2-fold.llamacpp-f32.json")).unwrap());
    for (file, head) in [
        ("tiny-relu2-fold-TQ2_0.gguf", "file"),
        ("tiny-b158-I2_S.gguf", "int8-exact"),
        ("tiny-b158-I2_S.gguf", "int4-exact"),
    ] {
        let (ok, out, err) = bitnet(&[
            "generate",
            "--model",
            &fixture(file),
            "--head",
            head,
            "--prompt",
            r["text"].as_str().unwrap(),
            "-n",
            "16",
            "--temp",
            "0",
            "--act",
            "f32",
            "--json",
            "--no-loop-guard",
        ]);
        assert!(ok, "{file} --head {head}: {err}");
        let v = json(&out);
        assert_eq!(v["tokens"], r["generated_tokens"], "{file} --head {head}");
        assert_eq!(
            v["usage"]["prompt_tokens"],
            r["prompt_tokens"].as_array().unwrap().len()
        );
        assert!(v["usage"]["decode_tps"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn synth_then_bench_and_chat() {
    let model = tmp("synth-tiny-tq1.gguf");
    let (ok, _, err) = bitnet(&[
        "synth",
        "--shape",
        "256,512,2,4,2,600",
        "--wtype",
        "TQ1_0",
        "--seed",
        "3",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = bitnet(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--runs",
        "2",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert!(v["decode_tps"].as_f64().unwrap() > 0.0 && v["prefill_tps"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);

    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(["chat", "--model", model.to_str().unwrap(), "-n", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nsecond turn\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Two turns answered; the second reuses the first from the KV cache.
    let stats: Vec<&str> = err.lines().filter(|l| l.contains("tok/s")).collect();
    assert_eq!(stats.len(), 2, "{err}");
    assert!(!stats[1].contains("(0 cached)"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let junk = tmp("junk.gguf");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let (ok, _, err) = bitnet(&["info", "--model", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("corrupt-model") && err.contains("not a GGUF file"),
        "{err}"
    );
    let (ok, _, err) = bitnet(&[
        "logits",
        "--model",
        &fixture("tiny-b158-I2_S.gguf"),
        "--tokens",
        "1,99999",
        "--out",
        "/dev/null",
    ]);
    assert!(!ok && err.contains("outside the vocabulary"), "{err}");
}

/// `--backend gpu` (the wgpu backend; lavapipe in CI): logits, greedy tokens and bench.
#[cfg(feature = "gpu")]
#[test]
fn gpu_backend_logits_generate_and_bench() {
    let r = json(&std::fs::read_to_string(fixture("tiny-relu2-fold.llamacpp-f32.json")).unwrap());
    let ids: Vec<String> = r["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let model = fixture("tiny-b158-I2_S.gguf");
    let mut logits = Vec::new();
    for backend in ["cpu", "gpu"] {
        let out = tmp(&format!("logits-{backend}.npy"));
        let (ok, _, err) = bitnet(&[
            "logits",
            "--model",
            &model,
            "--tokens",
            &ids.join(","),
            "--backend",
            backend,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{backend}: {err}");
        let bytes = std::fs::read(&out).unwrap();
        logits.push(
            npyz::NpyFile::new(&bytes[..])
                .unwrap()
                .into_vec::<f32>()
                .unwrap(),
        );
    }
    let max = logits[0]
        .iter()
        .zip(&logits[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-3, "gpu vs cpu int8 logits: {max}");

    let generate = |backend: &str| {
        let (ok, out, err) = bitnet(&[
            "generate",
            "--model",
            &model,
            "--prompt",
            r["text"].as_str().unwrap(),
            "-n",
            "12",
            "--temp",
            "0",
            "--json",
            "--no-loop-guard",
            "--backend",
            backend,
        ]);
        assert!(ok, "{backend}: {err}");
        json(&out)["tokens"].clone()
    };
    assert_eq!(generate("gpu"), generate("cpu"));

    let (ok, out, err) = bitnet(&[
        "bench",
        "--model",
        &model,
        "--backend",
        "gpu",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--runs",
        "1",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert!(v["backend"].as_str().unwrap().starts_with("gpu"), "{v}");
    assert!(v["decode_tps"].as_f64().unwrap() > 0.0 && v["prefill_tps"].as_f64().unwrap() > 0.0);

    let (ok, _, err) = bitnet(&[
        "logits",
        "--model",
        &model,
        "--tokens",
        "1",
        "--act",
        "f32",
        "--backend",
        "gpu",
        "--out",
        tmp("x.npy").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("error [invalid-argument]"), "{err}");

    // The exact head rescores on the CPU: on the GPU a clear refusal.
    let (ok, _, err) = bitnet(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        "a",
        "-n",
        "1",
        "--backend",
        "gpu",
        "--head",
        "int8-exact",
    ]);
    assert!(
        !ok && err.contains("exact heads ('int8-exact', 'int4-exact') run on the CPU"),
        "{err}"
    );
}

/// The small stand-in of the official 2B4T file (its exact header and vocabulary),
/// written once for all tests.
fn official_stand_in() -> PathBuf {
    static MODEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = tmp("official-tiny.gguf");
            let (ok, _, err) = bitnet(&[
                "synth",
                "--shape",
                "tiny",
                "--wtype",
                "I2_S",
                "--layout",
                "official",
                "--vocab",
                &fixture("llama3-vocab.gguf"),
                "--out",
                model.to_str().unwrap(),
            ]);
            assert!(ok, "{err}");
            model
        })
        .clone()
}

#[test]
fn info_names_the_chat_format_stops_and_pre_tokenizer_of_the_official_file() {
    let model = official_stand_in();
    let (ok, out, err) = bitnet(&["info", "--model", model.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["metadata"].as_array().unwrap().len(), 24);
    assert_eq!(v["metadata"][22]["key"], "tokenizer.chat_template");
    assert_eq!(v["tensor_order"][0], "token_embd.weight");
    assert_eq!(v["chat_format"]["format"], "bitnet-2b4t");
    assert!(v["chat_format"]["reason"]
        .as_str()
        .unwrap()
        .contains("converter"));
    let t = &v["tokenizer"];
    assert_eq!(t["bos"]["id"], 128000);
    assert_eq!(t["eos"]["text"], "<|end_of_text|>");
    assert_eq!(t["eot"]["text"], "<|eot_id|>");
    let stops: Vec<u64> = t["stop_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(stops, [128001, 128009]);
    assert_eq!(t["pre_tokenizer"]["name"], "llama3");

    let (ok, out, _) = bitnet(&[
        "info",
        "--model",
        model.to_str().unwrap(),
        "--chat-format",
        "gguf",
        "--pre",
        "default",
    ]);
    assert!(ok);
    let v = json(&out);
    assert_eq!(v["chat_format"]["format"], "gguf");
    assert_eq!(v["tokenizer"]["pre_tokenizer"]["name"], "default");
}

/// `bitnet chat-prompt` on `model` and a messages file, with `extra` arguments.
fn chat_prompt(
    model: &std::path::Path,
    messages: &std::path::Path,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "chat-prompt",
        "--model",
        model.to_str().unwrap(),
        "--messages",
        messages.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bitnet(&args)
}

#[test]
fn chat_prompt_and_generate_show_the_same_prompt_ids() {
    let model = official_stand_in();
    let messages = tmp("messages.json");
    std::fs::write(
        &messages,
        r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|eot_id|> there"}]"#,
    )
    .unwrap();
    let (ok, out, err) = chat_prompt(&model, &messages, &[]);
    assert!(ok, "{err}");
    let p = json(&out);
    assert_eq!(
        p["text"],
        "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi <|eot_id|> there<|eot_id|>Assistant:"
    );
    // The user's "<|eot_id|>" stays text: only the template's two end-of-turn tokens.
    let ids: Vec<u64> = p["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids.iter().filter(|&&i| i == 128009).count(), 2);

    let (ok, out, err) = bitnet(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        "--system",
        "Be brief.",
        "--prompt",
        "Hi <|eot_id|> there",
        "-n",
        "2",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["prompt_ids"], p["ids"]);

    // A Jinja file as the chat format.
    let jinja = tmp("format.jinja");
    std::fs::write(
        &jinja,
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    )
    .unwrap();
    let (ok, out, err) = chat_prompt(
        &model,
        &messages,
        &["--chat-format", jinja.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["chat_format"]["format"], "jinja");
    assert_eq!(
        v["text"],
        "<|begin_of_text|>[system] Be brief.\n[user] Hi <|eot_id|> there\n"
    );
    let (ok, _, err) = chat_prompt(&model, &messages, &["--chat-format", "no-such-file.jinja"]);
    assert!(!ok);
    assert!(
        err.contains("expected auto, gguf, bitnet, text or a Jinja file"),
        "{err}"
    );
}

/// The rows of a float32 .npy file.
fn npy_f32(path: &str) -> Vec<f32> {
    npyz::NpyFile::new(&std::fs::read(path).unwrap()[..])
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

#[test]
fn perplexity_matches_llamacpp_logits_and_compares_runs() {
    let (r, prompt) = llamacpp_reference();
    let text = tmp("ppl.txt");
    std::fs::write(&text, r["text"].as_str().unwrap()).unwrap();
    let model = fixture("tiny-relu2-fold-F16.gguf");
    let perplexity = |ctx: usize, extra: &[&str]| {
        let ctx = ctx.to_string();
        let mut args = vec![
            "perplexity",
            "--model",
            &model,
            "--file",
            text.to_str().unwrap(),
            "--ctx",
            &ctx,
        ];
        args.extend_from_slice(extra);
        bitnet(&args)
    };
    // One window over the whole prompt: rows ctx/2 ..= ctx-2 are scored.
    let ctx = prompt.len();
    let (ok, out, err) = perplexity(ctx, &["--act", "f32"]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(v["tokens"], ctx);
    assert_eq!(v["windows"], 1);
    let first = ctx / 2;
    assert_eq!(v["scored_tokens"], (ctx - 1 - first) as u64);
    // The same perplexity from llama.cpp's own logits, in f64.
    let logits = npy_f32(&fixture("tiny-relu2-fold.llamacpp-f32.logits.npy"));
    let n_vocab = 512;
    let mut nll = 0.0f64;
    for (j, &t) in prompt
        .iter()
        .enumerate()
        .take(ctx - 1)
        .skip(first)
        .map(|(j, _)| (j, &prompt[j + 1]))
    {
        let row = &logits[j * n_vocab..(j + 1) * n_vocab];
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        let lse = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        nll += lse - row[t as usize] as f64;
    }
    let want = (nll / (ctx - 1 - first) as f64).exp();
    let got = v["ppl"].as_f64().unwrap();
    assert!(
        (got - want).abs() / want < 1e-2,
        "ppl {got} vs llama.cpp's {want}"
    );
    assert!(v["ppl_stderr"].as_f64().unwrap() > 0.0);

    // A reference run (f32), then the int8 path against it, then the reference against itself.
    let reference = tmp("ppl-ref.npy");
    let run = |act: &str, extra: &[&str]| {
        let mut args = vec!["--act", act];
        args.extend_from_slice(extra);
        let (ok, out, err) = perplexity(8, &args);
        assert!(ok, "{err}");
        json(&out)
    };
    let base = run("f32", &["--save-logits", reference.to_str().unwrap()]);
    assert_eq!(base["windows"], ctx / 8);
    let int8 = run("int8", &["--ref-logits", reference.to_str().unwrap()]);
    let kl = int8["kl_divergence"].as_f64().unwrap();
    assert!(kl > 0.0 && kl < 0.05, "int8 vs f32 KL {kl}");
    eprintln!("ppl {got} (llama.cpp's logits: {want}); int8 vs f32: {int8}");
    assert!(int8["top1_agreement"].as_f64().unwrap() >= 0.8);
    let same = run("f32", &["--ref-logits", reference.to_str().unwrap()]);
    assert_eq!(same["kl_divergence"], 0.0);
    assert_eq!(same["top1_agreement"], 1.0);
    assert_eq!(same["ppl"], base["ppl"]);
    // A reference of another shape is refused.
    let (ok, _, err) = perplexity(10, &["--ref-logits", reference.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("same file and --ctx"), "{err}");
}
