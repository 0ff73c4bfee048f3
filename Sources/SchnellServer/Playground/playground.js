// The Schnell playground: a page that calls the server's public API as any client does
// (GET /v1/models, POST /v1/images/generations), with no framework and no build step.
//
// Generations ask for `stream: true`; a streaming server answers text/event-stream (read here
// with fetch, since EventSource cannot POST), an older one plain JSON, and both are shown.
// Every text from the server goes through textContent; images become blob: URLs that are
// revoked when replaced or cleared.
"use strict";

const KEY_STORAGE = "schnell.playground.apiKey";

const byId = (id) => document.getElementById(id);
const form = byId("generate-form");
const promptInput = byId("prompt");
const sizeInput = byId("size");
const sizeList = byId("size-list");
const sizeHint = byId("size-hint");
const stepsInput = byId("steps");
const seedInput = byId("seed");
const countInput = byId("count");
const previewsInput = byId("previews");
const loraFieldset = byId("loras");
const loraHint = byId("loras-hint");
const loraList = byId("lora-list");
const keyInput = byId("api-key");
const rememberInput = byId("remember-key");
const generateButton = byId("generate");
const stopButton = byId("stop");
const modelStatus = byId("model-status");
const progress = byId("progress");
const errorBox = byId("error");
const results = byId("results");

let modelId = null;
let modelRetry = null;
let running = null;        // the AbortController of the generation in flight
let runningPrompt = "";    // the prompt it was sent with, for the images' text alternatives
let maxLoRAs = 0;          // adapters one request may apply; 0 when the server offers none
const liveURLs = new Set(); // blob: URLs shown on the page

// MARK: - Small helpers

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function seconds(value) {
  return value < 10 ? `${value.toFixed(3)} s` : `${value.toFixed(1)} s`;
}

function elapsedSince(start) {
  return seconds((performance.now() - start) / 1000);
}

function headers(json) {
  const result = json ? { "Content-Type": "application/json" } : {};
  const key = keyInput.value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// An OpenAI error body's message, or the status line and the start of whatever came instead.
async function errorMessage(response) {
  const text = await response.text();
  try {
    const message = JSON.parse(text).error.message;
    if (typeof message === "string") return message;
  } catch (ignored) { /* not an OpenAI error body */ }
  const excerpt = text.trim().slice(0, 300);
  return `HTTP ${response.status} ${response.statusText}${excerpt ? `: ${excerpt}` : ""}`;
}

function showError(title, message) {
  errorBox.replaceChildren();
  if (title === null) {
    errorBox.hidden = true;
    return;
  }
  errorBox.append(element("p", "error-title", title));
  if (message) errorBox.append(element("p", "error-message", message));
  errorBox.hidden = false;
}

// MARK: - The API key

function storeKeyIfRemembered() {
  try {
    const key = keyInput.value.trim();
    if (rememberInput.checked && key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch (ignored) { /* storage disabled: the key lives in the field only */ }
}

function restoreKey() {
  try {
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) {
      keyInput.value = key;
      rememberInput.checked = true;
    }
  } catch (ignored) { /* storage disabled */ }
}

// MARK: - The model and its limits

async function loadModel() {
  clearTimeout(modelRetry);
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers(false), cache: "no-store" });
  } catch (error) {
    modelStatus.textContent = `The server cannot be reached (${error.message}); retrying…`;
    modelRetry = setTimeout(loadModel, 3000);
    return;
  }
  if (response.status === 401) {
    modelStatus.textContent = "This server needs an API key: enter it below.";
    keyInput.setAttribute("aria-invalid", "true");
    return;
  }
  keyInput.removeAttribute("aria-invalid");
  if (!response.ok) {
    modelStatus.textContent = await errorMessage(response);
    return;
  }
  const model = ((await response.json()).data || [])[0];
  if (!model) {
    modelStatus.textContent = "The model is still loading; retrying…";
    modelRetry = setTimeout(loadModel, 3000);
    return;
  }
  applyModel(model);
}

