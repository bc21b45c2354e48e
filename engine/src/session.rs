//! Sessions: a loaded model plus a KV cache that persists across requests.
//!
//! Every request is turned into the full token sequence it needs; the longest
//! prefix already in the KV cache is kept and only the rest is prefilled (in
//! chunks, so a long prompt can be aborted). Multi-turn chat therefore re-reads
//! nothing, and regenerate / edit-and-resend rewind to the first changed token.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::model::{Backend, HeadMode, Logits, Model};
use crate::sampler::{LoopGuard, Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer, VocabSpec};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use web_time::Instant;

/// A model with its tokenizer and chat template, ready to make sessions from.
pub struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
}

impl LoadedModel {
    pub fn from_gguf(file: GgufFile) -> Result<LoadedModel> {
        LoadedModel::from_gguf_with(file, HeadMode::File)
    }

    pub fn from_gguf_with(mut file: GgufFile, head: HeadMode) -> Result<LoadedModel> {
        let spec = VocabSpec::from_metadata(&file.metadata)?;
        let tokenizer = Tokenizer::from_spec(&spec)?;
        let token_text = |id: Option<u32>| {
            id.map(|i| String::from_utf8_lossy(tokenizer.token_bytes(i)).into_owned())
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(
            spec.chat_template.as_deref(),
            &token_text(tokenizer.bos()),
            &token_text(tokenizer.eos()),
        )?;
        let mut model = Model::from_gguf(&mut file)?;
        model.set_head(head);
        if tokenizer.n_vocab() > model.config.n_vocab {
            return Err(Error::Model(format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.n_vocab(),
                model.config.n_vocab
            )));
        }
        Ok(LoadedModel {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template: Arc::new(template),
        })
    }

