//! Sessions: a loaded model plus a KV cache that persists across requests.
//!
//! Every request is turned into the full token sequence it needs; the longest
//! prefix already in the KV cache is kept and only the rest is prefilled (in
//! chunks, so a long prompt can be aborted). Multi-turn chat therefore re-reads
//! nothing, and regenerate / edit-and-resend rewind to the first changed token.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};
use crate::model::{Backend, Logits};
mod loaded;
mod options;
mod stop_strings;
pub use loaded::{chat_parts, chat_prompt_ids, LoadSettings, LoadedModel};
use loaded::{check_roles, encode_rendered};
pub use options::GenerateOptions;
use stop_strings::StopStrings;

use crate::sampler::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use web_time::Instant;

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
    /// Every token of the request's prompt, as fed to the model (the cached ones too).
    #[serde(default)]
    pub prompt_ids: Vec<u32>,
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

/// What one [`Session::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A prefill chunk ran: `done` of `total` new prompt tokens are in the cache.
    Prefill { done: usize, total: usize },
    /// A token was sampled; `text` is what it adds to the reply (may be empty while a
    /// character or a possible stop string is incomplete).
    Token { id: u32, text: String },
    /// The generation is over; `text` is a last piece of the reply not streamed yet.
    Done {
        text: String,
        completion: Completion,
    },
}

/// A generation in progress, run by [`Session::step`] until it returns [`Step::Done`].
pub struct Generation {
    tokens: Vec<u32>,
    /// Prompt tokens already in the cache when the request came.
    common: usize,
    /// Prompt tokens in the cache now.
    prefilled: usize,
    opts: GenerateOptions,
    /// The conversation of a chat turn, to become the session's history when it ends.
    messages: Option<Vec<ChatMessage>>,
    start: Instant,
    prefill_end: Option<Instant>,
    first_token_at: Option<Instant>,
    /// What the sampler chooses the next token from.
    next: Next,
    sampler: Sampler,
    decoder: StreamDecoder,
    text: String,
    /// Bytes of `text` already streamed.
    emitted: usize,
    stops: StopStrings,
    generated: Vec<u32>,
    /// Sampled and streamed, but not fed to the model yet.
    pending: Option<u32>,
    /// Decided while streaming a token; reported by the next step.
    finish: Option<FinishReason>,
}

impl Generation {
    /// `(done, total)` new prompt tokens while the prompt is still being prefilled.
    pub fn prefilling(&self) -> Option<(usize, usize)> {
        (self.prefilled < self.tokens.len()).then(|| {
            (
                self.prefilled - self.common,
                self.tokens.len() - self.common,
            )
        })
    }
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

    /// Decode tokens/s of this session's backend after a short warm-up (see
    /// [`crate::bench::decode_rate`]); the session starts over afterwards.
    pub async fn decode_rate(&mut self, steps: usize) -> Result<f64> {
        let rate = crate::bench::decode_rate(self.backend.as_mut(), steps).await;
        self.reset();
        rate
    }

    /// See [`Backend::set_threads`].
    pub fn set_threads(&mut self, n: usize) -> bool {
        self.backend.set_threads(n)
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
        let g = self.begin_tokens(tokens.to_vec(), opts)?;
        self.drive(g, on_event)
    }

    /// Raw completion of a text prompt (BOS added per the vocabulary, special tokens parsed).
    pub fn complete(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        let g = self.begin_complete(prompt, opts)?;
        self.drive(g, on_event)
    }

