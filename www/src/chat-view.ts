/** Draws a conversation's messages; every assistant text goes through `renderMarkdown`. */
import type { FinishReason, Usage } from "bitnet-web";
import { $, h } from "./dom";
import { renderMarkdown } from "./markdown";
import type { Conversation, StoredMessage } from "./store";

export interface MessageActions {
  edit(id: string, text: string): void;
  regenerate(): void;
}

const list = $("messages");

const FINISH_NOTES: Partial<Record<FinishReason, string>> = {
  abort: "stopped",
  length: "max tokens reached",
  context_full: "context full — start a new chat",
  loop: "stopped: the reply kept repeating itself",
};

export function usageLine(usage: Usage | undefined, finish: FinishReason | undefined): string {
  const parts: string[] = [];
  if (usage) {
    parts.push(`${usage.completion_tokens} tokens`);
    if (usage.decode_tokens_per_s > 0) parts.push(`${usage.decode_tokens_per_s.toFixed(1)} tok/s`);
    if (usage.prefill_tokens_per_s > 0) parts.push(`prompt ${usage.prefill_tokens_per_s.toFixed(0)} tok/s`);
    parts.push(`first token ${Math.round(usage.time_to_first_token_ms)} ms`);
  }
  const note = finish && FINISH_NOTES[finish];
  if (note) parts.push(note);
  return parts.join(" · ");
}

/** Sets an assistant body's HTML from untrusted model text, then adds code-block toolbars. */
export function renderAssistantBody(body: HTMLElement, text: string, final: boolean) {
  body.innerHTML = renderMarkdown(text);
  if (!final) return;
  for (const pre of body.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const lang = code?.className.match(/language-([\w+#-]+)/)?.[1] ?? "code";
    const copy = h("button", { class: "btn btn-small", type: "button", "aria-label": `Copy ${lang} code` }, "Copy");
    copy.addEventListener("click", () => void copyText(code?.textContent ?? "", copy));
    pre.before(h("div", { class: "code-head" }, h("span", {}, lang), copy));
  }
}

async function copyText(text: string, button: HTMLButtonElement) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

function userBody(m: StoredMessage): HTMLElement {
  return h("div", { class: "msg-body msg-text" }, m.content);
}

function actionButton(label: string, onClick: () => void, shortcut?: string) {
  const b = h(
    "button",
    { class: "btn btn-ghost btn-small", type: "button", ...(shortcut ? { "aria-keyshortcuts": shortcut } : {}) },
    label,
  );
  b.addEventListener("click", onClick);
  return b;
}

function editor(el: HTMLElement, m: StoredMessage, actions: MessageActions) {
  const area = h("textarea", { class: "edit-area", rows: "3", "aria-label": "Edit message" });
  area.value = m.content;
  const save = actionButton("Save & send", () => actions.edit(m.id, area.value));
  save.classList.replace("btn-ghost", "btn-primary");
  const cancel = actionButton("Cancel", () => el.replaceWith(messageElement(m, false, actions)));
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save.click();
    } else if (e.key === "Escape") {
      e.stopPropagation();
      cancel.click();
    }
  });
  el.replaceChildren(area, h("div", { class: "msg-actions" }, save, cancel));
  area.focus();
}

function messageElement(m: StoredMessage, offerRegenerate: boolean, actions: MessageActions): HTMLElement {
  const who = m.role === "user" ? "You" : "Assistant";
  const el = h("article", { class: `msg msg-${m.role}`, "data-id": m.id, "aria-label": who });
  const body = m.role === "user" ? userBody(m) : h("div", { class: "msg-body markdown" });
  if (m.role === "assistant") renderAssistantBody(body, m.content, true);
  el.append(body);
  if (m.error) el.append(h("p", { class: "msg-error", role: "note" }, m.error));
  const meta = m.role === "assistant" ? usageLine(m.usage, m.finish) : "";
  const buttons: HTMLElement[] = [];
  if (m.role === "user") buttons.push(actionButton("Edit", () => editor(el, m, actions)));
  if (offerRegenerate) buttons.push(actionButton("Regenerate", () => actions.regenerate(), "Alt+R"));
  if (m.role === "assistant" && m.content)
    buttons.push(actionButton("Copy", () => void copyText(m.content, buttons.at(-1) as HTMLButtonElement)));
  el.append(
    h(
      "div",
      { class: "msg-foot" },
      h("span", { class: "msg-meta" }, meta),
      h("span", { class: "msg-actions" }, ...buttons),
    ),
  );
  return el;
}

/** `canGenerate`: a model is loaded and idle, so the last reply offers Regenerate. */
export function renderConversation(c: Conversation, actions: MessageActions, canGenerate: boolean) {
  const lastAssistant = c.messages.findLastIndex((m) => m.role === "assistant");
  list.replaceChildren(
    ...c.messages.map((m, i) =>
      messageElement(m, canGenerate && i === lastAssistant && i === c.messages.length - 1, actions),
    ),
  );
  $("empty-chat").hidden = c.messages.length > 0;
}

/** The element a streamed reply is drawn into, appended at the end. */
export function startStreaming(): { update(text: string): void; finish(): void } {
  const body = h("div", { class: "msg-body markdown" });
  const el = h("article", { class: "msg msg-assistant streaming", "aria-label": "Assistant" }, body);
  list.append(el);
  $("empty-chat").hidden = true;
  // Screen readers hear the reply once, when it is complete, not every partial re-render.
  list.setAttribute("aria-busy", "true");
  let pending: string | null = null;
  let frame = 0;
  const follow = () => {
    const scroller = $("scroller");
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 160) el.scrollIntoView({ block: "end" });
  };
  return {
    update(text) {
      pending = text;
      // Markdown is re-rendered at most once per frame, however fast tokens arrive.
      frame ||= requestAnimationFrame(() => {
        frame = 0;
        if (pending !== null) renderAssistantBody(body, pending, false);
        follow();
      });
    },
    finish() {
      cancelAnimationFrame(frame);
      list.setAttribute("aria-busy", "false");
    },
  };
}

export function scrollToEnd() {
  list.lastElementChild?.scrollIntoView({ block: "end" });
}
