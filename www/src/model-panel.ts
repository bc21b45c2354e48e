/** The model picker: what to load, the download's progress, errors, and the offline copies. */
import {
  CreateEngine,
  deleteCachedModel,
  listCachedModels,
  type CreateEngineOptions,
  type LoadProgress,
  type LoadResult,
} from "bitnet-web";
import { $, h } from "./dom";
import { engineUpdated, onEngineChange, setEngine } from "./engine-state";
import { explain, type Explained } from "./errors";
import { backendLabel, bytes, duration, rate } from "./format";
import { BUNDLED_URL, OFFICIAL_URL, modelName, type Choice } from "./models";
import { getPref, setPref } from "./store";

const panel = $("model-panel");
const chipButton = $<HTMLButtonElement>("btn-model");
const loadButton = $<HTMLButtonElement>("btn-load");
const cancelButton = $<HTMLButtonElement>("btn-cancel-load");
const urlInput = $<HTMLInputElement>("custom-url");
const fileInput = $<HTMLInputElement>("local-file");
const deviceSelect = $<HTMLSelectElement>("device-select");
const ctxInput = $<HTMLInputElement>("ctx-input");
const headSelect = $<HTMLSelectElement>("head-select");
/** What the model chip adds for each LM head. */
const HEAD_LABELS: Record<LoadResult["info"]["head"], string> = {
  file: "",
  int8: " · int8 head",
  "int8-exact": " · exact int8 head",
  "int4-exact": " · exact int4 head",
};

let loading: AbortController | null = null;
let droppedFile: File | null = null;

function choice(): Choice {
  return (panel.querySelector<HTMLInputElement>('input[name="model"]:checked')?.value ?? "official") as Choice;
}

function setChoice(c: Choice) {
  panel.querySelector<HTMLInputElement>(`input[name="model"][value="${c}"]`)!.checked = true;
  showChoiceExtras();
}

function showChoiceExtras() {
  $("custom-url-row").hidden = choice() !== "url";
  $("drop-zone").hidden = choice() !== "file";
}

export function showPanel(open: boolean) {
  panel.hidden = !open;
  chipButton.setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("picking-model", open);
}

/** What the current choice loads, or a message saying what is missing. */
function source(): { model: string | File } | { missing: string } {
  switch (choice()) {
    case "official":
      return { model: OFFICIAL_URL };
    case "bundled":
      return { model: BUNDLED_URL };
    case "url": {
      const v = urlInput.value.trim();
      if (!v || !urlInput.checkValidity()) return { missing: "Enter the model's URL (https://…/model.gguf)." };
      return { model: v };
    }
    case "file": {
      const f = droppedFile ?? fileInput.files?.[0];
      return f ? { model: f } : { missing: "Pick a .gguf file, or drop one on this panel." };
    }
  }
}

function progressText(p: LoadProgress): string {
  const of = p.total ? ` of ${bytes(p.total)}` : "";
  const part = p.parts > 1 ? ` (part ${p.part + 1} of ${p.parts})` : "";
  switch (p.phase) {
    case "download": {
      const eta = p.eta !== null && p.rate > 0 ? ` · ${duration(p.eta)} left` : "";
      const speed = p.rate > 0 ? ` · ${rate(p.rate)}` : "";
      return `Downloading ${bytes(p.loaded)}${of}${part}${speed}${eta}`;
    }
    case "cache":
      return `Reading the offline copy: ${bytes(p.loaded)}${of}`;
    case "file":
      return `Reading the file: ${bytes(p.loaded)}${of}`;
    case "retry":
      return `Connection dropped at ${bytes(p.loaded)}; resuming…`;
    case "parse":
      return "Preparing the model…";
    case "ready":
      return "Ready";
  }
}

function showProgress(p: LoadProgress | null) {
  const box = $("load-progress");
  box.hidden = p === null;
  if (!p) return;
  const fraction = p.phase === "parse" || p.phase === "ready" ? 1 : p.total ? p.loaded / p.total : 0;
  $("progress-fill").style.width = `${(fraction * 100).toFixed(1)}%`;
  $<HTMLProgressElement>("progress-bar").value = fraction;
  box.dataset.phase = p.phase;
  $("progress-text").textContent = progressText(p);
}

function showAlert(x: Explained | null, kind = "") {
  const box = $("load-error");
  box.hidden = x === null;
  if (!x) return;
  box.dataset.kind = kind;
  $("load-error-title").textContent = x.title;
  $("load-error-advice").textContent = x.advice;
  $("load-error-detail").textContent = x.detail;
  box.scrollIntoView({ block: "nearest" });
}

function showError(e: unknown | null) {
  showAlert(e === null ? null : explain(e), (e as { kind?: string } | null)?.kind ?? "unknown");
}

/** The model runs but has no offline copy: a full quota has its own advice; anything else
 * (no storage in this browser, a failed write) means the next visit downloads it again. */
function showCacheError(e: { kind: string; message: string }) {
  if (e.kind === "quota-exceeded") return showError(e);
  showAlert(
    {
      title: "This model is not kept offline",
      advice: "It runs now, but the next visit downloads it again.",
      detail: e.message,
    },
    e.kind,
  );
}

function setBusy(busy: boolean) {
  loadButton.hidden = busy;
  cancelButton.hidden = !busy;
  panel.querySelector("fieldset")!.disabled = busy;
  panel.setAttribute("aria-busy", String(busy));
}

