/** The conversation: send, stream, stop, regenerate, edit-and-resend, new chat. */
import type { ChatMessage } from "bitnet-web";
import { renderConversation, scrollToEnd, startStreaming } from "./chat-view";
import { $ } from "./dom";
import { currentEngine, onEngineChange } from "./engine-state";
import { explain } from "./errors";
import { bytes } from "./format";
import { samplingOptions, settings } from "./settings";
import {
  getConversation,
  getPref,
  newConversation,
  saveConversation,
  setPref,
  type Conversation,
  type StoredMessage,
} from "./store";

const input = $<HTMLTextAreaElement>("composer-input");
const sendButton = $<HTMLButtonElement>("btn-send");
const stopButton = $<HTMLButtonElement>("btn-stop");

let conv: Conversation = newConversation();
let generating: AbortController | null = null;
const changeListeners: (() => void)[] = [];

export function activeConversationId(): string {
  return conv.id;
}

export function isGenerating(): boolean {
  return generating !== null;
}

export function onConversationChange(l: () => void) {
  changeListeners.push(l);
}

const actions = {
  edit: (id: string, text: string) => void editAndResend(id, text),
  regenerate: () => void regenerate(),
};

function redraw() {
  renderConversation(conv, actions, generating === null && currentEngine() !== null);
}

async function persist(c = conv) {
  c.updatedAt = Date.now();
  const firstUser = c.messages.find((m) => m.role === "user");
  if (firstUser) c.title = firstUser.content.replace(/\s+/g, " ").trim().slice(0, 60) || "New chat";
  await saveConversation(structuredClone(c));
  for (const l of changeListeners) l();
}

function syncControls() {
  const ready = currentEngine() !== null;
  const busy = generating !== null;
  input.disabled = !ready;
  input.placeholder = ready ? "Type a message" : "Load a model to start chatting";
  sendButton.disabled = !ready || busy;
  sendButton.hidden = busy;
  stopButton.hidden = !busy;
}

async function showEngineStats() {
  const engine = currentEngine();
  const line = $("engine-stats");
  if (!engine) {
    line.textContent = "";
    return;
  }
  try {
    const s = await engine.stats();
    line.textContent =
      `Memory ${bytes(s.wasmMemoryBytes)} (weights ${bytes(engine.info.weightsBytes)}, ` +
      `KV cache ${bytes(engine.info.kvCacheBytes)}) · context ${s.cachedTokens} of ${engine.info.nCtx} tokens`;
  } catch {
    /* the engine was unloaded meanwhile */
  }
}

function history(): ChatMessage[] {
  const system = settings().system.trim();
  return [
    ...(system ? [{ role: "system" as const, content: system }] : []),
    ...conv.messages.filter((m) => !m.error || m.content).map(({ role, content }) => ({ role, content })),
  ];
}

/** Streams the assistant's reply to the conversation as it stands (ending with a user turn). */
async function generate() {
  const engine = currentEngine();
  if (!engine || generating) return;
  const ctl = new AbortController();
  generating = ctl;
  // The reply belongs to this conversation even if another is opened meanwhile.
  const target = conv;
  syncControls();
  redraw();
  const view = startStreaming();
  const reply: StoredMessage = { id: crypto.randomUUID(), role: "assistant", content: "" };
  const live = $("engine-stats");
  const started = performance.now();
  let pieces = 0;
  live.textContent = "Reading the prompt…";
  try {
    const stream = await engine.chat.completions.create({
      messages: history(),
      stream: true,
      signal: ctl.signal,
      ...samplingOptions(),
    });
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice.delta.content) {
        reply.content += choice.delta.content;
        pieces++;
        view.update(reply.content);
        const s = (performance.now() - started) / 1000;
        live.textContent = `Generating… ${pieces} tokens · ${(pieces / s).toFixed(1)} tok/s`;
      }
      if (choice.finish_reason) reply.finish = choice.finish_reason;
      if (chunk.usage) reply.usage = chunk.usage;
    }
  } catch (e) {
    const x = explain(e);
    reply.error = `${x.title}. ${x.advice}`;
  } finally {
    view.finish();
    generating = null;
    target.messages.push(reply);
    await persist(target);
    syncControls();
    redraw();
    scrollToEnd();
    void showEngineStats();
  }
}

export async function send(text: string) {
  const content = text.trim();
  if (!content || generating || !currentEngine()) return;
  conv.messages.push({ id: crypto.randomUUID(), role: "user", content });
  input.value = "";
  autosize();
  await persist();
  await setPref("activeConversation", conv.id);
  await generate();
}

export function stop() {
  generating?.abort();
}

export async function regenerate() {
  if (generating || !currentEngine()) return;
  if (conv.messages.at(-1)?.role === "assistant") conv.messages.pop();
  if (conv.messages.at(-1)?.role !== "user") return;
  await generate();
}

export async function editAndResend(id: string, text: string) {
  const i = conv.messages.findIndex((m) => m.id === id);
  if (i < 0 || generating || !text.trim()) return;
  conv.messages = conv.messages.slice(0, i + 1);
  conv.messages[i] = { ...conv.messages[i], content: text.trim() };
  await persist();
  if (currentEngine()) await generate();
  else redraw();
}

export async function openConversation(c: Conversation) {
  stop();
  conv = c;
  await setPref("activeConversation", c.id);
  redraw();
  scrollToEnd();
  for (const l of changeListeners) l();
}

export async function newChat() {
  if (generating) return;
  await openConversation(newConversation());
  input.focus();
}

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

export async function initChat() {
  const id = await getPref<string>("activeConversation");
  const saved = id ? await getConversation(id) : undefined;
  if (saved) conv = saved;
  redraw();
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    void send(input.value);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void send(input.value);
    }
  });
  input.addEventListener("input", autosize);
  stopButton.addEventListener("click", stop);
  onEngineChange((engine) => {
    if (!engine) stop();
    syncControls();
    redraw();
    void showEngineStats();
  });
  syncControls();
}
