/** Page-wide keys (Enter and Shift+Enter belong to the message box itself). */
import { isGenerating, newChat, regenerate, stop } from "./chat";
import { $ } from "./dom";
import { setDrawer } from "./sidebar";

function typing(target: EventTarget | null) {
  return (
    target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))
  );
}

export function initShortcuts() {
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      // A dialog closes itself on Escape; otherwise Escape stops the reply and closes the drawer.
      if (isGenerating()) {
        e.preventDefault();
        stop();
      }
      setDrawer(false);
      return;
    }
    if (e.altKey && !e.ctrlKey && !e.metaKey) {
      const key = e.code;
      if (key === "KeyN") {
        e.preventDefault();
        void newChat();
      } else if (key === "KeyR") {
        e.preventDefault();
        void regenerate();
      }
      return;
    }
    if (e.key === "/" && !typing(e.target) && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      $("composer-input").focus();
    }
  });
}