// Limits become the inputs' bounds and hints; the server still checks every request.
function applyModel(model) {
  const firstLoad = modelId === null;
  modelId = model.id;
  const params = model.allowedParams || model.allowed_params || {};
  const steps = params.steps || {};
  if (steps.min) stepsInput.min = steps.min;
  if (steps.max) stepsInput.max = steps.max;
  if (params.max_images) countInput.max = params.max_images;
  sizeList.replaceChildren(...(params.supported_sizes || []).map((size) => element("option", null, size)));
  if (params.min_side && params.max_side) {
    sizeHint.textContent = `each side ${params.min_side}–${params.max_side}` +
      (params.size_multiple ? `, a multiple of ${params.size_multiple}` : "");
  }
  if (firstLoad) {
    if (steps.default) stepsInput.value = steps.default;
    if (params.default_size) sizeInput.value = params.default_size;
  }
  const adapters = showLoRAs(Array.isArray(model.loras) ? model.loras : [], params);
  const limits = [];
  if (steps.max) limits.push(`up to ${steps.max} steps`);
  if (params.max_images) limits.push(`up to ${params.max_images} images a request`);
  if (adapters) limits.push(`${adapters} LoRA adapter${adapters === 1 ? "" : "s"}`);
  modelStatus.textContent = `Model ${model.id}${limits.length ? ` · ${limits.join(" · ")}` : ""}`;
}

// MARK: - LoRA adapters

// One row per adapter the server offers: a checkbox named after it and its scale, editable (and
// sent) only while the box is ticked. A reload of the model list (a new key) keeps what was
// ticked and typed, by adapter name. Returns how many adapters are shown.
function showLoRAs(adapters, params) {
  const kept = new Map(loraRows().map((row) => [row.name, { checked: row.checkbox.checked, scale: row.scale.value }]));
  const named = adapters.filter((adapter) => adapter && typeof adapter.name === "string");
  const range = params.lora_scale || {};
  maxLoRAs = named.length ? Number(params.max_loras) || named.length : 0;
  loraList.replaceChildren(...named.map((adapter, index) => loraRow(adapter, index, range, kept.get(adapter.name))));
  loraFieldset.hidden = named.length === 0;
  const bounds = Number.isFinite(range.min) && Number.isFinite(range.max) ? `, scale ${range.min} to ${range.max}` : "";
  loraHint.textContent = `(at most ${maxLoRAs} at once${bounds})`;
  limitLoRAs();
  return named.length;
}

function loraRow(adapter, index, range, kept) {
  const row = element("div", "lora");
  row.dataset.name = adapter.name;
  const id = `lora-${index}`;

  const pick = element("div", "lora-pick");
  const checkbox = element("input");
  checkbox.type = "checkbox";
  checkbox.id = id;
  checkbox.checked = Boolean(kept && kept.checked);
  const label = element("label", null, adapter.name);
  label.htmlFor = id;
  if (typeof adapter.format === "string") label.append(" ", element("span", "hint", `(${adapter.format})`));
  pick.append(checkbox, label);

  const scaleField = element("div", "lora-scale");
  const scaleLabel = element("label", null, "scale");
  scaleLabel.htmlFor = `${id}-scale`;
  scaleLabel.append(element("span", "visually-hidden", ` of ${adapter.name}`));
  const scale = element("input");
  scale.type = "number";
  scale.id = `${id}-scale`;
  scale.inputMode = "decimal";
  scale.step = "0.05";
  if (Number.isFinite(range.min)) scale.min = String(range.min);
  if (Number.isFinite(range.max)) scale.max = String(range.max);
  scale.value = kept ? kept.scale : String(Number.isFinite(range.default) ? range.default : 1);
  scale.disabled = !checkbox.checked;
  scaleField.append(scaleLabel, scale);

  checkbox.addEventListener("change", () => {
    scale.disabled = !checkbox.checked;
    limitLoRAs();
  });
  row.append(pick, scaleField);
  return row;
}

function loraRows() {
  return [...loraList.querySelectorAll(".lora")].map((row) => ({
    name: row.dataset.name,
    checkbox: row.querySelector("input[type=checkbox]"),
    scale: row.querySelector("input[type=number]"),
  }));
}

// Once max_loras are ticked the others cannot be, until one is unticked.
function limitLoRAs() {
  const rows = loraRows();
  const full = rows.filter((row) => row.checkbox.checked).length >= maxLoRAs;
  for (const row of rows) row.checkbox.disabled = full && !row.checkbox.checked;
}

// `[{name, scale}]` of the ticked adapters; an empty scale is left to the server's default.
function chosenLoRAs() {
  return loraRows().filter((row) => row.checkbox.checked).map((row) => {
    const entry = { name: row.name };
    if (row.scale.value !== "") entry.scale = Number(row.scale.value);
    return entry;
  });
}

// The adapters the server says it applied (its echo, not what the form asked for).
function loraLine(echoed) {
  const applied = Array.isArray(echoed) ? echoed.filter((entry) => entry && typeof entry.name === "string") : [];
  if (!applied.length) return null;
  const line = element("p", "applied-loras");
  line.append(element("span", null, applied.length === 1 ? "LoRA " : "LoRAs "));
  applied.forEach((entry, index) => {
    if (index) line.append(", ");
    line.append(element("strong", null, entry.name));
    if (typeof entry.scale === "number") line.append(` × ${entry.scale}`);
  });
  return line;
}

