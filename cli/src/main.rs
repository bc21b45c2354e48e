//! `bitnet`: run BitNet b1.58 GGUF models from the terminal.

use bitnet_engine::chat::ChatMessage;
use bitnet_engine::gguf::{GgmlType, GgufFile};
use bitnet_engine::import;
use bitnet_engine::model::{HeadMode, Logits, Model};
use bitnet_engine::session::{chat_parts, chat_prompt_ids, Event, Flow, LoadedModel, Session};
use bitnet_engine::synth::{self, SynthShape};
use clap::Parser;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

mod args;
mod backend;
mod bench;

use args::{Cli, Cmd, Layout, RunOpts, SampleOpts, TextOpts};
use backend::{make_backend, BackendKind};

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error [{}]: {e}", e.kind());
        std::process::exit(1);
    }
}

fn parse_wtype(wtype: &str) -> bitnet_engine::Result<GgmlType> {
    GgmlType::from_name(wtype).ok_or_else(|| {
        bitnet_engine::Error::InvalidArgument(format!(
            "--wtype {wtype}: expected I2_S, TQ2_0, TQ1_0, F16 or F32"
        ))
    })
}

fn load(path: &PathBuf, run: &RunOpts, text: &TextOpts) -> bitnet_engine::Result<LoadedModel> {
    LoadedModel::from_path_with(path, &text.settings(run.head.mode())?)
}

fn session(m: &LoadedModel, run: &RunOpts) -> bitnet_engine::Result<Session> {
    let backend = make_backend(
        run.backend,
        &m.model,
        run.cpu(&m.model),
        self_test(run, &m.tokenizer)?,
        false,
    )?;
    Ok(Session::new(
        backend,
        Arc::clone(&m.tokenizer),
        Arc::clone(&m.template),
    ))
}

/// The tokens the GPU's self-test runs, on the GPU only.
fn self_test(
    run: &RunOpts,
    tokenizer: &bitnet_engine::tokenizer::Tokenizer,
) -> bitnet_engine::Result<Vec<u32>> {
    match run.backend {
        BackendKind::Gpu => bitnet_engine::backends::self_test_tokens(tokenizer),
        BackendKind::Cpu => Ok(Vec::new()),
    }
}

