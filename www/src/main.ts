import "./styles.css";
import { initChat } from "./chat";
import { $ } from "./dom";
import { initModelPanel, resumeLastModel } from "./model-panel";
import { initServiceWorker } from "./pwa";
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

initServiceWorker();

await initSettings();
await initModelPanel();
await initChat();
await initSidebar();
initShortcuts();
document.body.dataset.ready = "true";
await resumeLastModel();
