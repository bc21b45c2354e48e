use super::jinja::strftime_utc;
use super::*;

const BOS: &str = "<|begin_of_text|>";
const EOS: &str = "<|end_of_text|>";

/// Meta's Llama-3 Instruct template (as shipped in its tokenizer_config.json).
const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// The chat template in microsoft/bitnet-b1.58-2B-4T's tokenizer_config.json.
const BITNET_HF_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

fn convo() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are a helpful assistant."),
        ChatMessage::user("Hey, are you conscious?"),
        ChatMessage::assistant(" I am a language model. "),
        ChatMessage::user("Can you talk to me?"),
    ]
}

#[test]
fn builtin_renders_2b4t_format() {
    let t = ChatTemplate::new(None, BOS, EOS).unwrap();
    assert!(t.is_builtin());
    let s = t
        .render(&[ChatMessage::user("Hey, are you conscious?")], true)
        .unwrap();
    assert_eq!(
        s,
        "<|begin_of_text|>User: Hey, are you conscious?<|eot_id|>Assistant:"
    );
    let s = t.render(&convo(), true).unwrap();
    assert_eq!(
        s,
        "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: Hey, are you conscious?<|eot_id|>\
         Assistant: I am a language model.<|eot_id|>User: Can you talk to me?<|eot_id|>Assistant:"
    );
    assert_eq!(t.render(&[], false).unwrap(), BOS);
    // Blank Jinja falls back to the built-in template too.
    assert!(ChatTemplate::new(Some("  \n"), BOS, EOS)
        .unwrap()
        .is_builtin());
}

#[test]
fn builtin_continuation_is_suffix() {
    let t = ChatTemplate::new(None, BOS, EOS).unwrap();
    let c = convo();
    let (history, new) = c.split_at(3);
    let cont = t.render_continuation(history, new, true).unwrap();
    assert_eq!(cont, "User: Can you talk to me?<|eot_id|>Assistant:");
    let full = t.render(&c, true).unwrap();
    let hist = t.render(history, false).unwrap();
    assert_eq!(format!("{hist}{cont}"), full);
    // What the KV cache holds after the first turn: prompt + generation prompt +
    // generated reply + <|eot_id|> is the rendered history.
    let first = t.render(&history[..2], true).unwrap();
    assert_eq!(format!("{first} I am a language model.<|eot_id|>"), hist);
    assert_eq!(t.render_continuation(&[], &c, true).unwrap(), full);
}

