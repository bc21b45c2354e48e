/** Light, dark, or the system's choice; remembered in localStorage so it applies before IndexedDB opens. */
import { $ } from "./dom";

type Theme = "system" | "light" | "dark";
const ORDER: Theme[] = ["system", "light", "dark"];
const KEY = "bitnet-chat-theme";

function apply(t: Theme) {
  if (t === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  $("btn-theme").setAttribute("aria-label", `Theme: ${t} (change)`);
  $("btn-theme").title = `Theme: ${t}`;
}

export function initTheme() {
  let t = (localStorage.getItem(KEY) as Theme | null) ?? "system";
  if (!ORDER.includes(t)) t = "system";
  apply(t);
  $("btn-theme").addEventListener("click", () => {
    t = ORDER[(ORDER.indexOf(t) + 1) % ORDER.length];
    localStorage.setItem(KEY, t);
    apply(t);
  });
}
