/**
 * The service worker precaches the app, the engine and the test model on the first visit.
 * A new version is only announced: reloading by itself could cut a reply short.
 */
import { registerSW } from "virtual:pwa-register";
import { $ } from "./dom";

let hideTimer = 0;

function toast(text: string, action?: { label: string; run: () => void }) {
  const box = $("toast");
  const button = $<HTMLButtonElement>("toast-action");
  $("toast-text").textContent = text;
  button.hidden = !action;
  if (action) {
    button.textContent = action.label;
    button.onclick = action.run;
  }
  box.hidden = false;
  clearTimeout(hideTimer);
  if (!action) hideTimer = window.setTimeout(() => (box.hidden = true), 6000);
}

export function initServiceWorker() {
  $("toast-close").addEventListener("click", () => ($("toast").hidden = true));
  if (!("serviceWorker" in navigator)) return;
  const update = registerSW({
    immediate: true,
    onOfflineReady: () => toast("The app is saved on this device and now also works offline."),
    onNeedRefresh: () => toast("A new version of the app is ready.", { label: "Reload", run: () => void update(true) }),
  });
}
