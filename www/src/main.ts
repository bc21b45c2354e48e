import "./styles.css";
import { registerSW } from "virtual:pwa-register";
import { initChat } from "./chat";
import { $ } from "./dom";
import { initModelPanel, resumeLastModel } from "./model-panel";
import { initSettings } from "./settings";
import { initShortcuts } from "./shortcuts";
import { initSidebar } from "./sidebar";
import { initTheme } from "./theme";

initTheme();

function showOnline() {
  $("offline-badge").hidden = navigator.onLine;
}
addEventListener("online", showOnline);
addEventListener("offline", showOnline);
showOnline();

// The service worker precaches the app, the engine and the test model on the first visit.
if ("serviceWorker" in navigator) registerSW({ immediate: true });

await initSettings();
await initModelPanel();
await initChat();
await initSidebar();
initShortcuts();
document.body.dataset.ready = "true";
await resumeLastModel();
