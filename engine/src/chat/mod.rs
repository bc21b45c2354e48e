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

mod content_marks;
mod expression_size;
mod jinja;

use content_marks::content_marks;

use std::ops::Range;

use minijinja::Environment;
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
            kind: Kind::Jinja(Box::new(jinja::environment(src)?)),
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
                let plain = jinja::render(
                    env,
                    messages,
                    add_generation_prompt,
                    &self.bos_token,
                    &self.eos_token,
                )?;
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
                let ranges = jinja::render(
                    env,
                    &marked,
                    add_generation_prompt,
                    &self.bos_token,
                    &self.eos_token,
                )
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

fn is_converter_template(src: &str) -> bool {
    CONVERTER_TEMPLATE_MARKS.iter().any(|m| src.contains(m))
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

#[cfg(test)]
mod tests;
