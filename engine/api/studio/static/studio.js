// tryon studio: uploads, the garment shelf, the stream socket and the live figures.
// window.studio.stats holds the figures the page shows (read by the tests and the benchmark).
"use strict";

const $ = (id) => document.getElementById(id);

const studio = {
  session: null,
  fps: 8,
  streaming: false,
  hasUser: false,
  worn: new Set(),
  stats: null,
};
window.studio = studio;

let socket = null;
let startedAt = null;         // performance.now() of the Start click
let pendingClicks = [];       // garment clicks the server has not applied yet: {id, at}
let awaitedSwitches = [];     // applied switches whose first frame is not shown yet: {at, frame}
let drawing = Promise.resolve();

function freshStats() {
  return {
    framesShown: 0, lastFrame: -1, firstFrameMs: null, meanShownFps: null,
    generatedFps: null, switchLatenciesMs: [], switchFrames: [], queuedAhead: null,
    errors: [], notices: [], done: null, firstShownAt: null, lastShownAt: null,
  };
}
studio.stats = freshStats();

// -- messages ---------------------------------------------------------------------------------

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
  studio.stats.errors.push(text);
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

function addNotice(text) {
  const item = document.createElement("li");
  item.textContent = text;
  $("notices").append(item);
  studio.stats.notices.push(text);
}

// -- uploads ----------------------------------------------------------------------------------

async function upload(method, path, file, extra = {}) {
  const params = new URLSearchParams({ name: file.name, ...extra });
  const response = await fetch(`/api/sessions/${studio.session}/${path}?${params}`, { method, body: file });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error || `${file.name}: refused by the server (${response.status})`);
  }
  return body;
}

async function onUserFile(event) {
  const file = event.target.files[0];
  if (!file) return;
  clearMessage();
  try {
    await upload("PUT", "user", file);
    $("user-preview").src = URL.createObjectURL(file);
    $("user-preview").hidden = false;
    studio.hasUser = true;
    setStatus(`Person: ${file.name}`);
  } catch (error) {
    showMessage(error.message);
    event.target.value = "";
  }
  updateControls();
}

async function onMotionFile(event) {
  const file = event.target.files[0];
  if (!file) return;
  clearMessage();
  try {
    await upload("PUT", "motion", file);
    setStatus(`Motion: ${file.name}`);
  } catch (error) {
    showMessage(error.message);
    event.target.value = "";
  }
}

async function onGarmentFiles(event) {
  clearMessage();
  const category = $("garment-category").value;
  for (const file of event.target.files) {
    try {
      const garment = await upload("POST", "garments", file, { category });
      addToShelf(garment, file);
    } catch (error) {
      showMessage(error.message);
    }
  }
  event.target.value = "";
  updateControls();
}

// -- the shelf --------------------------------------------------------------------------------

function addToShelf(garment, file) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "garment";
  button.dataset.id = garment.id;
  button.title = garment.name;
  button.setAttribute("role", "listitem");
  const image = document.createElement("img");
  image.src = URL.createObjectURL(file);
  image.alt = garment.name;
  const label = document.createElement("span");
  label.textContent = garment.category || "unknown";
  button.append(image, label);
  button.addEventListener("click", () => onGarmentClick(garment.id));
  $("shelf").append(button);
  if (!studio.streaming && studio.worn.size === 0) {
    studio.worn.add(garment.id);
  }
  updateShelf();
}

function updateShelf() {
  const pending = new Set(pendingClicks.map((click) => click.id));
  for (const button of $("shelf").children) {
    button.classList.toggle("worn", studio.worn.has(button.dataset.id));
    button.classList.toggle("pending", pending.has(button.dataset.id));
  }
}

function onGarmentClick(id) {
  if (studio.streaming) {
    pendingClicks.push({ id, at: performance.now() });
    socket.send(JSON.stringify({ type: "switch", garment: id }));
  } else if (studio.worn.has(id)) {
    studio.worn.delete(id);
  } else {
    studio.worn.add(id);
  }
  updateShelf();
  updateControls();
}

// -- the stream -------------------------------------------------------------------------------

function start() {
  clearMessage();
  $("notices").replaceChildren();
  studio.stats = freshStats();
  pendingClicks = [];
  awaitedSwitches = [];
  startedAt = performance.now();
  socket.send(JSON.stringify({
    type: "start",
    garments: [...studio.worn],
    prompt: $("prompt").value,
    seconds: Number($("seconds").value),
    refresh: $("refresh").checked,
    withdraw: $("withdraw").checked,
    disentangle: $("disentangle").checked,
  }));
  setStreaming(true);
  $("download").hidden = true;
  setStatus("Starting…");
}

function stop() {
  socket.send(JSON.stringify({ type: "stop" }));
  setStatus("Stopping after this chunk…");
}

function setStreaming(streaming) {
  studio.streaming = streaming;
  updateControls();
}