fn run(cli: Cli) -> bitnet_engine::Result<()> {
    match cli.cmd {
        Cmd::Info { model, text } => info(&model, &text),
        Cmd::Tokenize {
            model,
            text,
            special,
            no_bos,
            opts,
        } => {
            // Only the vocabulary is needed: vocabulary-only GGUFs work too.
            let file = GgufFile::from_path(&model)?;
            let (tokenizer, _) = chat_parts(&file, &opts.settings(HeadMode::File)?)?;
            let ids = tokenizer.encode(&text, !no_bos && tokenizer.add_bos_default(), special)?;
            println!("{}", serde_json::to_string(&ids).unwrap());
            Ok(())
        }
        Cmd::ChatPrompt {
            model,
            messages,
            text,
        } => {
            let file = GgufFile::from_path(&model)?;
            let (tokenizer, template) = chat_parts(&file, &text.settings(HeadMode::File)?)?;
            let raw = std::fs::read_to_string(&messages)?;
            let messages: Vec<ChatMessage> = serde_json::from_str(&raw).map_err(|e| {
                bitnet_engine::Error::InvalidArgument(format!(
                    "{}: not a JSON array of {{\"role\", \"content\"}} messages ({e})",
                    messages.display()
                ))
            })?;
            let ids = chat_prompt_ids(&tokenizer, &template, &messages)?;
            let out = serde_json::json!({
                "chat_format": template.info(),
                "text": template.render(&messages, true)?,
                "ids": ids,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap());
            Ok(())
        }
        Cmd::Logits {
            model,
            tokens,
            out,
            run,
        } => {
            let ids: Vec<u32> = tokens
                .split(',')
                .map(|t| t.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    bitnet_engine::Error::InvalidArgument(format!(
                        "--tokens '{tokens}' is not a comma-separated list of ids"
                    ))
                })?;
            let mut file = GgufFile::from_path(&model)?;
            let mut model = Model::from_gguf(&mut file)?;
            model.set_head(run.head.mode());
            let model = Arc::new(model);
            let mut opts = run.cpu(&model);
            opts.n_ctx = Some(opts.n_ctx.unwrap_or(0).max(ids.len()));
            // The logits are the output to compare, so no self-test decides for the caller.
            let mut backend = make_backend(run.backend, &model, opts, Vec::new(), false)?;
            let logits = backend.forward(&ids, Logits::All)?;
            write_npy(
                &out,
                &[ids.len() as u64, model.config.n_vocab as u64],
                &logits,
            )?;
            Ok(())
        }
        Cmd::Generate {
            model,
            prompt,
            n,
            chat,
            system,
            json,
            run,
            sample,
            text,
        } => {
            let m = load(&model, &run, &text)?;
            let mut s = session(&m, &run)?;
            let opts = sample.options(n, true);
            let mut out = std::io::stdout();
            let mut stream = |e: Event| {
                if let (Event::Token { text, .. }, false) = (e, json) {
                    print!("{text}");
                    out.flush().ok();
                }
                Flow::Continue
            };
            let c = if chat {
                let mut messages: Vec<ChatMessage> =
                    system.into_iter().map(ChatMessage::system).collect();
                messages.push(ChatMessage::user(prompt));
                s.chat(&messages, &opts, &mut stream)?
            } else {
                s.complete(&prompt, &opts, &mut stream)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&c).unwrap());
            } else {
                println!();
            }
            Ok(())
        }
        Cmd::Chat {
            model,
            system,
            n,
            run,
            sample,
            text,
        } => chat(&model, system, n, &run, &sample, &text),
        Cmd::Split { model, parts, out } => {
            let file = GgufFile::from_path(&model)?;
            for (i, w) in bitnet_engine::gguf::split_writers(&file, parts)?
                .iter()
                .enumerate()
            {
                let path = format!("{}-{:05}-of-{parts:05}.gguf", out.display(), i + 1);
                let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
                w.write_to(&mut f)?;
                f.flush()?;
                println!("{path}");
            }
            Ok(())
        }
        Cmd::Synth {
            shape,
            wtype,
            seed,
            layout,
            vocab,
            out,
        } => {
            let shape = SynthShape::parse(&shape)?;
            let ty = parse_wtype(&wtype)?;
            let vocab = match (layout, vocab) {
                (Layout::Official, _) if ty != GgmlType::I2S => {
                    return Err(bitnet_engine::Error::InvalidArgument(format!(
                        "--layout official writes I2_S, like the official file (not {ty})"
                    )))
                }
                (Layout::Official, Some(path)) => {
                    Some(bitnet_engine::tokenizer::VocabSpec::from_metadata(
                        &GgufFile::from_path(&path)?.metadata,
                    )?)
                }
                _ => None,
            };
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            match &vocab {
                Some(v) => synth::write_official(shape, v, seed, &mut f)?,
                None => synth::write_model(shape, ty, seed, &mut f)?,
            }
            f.flush()?;
            eprintln!(
                "wrote {} ({} bytes)",
                out.display(),
                std::fs::metadata(&out)?.len()
            );
            Ok(())
        }
        Cmd::Import {
            checkpoint,
            wtype,
            name,
            out,
        } => {
            let ty = parse_wtype(&wtype)?;
            let read = |f: &str| std::fs::read(checkpoint.join(f));
            let config: bitnet_engine::import::TrainedConfig =
                serde_json::from_slice(&read("config.json")?).map_err(|e| {
                    bitnet_engine::Error::InvalidArgument(format!("config.json: {e}"))
                })?;
            let tensors = import::read_safetensors(&read("checkpoint.safetensors")?)?;
            let vocab =
                import::read_hf_tokenizer(&String::from_utf8_lossy(&read("tokenizer.json")?))?;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
            import::write_trained(&config, &tensors, &vocab, ty, &name, &mut f)?;
            f.flush()?;
            eprintln!(
                "wrote {} ({} bytes)",
                out.display(),
                std::fs::metadata(&out)?.len()
            );
            Ok(())
        }
        Cmd::Perplexity {
            model,
            file,
            ctx,
            save_logits,
            ref_logits,
            run,
            text,
        } => perplexity(&model, &file, ctx, save_logits, ref_logits, &run, &text),
        Cmd::Bench(args) => bench::run(args),
    }
}