// MARK: - Results

// A figure per requested image; previews and the final image replace each other in it.
function figureFor(index, count, size) {
  let figure = results.querySelector(`figure[data-index="${index}"]`);
  if (figure) return figure;
  figure = element("figure", "result");
  figure.dataset.index = String(index);
  const frame = element("div", "frame");
  const sides = /^(\d+)x(\d+)$/.exec(size || "");
  if (sides) frame.style.aspectRatio = `${sides[1]} / ${sides[2]}`;
  const image = element("img");
  image.alt = "";
  image.hidden = true;
  frame.append(image, element("p", "placeholder", "waiting…"));
  const caption = element("figcaption");
  caption.append(element("p", "caption-title", count > 1 ? `Image ${index + 1} of ${count}` : "Image"));
  figure.append(frame, caption);
  // Figures stay in image order whatever order their events come in.
  const next = [...results.children].find((other) => Number(other.dataset.index) > index);
  results.insertBefore(figure, next || null);
  return figure;
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const mediaTypes = { png: "image/png", jpeg: "image/jpeg", jpg: "image/jpeg", webp: "image/webp" };

// Shows `item` (b64_json, or a same-origin url) in `figure`; the URL it replaces is revoked once
// the new image is decoded, so the frame never flashes empty.
function showImage(figure, item, format, state, description) {
  const image = figure.querySelector("img");
  let source;
  if (item.b64_json) {
    const blob = new Blob([base64Bytes(item.b64_json)], { type: mediaTypes[format] || "image/png" });
    source = URL.createObjectURL(blob);
    liveURLs.add(source);
  } else if (item.url) {
    source = item.url;
  } else {
    return null;
  }
  const replaced = image.dataset.blob;
  image.src = source;
  image.alt = description;
  image.dataset.state = state;
  if (source.startsWith("blob:")) image.dataset.blob = source;
  else delete image.dataset.blob;
  image.hidden = false;
  figure.querySelector(".placeholder").hidden = true;
  if (replaced) image.decode().catch(() => {}).finally(() => revoke(replaced));
  return source;
}

function revoke(url) {
  if (liveURLs.delete(url)) URL.revokeObjectURL(url);
}

function clearResults() {
  for (const url of liveURLs) URL.revokeObjectURL(url);
  liveURLs.clear();
  results.replaceChildren();
}

// Stages in pipeline order; `image K ...` stages belong to image K only.
const stageOrder = ["queue", "text encoders", "vae encode", "step", "vae decode", "generation", "encode", "total"];

function imageTimings(timings, index) {
  const rows = [];
  for (const [name, value] of Object.entries(timings || {})) {
    if (typeof value !== "number") continue;
    const owned = /^image (\d+) (.+)$/.exec(name);
    if (owned && Number(owned[1]) !== index + 1) continue;
    const stage = owned ? owned[2] : name;
    const step = /^step (\d+)$/.exec(stage);
    const rank = stageOrder.indexOf(step ? "step" : stage);
    rows.push({
      stage, value, shared: !owned,
      rank: rank < 0 ? stageOrder.indexOf("vae decode") + 0.5 : rank,
      step: step ? Number(step[1]) : 0,
    });
  }
  return rows.sort((a, b) => a.rank - b.rank || a.step - b.step);
}

// A table of stages; the denoising steps fold into one row with the single steps in a disclosure.
// `sharedBy` > 1: the timings are a whole request's, whose unnumbered stages all its images share.
function timingsView(timings, index, sharedBy) {
  const rows = imageTimings(timings, index);
  if (!rows.length) return null;
  const view = element("div", "timings");
  const table = element("table");
  table.append(element("caption", null, "Timings"));
  const body = element("tbody");
  const steps = rows.filter((row) => row.step);
  const addRow = (stage, value) => {
    const row = element("tr");
    row.append(element("th", null, stage), element("td", null, seconds(value)));
    row.firstChild.scope = "row";
    body.append(row);
  };
  let stepsShown = false;
  for (const row of rows) {
    if (!row.step) {
      addRow(row.stage, row.value);
    } else if (!stepsShown) {
      stepsShown = true;
      const total = steps.reduce((sum, each) => sum + each.value, 0);
      addRow(`denoising, ${steps.length} step${steps.length === 1 ? "" : "s"}`, total);
    }
  }
  table.append(body);
  view.append(table);
  if (steps.length > 1) {
    const details = element("details");
    details.append(element("summary", null, "Each step"));
    const list = element("ol");
    for (const step of steps) list.append(element("li", null, seconds(step.value)));
    details.append(list);
    view.append(details);
  }
  const shared = rows.filter((row) => row.shared).map((row) => row.stage);
  if (sharedBy > 1 && shared.length) {
    view.append(element("p", "note", `${shared.join(", ")}: for all ${sharedBy} images of the request`));
  }
  return view;
}

function showFinal(figure, item, format, timings, sharedBy, loras) {
  const index = Number(figure.dataset.index);
  const seed = item.seed;
  const source = showImage(figure, item, format, "final",
    `${runningPrompt} (image ${index + 1}${seed !== undefined && seed !== null ? `, seed ${seed}` : ""})`);
  const caption = figure.querySelector("figcaption");
  caption.querySelectorAll(".status, .details").forEach((node) => node.remove());
  const details = element("div", "details");
  if (seed !== undefined && seed !== null) {
    const line = element("p", "seed");
    line.append(element("span", null, "Seed "), element("strong", null, String(seed)), " ");
    const reuse = element("button", "link", "use this seed");
    reuse.type = "button";
    reuse.addEventListener("click", () => {
      seedInput.value = String(seed);
      seedInput.focus();
    });
    line.append(reuse);
    details.append(line);
  }
  const applied = loraLine(loras);
  if (applied) details.append(applied);
  const timingTable = timingsView(timings, index, sharedBy);
  if (timingTable) details.append(timingTable);
  if (source) {
    const extension = format === "jpeg" ? "jpg" : format || "png";
    const download = element("a", "download", `Download ${extension.toUpperCase()}`);
    download.href = source;
    download.download = `schnell-${seed ?? index + 1}.${extension}`;
    details.append(download);
  }
  caption.append(details);
}

function setFigureStatus(figure, text) {
  const caption = figure.querySelector("figcaption");
  let line = caption.querySelector(".status");
  if (!line) {
    line = element("p", "status");
    caption.append(line);
  }
  line.textContent = text;
}

// MARK: - Server-sent events

// Reads text/event-stream as the HTML standard defines it: lines end in \n, \r\n or \r; a blank
// line ends an event; `data:` lines join with \n; `:` lines are comments; the text may be split
// anywhere between chunks.
class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.eventName = "";
    this.dataLines = [];
  }

  push(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const newline = this.buffer.indexOf("\n", start);
      const carriage = this.buffer.indexOf("\r", start);
      let end = newline < 0 ? carriage : carriage < 0 ? newline : Math.min(newline, carriage);
      if (end < 0) break;
      // A \r last in the buffer may be the first half of \r\n: wait for the next chunk.
      if (end === carriage && end === this.buffer.length - 1) break;
      const length = this.buffer[end] === "\r" && this.buffer[end + 1] === "\n" ? 2 : 1;
      this.line(this.buffer.slice(start, end));
      start = end + length;
    }
    this.buffer = this.buffer.slice(start);
  }

  // The end of the body: an event left without its blank line is still delivered.
  finish() {
    if (this.buffer) this.line(this.buffer.replace(/\r$/, ""));
    this.buffer = "";
    this.line("");
  }

  line(text) {
    if (text === "") {
      if (this.dataLines.length) this.onEvent(this.eventName || "message", this.dataLines.join("\n"));
      this.eventName = "";
      this.dataLines = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventName = value;
    else if (field === "data") this.dataLines.push(value);
  }
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new EventStreamParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  parser.finish();
}

