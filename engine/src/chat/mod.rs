//! Chat templates: turn a conversation into the prompt text the model was trained on.
//!
//! Either the GGUF's `tokenizer.chat_template` (Jinja, rendered with MiniJinja the way
//! Hugging Face `apply_chat_template` renders it: `trim_blocks`, `lstrip_blocks`,
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`,
//! Python string/dict methods), or the built-in BitNet b1.58 2B4T format:
//!
//! ```text
//! <|begin_of_text|>System: ...<|eot_id|>User: ...<|eot_id|>Assistant: ...<|eot_id|>Assistant:
//! ```
//!
//! Which one is used is a [`ChatFormat`] choice; `auto` replaces the templates that
//! bitnet.cpp's converters write (see [`ChatTemplate::choose`]), because rendered as
//! written they do not give the format the model was trained with.
//!
//! The rendered text already holds the BOS text. [`RenderedPrompt::plain`] marks where
//! message contents sit in it, so the caller can tokenize the template's own markers as
//! special tokens and the contents as plain text (`Tokenizer::encode_chat`): a message
//! that holds the text `<|eot_id|>` does not end its turn.
//!
//! ## Prefix stability (multi-turn KV-cache reuse)
//! The built-in template renders every message on its own, so
//! `render(history, false)` is always a prefix of `render(history + new, _)`, and the
//! generation prompt `Assistant:` followed by the generated reply and its `<|eot_id|>`
//! is exactly the rendered assistant turn (up to whitespace trimming of the content).
//! Jinja templates need not be: some drop the reasoning of earlier assistant turns
//! (Qwen3, DeepSeek-R1), move the system prompt next to the last user message, or put
//! the date in the prompt. [`ChatTemplate::render_continuation`] checks the prefix
//! property on every call and fails with [`Error::Template`] when it does not hold, so
//! the caller can fall back to a full re-prefill.

mod expression_size;

use std::ops::Range;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `"system"`, `"user"` or `"assistant"`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

const TEMPLATE_NAME: &str = "chat_template";
/// Instructions one rendering may run. A chat template is code from whoever made the
/// file; the real ones run a few hundred instructions per message, so this leaves room
/// for conversations of thousands of turns and stops a runaway loop within a second.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Bytes one rendering may write: far more than any context holds as text.
pub const TEMPLATE_OUTPUT_LIMIT: usize = 8 << 20;
/// End of every turn in the built-in template.
pub const BUILTIN_EOT: &str = "<|eot_id|>";
/// Generation prompt of the built-in template (no trailing space: the model's first
/// token carries its own leading space).
const BUILTIN_GEN_PROMPT: &str = "Assistant:";

/// Text that only bitnet.cpp's converter template holds (`utils/convert-ms-to-gguf-bitnet.py`,
/// the official 2B4T file and its older `bitnet-25` upload): `Human: …\n\nBITNETAssistant: `
/// followed by the end-of-text token, no system turn.
const CONVERTER_TEMPLATE_MARKS: &[&str] = &["BITNETAssistant"];

/// How a conversation becomes prompt text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChatFormat {
    /// The file's template, except that a known converter template (which does not
    /// render the format the model was trained with) is replaced by the 2B4T format,
    /// and a file without one gets the 2B4T format.
    #[default]
    Auto,
    /// The file's `tokenizer.chat_template`, rendered as written.
    Gguf,
    /// The built-in BitNet b1.58 2B4T format.
    Bitnet,
    /// Plain text, for a base model trained on documents: each user message is a text
    /// to continue and the reply its continuation (see [`ChatTemplate::choose`]).
    Text,
    /// This Jinja source.
    Jinja(String),
}

impl ChatFormat {
    /// `auto`, `gguf`, `bitnet`, `text`, or else the text is Jinja source.
    pub fn parse(s: &str) -> ChatFormat {
        match s {
            "" | "auto" => ChatFormat::Auto,
            "gguf" => ChatFormat::Gguf,
            "bitnet" => ChatFormat::Bitnet,
            "text" => ChatFormat::Text,
            src => ChatFormat::Jinja(src.to_string()),
        }
    }
}