function updateControls() {
  const connected = studio.session !== null && socket && socket.readyState === WebSocket.OPEN;
  $("start").disabled = !connected || studio.streaming || !studio.hasUser || studio.worn.size === 0;
  $("stop").disabled = !connected || !studio.streaming;
  for (const id of ["user-file", "motion-file", "refresh", "withdraw", "disentangle", "seconds"]) {
    $(id).disabled = !connected || studio.streaming;
  }
  $("garment-file").disabled = !connected;
}

function onEvent(event) {
  const stats = studio.stats;
  switch (event.type) {
    case "session":
      studio.session = event.id;
      studio.fps = event.fps;
      $("seconds").max = event.max_seconds;
      for (const [operation, on] of Object.entries(event.switch_operations)) $(operation).checked = on;
      $("connection").textContent = `connected · model ${event.model} · ${event.fps} fps`;
      break;
    case "queued":
      stats.queuedAhead = event.ahead;
      setStatus(`Waiting: ${event.ahead} stream${event.ahead === 1 ? "" : "s"} ahead of you on this GPU`);
      break;
    case "started":
      studio.fps = event.fps;
      studio.worn = new Set(event.outfit);
      setStatus("Streaming…");
      break;
    case "chunk":
      if (event.generated_fps !== null) {
        stats.generatedFps = event.generated_fps;
      }
      break;
    case "switch":
      for (const id of event.garments) {
        const index = pendingClicks.findIndex((click) => click.id === id);
        if (index >= 0) {
          awaitedSwitches.push({ at: pendingClicks[index].at, frame: event.frame });
          pendingClicks.splice(index, 1);
        }
      }
      stats.switchFrames.push(event.frame);
      studio.worn = new Set(event.outfit);
      break;
    case "notice":
      addNotice(event.message);
      break;
    case "error":
      showMessage(event.message);
      break;
    case "done":
      drawing = drawing.then(() => finish(event));
      break;
  }
  updateShelf();
  updateControls();
  showFigures();
}

function finish(event) {
  studio.stats.done = event;
  pendingClicks = [];
  setStreaming(false);
  updateShelf();
  const what = event.stopped ? "Stopped" : "Done";
  setStatus(`${what}: ${event.frames} frames` + (event.video ? "" : ", nothing was kept"));
  if (event.video) {
    $("download").href = `${event.video}?t=${Date.now()}`;
    $("download").hidden = false;
  }
  if (event.generated_fps !== null && event.generated_fps !== undefined) {
    studio.stats.generatedFps = event.generated_fps;
  }
  showFigures();
}

function onFrame(buffer) {
  const index = new DataView(buffer).getUint32(0);
  const blob = new Blob([buffer.slice(4)], { type: "image/jpeg" });
  drawing = drawing
    .then(() => createImageBitmap(blob))
    .then((bitmap) => draw(index, bitmap))
    .catch((error) => showMessage(`frame ${index}: ${error}`));
}

function draw(index, bitmap) {
  const canvas = $("video");
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const now = performance.now();
  const stats = studio.stats;
  stats.framesShown += 1;
  stats.lastFrame = index;
  if (stats.firstShownAt === null) {
    stats.firstShownAt = now;
    stats.firstFrameMs = now - startedAt;
  }
  stats.lastShownAt = now;
  if (stats.framesShown > 1) {
    stats.meanShownFps = (stats.framesShown - 1) / ((now - stats.firstShownAt) / 1000);
  }
  awaitedSwitches = awaitedSwitches.filter((awaited) => {
    if (index < awaited.frame) return true;
    stats.switchLatenciesMs.push(now - awaited.at);
    return false;
  });
  showFigures();
}

function showFigures() {
  const stats = studio.stats;
  const number = (value, digits, unit = "") => (value === null ? "–" : `${value.toFixed(digits)}${unit}`);
  $("fps-shown").textContent = number(stats.meanShownFps, 1);
  $("fps-generated").textContent = number(stats.generatedFps, 1);
  $("first-frame").textContent = number(stats.firstFrameMs === null ? null : stats.firstFrameMs / 1000, 2, " s");
  $("latency").textContent = stats.switchLatenciesMs.length
    ? stats.switchLatenciesMs.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(", ")
    : "–";
  $("frame-count").textContent = String(stats.framesShown);
}

// -- start ------------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/stream`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("message", (message) => {
    if (typeof message.data === "string") {
      onEvent(JSON.parse(message.data));
    } else {
      onFrame(message.data);
    }
  });
  socket.addEventListener("open", updateControls);
  socket.addEventListener("close", () => {
    $("connection").textContent = "disconnected: reload the page";
    studio.session = null;
    setStreaming(false);
  });
}

$("user-file").addEventListener("change", onUserFile);
$("motion-file").addEventListener("change", onMotionFile);
$("garment-file").addEventListener("change", onGarmentFiles);
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
updateControls();
connect();