// MARK: - Generating

function requestBody() {
  const body = {
    prompt: promptInput.value,
    size: sizeInput.value.trim(),
    stream: true,
    partial_images: Number(previewsInput.value),
    response_format: "b64_json",
  };
  if (modelId) body.model = modelId;
  // Empty number fields are left to the server's defaults; anything typed is sent as typed
  // (a number input's value is "" when it does not read as a number), and the server judges it.
  if (stepsInput.value !== "") body.steps = Number(stepsInput.value);
  if (seedInput.value !== "") body.seed = Number(seedInput.value);
  if (countInput.value !== "") body.n = Number(countInput.value);
  const loras = chosenLoRAs();
  if (loras.length) body.loras = loras;
  return body;
}

// Generate is disabled while a request runs; keyboard focus moves between it and Stop, so it
// is never lost on a disabled button.
function setRunning(controller) {
  const busy = controller !== null;
  const focused = document.activeElement;
  running = controller;
  generateButton.disabled = busy;
  stopButton.disabled = !busy;
  form.setAttribute("aria-busy", busy ? "true" : "false");
  if (busy && focused === generateButton) stopButton.focus();
  if (!busy && focused === stopButton) generateButton.focus();
}

async function generate() {
  storeKeyIfRemembered();
  clearResults();
  showError(null);
  const body = requestBody();
  runningPrompt = body.prompt;
  const count = Number.isInteger(body.n) && body.n > 0 ? body.n : 1;
  const controller = new AbortController();
  setRunning(controller);
  const started = performance.now();
  progress.textContent = "Sending the request…";
  try {
    const response = await fetch("/v1/images/generations", {
      method: "POST",
      headers: { ...headers(true), Accept: "text/event-stream, application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      progress.textContent = "";
      showError(`The server refused the request (HTTP ${response.status})`, message);
      if (response.status === 401) keyInput.focus();
      return;
    }
    const type = (response.headers.get("Content-Type") || "").toLowerCase();
    if (type.startsWith("text/event-stream")) {
      await showStream(response, body, count, started);
    } else {
      progress.textContent = `Generating ${count} image${count === 1 ? "" : "s"}…`;
      showJSON(await response.json(), body, started);
    }
  } catch (error) {
    if (error.name === "AbortError") {
      progress.textContent = `Stopped after ${elapsedSince(started)}.`;
    } else {
      progress.textContent = "";
      showError("The request failed", error.message);
    }
  } finally {
    // Ends the request if an unreadable event stopped the reading (no effect once it is done).
    controller.abort();
    setRunning(null);
  }
}

async function showStream(response, body, count, started) {
  progress.textContent = `Generating ${count} image${count === 1 ? "" : "s"}…`;
  for (let index = 0; index < count; index++) figureFor(index, count, body.size);
  let finished = 0;
  let failed = false;
  await readEvents(response, (name, data) => {
    if (data === "[DONE]") return;
    let event;
    try {
      event = JSON.parse(data);
    } catch (ignored) {
      throw new Error(`The server sent an unreadable '${name}' event`);
    }
    const type = event.type || name;
    const index = Number.isInteger(event.image_index) ? event.image_index : finished;
    if (type === "error" || name === "error") {
      failed = true;
      const message = (event.error && event.error.message) || event.message || "The generation failed";
      showError("The generation failed", message);
      return;
    }
    const figure = figureFor(index, count, event.size || body.size);
    if (type.endsWith(".partial_image")) {
      const number = (event.partial_image_index ?? 0) + 1;
      showImage(figure, event, event.output_format, "preview", `Preview ${number} of image ${index + 1}`);
      setFigureStatus(figure, `preview ${number} of ${body.partial_images}`);
      progress.textContent = `Image ${index + 1}: preview ${number} of ${body.partial_images} (${elapsedSince(started)})`;
    } else if (type.endsWith(".completed")) {
      finished += 1;
      showFinal(figure, event, event.output_format, event.timings, 1, event.loras);
      progress.textContent = `Image ${index + 1} of ${count} finished (${elapsedSince(started)}).`;
    }
  });
  if (failed) {
    progress.textContent = `Failed after ${elapsedSince(started)}.`;
  } else if (finished < count) {
    progress.textContent = "";
    showError("The stream ended early", `${finished} of ${count} images arrived before the server closed the stream.`);
  } else {
    progress.textContent = `Done: ${count} image${count === 1 ? "" : "s"} in ${elapsedSince(started)}.`;
  }
}

// The answer of a server that does not stream: every image at once, timings for the request.
function showJSON(answer, body, started) {
  const items = Array.isArray(answer.data) ? answer.data : [];
  const size = answer.size || body.size;
  items.forEach((item, index) => {
    const figure = figureFor(index, items.length, size);
    showFinal(figure, item, answer.output_format, answer.timings, items.length, answer.loras);
  });
  progress.textContent = `Done: ${items.length} image${items.length === 1 ? "" : "s"} in ${elapsedSince(started)}.`;
}

// MARK: - Wiring

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!running) generate();
});
promptInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    form.requestSubmit();
  }
});
stopButton.addEventListener("click", () => {
  if (running) running.abort();
});
keyInput.addEventListener("change", () => {
  storeKeyIfRemembered();
  loadModel();
});
rememberInput.addEventListener("change", storeKeyIfRemembered);
window.addEventListener("pagehide", () => {
  for (const url of liveURLs) URL.revokeObjectURL(url);
  liveURLs.clear();
});

restoreKey();
loadModel();