/// Which chat format is in use and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatFormatInfo {
    /// `bitnet-2b4t`, `text`, `gguf` (the file's template) or `jinja` (given by the
    /// caller).
    pub format: String,
    pub reason: String,
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub text: String,
    /// Byte ranges of `text` that came from message contents (and, in the built-in
    /// format, roles), to tokenize as plain text. `None` when the template changes the
    /// contents in a way that loses track of them (then no range is known).
    pub plain: Option<Vec<Range<usize>>>,
}

impl RenderedPrompt {
    /// Appends text to be tokenized as plain text.
    fn push_plain(&mut self, s: &str) {
        let start = self.text.len();
        self.text.push_str(s);
        if let Some(p) = self.plain.as_mut() {
            if !s.is_empty() {
                p.push(start..self.text.len());
            }
        }
    }
}

enum Kind {
    Builtin,
    Text,
    Jinja(Box<Environment<'static>>),
}

/// A chat template, ready to render.
pub struct ChatTemplate {
    kind: Kind,
    bos_token: String,
    eos_token: String,
    info: ChatFormatInfo,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("builtin", &self.is_builtin())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

fn template_error(e: minijinja::Error) -> Error {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    Error::Template(msg)
}

impl ChatTemplate {
    /// Uses `jinja` (the GGUF's `tokenizer.chat_template`) when given and not blank,
    /// else the BitNet b1.58 2B4T built-in template. A Jinja syntax error is
    /// [`Error::Template`].
    pub fn new(jinja: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self> {
        match jinja {
            Some(src) if !src.trim().is_empty() => {
                Self::jinja(src, bos_token, eos_token, "jinja", "given as Jinja source")
            }
            _ => Ok(Self::builtin(bos_token, eos_token, "no template given")),
        }
    }

    /// The template for a model whose file holds `file_template`, as `choice` asks.
    /// `has_turn_token`: whether the vocabulary has the 2B4T format's `<|eot_id|>`.
    /// `auto` on a file without a template gives the 2B4T format when it does, and else
    /// the plain-text format: a vocabulary without turn markers is a base model's.
    pub fn choose(
        file_template: Option<&str>,
        choice: &ChatFormat,
        bos_token: &str,
        eos_token: &str,
        has_turn_token: bool,
    ) -> Result<Self> {
        let file_template = file_template.filter(|t| !t.trim().is_empty());
        match (choice, file_template) {
            (ChatFormat::Bitnet, _) => {
                Ok(Self::builtin(bos_token, eos_token, "chosen by the caller"))
            }
            (ChatFormat::Text, _) => Ok(Self::text(bos_token, eos_token, "chosen by the caller")),
            (ChatFormat::Auto, None) if !has_turn_token => Ok(Self::text(
                bos_token,
                eos_token,
                "the file has no chat template and its vocabulary no <|eot_id|>: a base \
                 model, so each message is continued as plain text",
            )),
            (ChatFormat::Jinja(src), _) => Self::jinja(
                src,
                bos_token,
                eos_token,
                "jinja",
                "a template given by the caller",
            ),
            (ChatFormat::Gguf, Some(src)) => Self::jinja(
                src,
                bos_token,
                eos_token,
                "gguf",
                "the file's tokenizer.chat_template, as written (chosen by the caller)",
            ),
            (ChatFormat::Gguf, None) => Err(Error::InvalidArgument(
                "chat format 'gguf': the file has no tokenizer.chat_template".into(),
            )),
            (ChatFormat::Auto, None) => Ok(Self::builtin(
                bos_token,
                eos_token,
                "the file has no chat template",
            )),
            (ChatFormat::Auto, Some(src)) if is_converter_template(src) => Ok(Self::builtin(
                bos_token,
                eos_token,
                "the file's template is bitnet.cpp's converter template ('Human: … \
                 BITNETAssistant: ' + end-of-text), which drops system messages and ends \
                 every prompt with the end-of-text token; the model was trained on the \
                 2B4T format",
            )),
            (ChatFormat::Auto, Some(src)) => Self::jinja(
                src,
                bos_token,
                eos_token,
                "gguf",
                "the file's tokenizer.chat_template",
            ),
        }
    }

    fn builtin(bos_token: &str, eos_token: &str, reason: &str) -> Self {
        ChatTemplate {
            kind: Kind::Builtin,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            info: ChatFormatInfo {
                format: "bitnet-2b4t".into(),
                reason: reason.into(),
            },
        }
    }

    fn text(bos_token: &str, eos_token: &str, reason: &str) -> Self {
        ChatTemplate {
            kind: Kind::Text,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            info: ChatFormatInfo {
                format: "text".into(),
                reason: reason.into(),
            },
        }
    }

    fn jinja(
        src: &str,
        bos_token: &str,
        eos_token: &str,
        format: &str,
        reason: &str,
    ) -> Result<Self> {
        Ok(ChatTemplate {
            kind: Kind::Jinja(Box::new(Self::environment(src)?)),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            info: ChatFormatInfo {
                format: format.into(),
                reason: reason.into(),
            },
        })
    }

    /// Which format this is and why it was chosen.
    pub fn info(&self) -> &ChatFormatInfo {
        &self.info
    }

    fn environment(src: &str) -> Result<Environment<'static>> {
        if let Some(line) = expression_size::oversized_tag(src) {
            return Err(Error::Template(format!(
                "a tag on line {line} holds more than {} operators; evaluating it could \
                 overflow the stack",
                expression_size::MAX_TAG_OPERATORS
            )));
        }
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        // Hugging Face renders chat templates with these jinja2 settings.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        // SystemTime::now() panics on wasm32-unknown-unknown; templates test
        // `strftime_now is defined` and fall back to a fixed date there.
        #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
        env.add_function("strftime_now", |fmt: String| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            strftime_utc(&fmt, secs)
        });
        env.add_template_owned(TEMPLATE_NAME, src.to_string())
            .map_err(template_error)?;
        Ok(env)
    }