    /// One chat turn. `messages` is the whole conversation so far (OpenAI style);
    /// the reply is generated after it.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        let g = self.begin_chat(messages, opts)?;
        self.drive(g, on_event)
    }

    /// Starts a raw completion of a text prompt, to be run with [`step`](Self::step).
    pub fn begin_complete(&mut self, prompt: &str, opts: &GenerateOptions) -> Result<Generation> {
        let tokens = self
            .tokenizer
            .encode(prompt, self.tokenizer.add_bos_default(), true)?;
        self.begin_tokens(tokens, opts)
    }

    /// Starts a raw completion of `tokens`, to be run with [`step`](Self::step).
    pub fn begin_tokens(&mut self, tokens: Vec<u32>, opts: &GenerateOptions) -> Result<Generation> {
        self.history.clear();
        self.unfed = None;
        self.begin(tokens, opts, None)
    }

    /// Starts a chat turn, to be run with [`step`](Self::step).
    pub fn begin_chat(
        &mut self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
    ) -> Result<Generation> {
        let tokens = self.chat_tokens(messages)?;
        self.begin(tokens, opts, Some(messages.to_vec()))
    }

    /// The token sequence for a chat request: the cached conversation plus the
    /// rendered new messages when `messages` extends it, else the whole
    /// conversation rendered afresh (the cache then keeps the common prefix).
    fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let extends = !self.history.is_empty()
            && messages.len() > self.history.len()
            && messages[..self.history.len()] == self.history[..];
        check_roles(&self.tokenizer, messages)?;
        if extends {
            let new = &messages[self.history.len()..];
            if let Ok(r) = self
                .template
                .render_continuation_prompt(&self.history, new, true)
            {
                let mut tokens = self.cached.clone();
                // The reply's end-of-turn: sampled but not fed, or (after a length or
                // loop stop) never produced; either way the template expects it here.
                if let Some(eot) = self.unfed.or(self.tokenizer.eot()).or(self.tokenizer.eos()) {
                    tokens.push(eot)
                }
                tokens.extend(encode_rendered(&self.tokenizer, &r, new)?);
                return Ok(tokens);
            }
        }
        // Roles are checked above; render and tokenize the whole conversation.
        let rendered = self.template.render_prompt(messages, true)?;
        encode_rendered(&self.tokenizer, &rendered, messages)
    }

    /// The callback-driven loop over [`step`](Self::step).
    fn drive(
        &mut self,
        mut g: Generation,
        on_event: &mut dyn FnMut(Event) -> Flow,
    ) -> Result<Completion> {
        loop {
            if let Some((done, total)) = g.prefilling() {
                if on_event(Event::Prefill { done, total }) == Flow::Abort {
                    return Ok(self.abort(g));
                }
            }
            match self.step(&mut g)? {
                Step::Prefill { .. } => {}
                Step::Token { id, text } => {
                    if !text.is_empty() && on_event(Event::Token { id, text: &text }) == Flow::Abort
                    {
                        return Ok(self.abort(g));
                    }
                }
                Step::Done { text, completion } => {
                    if !text.is_empty() {
                        let id = *completion.tokens.last().unwrap_or(&0);
                        on_event(Event::Token { id, text: &text });
                    }
                    return Ok(completion);
                }
            }
        }
    }

    fn begin(
        &mut self,
        tokens: Vec<u32>,
        opts: &GenerateOptions,
        messages: Option<Vec<ChatMessage>>,
    ) -> Result<Generation> {
        opts.validate()?;
        let start = Instant::now();
        self.unfed = None;
        // Until the turn completes the cache runs ahead of the history, so the next
        // request must re-render (the cached prefix is still reused).
        self.history.clear();
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
        Ok(Generation {
            prefilled: common,
            common,
            tokens,
            stops: StopStrings::new(&opts.stop),
            sampler: Sampler::new(opts.sampler.clone()),
            opts: opts.clone(),
            messages,
            start,
            prefill_end: None,
            first_token_at: None,
            next: Next::Top(Vec::new()),
            decoder: StreamDecoder::new(),
            text: String::new(),
            emitted: 0,
            generated: Vec::new(),
            pending: None,
            finish: None,
        })
    }

    /// Does the next piece of work of `g`: one prefill chunk, or one sampled token.
    /// Long work is cut into steps so that a caller without threads (a web worker)
    /// can look at its messages, and abort, between them.
    pub fn step(&mut self, g: &mut Generation) -> Result<Step> {
        block_on(self.step_async(g))
    }

    /// [`step`](Self::step) for backends that cannot block (WebGPU in a page). After an
    /// error (say, a lost GPU) nothing of `g` is lost: replace the backend and step again.
    pub async fn step_async(&mut self, g: &mut Generation) -> Result<Step> {
        if g.prefilled < g.tokens.len() {
            let end = (g.prefilled + g.opts.prefill_chunk.max(1)).min(g.tokens.len());
            g.next = self
                .advance(&g.tokens[g.prefilled..end], &g.sampler)
                .await?;
            g.prefilled = end;
            if end == g.tokens.len() {
                g.prefill_end = Some(Instant::now());
            }
            return Ok(Step::Prefill {
                done: end - g.common,
                total: g.tokens.len() - g.common,
            });
        }
        if let Some(reason) = g.finish {
            return self.complete_generation(g, reason).await;
        }
        if let Some(id) = g.pending {
            if self.cached.len() >= self.backend.n_ctx() {
                return self.complete_generation(g, FinishReason::ContextFull).await;
            }
            g.next = self.advance(&[id], &g.sampler).await?;
            g.pending = None;
        }
        if g.generated.len() >= g.opts.max_tokens {
            return self.complete_generation(g, FinishReason::Length).await;
        }
        let id = match &g.next {
            Next::Logits(logits) => g.sampler.sample(logits, &self.cached),
            Next::Top(top) => g.sampler.sample_top(top, &self.cached),
        };
        g.first_token_at.get_or_insert_with(Instant::now);
        if self.tokenizer.stop_tokens().contains(&id) {
            self.unfed = Some(id);
            return self.complete_generation(g, FinishReason::Stop).await;
        }
        g.generated.push(id);
        g.pending = Some(id);
        g.text.push_str(&g.decoder.push(&self.tokenizer, id));
        let (safe, stopped) = g.stops.scan(&g.text, g.emitted);
        let mut piece = String::new();
        if safe > g.emitted {
            piece = g.text[g.emitted..safe].to_string();
            g.emitted = safe;
        }
        if stopped {
            g.text.truncate(safe);
            g.finish = Some(FinishReason::Stop);
        } else if g
            .opts
            .loop_guard
            .is_some_and(|l| l.is_looping(&g.generated))
        {
            g.finish = Some(FinishReason::Loop);
        }
        Ok(Step::Token { id, text: piece })
    }

    /// Ends `g` early. The text streamed so far is the reply; the cache keeps every
    /// token already fed.
    pub fn abort(&mut self, mut g: Generation) -> Completion {
        g.text.truncate(g.emitted);
        let prefill_end = g.prefill_end;
        self.completion(&mut g, FinishReason::Aborted, prefill_end)
    }

    async fn complete_generation(
        &mut self,
        g: &mut Generation,
        reason: FinishReason,
    ) -> Result<Step> {
        // A stop string cut the reply: the cache holds tokens of text the caller never
        // saw, so the next request renders the visible conversation afresh (and keeps
        // only the cached prefix that it shares).
        let cut_by_stop_string = g.finish == Some(FinishReason::Stop);
        // Otherwise the last sampled token goes into the cache so the reply is all there
        // for the next turn (a context-full stop cannot take it).
        if reason != FinishReason::ContextFull && !cut_by_stop_string {
            if let Some(id) = g.pending {
                self.backend.forward_async(&[id], Logits::Last).await?;
                self.cached.push(id);
                g.pending = None;
            }
        }
        // Unless a stop string cut the text, the decoder may hold a last piece.
        if g.finish != Some(FinishReason::Stop) {
            g.text.push_str(&g.decoder.flush());
        }
        let text = g.text[g.emitted.min(g.text.len())..].to_string();
        g.emitted = g.text.len();
        let prefill_end = g.prefill_end;
        let completion = self.completion(g, reason, prefill_end);
        if let Some(mut messages) = g.messages.take() {
            if !cut_by_stop_string {
                messages.push(ChatMessage::assistant(completion.text.clone()));
                self.history = messages;
            }
        }
        Ok(Step::Done { text, completion })
    }

    fn completion(
        &mut self,
        g: &mut Generation,
        reason: FinishReason,
        prefill_end: Option<Instant>,
    ) -> Completion {
        self.finish(
            std::mem::take(&mut g.text),
            std::mem::take(&mut g.generated),
            reason,
            g.tokens.clone(),
            g.common,
            g.start,
            prefill_end,
            g.first_token_at,
        )
    }

    /// Runs `tokens` and returns what `sampler` needs to choose the next one: only the best
    /// few logits when that is enough (a GPU backend then reads back a few bytes), else all.
    async fn advance(&mut self, tokens: &[u32], sampler: &Sampler) -> Result<Next> {
        let mut history = self.cached.clone();
        history.extend_from_slice(tokens);
        let next = match sampler.candidates_needed(&history) {
            Some(k) if k < self.backend.n_vocab() => {
                Next::Top(self.backend.forward_top_k_async(tokens, k).await?)
            }
            _ => Next::Logits(self.backend.forward_async(tokens, Logits::Last).await?),
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
        prompt_ids: Vec<u32>,
        cached: usize,
        start: Instant,
        prefill_end: Option<Instant>,
        first_token: Option<Instant>,
    ) -> Completion {
        let now = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        let prefill_ms = prefill_end.map_or(0.0, |p| ms(start, p));
        let decode_ms = prefill_end.map_or(0.0, |p| ms(p, now));
        let prompt_tokens = prompt_ids.len();
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
            prompt_ids,
            finish_reason,
        }
    }
}

/// Runs a future to completion on this thread. Natively it may block (a GPU readback);
/// on wasm32 nothing may block, so only futures that are ready at once (every CPU
/// backend's) can be run this way; the others go through `step_async`.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(f)
}

#[cfg(target_arch = "wasm32")]
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => Err(Error::InvalidArgument(
            "this backend is asynchronous: drive it with step_async".into(),
        )),
    }
}

/// The next token's distribution: all logits, or the sampler's best candidates.
enum Next {
    Logits(Vec<f32>),
    Top(Vec<(u32, f32)>),
}
