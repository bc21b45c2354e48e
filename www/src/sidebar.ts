/** The conversation list; a drawer on narrow screens. */
import { activeConversationId, newChat, onConversationChange, openConversation } from "./chat";
import { $, h } from "./dom";
import { relativeTime } from "./format";
import { deleteConversation, getConversation, listConversations } from "./store";

const sidebar = $("sidebar");
const toggle = $<HTMLButtonElement>("btn-sidebar");
const backdrop = $("sidebar-backdrop");

export function setDrawer(open: boolean) {
  sidebar.classList.toggle("open", open);
  backdrop.hidden = !open;
  toggle.setAttribute("aria-expanded", String(open));
  if (open) sidebar.querySelector<HTMLElement>("button")?.focus();
}

async function refresh() {
  const active = activeConversationId();
  const items = (await listConversations()).filter((c) => c.messages.length > 0);
  $("conversation-list").replaceChildren(
    ...items.map((c) => {
      const open = h(
        "button",
        { class: "conv-open", type: "button", ...(c.id === active ? { "aria-current": "true" } : {}) },
        h("span", { class: "conv-title" }, c.title),
        h("span", { class: "conv-time" }, relativeTime(c.updatedAt)),
      );
      open.addEventListener("click", async () => {
        const fresh = await getConversation(c.id);
        if (fresh) await openConversation(fresh);
        setDrawer(false);
      });
      const del = h(
        "button",
        { class: "icon-btn conv-delete", type: "button", "aria-label": `Delete “${c.title}”` },
        "×",
      );
      del.addEventListener("click", async () => {
        if (!confirm(`Delete the conversation “${c.title}”?`)) return;
        await deleteConversation(c.id);
        if (c.id === activeConversationId()) await newChat();
        await refresh();
      });
      return h("li", { class: "conv" }, open, del);
    }),
  );
  if (items.length === 0) {
    $("conversation-list").append(
      h("li", { class: "conv-empty hint" }, "Your conversations appear here. They stay on this device."),
    );
  }
}

export async function initSidebar() {
  toggle.addEventListener("click", () => setDrawer(!sidebar.classList.contains("open")));
  backdrop.addEventListener("click", () => setDrawer(false));
  $("btn-new-chat").addEventListener("click", () => {
    void newChat();
    setDrawer(false);
  });
  onConversationChange(() => void refresh());
  await refresh();
}