    /// Whether this is the built-in BitNet 2B4T template (no usable Jinja given).
    pub fn is_builtin(&self) -> bool {
        matches!(self.kind, Kind::Builtin)
    }

    /// The prompt text for `messages`, followed by the assistant's generation prompt
    /// when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        Ok(self.render_prompt(messages, add_generation_prompt)?.text)
    }

    /// [`render`](Self::render), with the ranges of the message contents.
    pub fn render_prompt(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<RenderedPrompt> {
        match &self.kind {
            Kind::Builtin | Kind::Text => {
                Ok(self.render_turns(true, messages, add_generation_prompt))
            }
            Kind::Jinja(env) => {
                let plain = self.render_jinja(env, messages, add_generation_prompt)?;
                let Some(marks) = content_marks(messages) else {
                    return Ok(RenderedPrompt {
                        text: plain,
                        plain: None,
                    });
                };
                let marked: Vec<ChatMessage> = messages
                    .iter()
                    .map(|m| ChatMessage::new(m.role.clone(), marks.wrap(&m.content)))
                    .collect();
                let ranges = self
                    .render_jinja(env, &marked, add_generation_prompt)
                    .ok()
                    .and_then(|t| marks.strip(&t))
                    .filter(|(text, _)| *text == plain)
                    .map(|(_, ranges)| ranges);
                Ok(RenderedPrompt {
                    text: plain,
                    plain: ranges,
                })
            }
        }
    }

    fn render_jinja(
        &self,
        env: &Environment<'static>,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        let mut out = LimitedOutput::default();
        let rendered = tmpl.render_captured_to(
            minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                tools => Value::from(()),
                documents => Value::from(()),
            },
            &mut out,
        );
        match rendered {
            Ok(_) => String::from_utf8(out.bytes)
                .map_err(|_| Error::Template("the chat template wrote invalid UTF-8".into())),
            Err(_) if out.overflowed => Err(Error::Template(format!(
                "the chat template's output passed the limit of {TEMPLATE_OUTPUT_LIMIT} bytes"
            ))),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(Error::Template(format!(
                "the chat template ran past its budget of {TEMPLATE_FUEL} instructions \
                 (a runaway loop?)"
            ))),
            Err(e) => Err(template_error(e)),
        }
    }