fn info(path: &PathBuf, text: &TextOpts) -> bitnet_engine::Result<()> {
    let file = GgufFile::from_path(path)?;
    let (tokenizer, template) = chat_parts(&file, &text.settings(HeadMode::File)?)?;
    let named = |id: Option<u32>| {
        id.map(|i| serde_json::json!({"id": i, "text": String::from_utf8_lossy(tokenizer.token_bytes(i))}))
    };
    let md = &file.metadata;
    let mut tensors = serde_json::Map::new();
    let mut by_type: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for t in &file.tensors {
        tensors.insert(
            t.info.name.clone(),
            serde_json::json!({"type": t.info.ty.name(), "dims": t.info.dims, "bytes": t.info.nbytes}),
        );
        let e = by_type.entry(t.info.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.info.nbytes;
    }
    let config = bitnet_engine::model::ModelConfig::from_metadata(md);
    let out = serde_json::json!({
        "file": path.display().to_string(),
        "gguf_version": file.version,
        "architecture": md.get_str("general.architecture"),
        "name": md.get_str("general.name"),
        "config": config.as_ref().map(|c| serde_json::json!({
            "n_embd": c.n_embd, "n_ff": c.n_ff, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_head_kv": c.n_head_kv, "head_dim": c.head_dim, "n_vocab": c.n_vocab,
            "context_length": c.n_ctx_train, "rope_theta": c.rope_theta, "rms_eps": c.rms_eps,
            "activation": format!("{:?}", c.activation).to_lowercase(),
        })).map_err(|e| e.to_string()),
        "tied_embeddings": file.tensor("output.weight").is_none(),
        "tensor_types": by_type.iter().map(|(k, (n, b))| (k.clone(), serde_json::json!({"count": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "tensor_bytes": file.tensors.iter().map(|t| t.info.nbytes).sum::<u64>(),
        "tokenizer": {
            "n_vocab": tokenizer.n_vocab(),
            "bos": named(tokenizer.bos()),
            "eos": named(tokenizer.eos()),
            "eot": named(tokenizer.eot()),
            "stop_tokens": tokenizer.stop_tokens().iter().map(|&i| named(Some(i))).collect::<Vec<_>>(),
            "pre_tokenizer": tokenizer.pre_tokenizer(),
        },
        "chat_format": template.info(),
        "metadata": md.entries().iter().map(|(k, v)| serde_json::json!({"key": k, "type": v.type_name()})).collect::<Vec<_>>(),
        "tensor_order": file.tensors.iter().map(|t| t.info.name.as_str()).collect::<Vec<_>>(),
        "tensors": tensors,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    Ok(())
}

fn perplexity(
    path: &PathBuf,
    file: &PathBuf,
    ctx: usize,
    save_logits: Option<PathBuf>,
    ref_logits: Option<PathBuf>,
    run: &RunOpts,
    text: &TextOpts,
) -> bitnet_engine::Result<()> {
    use bitnet_engine::quality;
    let m = load(path, run, text)?;
    let body = std::fs::read_to_string(file)?;
    let tokens = m
        .tokenizer
        .encode(&body, m.tokenizer.add_bos_default(), false)?;
    let mut opts = run.cpu(&m.model);
    opts.n_ctx = Some(ctx.max(1));
    let mut backend = make_backend(
        run.backend,
        &m.model,
        opts,
        self_test(run, &m.tokenizer)?,
        false,
    )?;
    let n_vocab = m.model.config.n_vocab;
    let rows = (tokens.len() / ctx.max(1)) * quality::scored_per_window(ctx.max(4));
    let mut saver = match &save_logits {
        Some(p) => {
            use npyz::WriterBuilder;
            let f = std::io::BufWriter::new(std::fs::File::create(p)?);
            Some(
                npyz::WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(&[rows as u64, n_vocab as u64])
                    .writer(f)
                    .begin_nd()?,
            )
        }
        None => None,
    };
    let reference = match &ref_logits {
        Some(p) => {
            let bytes = std::fs::read(p)?;
            let npy = npyz::NpyFile::new(&bytes[..])?;
            if npy.shape() != [rows as u64, n_vocab as u64] {
                return Err(bitnet_engine::Error::InvalidArgument(format!(
                    "--ref-logits {}: shape {:?}, but this run scores [{rows}, {n_vocab}] (same file and --ctx?)",
                    p.display(),
                    npy.shape()
                )));
            }
            Some(npy.into_vec::<f32>()?)
        }
        None => None,
    };
    let mut compare = quality::Compare::default();
    let mut at = 0;
    let report = quality::perplexity(
        backend.as_mut(),
        &tokens,
        ctx,
        m.tokenizer.bos().filter(|_| m.tokenizer.add_bos_default()),
        |scored, _| {
            if let Some(w) = saver.as_mut() {
                w.extend(scored.iter().copied())?;
            }
            if let Some(r) = &reference {
                compare.add(scored, &r[at..at + scored.len()], n_vocab)?;
            }
            at += scored.len();
            Ok(())
        },
    )?;
    if let Some(w) = saver {
        w.finish()?;
    }
    let mut out = serde_json::to_value(&report).unwrap();
    out["ctx"] = ctx.into();
    out["tokens"] = tokens.len().into();
    if reference.is_some() {
        let a = compare.result();
        out["kl_divergence"] = a.kl_divergence.into();
        out["kl_divergence_stderr"] = a.kl_divergence_stderr.into();
        out["top1_agreement"] = a.top1_agreement.into();
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    Ok(())
}

fn write_npy(path: &PathBuf, shape: &[u64], data: &[f32]) -> bitnet_engine::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(())
}

fn chat(
    path: &PathBuf,
    system: Option<String>,
    n: usize,
    run: &RunOpts,
    sample: &SampleOpts,
    text: &TextOpts,
) -> bitnet_engine::Result<()> {
    let m = load(path, run, text)?;
    let mut s = session(&m, run)?;
    let opts = sample.options(n, false);
    let mut messages: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
    eprintln!(
        "{} — type a message, /reset to start over, Ctrl-D to quit.",
        s.backend().name()
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if line.trim() == "/reset" {
            messages.retain(|m| m.role == "system");
            s.reset();
            continue;
        }
        messages.push(ChatMessage::user(line));
        let mut out = std::io::stdout();
        let c = s.chat(&messages, &opts, &mut |e| {
            if let Event::Token { text, .. } = e {
                print!("{text}");
                out.flush().ok();
            }
            Flow::Continue
        });
        match c {
            Ok(c) => {
                println!();
                eprintln!(
                    "[{:?}: {} tokens, prefill {:.1} tok/s ({} cached), decode {:.1} tok/s]",
                    c.finish_reason,
                    c.usage.completion_tokens,
                    c.usage.prefill_tps,
                    c.usage.cached_tokens,
                    c.usage.decode_tps
                );
                messages.push(ChatMessage::assistant(c.text));
            }
            Err(e) => {
                eprintln!("error [{}]: {e}", e.kind());
                messages.pop();
            }
        }
    }
}