    pub fn from_path(path: impl AsRef<std::path::Path>) -> Result<LoadedModel> {
        LoadedModel::from_gguf(GgufFile::from_path(path)?)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation ends when the text contains one of these (the stop string itself is not returned).
    pub stop: Vec<String>,
    /// `None` disables loop detection.
    pub loop_guard: Option<LoopGuard>,
    /// Tokens per prefill batch; abort is checked between batches.
    pub prefill_chunk: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 512,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            loop_guard: Some(LoopGuard::default()),
            prefill_chunk: 128,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-turn / end-of-text token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The KV cache is full.
    ContextFull,
    /// The loop guard saw the output repeating itself.
    Loop,
    Aborted,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the request (reused + prefilled).
    pub prompt_tokens: usize,
    /// Of those, how many were already in the KV cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// From the request to the first generated token.
    pub ttft_ms: f64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// Progress reported to the caller, who answers whether to go on.
pub enum Event<'a> {
    Prefill { done: usize, total: usize },
    Token { id: u32, text: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Abort,
}

pub struct Session {
    backend: Box<dyn Backend>,
    tokenizer: Arc<Tokenizer>,
    template: Arc<ChatTemplate>,
    /// Exactly the tokens whose keys and values are in the backend's cache.
    cached: Vec<u32>,
    /// The conversation as the cache holds it (chat requests only).
    history: Vec<ChatMessage>,
    /// A token the last generation produced but never fed (its end-of-turn token).
    unfed: Option<u32>,
}

impl Session {
    pub fn new(
        backend: Box<dyn Backend>,
        tokenizer: Arc<Tokenizer>,
        template: Arc<ChatTemplate>,
    ) -> Session {
        Session {
            backend,
            tokenizer,
            template,
            cached: Vec::new(),
            history: Vec::new(),
            unfed: None,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Replaces the backend (e.g. after a lost GPU) and rebuilds its cache from the token history.
    pub fn replace_backend(&mut self, backend: Box<dyn Backend>) -> Result<()> {
        self.backend = backend;
        let tokens = std::mem::take(&mut self.cached);
        if !tokens.is_empty() {
            self.backend.forward(&tokens, Logits::Last)?;
        }
        self.cached = tokens;
        Ok(())
    }

    /// Tokens currently in the KV cache.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.cached
    }

    pub fn reset(&mut self) {
        self.backend.truncate(0);
        self.cached.clear();
        self.history.clear();
        self.unfed = None;
    }

    /// Raw completion of `tokens` (used as given: add BOS yourself if wanted).
    pub fn complete_tokens(
        &mut self,
        tokens: &[u32],
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        self.history.clear();
        self.unfed = None;
        self.run(tokens.to_vec(), opts, on_event)
    }

    /// Raw completion of a text prompt (BOS added per the vocabulary, special tokens parsed).
    pub fn complete(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        let tokens = self
            .tokenizer
            .encode(prompt, self.tokenizer.add_bos_default(), true)?;
        self.complete_tokens(&tokens, opts, on_event)
    }

    /// One chat turn. `messages` is the whole conversation so far (OpenAI style);
    /// the reply is generated after it.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        let tokens = self.chat_tokens(messages)?;
        let completion = self.run(tokens, opts, on_event)?;
        self.history = messages.to_vec();
        self.history
            .push(ChatMessage::assistant(completion.text.clone()));
        Ok(completion)
    }

    /// The token sequence for a chat request: the cached conversation plus the
    /// rendered new messages when `messages` extends it, else the whole
    /// conversation rendered afresh (the cache then keeps the common prefix).
    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let extends = !self.history.is_empty()
            && messages.len() > self.history.len()
            && messages[..self.history.len()] == self.history[..];
        if extends {
            let new = &messages[self.history.len()..];
            if let Ok(text) = self.template.render_continuation(&self.history, new, true) {
                let mut tokens = self.cached.clone();
                // The reply's end-of-turn: sampled but not fed, or (after a length or
                // loop stop) never produced; either way the template expects it here.
                if let Some(eot) = self.unfed.or(self.tokenizer.eot()).or(self.tokenizer.eos()) {
                    tokens.push(eot)
                }
                tokens.extend(self.tokenizer.encode(&text, false, true)?);
                return Ok(tokens);
            }
        }
        let text = self.template.render(messages, true)?;
        self.tokenizer.encode(&text, false, true)
    }

    fn run(
        &mut self,
        tokens: Vec<u32>,
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        let start = Instant::now();
        self.unfed = None;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        let n_ctx = self.backend.n_ctx();
        if tokens.len() >= n_ctx {
            return Err(Error::ContextFull {
                needed: tokens.len() + 1,
                capacity: n_ctx,
            });
        }
        // Keep the cached prefix; at least the last prompt token is re-fed to get logits.
        let common = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        self.backend.truncate(common);
        self.cached.truncate(common);

        let todo = &tokens[common..];
        let chunk = opts.prefill_chunk.max(1);
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut next = Next::Top(Vec::new());
        let mut done = 0;
        for part in todo.chunks(chunk) {
            if on_event(Event::Prefill {
                done,
                total: todo.len(),
            }) == Flow::Abort
            {
                return Ok(self.finish(
                    String::new(),
                    Vec::new(),
                    FinishReason::Aborted,
                    tokens.len(),
                    common,
                    start,
                    None,
                    None,
                ));
            }
            next = self.step(part, &sampler)?;
            done += part.len();
        }
        let prefill_end = Instant::now();

        let stops = self.tokenizer.stop_tokens();
        let mut decoder = StreamDecoder::new();
        let mut text = String::new();
        let mut emitted = 0usize;
        let mut generated: Vec<u32> = Vec::new();
        let mut first_token_at = None;
        let max_stop = opts.stop.iter().map(String::len).max().unwrap_or(0);
        let mut stopped_by_string = false;
        let finish = loop {
            if generated.len() >= opts.max_tokens {
                break FinishReason::Length;
            }
            let id = match &next {
                Next::Logits(logits) => sampler.sample(logits, &self.cached),
                Next::Top(top) => sampler.sample_top(top, &self.cached),
            };
            first_token_at.get_or_insert_with(Instant::now);
            if stops.contains(&id) {
                self.unfed = Some(id);
                break FinishReason::Stop;
            }
            generated.push(id);
            text.push_str(&decoder.push(&self.tokenizer, id));
            // Stop strings: cut at the first match; hold back a tail that could still become one.
            let search_from = floor_char_boundary(&text, emitted.saturating_sub(max_stop));
            let hit = opts
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .filter_map(|s| {
                    text[search_from..]
                        .find(s.as_str())
                        .map(|p| search_from + p)
                })
                .min();
            let safe = match hit {
                Some(p) => p,
                None => text.len() - held_back(&text, &opts.stop),
            };
            if safe > emitted {
                let piece = text[emitted..safe].to_string();
                emitted = safe;
                if on_event(Event::Token { id, text: &piece }) == Flow::Abort {
                    self.feed(id)?;
                    text.truncate(emitted);
                    break FinishReason::Aborted;
                }
            }
            if let Some(p) = hit {
                text.truncate(p);
                stopped_by_string = true;
                self.feed(id)?;
                break FinishReason::Stop;
            }
            if opts.loop_guard.is_some_and(|g| g.is_looping(&generated)) {
                self.feed(id)?;
                break FinishReason::Loop;
            }
            if self.cached.len() >= n_ctx {
                break FinishReason::ContextFull;
            }
            next = self.step(&[id], &sampler)?;
        };
        if finish != FinishReason::Aborted && !stopped_by_string {
            text.push_str(&decoder.flush());
        }
        if text.len() > emitted && finish != FinishReason::Aborted {
            let piece = text[emitted..].to_string();
            on_event(Event::Token {
                id: *generated.last().unwrap_or(&0),
                text: &piece,
            });
        }
        Ok(self.finish(
            text,
            generated,
            finish,
            tokens.len(),
            common,
            start,
            Some(prefill_end),
            first_token_at,
        ))
    }

    fn feed(&mut self, id: u32) -> Result<Vec<f32>> {
        let logits = self.backend.forward(&[id], Logits::Last)?;
        self.cached.push(id);
        Ok(logits)
    }

    /// Runs `tokens` and returns what `sampler` needs to choose the next one: only the best
    /// few logits when that is enough (a GPU backend then reads back a few bytes), else all.
    fn step(&mut self, tokens: &[u32], sampler: &Sampler) -> Result<Next> {
        let mut history = self.cached.clone();
        history.extend_from_slice(tokens);
        let next = match sampler.candidates_needed(&history) {
            Some(k) if k < self.backend.n_vocab() => {
                Next::Top(self.backend.forward_top_k(tokens, k)?)
            }
            _ => Next::Logits(self.backend.forward(tokens, Logits::Last)?),
        };
        self.cached = history;
        Ok(next)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        text: String,
        tokens: Vec<u32>,
        finish_reason: FinishReason,
        prompt_tokens: usize,
        cached: usize,
        start: Instant,
        prefill_end: Option<Instant>,
        first_token: Option<Instant>,
    ) -> Completion {
        let now = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        let prefill_ms = prefill_end.map_or(0.0, |p| ms(start, p));
        let decode_ms = prefill_end.map_or(0.0, |p| ms(p, now));
        let prefilled = prompt_tokens - cached;
        // Decode speed counts forward passes after the first sampled token.
        let decoded = tokens.len().saturating_sub(1);
        Completion {
            usage: Usage {
                prompt_tokens,
                cached_tokens: cached,
                completion_tokens: tokens.len(),
                prefill_ms,
                decode_ms,
                ttft_ms: first_token.map_or(0.0, |f| ms(start, f)),
                prefill_tps: if prefill_ms > 0.0 {
                    prefilled as f64 * 1000.0 / prefill_ms
                } else {
                    0.0
                },
                decode_tps: if decode_ms > 0.0 && decoded > 0 {
                    decoded as f64 * 1000.0 / decode_ms
                } else {
                    0.0
                },
            },
            text,
            tokens,
            finish_reason,
        }
    }
}

/// Bytes at the end of `text` that are a proper prefix of some stop string.
/// The next token's distribution: all logits, or the sampler's best candidates.
enum Next {
    Logits(Vec<f32>),
    Top(Vec<(u32, f32)>),
}

fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .rev()
                .filter(move |&k| s.is_char_boundary(k))
                .map(move |k| &s[..k])
        })
        .filter(|p| text.ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