    /// `messages` in a built-in format (BOS first when `with_bos`): every message renders
    /// on its own, so a continuation is the rendering of the new messages alone.
    fn render_turns(
        &self,
        with_bos: bool,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> RenderedPrompt {
        let mut out = RenderedPrompt {
            text: if with_bos {
                self.bos_token.clone()
            } else {
                String::new()
            },
            plain: Some(Vec::new()),
        };
        match self.kind {
            Kind::Text => self.text_turns(messages, &mut out),
            _ => Self::builtin_turns(messages, add_generation_prompt, &mut out),
        }
        out
    }

    fn builtin_turns(
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        out: &mut RenderedPrompt,
    ) {
        for m in messages {
            out.push_plain(&capitalize(&m.role));
            out.text.push_str(": ");
            out.push_plain(m.content.trim());
            out.text.push_str(BUILTIN_EOT);
        }
        if add_generation_prompt {
            out.text.push_str(BUILTIN_GEN_PROMPT);
        }
    }

    /// The plain-text format: a user message's text (trailing whitespace cut, so that
    /// the reply's first token brings its own space), then the reply as written and the
    /// end-of-text token that closes each exchange. System messages are left out: a
    /// base model follows no instructions, and would take them as the start of the text.
    fn text_turns(&self, messages: &[ChatMessage], out: &mut RenderedPrompt) {
        for m in messages {
            let content = match m.role.as_str() {
                "system" => continue,
                "assistant" => m.content.as_str(),
                _ => m.content.trim_end(),
            };
            out.push_plain(content);
            if m.role == "assistant" {
                out.text.push_str(&self.eos_token);
            }
        }
    }

    /// The text to append to a KV cache that holds `history`, to continue with `new`
    /// (then the generation prompt when `add_generation_prompt`).
    ///
    /// `history` normally ends with an assistant reply that was generated, so that the
    /// cache holds `render(history[..k], true)`, the reply's tokens and its end-of-turn
    /// token (`<|eot_id|>`). The result is `render(history ++ new) - render(history)`:
    /// for the built-in template e.g. `"User: ...<|eot_id|>Assistant:"`. With an empty
    /// history it is the full rendering (with BOS).
    ///
    /// For a Jinja template whose rendering of `history` is not a prefix of the
    /// rendering of `history ++ new`, this fails with [`Error::Template`]; the caller
    /// should then re-render and re-prefill the whole conversation.
    pub fn render_continuation(
        &self,
        history: &[ChatMessage],
        new: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        Ok(self
            .render_continuation_prompt(history, new, add_generation_prompt)?
            .text)
    }

    /// [`render_continuation`](Self::render_continuation), with the ranges of the
    /// message contents in the continuation.
    pub fn render_continuation_prompt(
        &self,
        history: &[ChatMessage],
        new: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<RenderedPrompt> {
        match &self.kind {
            Kind::Builtin | Kind::Text => {
                Ok(self.render_turns(history.is_empty(), new, add_generation_prompt))
            }
            Kind::Jinja(_) => {
                let mut all = Vec::with_capacity(history.len() + new.len());
                all.extend_from_slice(history);
                all.extend_from_slice(new);
                let full = self.render_prompt(&all, add_generation_prompt)?;
                if history.is_empty() {
                    return Ok(full);
                }
                let prefix = self.render(history, false)?;
                match full.text.strip_prefix(prefix.as_str()) {
                    Some(rest) => {
                        let cut = prefix.len();
                        Ok(RenderedPrompt {
                            text: rest.to_string(),
                            plain: full.plain.map(|ranges| {
                                ranges
                                    .into_iter()
                                    .filter(|r| r.end > cut)
                                    .map(|r| r.start.max(cut) - cut..r.end - cut)
                                    .collect()
                            }),
                        })
                    }
                    None => Err(Error::Template(
                        "the chat template is not prefix-stable for this conversation \
                         (rendering the history is not a prefix of rendering the whole \
                         conversation); re-render and re-prefill the full prompt"
                            .to_string(),
                    )),
                }
            }
        }
    }
}

/// A rendering's output, refused past [`TEMPLATE_OUTPUT_LIMIT`] bytes.
#[derive(Default)]
struct LimitedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for LimitedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + b.len() > TEMPLATE_OUTPUT_LIMIT {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.bytes.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn is_converter_template(src: &str) -> bool {
    CONVERTER_TEMPLATE_MARKS.iter().any(|m| src.contains(m))
}

/// Two characters that no message holds, put around each message's content (inside its
/// leading and trailing whitespace, so that `trim` still trims) to find the contents in
/// the rendered text.
struct ContentMarks {
    open: char,
    close: char,
}

fn content_marks(messages: &[ChatMessage]) -> Option<ContentMarks> {
    // Private-use characters: no template has a reason to produce them.
    const FIRST: u32 = 0xE000;
    let mut used = vec![false; 0x1900];
    for c in messages
        .iter()
        .flat_map(|m| m.content.chars().chain(m.role.chars()))
    {
        if let Some(u) = (c as u32)
            .checked_sub(FIRST)
            .and_then(|i| used.get_mut(i as usize))
        {
            *u = true;
        }
    }
    let mut free = (0..used.len())
        .filter(|&i| !used[i])
        .filter_map(|i| char::from_u32(FIRST + i as u32));
    Some(ContentMarks {
        open: free.next()?,
        close: free.next()?,
    })
}

impl ContentMarks {
    fn wrap(&self, content: &str) -> String {
        let core = content.trim();
        if core.is_empty() {
            return content.to_string();
        }
        let lead = &content[..content.len() - content.trim_start().len()];
        let trail = &content[content.trim_end().len()..];
        format!("{lead}{}{core}{}{trail}", self.open, self.close)
    }

    /// The text without the marks and the ranges they enclosed; `None` when the marks
    /// do not pair up (the template cut or reordered a content).
    fn strip(&self, marked: &str) -> Option<(String, Vec<Range<usize>>)> {
        let mut text = String::with_capacity(marked.len());
        let mut ranges = Vec::new();
        let mut open_at = None;
        for c in marked.chars() {
            if c == self.open {
                if open_at.is_some() {
                    return None;
                }
                open_at = Some(text.len());
            } else if c == self.close {
                ranges.push(open_at.take()?..text.len());
            } else {
                text.push(c);
            }
        }
        open_at.is_none().then_some((text, ranges))
    }
}

/// Jinja's `capitalize`: first character upper case, the rest lower case.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// `strftime` of a UTC time, for the templates' `strftime_now` (chrono's specifiers, a
/// superset of the C ones templates use); one it does not know is a template error.
#[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), allow(dead_code))]
fn strftime_utc(fmt: &str, unix_secs: i64) -> std::result::Result<String, minijinja::Error> {
    use std::fmt::Write;
    let bad = || {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now cannot format {fmt:?}"),
        )
    };
    let time = chrono::DateTime::from_timestamp(unix_secs, 0).ok_or_else(bad)?;
    let mut out = String::new();
    write!(out, "{}", time.format(fmt)).map_err(|_| bad())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
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
        let t =
            ChatTemplate::choose(Some(LLAMA3_TEMPLATE), &ChatFormat::Auto, BOS, EOS, true).unwrap();
        assert_eq!(t.info().format, "gguf");
        let t = ChatTemplate::choose(None, &ChatFormat::Auto, BOS, EOS, true).unwrap();
        assert_eq!(t.info().format, "bitnet-2b4t");
        assert!(ChatTemplate::choose(None, &ChatFormat::Gguf, BOS, EOS, true).is_err());
        let t = ChatTemplate::choose(Some(LLAMA3_TEMPLATE), &ChatFormat::Bitnet, BOS, EOS, true)
            .unwrap();
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
            Some(
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            ),
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
}
