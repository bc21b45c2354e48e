//! `bitnet` on the trained tiny model, against the independent float64 reference of
//! `train/reference.py` (tests/fixtures/brown-tiny.ref.json).

mod common;
use common::{bitnet, fixture, json};

const MODEL: &str = "brown-tiny-I2_S.gguf";

fn bitnet_json(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = bitnet(args);
    assert!(ok, "{args:?}: {err}");
    json(&out)
}

fn reference() -> serde_json::Value {
    json(&std::fs::read_to_string(fixture("brown-tiny.ref.json")).unwrap())
}

/// Up to the reference's first near-tie (`clear_ids`, see train/reference.py).
#[test]
fn generate_writes_the_reference_continuation() {
    let r = reference();
    for case in r["cases"].as_array().unwrap() {
        let greedy = case["clear_ids"].as_array().unwrap();
        let v = bitnet_json(&[
            "generate",
            "--model",
            &fixture(MODEL),
            "--prompt",
            case["prompt"].as_str().unwrap(),
            "-n",
            &greedy.len().to_string(),
            "--temp",
            "0",
            "--no-loop-guard",
            "--json",
        ]);
        let written: Vec<&serde_json::Value> = greedy.iter().filter(|&t| t != 0).collect();
        assert_eq!(
            v["tokens"].as_array().unwrap().iter().collect::<Vec<_>>(),
            written,
            "{}",
            case["prompt"]
        );
        assert_eq!(v["text"], case["clear_text"], "{}", case["prompt"]);
    }
}

/// `bitnet perplexity` on held-out text equals the reference's perplexity by the same
/// method (windows of 128 tokens, second halves scored), with int8 activations (the
/// default) and exact ones. Exact activations agree to float32 rounding. With int8 ones a
/// few rows take the other side of a rounding tie (engine/tests/common.rs,
/// `check_int8_rows`), which moves the perplexity by about 1e-4 of itself.
#[test]
fn perplexity_of_held_out_text_matches_the_reference() {
    let r = &reference()["valid_head"];
    for (mode, extra, within) in [("int8", None, 1e-3), ("exact", Some("f32"), 1e-5)] {
        let (model, file) = (fixture(MODEL), fixture("brown-valid-head.txt"));
        let mut args = vec![
            "perplexity",
            "--model",
            &model,
            "--file",
            &file,
            "--ctx",
            "128",
        ];
        if let Some(act) = extra {
            args.extend(["--act", act]);
        }
        let v = bitnet_json(&args);
        assert_eq!(v["tokens"], r["tokens"]);
        assert_eq!(v["scored_tokens"], r["scored"]);
        let (ours, theirs) = (v["ppl"].as_f64().unwrap(), r["ppl"][mode].as_f64().unwrap());
        println!("{mode}: perplexity {ours:.4}, reference {theirs:.4}");
        assert!(
            (ours / theirs - 1.0).abs() < within,
            "{mode}: {ours} vs the reference's {theirs}"
        );
    }
}