export async function loadModel(model: string | File): Promise<boolean> {
  loading?.abort();
  const ctl = new AbortController();
  loading = ctl;
  showError(null);
  showProgress({ phase: "download", loaded: 0, total: null, rate: 0, eta: null, part: 0, parts: 1 });
  setBusy(true);
  $("load-progress").scrollIntoView({ block: "nearest" });
  // Free the loaded model first: two large models at once may not fit.
  await setEngine(null);
  // A 1.2 GB download should not be evicted under storage pressure.
  if (typeof model === "string" && model !== BUNDLED_URL) void navigator.storage?.persist?.();
  try {
    // onDeviceLost: packages with WebGPU move a lost GPU's work to WASM and say so here.
    const opts: CreateEngineOptions & { onDeviceLost?: () => void } = {
      onDeviceLost: () => engineUpdated(),
      model,
      device: deviceSelect.value as CreateEngineOptions["device"],
      nCtx: ctxInput.valueAsNumber || undefined,
      head: headSelect.value as CreateEngineOptions["head"],
      signal: ctl.signal,
      onProgress: (p) => {
        if (loading === ctl) showProgress(p);
      },
    };
    const engine = await CreateEngine(opts);
    if (loading !== ctl) {
      await engine.unload();
      return false;
    }
    await setEngine(engine, modelName(model));
    if (typeof model === "string") await setPref("lastModel", model);
    // The model runs, but the person should know it will not be there offline.
    if (engine.load.cacheError) showCacheError(engine.load.cacheError);
    else showPanel(false);
    return true;
  } catch (e) {
    if (loading === ctl) {
      showProgress(null);
      // A cancel the person asked for needs no error message.
      if (!ctl.signal.aborted) showError(e);
    }
    return false;
  } finally {
    if (loading === ctl) {
      loading = null;
      setBusy(false);
    }
    void refreshCached();
  }
}

/** A load the person asked for: once ready, the keyboard goes to the message box. */
async function loadAndFocus(model: string | File) {
  if (await loadModel(model)) $("composer-input").focus();
}

async function refreshCached() {
  const list = $("cached-list");
  const models = await listCachedModels().catch(() => []);
  list.replaceChildren(
    ...models.map((m) => {
      const del = h(
        "button",
        { class: "btn btn-small", type: "button", "aria-label": `Delete ${modelName(m.url)}` },
        "Delete",
      );
      del.addEventListener("click", async () => {
        if (!confirm(`Delete the offline copy of ${modelName(m.url)} (${bytes(m.bytes)})?`)) return;
        await deleteCachedModel(m.url);
        await refreshCached();
      });
      const use = h(
        "button",
        { class: "btn btn-small", type: "button", "aria-label": `Load ${modelName(m.url)}` },
        "Load",
      );
      use.addEventListener("click", () => void loadAndFocus(m.url));
      return h(
        "li",
        { class: "cached-item" },
        h(
          "span",
          { class: "cached-name", title: m.url },
          h("strong", {}, modelName(m.url)),
          h("span", { class: "hint" }, ` ${bytes(m.bytes)}${m.complete ? "" : " · partial, resumes on load"}`),
        ),
        use,
        del,
      );
    }),
  );
  $("cached-heading").parentElement!.hidden = models.length === 0;
  const est = await navigator.storage?.estimate?.().catch(() => null);
  $("storage-text").textContent =
    est?.usage !== undefined && est.quota ? `This site uses ${bytes(est.usage)} of ${bytes(est.quota)} available.` : "";
}

function acceptFile(f: File) {
  droppedFile = f;
  setChoice("file");
  $("drop-zone").querySelector(".hint")!.textContent = `Selected: ${f.name} (${bytes(f.size)})`;
}

export async function initModelPanel(): Promise<void> {
  panel.addEventListener("change", (e) => {
    if ((e.target as HTMLInputElement).name === "model") showChoiceExtras();
  });
  fileInput.addEventListener("change", () => {
    const f = fileInput.files?.[0];
    if (f) acceptFile(f);
  });
  panel.addEventListener("dragover", (e) => {
    e.preventDefault();
    panel.classList.add("dragging");
  });
  panel.addEventListener("dragleave", () => panel.classList.remove("dragging"));
  panel.addEventListener("drop", (e) => {
    e.preventDefault();
    panel.classList.remove("dragging");
    const f = e.dataTransfer?.files[0];
    if (f) acceptFile(f);
  });
  loadButton.addEventListener("click", () => {
    const s = source();
    if ("missing" in s) {
      showAlert({ title: "Which model?", advice: s.missing, detail: "" }, "missing-input");
      return;
    }
    void loadAndFocus(s.model);
  });
  cancelButton.addEventListener("click", () => loading?.abort());
  chipButton.addEventListener("click", () => showPanel(panel.hidden));
  onEngineChange((engine, name) => {
    $("model-chip-text").textContent = engine
      ? `${name} · ${backendLabel(engine.backend)}${HEAD_LABELS[engine.load.info.head]}`
      : "No model loaded";
    chipButton.classList.toggle("chip-ready", !!engine);
    // Why this backend (with device "auto", whether WebGPU was tried and what decided it)
    // and why this many threads.
    chipButton.title = engine
      ? `${engine.info.architecture}, ${engine.info.nLayer} layers, kernels: ${engine.info.kernels}` +
        `\n${backendLabel(engine.backend)}: ${engine.load.device.reason}` +
        `\nThreads: ${engine.load.threadChoice.reason}`
      : "";
  });
  showChoiceExtras();
  showPanel(true);
  await refreshCached();
}

/** Loads the last model again when it needs no network (its offline copy is complete). */
export async function resumeLastModel(): Promise<void> {
  const last = await getPref<string>("lastModel");
  if (!last) return;
  if (last === BUNDLED_URL) setChoice("bundled");
  else if (last === OFFICIAL_URL) setChoice("official");
  else {
    setChoice("url");
    urlInput.value = last;
  }
  const cached = await listCachedModels().catch(() => []);
  if (cached.some((m) => m.url === last && m.complete)) await loadModel(last);
}