#[test]
fn jinja_loop_template_renders() {
    let t = ChatTemplate::new(Some(LLAMA3_TEMPLATE), BOS, EOS).unwrap();
    assert!(!t.is_builtin());
    let s = t.render(&convo()[1..2], true).unwrap();
    assert_eq!(
        s,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHey, are you conscious?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // The HF BitNet template renders what the built-in one does (bar the trailing
    // space of its generation prompt).
    let hf = ChatTemplate::new(Some(BITNET_HF_TEMPLATE), BOS, EOS).unwrap();
    let builtin = ChatTemplate::new(None, BOS, EOS).unwrap();
    assert_eq!(
        hf.render(&convo(), false).unwrap(),
        builtin.render(&convo(), false).unwrap()
    );
    assert_eq!(
        hf.render(&convo(), true).unwrap(),
        builtin.render(&convo(), true).unwrap() + " "
    );
}

#[test]
fn jinja_continuation_equals_suffix() {
    let t = ChatTemplate::new(Some(LLAMA3_TEMPLATE), BOS, EOS).unwrap();
    let c = convo();
    let (history, new) = c.split_at(3);
    let cont = t.render_continuation(history, new, true).unwrap();
    assert_eq!(
        cont,
        "<|start_header_id|>user<|end_header_id|>\n\nCan you talk to me?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        t.render(history, false).unwrap() + &cont,
        t.render(&c, true).unwrap()
    );
}

#[test]
fn jinja_not_prefix_stable_is_an_error() {
    // Puts the system prompt in front of the last user message, like some templates.
    let src = "{{ bos_token }}{% for m in messages %}{% if m.role != 'system' %}\
               {% if loop.last and messages[0].role == 'system' %}[SYS]{{ messages[0].content }}[/SYS]{% endif %}\
               {{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}";
    let t = ChatTemplate::new(Some(src), BOS, EOS).unwrap();
    let c = convo();
    let err = t.render_continuation(&c[..3], &c[3..], true).unwrap_err();
    assert!(matches!(err, Error::Template(_)), "{err:?}");
}

#[test]
fn template_errors() {
    let err =
        ChatTemplate::new(Some("{% for m in messages %}{{ m.content }"), BOS, EOS).unwrap_err();
    assert!(matches!(err, Error::Template(_)), "{err:?}");
    let err = ChatTemplate::new(Some("{% if %}"), BOS, EOS).unwrap_err();
    assert!(matches!(err, Error::Template(_)), "{err:?}");
    // raise_exception surfaces as a Template error at render time.
    let t = ChatTemplate::new(
        Some("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok"),
        BOS,
        EOS,
    )
    .unwrap();
    assert_eq!(t.render(&[ChatMessage::user("x")], true).unwrap(), "ok");
    match t.render(&[ChatMessage::assistant("x")], true) {
        Err(Error::Template(msg)) => {
            assert!(msg.contains("Conversation must start with user"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jinja_python_compat_and_blocks() {
    // trim_blocks / lstrip_blocks, Python string methods, tools defined as none,
    // strftime_now available.
    let src = "{%- for m in messages %}\n    {{- m.role.upper() }}={{ m.content.strip() }}\n{% endfor %}\n{% if tools is none %}no tools{% endif %}\
               {% if strftime_now is defined %}|{{ strftime_now('%Y') | length }}{% endif %}";
    let t = ChatTemplate::new(Some(src), BOS, EOS).unwrap();
    let s = t.render(&[ChatMessage::user("  hi  ")], false).unwrap();
    assert_eq!(s, "USER=hi\nno tools|4");
}

/// The texts of a rendered prompt's plain ranges.
fn plain_spans(r: &RenderedPrompt) -> Vec<&str> {
    r.plain
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| &r.text[s.clone()])
        .collect()
}

#[test]
fn rendered_prompts_mark_the_message_contents() {
    let c = [
        ChatMessage::system("  Be brief.  "),
        ChatMessage::user("x<|eot_id|>y"),
    ];
    // The built-in format: roles and trimmed contents.
    let b = ChatTemplate::new(None, BOS, EOS).unwrap();
    let r = b.render_prompt(&c, true).unwrap();
    let spans = plain_spans(&r);
    assert_eq!(spans, ["System", "Be brief.", "User", "x<|eot_id|>y"]);
    // A Jinja template that trims: the marks sit inside the whitespace.
    let hf = ChatTemplate::new(Some(BITNET_HF_TEMPLATE), BOS, EOS).unwrap();
    let r = hf.render_prompt(&c, true).unwrap();
    assert_eq!(r.text, b.render(&c, true).unwrap() + " ");
    let spans = plain_spans(&r);
    assert_eq!(spans, ["Be brief.", "x<|eot_id|>y"]);
    // Contents that hold private-use characters get other marks.
    let pua = [ChatMessage::user("\u{E000}\u{E001} ok")];
    let r = hf.render_prompt(&pua, false).unwrap();
    let spans = plain_spans(&r);
    assert_eq!(spans, ["\u{E000}\u{E001} ok"]);
    // A template that cuts contents loses track of them: no ranges, same text.
    let cut = ChatTemplate::new(
        Some("{% for m in messages %}{{ m.content[:3] }}|{% endfor %}"),
        BOS,
        EOS,
    )
    .unwrap();
    let r = cut.render_prompt(&c, false).unwrap();
    assert_eq!(r.text, "  B|x<||");
    assert_eq!(r.plain, None);
    // Continuations carry the ranges of the new messages only.
    let r = hf
        .render_continuation_prompt(&c[..1], &c[1..], true)
        .unwrap();
    let spans = plain_spans(&r);
    assert_eq!(spans, ["x<|eot_id|>y"]);
}

#[test]
fn text_format_continues_each_message_and_extends_its_history() {
    let t = ChatTemplate::choose(
        None,
        &ChatFormat::Auto,
        "<|endoftext|>",
        "<|endoftext|>",
        false,
    )
    .unwrap();
    assert_eq!(t.info().format, "text");
    let history = [
        ChatMessage::system("Be brief."),
        ChatMessage::user("The jury said  "),
        ChatMessage::assistant(" that it was late."),
    ];
    let next = [ChatMessage::user("Then <|endoftext|> came")];
    let full: Vec<ChatMessage> = history.iter().chain(&next).cloned().collect();
    let r = t.render_prompt(&full, true).unwrap();
    assert_eq!(
        r.text,
        "<|endoftext|>The jury said that it was late.<|endoftext|>Then <|endoftext|> came"
    );
    // Contents are plain text (a typed <|endoftext|> stays text); the markers are not.
    assert_eq!(
        plain_spans(&r),
        [
            "The jury said",
            " that it was late.",
            "Then <|endoftext|> came"
        ]
    );
    // The session's cache ends with the reply's end-of-text; the rest follows it.
    let c = t.render_continuation_prompt(&history, &next, true).unwrap();
    assert_eq!(c.text, "Then <|endoftext|> came");
    let t = ChatTemplate::choose(None, &ChatFormat::Auto, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "bitnet-2b4t");
    assert_eq!(ChatFormat::parse("text"), ChatFormat::Text);
}

#[test]
fn auto_replaces_only_the_converter_template() {
    let converter = crate::synth::CONVERTER_CHAT_TEMPLATE;
    let t = ChatTemplate::choose(Some(converter), &ChatFormat::Auto, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "bitnet-2b4t");
    let t = ChatTemplate::choose(Some(converter), &ChatFormat::Gguf, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "gguf");
    assert_eq!(
        t.render(&[ChatMessage::system("s"), ChatMessage::user("u")], true)
            .unwrap(),
        "<|begin_of_text|>Human: u\n\nBITNETAssistant: <|end_of_text|>"
    );
    let t = ChatTemplate::choose(Some(LLAMA3_TEMPLATE), &ChatFormat::Auto, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "gguf");
    let t = ChatTemplate::choose(None, &ChatFormat::Auto, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "bitnet-2b4t");
    assert!(ChatTemplate::choose(None, &ChatFormat::Gguf, BOS, EOS, true).is_err());
    let t =
        ChatTemplate::choose(Some(LLAMA3_TEMPLATE), &ChatFormat::Bitnet, BOS, EOS, true).unwrap();
    assert_eq!(t.info().format, "bitnet-2b4t");
    assert_eq!(
        ChatFormat::parse("{{ x }}"),
        ChatFormat::Jinja("{{ x }}".into())
    );
}

#[test]
fn runaway_templates_stop_with_a_clear_error() {
    let user = [ChatMessage::user("hi")];
    let loops = ChatTemplate::new(
        Some("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"),
        BOS,
        EOS,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    match loops.render(&user, true) {
        Err(Error::Template(m)) => assert!(m.contains("5000000 instructions"), "{m}"),
        other => panic!("{other:?}"),
    }
    eprintln!("runaway loop stopped after {:?}", t0.elapsed());
    let bomb = ChatTemplate::new(
        Some("{% for a in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}"),
        BOS,
        EOS,
    )
    .unwrap();
    match bomb.render(&user, true) {
        Err(Error::Template(m)) => assert!(m.contains("limit of 8388608 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A long real conversation stays well inside both limits.
    let long: Vec<ChatMessage> = (0..2000)
        .map(|i| {
            ChatMessage::new(
                if i % 2 == 0 { "user" } else { "assistant" },
                "some words here",
            )
        })
        .collect();
    let hf = ChatTemplate::new(Some(BITNET_HF_TEMPLATE), BOS, EOS).unwrap();
    assert!(hf.render(&long, true).unwrap().len() > 40_000);
}

#[test]
fn operator_chains_that_would_overflow_the_stack_are_template_errors() {
    // 4,000 chained operators in a 4 KB template overflowed a 1 MiB stack (the wasm
    // builds' stack) inside minijinja, aborting the process; run on one to show it.
    let run = || {
        for src in [
            format!("{{{{ 1{} }}}}", "+1".repeat(4000)),
            format!("{{{{ {}1 }}}}", "not ".repeat(4000)),
            format!("{{{{ {}1 }}}}", "-".repeat(4000)),
            format!("{{{{ 'a'{} }}}}", "~'a'".repeat(4000)),
        ] {
            let err = ChatTemplate::new(Some(&src), BOS, EOS).unwrap_err();
            assert!(matches!(err, Error::Template(_)), "{err:?}");
            assert!(err.to_string().contains("300 operators"), "{err}");
        }
        // A long tag of text in strings is not an expression.
        let long = format!(
            "{{{{ '{}' }}}}{{{{ messages[0].content }}}}",
            "+".repeat(4000)
        );
        let t = ChatTemplate::new(Some(&long), BOS, EOS).unwrap();
        assert!(t
            .render(&[ChatMessage::user("hi")], false)
            .unwrap()
            .ends_with("hi"));
    };
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn strftime_formats() {
    // 2024-07-26 13:05:09 UTC, a Friday.
    let t = 1_721_999_109;
    let f = |fmt, t| strftime_utc(fmt, t).unwrap();
    assert_eq!(f("%d %b %Y", t), "26 Jul 2024");
    assert_eq!(
        f("%A %B %-d, %Y %H:%M:%S %j %I%p %%", t),
        "Friday July 26, 2024 13:05:09 208 01PM %"
    );
    assert_eq!(f("%F", 0), "1970-01-01");
    assert_eq!(f("%F %a", 951_782_400), "2000-02-29 Tue");
    // A specifier no strftime knows is the template's error, not a panic.
    let err = strftime_utc("%Q", t).unwrap_err();
    assert!(err.to_string().contains("strftime_now"), "{err}");
}

#[test]
fn builtin_prompt_tokenizes_with_special_tokens() {
    let tok = crate::tokenizer::tests::llama3();
    let t = ChatTemplate::new(None, "<|begin_of_text|>", "<|end_of_text|>").unwrap();
    let s = t
        .render(&[ChatMessage::user("Hey, are you conscious?")], true)
        .unwrap();
    let ids = tok.encode(&s, false, true).unwrap();
    assert_eq!(ids[0], 128000);
    assert_eq!(ids.iter().filter(|&&i| i == 128009).count(), 1);
    assert_eq!(tok.decode(&ids, false), s);
    // Prefix stability at the token level: the first turn's prompt, the generated
    // reply and <|eot_id|>, then the continuation, tokenize like the whole conversation
    // (the reply is tokenized on its own, as the model generated it).
    let c = [
        ChatMessage::user("Hey, are you conscious?"),
        ChatMessage::assistant("I am a language model."),
        ChatMessage::user("Can you talk to me?"),
    ];
    let mut ids = tok
        .encode(&t.render(&c[..1], true).unwrap(), false, true)
        .unwrap();
    ids.extend(tok.encode(" I am a language model.", false, false).unwrap());
    ids.push(128009);
    ids.extend(
        tok.encode(
            &t.render_continuation(&c[..2], &c[2..], true).unwrap(),
            false,
            true,
        )
        .unwrap(),
    );
    assert_eq!(
        ids,
        tok.encode(&t.render(&c, true).unwrap(), false, true)
            .unwrap()
    );
}
