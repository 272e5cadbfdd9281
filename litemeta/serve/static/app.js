"use strict";
// The page: every change goes through the JSON API; text is only ever set as text.

const token = new URLSearchParams(location.search).get("token");
const BURST_FRAMES = 8;
const BURST_GAP_MS = 120;
const LIVE_FPS = 5;
const state = { recognisers: [], current: null, stream: null, live: false };
const $ = (id) => document.getElementById(id);
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : noun.endsWith("s") ? "es" : "s"}`;

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  let response;
  try {
    response = await fetch(path, { method: options.method || "GET", headers, body: options.body });
  } catch (error) {
    throw new Error("the server cannot be reached; is `litemeta serve` still running?");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || "the server answered " + response.status);
  return body;
}

function withToken(path) {
  return token ? path + "?token=" + encodeURIComponent(token) : path;
}

function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("ok", ok);
  box.hidden = !text;
}

async function attempt(work) {
  try {
    await work();
  } catch (error) {
    say(error.message);
  }
}

async function loadList() {
  state.recognisers = await api("/api/recognisers");
  const list = $("recogniser-list");
  list.replaceChildren();
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
    button.addEventListener("click", () => attempt(() => show(recogniser.id)));
    item.append(button);
    list.append(item);
  }
  $("no-recognisers").hidden = state.recognisers.length > 0;
}

async function show(id) {
  state.current = await api("/api/recognisers/" + id);
  localStorage.setItem("litemeta-recogniser", id);
  $("workspace").hidden = false;
  $("recogniser-name").textContent = state.current.name;
  $("export-link").href = withToken(`/api/recognisers/${id}/export`) +
    (token ? "&" : "?") + "format=onnx";
  $("predictions").replaceChildren();
  $("try-preview").hidden = true;
  showTaught();
  renderClasses();
  await loadList();
}

async function refresh() {
  await show(state.current.id);
}

function showTaught() {
  const taught = state.current.taught;
  $("teach-result").textContent = taught
    ? `Taught ${count(taught.classes.length, "class")} from ${count(taught.examples, "example")} in ${taught.seconds.toFixed(2)} s.`
    : "Not taught yet: add examples to two or more classes, then teach.";
  $("export-link").hidden = !taught;
}

function renderClasses() {
  const holder = $("classes");
  holder.replaceChildren();
  for (const group of state.current.classes) {
    const card = $("class-template").content.firstElementChild.cloneNode(true);
    card.dataset.label = group.label;
    card.querySelector(".class-label").textContent = group.label;
    card.querySelector(".count").textContent = count(group.examples.length, "example");
    const thumbs = card.querySelector(".thumbs");
    for (const exampleId of group.examples) {
      const item = document.createElement("li");
      const image = document.createElement("img");
      image.src = withToken(`/api/recognisers/${state.current.id}/examples/${exampleId}/image`);
      image.alt = `an example of ${group.label}`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "\u00d7";
      remove.title = "Delete this example";
      remove.addEventListener("click", () => attempt(async () => {
        await api(`/api/recognisers/${state.current.id}/examples/${exampleId}`, { method: "DELETE" });
        await refresh();
      }));
      item.append(image, remove);
      thumbs.append(item);
    }
    card.querySelector(".pick").addEventListener("change", (event) =>
      attempt(() => upload(group.label, [...event.target.files])));
    card.querySelector(".burst").addEventListener("click", (event) =>
      attempt(() => burst(group.label, event.target)));
    card.querySelector(".remove").addEventListener("click", () => attempt(async () => {
      if (!confirm(`Delete the class "${group.label}" and its ${group.examples.length} examples?`)) return;
      await api(classPath(group.label), { method: "DELETE" });
      await refresh();
    }));
    card.querySelector(".rename").addEventListener("click", () => rename(card, group.label));
    const drop = card.querySelector(".drop");
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      attempt(() => upload(group.label, [...event.dataTransfer.files]));
    });
    holder.append(card);
  }
}

function classPath(label) {
  return `/api/recognisers/${state.current.id}/classes/${encodeURIComponent(label)}`;
}

function rename(card, label) {
  const heading = card.querySelector(".class-label");
  const input = document.createElement("input");
  input.value = label;
  input.maxLength = 64;
  heading.replaceWith(input);
  input.focus();
  let done = false;
  const finish = (save) => attempt(async () => {
    if (done) return;
    done = true;
    if (save && input.value.trim() !== label) {
      await api(classPath(label), { method: "PATCH", json: { label: input.value } });
    }
    await refresh();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

async function upload(label, files) {
  if (!files.length) return;
  const form = new FormData();
  form.append("label", label);
  for (const file of files) form.append("file", file, file.name || "photo.jpg");
  say("");
  const counts = await api(`/api/recognisers/${state.current.id}/examples`, { method: "POST", body: form });
  say(`${label} now has ${count(counts[label], "example")}.`, true);
  await refresh();
}

async function camera() {
  if (!state.stream) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser offers no camera here; open the page on http://127.0.0.1 or https");
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (error) {
      throw new Error("the camera could not be opened (" + error.name + "); allow camera access and retry");
    }
    $("camera-video").srcObject = state.stream;
    $("camera").hidden = false;
  }
  const video = $("camera-video");
  // A camera's first frames are often black: wait until a few have been shown.
  while (video.readyState < 2 || video.currentTime < 0.3) {
    await new Promise((done) => setTimeout(done, 50));
  }
  return video;
}

function stopCamera() {
  state.live = false;
  $("live").textContent = "Start live webcam";
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  $("camera").hidden = true;
}

function frame(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((done) => canvas.toBlob(done, "image/jpeg", 0.9));
}

async function burst(label, button) {
  button.disabled = true;
  try {
    const video = await camera();
    const files = [];
    for (let i = 0; i < BURST_FRAMES; i++) {
      files.push(new File([await frame(video)], `webcam-${i}.jpg`, { type: "image/jpeg" }));
      await new Promise((done) => setTimeout(done, BURST_GAP_MS));
    }
    await upload(label, files);
  } finally {
    button.disabled = false;
  }
}

async function teach() {
  const button = $("teach");
  button.disabled = true;
  $("teach-progress").hidden = false;
  $("teach-result").textContent = "Teaching...";
  try {
    say("");
    await api(`/api/recognisers/${state.current.id}/teach`, { method: "POST" });
    await refresh();
  } finally {
    button.disabled = false;
    $("teach-progress").hidden = true;
  }
}

async function predict(blob) {
  const form = new FormData();
  form.append("file", blob, "photo.jpg");
  const ranked = await api(`/api/recognisers/${state.current.id}/predict`, { method: "POST", body: form });
  const list = $("predictions");
  list.replaceChildren();
  for (const { label, probability } of ranked.slice(0, 3)) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = (100 * probability).toFixed(1) + "%";
    bar.append(fill);
    const value = document.createElement("span");
    value.textContent = (100 * probability).toFixed(1) + "%";
    item.append(name, bar, value);
    list.append(item);
  }
}

async function tryFile(file) {
  if (!file) return;
  say("");
  const preview = $("try-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  await predict(file);
}

async function live() {
  if (state.live) {
    stopCamera();
    return;
  }
  const video = await camera();
  state.live = true;
  $("live").textContent = "Stop live webcam";
  $("try-preview").hidden = true;
  say("");
  while (state.live) {
    const started = performance.now();
    try {
      await predict(await frame(video));
    } catch (error) {
      stopCamera();
      throw error;
    }
    // At most LIVE_FPS frames a second, so the server stays free for others.
    const wait = 1000 / LIVE_FPS - (performance.now() - started);
    if (wait > 0) await new Promise((done) => setTimeout(done, wait));
  }
}

function setUp() {
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      const { id } = await api("/api/recognisers", { method: "POST", json: { name: $("new-name").value } });
      $("new-name").value = "";
      say("");
      await show(id);
    });
  });
  $("class-form").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(async () => {
      await api(`/api/recognisers/${state.current.id}/classes`, { method: "POST", json: { label: $("new-class").value } });
      $("new-class").value = "";
      say("");
      await refresh();
    });
  });
  $("delete-recogniser").addEventListener("click", () => attempt(async () => {
    if (!confirm(`Delete "${state.current.name}" and all its examples?`)) return;
    await api("/api/recognisers/" + state.current.id, { method: "DELETE" });
    state.current = null;
    localStorage.removeItem("litemeta-recogniser");
    $("workspace").hidden = true;
    await loadList();
  }));
  $("teach").addEventListener("click", () => attempt(teach));
  $("try-file").addEventListener("change", (event) => attempt(() => tryFile(event.target.files[0])));
  $("live").addEventListener("click", () => attempt(live));
  $("camera-stop").addEventListener("click", stopCamera);
  attempt(async () => {
    const health = await api("/api/health");
    $("model-info").textContent = `${health.learner} from ${health.checkpoint || "a checkpoint"}, ${health.image_size} px`;
    await loadList();
    const last = localStorage.getItem("litemeta-recogniser");
    if (last && state.recognisers.some((r) => r.id === last)) await show(last);
  });
}

setUp();
