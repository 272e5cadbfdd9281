"use strict";
// The page: every change goes through the JSON API; text is only ever set as text.

const token = new URLSearchParams(location.search).get("token");
const MAX_NAME_LENGTH = 64; // as the server's store checks names and labels
const RECORD_FPS = 4; // frames a second while "Hold to record" is held
const MAX_RECORDED = 60; // frames one hold records at most
const LIVE_FPS = 5;
const state = { recognisers: [], current: null, stream: null, live: false, last: null, recording: false };
const $ = (id) => document.getElementById(id);
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : noun.endsWith("s") ? "es" : "s"}`;
const percent = (p) => (100 * p).toFixed(p > 0 && p < 0.001 ? 2 : 1) + "%";
const pause = (ms) => new Promise((done) => setTimeout(done, ms));

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function url(path, params = {}) {
  const query = new URLSearchParams(params);
  if (token) query.set("token", token);
  const text = query.toString();
  return text ? path + "?" + text : path;
}

async function api(path, options = {}) {
  const headers = {};
  if (token) headers.Authorization = "Bearer " + token;
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  let response;
  try {
    response = await fetch(path, { method: options.method || "GET", headers, body });
  } catch (error) {
    throw new ApiError("the server cannot be reached; is `litemeta serve` still running?", 0);
  }
  if (response.ok && options.raw) return response;
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(answer.error || "the server answered " + response.status, response.status);
  return answer;
}

function report(box, text) {
  box.textContent = text || "";
  box.hidden = !text;
}

function visible(element) {
  return element && element.isConnected && element.offsetParent !== null;
}

// Runs an action; its error shows in `box`, next to the action (at the top if that is gone).
// A 404 or 409 about the open recogniser means the page is stale (another tab or client
// changed it): the page reloads its state and says so.
async function attempt(work, box = null) {
  if (box) report(box, "");
  try {
    await work();
  } catch (error) {
    let text = error.message;
    if ((error.status === 404 || error.status === 409) && state.current) {
      text += await resync();
    }
    if (box && !box.isConnected && box.dataset.label) box = cardError(box.dataset.label); // re-rendered
    if (box && visible(box.parentElement)) report(box, text);
    else report($("message"), text);
  }
}

// Reloads the open recogniser: a note saying what changed elsewhere, or "" if nothing did.
async function resync() {
  const { id, name } = state.current;
  const before = JSON.stringify(state.current);
  let now;
  try {
    now = await api("/api/recognisers/" + id);
  } catch (error) {
    if (error.status !== 404) return "";
    close();
    await loadList().catch(() => {});
    return ` (The recogniser "${name}" was deleted in another tab or client.)`;
  }
  if (JSON.stringify(now) === before) return "";
  await show(id, true);
  return ` (The page was out of date: "${name}" was changed in another tab or client; it now shows the current state.)`;
}

// Back in this tab: catch up with what other tabs or clients changed meanwhile.
async function catchUp() {
  if (!state.current || state.recording || state.live) return;
  const note = await resync();
  if (note) report($("message"), note.slice(2, -1));
}

function close() {
  stopCamera();
  state.current = null;
  localStorage.removeItem("litemeta-recogniser");
  $("workspace").hidden = true;
}

async function loadList() {
  state.recognisers = await api("/api/recognisers");
  const list = $("recogniser-list");
  list.replaceChildren();
  const seen = {};
  for (const r of state.recognisers) seen[r.name.toLowerCase()] = (seen[r.name.toLowerCase()] || 0) + 1;
  for (const recogniser of state.recognisers) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = recogniser.id;
    button.className = state.current && state.current.id === recogniser.id ? "current" : "";
    const examples = recogniser.classes.reduce((sum, c) => sum + c.examples.length, 0);
    const detail = document.createElement("small");
    detail.textContent = `${count(recogniser.classes.length, "class")}, ${count(examples, "example")}` +
      (recogniser.taught ? ", taught" : "");
    button.append(recogniser.name, detail);
    if (seen[recogniser.name.toLowerCase()] > 1) {
      // Two recognisers of one name: tell them apart by when they were made.
      const made = document.createElement("small");
      made.className = "made";
      made.textContent = "made " + new Date(recogniser.created * 1000).toLocaleString();
      button.append(made);
    }
    button.addEventListener("click", () => attempt(() => show(recogniser.id), $("create-error")));
    item.append(button);
    list.append(item);
  }
  $("no-recognisers").hidden = state.recognisers.length > 0;
}

async function show(id, keepTry = false) {
  const opened = await api("/api/recognisers/" + id);
  const other = !state.current || state.current.id !== id;
  state.current = opened;
  localStorage.setItem("litemeta-recogniser", id);
  $("workspace").hidden = false;
  $("recogniser-name").textContent = opened.name;
  if (other || !keepTry || !opened.taught) clearTry(); // no answers from a forgotten teaching
  if (other) {
    stopCamera();
    for (const box of ["class-error", "teach-error", "export-error", "try-error"]) report($(box), "");
  }
  showTaught();
  renderClasses();
  renderQuality(opened.taught ? opened.quality : null);
  await loadList();
}

async function refresh() {
  await show(state.current.id, true);
}

function clearTry() {
  $("predictions").replaceChildren();
  $("verdict").hidden = true;
  $("try-preview").hidden = true;
  state.last = null;
}

// What can be done now: teach needs two classes with examples; try and export need teaching.
function controls() {
  const current = state.current;
  const classes = current.classes;
  const empty = classes.filter((c) => c.examples.length === 0).map((c) => `"${c.label}"`);
  let why = "";
  if (classes.length < 2) why = "Add two or more classes with a few examples each, then teach.";
  else if (empty.length) why = `Add examples to ${empty.join(", ")} (or delete ${empty.length === 1 ? "it" : "them"}), then teach.`;
  $("teach").disabled = Boolean(why);
  $("teach").title = why;
  const taught = Boolean(current.taught);
  $("try-file").disabled = !taught;
  $("try-upload").classList.toggle("disabled", !taught);
  $("live").disabled = !taught;
  $("try-note").textContent = taught ? "" : "Teach it first.";
  $("export").hidden = !taught;
  $("threshold-row").hidden = !taught || current.threshold === null || current.threshold === undefined;
  if (!$("threshold-row").hidden) showThreshold(current.threshold);
  if (!taught && state.live) stopCamera();
  return why;
}

function showTaught() {
  const taught = state.current.taught;
  const why = controls();
  $("teach-result").textContent = taught
    ? `Taught ${count(taught.classes.length, "class")} from ${count(taught.examples, "example")} in ${taught.seconds.toFixed(2)} s.`
    : "Not taught yet. " + why;
}

function thumbnailUrl(exampleId) {
  return url(`/api/recognisers/${state.current.id}/examples/${exampleId}/image`, { thumbnail: "true" });
}

function renderQuality(quality) {
  $("quality").hidden = !quality;
  if (!quality) return;
  const perClass = $("per-class");
  perClass.replaceChildren();
  for (const row of quality.per_class) {
    const item = document.createElement("li");
    item.dataset.label = row.label;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = row.label;
    const value = document.createElement("span");
    value.className = "accuracy";
    value.textContent = row.accuracy === null
      ? "1 example: add more to measure it"
      : `${row.correct} of ${row.examples} right (${Math.round(100 * row.accuracy)}%)`;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = row.accuracy === null ? "0" : percent(row.accuracy);
    bar.append(fill);
    item.append(name, bar, value);
    perClass.append(item);
  }
  drawConfusion(quality);
  const confused = $("confused");
  confused.replaceChildren();
  for (const mistake of quality.confused) {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = thumbnailUrl(mistake.example);
    image.alt = `the example of ${mistake.label}`;
    const text = document.createElement("span");
    text.textContent = `this photo of ${mistake.label} looks like ${mistake.looks_like}`;
    item.append(image, text);
    confused.append(item);
  }
}

// The confusion matrix as a table: rows are the true classes, columns what the examples
// were taken for, each cell shaded by its share of the row (green: right, red: confused).
function drawConfusion(quality) {
  const table = $("confusion");
  table.replaceChildren();
  const head = document.createElement("tr");
  head.append(document.createElement("th"));
  for (const label of quality.labels) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = th.title = label; // the title tells a cut label in full
    head.append(th);
  }
  table.append(head);
  quality.confusion.forEach((row, i) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = th.title = quality.labels[i];
    tr.append(th);
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((n, j) => {
      const cell = document.createElement("td");
      cell.textContent = String(n);
      const share = total ? n / total : 0;
      const hue = i === j ? "31, 157, 85" : "200, 55, 45";
      cell.style.background = n ? `rgba(${hue}, ${(0.15 + 0.6 * share).toFixed(2)})` : "";
      cell.className = i === j ? "right" : n ? "wrong" : "";
      tr.append(cell);
    });
    table.append(tr);
  });
}

function renderClasses() {
  const camera = $("camera");
  if (camera.parentElement.closest(".class-card")) document.body.append(camera); // keep it
  const holder = $("classes");
  holder.replaceChildren();
  for (const group of state.current.classes) {
    const card = $("class-template").content.firstElementChild.cloneNode(true);
    card.dataset.label = group.label;
    card.querySelector(".class-label").textContent = group.label;
    card.querySelector(".count").textContent = count(group.examples.length, "example");
    const error = card.querySelector(".card-error");
    error.dataset.label = group.label;
    const thumbs = card.querySelector(".thumbs");
    for (const exampleId of group.examples) {
      const item = document.createElement("li");
      const image = document.createElement("img");
      image.src = thumbnailUrl(exampleId);
      image.alt = `an example of ${group.label}`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "\u00d7";
      remove.title = "Delete this example";
      remove.addEventListener("click", () => attempt(async () => {
        await api(`/api/recognisers/${state.current.id}/examples/${exampleId}`, { method: "DELETE" });
        await refresh();
      }, error));
      item.append(image, remove);
      thumbs.append(item);
    }
    card.querySelector(".pick").addEventListener("change", (event) =>
      attempt(() => upload(group.label, [...event.target.files], card), error));
    holdToRecord(card.querySelector(".record"), group.label, card);
    card.querySelector(".remove").addEventListener("click", () => attempt(async () => {
      if (!confirm(`Delete the class "${group.label}" and its ${count(group.examples.length, "example")}?`)) return;
      await api(classPath(group.label), { method: "DELETE" });
      await refresh();
    }, error));
    card.querySelector(".rename").addEventListener("click", () => rename(card, group.label));
    const drop = card.querySelector(".drop");
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      attempt(() => upload(group.label, [...event.dataTransfer.files], card), error);
    });
    holder.append(card);
  }
}

function cardError(label) {
  const card = $("classes").querySelector(`.class-card[data-label="${CSS.escape(label)}"]`);
  return card ? card.querySelector(".card-error") : null;
}

function classPath(label) {
  return `/api/recognisers/${state.current.id}/classes/${encodeURIComponent(label)}`;
}

// Names and labels longer than the server takes are refused there; say so while typing.
function watchLength(input, box) {
  input.addEventListener("input", () => {
    const length = [...input.value.trim()].length;
    report(box, length > MAX_NAME_LENGTH
      ? `${length} characters: at most ${MAX_NAME_LENGTH} are taken; shorten it.`
      : "");
  });
}

function rename(card, label) {
  const heading = card.querySelector(".class-label");
  const input = document.createElement("input");
  input.value = label;
  input.className = "rename-input";
  heading.replaceWith(input);
  const error = card.querySelector(".card-error");
  watchLength(input, error);
  input.focus();
  let done = false;
  const finish = (save) => attempt(async () => {
    if (done) return;
    done = true;
    if (save && input.value.trim() !== label) {
      await api(classPath(label), { method: "PATCH", json: { label: input.value } });
    }
    await refresh();
  }, error);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

// Uploads into an existing class only: if another tab deleted it, the server refuses.
async function upload(label, files, card) {
  if (!files.length) return;
  const form = new FormData();
  form.append("label", label);
  form.append("create", "false");
  for (const file of files) form.append("file", file, file.name || "an image");
  const status = card.querySelector(".card-status");
  status.textContent = `Adding ${count(files.length, "image")}...`;
  try {
    const counts = await api(`/api/recognisers/${state.current.id}/examples`, { method: "POST", body: form });
    await refresh();
    const now = $("classes").querySelector(`.class-card[data-label="${CSS.escape(label)}"] .card-status`);
    if (now) now.textContent = `Added ${count(files.length, "image")}: ${label} now has ${count(counts[label], "example")}.`;
  } finally {
    if (status.isConnected) status.textContent = "";
  }
}

async function camera(place) {
  place.append($("camera"));
  $("camera").hidden = false;
  if (!state.stream) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("camera").hidden = true;
      throw new Error("this browser offers no camera here; open the page on http://127.0.0.1 or https");
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (error) {
      $("camera").hidden = true;
      throw new Error("the camera could not be opened (" + error.name + "); allow camera access and retry");
    }
    $("camera-video").srcObject = state.stream;
  }
  const video = $("camera-video");
  // A camera's first frames are often black: wait until a few have been shown.
  while (video.readyState < 2 || video.currentTime < 0.3) await pause(50);
  return video;
}

function stopCamera() {
  state.live = false;
  $("live").textContent = "Start live webcam";
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  $("camera").hidden = true;
  document.body.append($("camera"));
}

function frame(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
}

// "Hold to record": frames at RECORD_FPS while the button is held (mouse, touch, pen, or
// Space/Enter), counted on the button; releasing it adds them to the class.
function holdToRecord(button, label, card) {
  let held = null;
  const start = (event) => {
    if (held || button.disabled || state.recording) return;
    event.preventDefault();
    try {
      if (event.pointerId !== undefined) button.setPointerCapture(event.pointerId); // release anywhere
    } catch (error) {
      // a pointer the browser no longer tracks: pointerup on the button still ends it
    }
    held = { released: false };
    const session = held;
    attempt(() => record(button, label, card, session), card.querySelector(".card-error"));
  };
  const release = () => {
    if (held) held.released = true;
    held = null;
  };
  button.addEventListener("pointerdown", start);
  for (const name of ["pointerup", "pointercancel", "lostpointercapture"]) button.addEventListener(name, release);
  button.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) start(event);
  });
  button.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") release();
  });
  button.addEventListener("contextmenu", (event) => event.preventDefault()); // long touch
}

async function record(button, label, card, session) {
  state.recording = true;
  button.classList.add("recording");
  button.textContent = "Starting camera...";
  card.querySelector(".card-status").textContent = "";
  const files = [];
  try {
    if (state.live) stopCamera();
    const video = await camera(card.querySelector(".card-camera"));
    while (!session.released && files.length < MAX_RECORDED) {
      const started = performance.now();
      files.push(new File([await frame(video)], `webcam ${label} ${files.length + 1}.jpg`, { type: "image/jpeg" }));
      button.textContent = `Recording: ${count(files.length, "frame")}`;
      await pause(Math.max(0, 1000 / RECORD_FPS - (performance.now() - started)));
    }
  } finally {
    state.recording = false;
    button.classList.remove("recording");
    button.textContent = "Hold to record";
    stopCamera();
  }
  if (!files.length) throw new Error("hold the button down to record frames; none were taken");
  await upload(label, files, card);
}

async function teach() {
  const progress = $("teach-progress");
  $("teach").disabled = true;
  progress.hidden = false;
  $("teach-result").textContent = "Teaching...";
  try {
    await api(`/api/recognisers/${state.current.id}/teach`, { method: "POST" });
    await refresh();
  } catch (error) {
    // Refused for what the page may not show yet (a class added in another tab): catch up.
    if (error.status === 400) await refresh().catch(() => {});
    throw error;
  } finally {
    progress.hidden = true;
    if (state.current) showTaught(); // never left saying "Teaching..."
  }
}

function showThreshold(value) {
  $("threshold").value = String(value);
  $("threshold-value").textContent = Number(value).toFixed(2);
}

async function setThreshold(value) {
  const answer = await api(`/api/recognisers/${state.current.id}/threshold`, { method: "PUT", json: { threshold: value } });
  if (answer.threshold === null) { // untaught meanwhile, in another tab
    await refresh();
    return;
  }
  state.current.threshold = answer.threshold;
  showThreshold(answer.threshold);
  if (state.last && !state.live) await predict(state.last.blob, state.last.name);
}

async function predict(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const answer = await api(`/api/recognisers/${state.current.id}/predict`, { method: "POST", body: form });
  const verdict = $("verdict");
  verdict.hidden = false;
  verdict.classList.toggle("none", answer.none_of_these);
  verdict.textContent = answer.none_of_these ? "Not one of these" : answer.label;
  verdict.title = `score ${answer.score.toFixed(3)}, "not one of these" below ${answer.threshold.toFixed(3)}`;
  const list = $("predictions");
  list.replaceChildren();
  for (const { label, probability } of answer.probabilities) {
    const item = document.createElement("li");
    item.classList.toggle("chosen", label === answer.label);
    const text = document.createElement("span");
    text.className = "label";
    text.textContent = label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = percent(probability);
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(probability);
    item.append(text, bar, value);
    list.append(item);
  }
}

async function tryFile(file) {
  if (!file) return;
  if (state.live) stopCamera();
  const preview = $("try-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  state.last = { blob: file, name: file.name || "the photo" };
  await predict(file, state.last.name);
}

async function live() {
  if (state.live) {
    stopCamera();
    return;
  }
  $("try-preview").hidden = true;
  state.last = null;
  const video = await camera($("try-view"));
  state.live = true;
  $("live").textContent = "Stop live webcam";
  while (state.live) {
    const started = performance.now();
    try {
      await predict(await frame(video), "a webcam frame");
    } catch (error) {
      stopCamera();
      throw error;
    }
    // At most LIVE_FPS frames a second, so the server stays free for others.
    await pause(Math.max(0, 1000 / LIVE_FPS - (performance.now() - started)));
  }
}

// Downloads the model through the API, so that a refusal shows instead of a broken file.
async function exportModel(format) {
  const response = await api(url(`/api/recognisers/${state.current.id}/export`, { format }), { raw: true });
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = fileName(response.headers.get("Content-Disposition"), format);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function fileName(disposition, format) {
  const extended = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition || "");
  if (extended) return decodeURIComponent(extended[1].trim());
  const plain = /filename\s*=\s*"([^"]+)"/i.exec(disposition || "");
  return plain ? plain[1] : `recogniser-${format}.onnx`;
}

function setUp() {
  watchLength($("new-name"), $("create-error"));
  watchLength($("new-class"), $("class-error"));
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const { id } = await api("/api/recognisers", { method: "POST", json: { name: $("new-name").value } });
      $("new-name").value = "";
      await show(id);
    }, $("create-error"));
  });
  $("class-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await api(`/api/recognisers/${state.current.id}/classes`, { method: "POST", json: { label: $("new-class").value } });
      $("new-class").value = "";
      await refresh();
    }, $("class-error"));
  });
  $("delete-recogniser").addEventListener("click", () => attempt(async () => {
    if (!confirm(`Delete "${state.current.name}" and all its examples?`)) return;
    await api("/api/recognisers/" + state.current.id, { method: "DELETE" });
    close();
    await loadList();
  }, $("class-error")));
  $("teach").addEventListener("click", () => attempt(teach, $("teach-error")));
  for (const button of [$("export-float"), $("export-int8")]) {
    button.addEventListener("click", () => attempt(() => exportModel(button.dataset.format), $("export-error")));
  }
  $("try-file").addEventListener("change", (event) => {
    attempt(() => tryFile(event.target.files[0]), $("try-error"));
    event.target.value = ""; // the same file again is a new try
  });
  $("live").addEventListener("click", () => attempt(live, $("try-error")));
  $("camera-stop").addEventListener("click", stopCamera);
  $("threshold").addEventListener("input", () => showThreshold($("threshold").value));
  $("threshold").addEventListener("change", () =>
    attempt(() => setThreshold(Number($("threshold").value)), $("try-error")));
  $("threshold-reset").addEventListener("click", () => attempt(() => setThreshold(null), $("try-error")));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") attempt(catchUp);
  });
  attempt(async () => {
    const health = await api("/api/health");
    $("model-info").textContent = health.model;
    $("model-hint").textContent = health.hint || "";
    $("model-hint").hidden = !health.hint;
    await loadList();
    const last = localStorage.getItem("litemeta-recogniser");
    if (last && state.recognisers.some((r) => r.id === last)) await show(last);
  });
}

setUp();
