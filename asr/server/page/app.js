// The page of `asr serve`: live transcription from the microphone over the WebSocket /v1/stream, and
// file transcription over POST /v1/audio/transcriptions (docs/serving.md has both protocols).
// Plain modern JavaScript, no build step: the server sends these files as they are.

const SAMPLE_RATE = 16000;   // what the page sends and the model hears
const LOW_CONFIDENCE = 0.5;  // words below it are shown dimmer
const KEY_STORAGE = "asr.apiKey";
const DONE_TIMEOUT_MS = 30000;  // after {"type": "end"}: the server decodes the last utterance, then says done

const $ = (id) => document.getElementById(id);

// --- the API key, used by both parts -------------------------------------------------------------------

const keyInput = $("api-key");
keyInput.value = localStorage.getItem(KEY_STORAGE) ?? "";
keyInput.addEventListener("input", () => {
  const key = keyInput.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
});
$("key-form").addEventListener("submit", (event) => event.preventDefault());  // Enter must not reload the page
const apiKey = () => keyInput.value.trim();
const authHeaders = () => (apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {});

// --- shared display helpers ----------------------------------------------------------------------------

function setStatus(element, text, kind = "info") {
  element.textContent = kind === "error" ? `Error: ${text}` : text;
  element.classList.toggle("error", kind === "error");
}

function clock(seconds) {  // 83.25 -> "1:23.3"
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - 60 * minutes).toFixed(1).padStart(4, "0")}`;
}

function wordSpan(word) {
  const span = document.createElement("span");
  span.className = "word";
  span.textContent = word.word;
  if (typeof word.confidence === "number") {
    span.title = `confidence ${word.confidence.toFixed(2)}`;
    if (word.confidence < LOW_CONFIDENCE) span.classList.add("low");
  }
  return span;
}

// --- live: microphone -> AudioWorklet -> WebSocket -> partials and finals --------------------------------

const recordButton = $("record");
const liveStatus = $("live-status");
const transcript = $("transcript");
const finalsList = $("finals");
const partialLine = $("partial");

let live = null;  // the recording in progress: {stream, context, source, node, socket, done, ...}

function setLiveState(state) {
  transcript.dataset.state = state;  // idle, starting, recording, stopping, done, error (tests wait on it)
  recordButton.textContent = state === "recording" ? "Stop" : "Record";
  recordButton.disabled = state === "starting" || state === "stopping";
  recordButton.classList.toggle("recording", state === "recording");
}

function count(name) {
  transcript.dataset[name] = String(Number(transcript.dataset[name]) + 1);
}

function showPartial(message) {
  partialLine.textContent = message.text;
  if (message.text) count("partials");
}

function showFinal(message) {
  if (transcript.dataset.finals === "0") transcript.dataset.partialsBeforeFirstFinal = transcript.dataset.partials;
  count("finals");
  partialLine.textContent = "";
  if (!message.text && !message.warning) return;  // an utterance of nothing: noise the model heard as no words
  const item = document.createElement("li");
  item.className = "final";
  item.dataset.text = message.text;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${clock(message.start)}–${clock(message.end)}`;
  const text = document.createElement("span");
  text.className = "text";
  const words = message.words ?? [];
  if (words.length) {
    words.forEach((word, i) => text.append(...(i ? [" "] : []), wordSpan(word)));
  } else {
    text.textContent = message.text;
  }
  item.append(time, text);
  if (message.warning) {
    const warning = document.createElement("p");
    warning.className = "warning";
    warning.textContent = message.warning;
    item.append(warning);
  }
  finalsList.append(item);
}

async function openContext(sampleRate) {
  const context = sampleRate ? new AudioContext({ sampleRate }) : new AudioContext();
  await context.audioWorklet.addModule(new URL("recorder-worklet.js", import.meta.url));
  return context;
}

async function openMicrophone(current) {
  // A 16 kHz context makes the browser resample the microphone (Chromium does, well). Where a browser
  // refuses that rate, or refuses to connect a microphone running at another rate to it (Firefox), the
  // context runs at the device's rate and the worklet resamples. The context is made before the microphone
  // is opened, so that no speech is lost while its module loads.
  let atModelRate = true;
  try {
    current.context = await openContext(SAMPLE_RATE);
  } catch {
    atModelRate = false;
    current.context = await openContext();
  }
  setStatus(liveStatus, "Asking for the microphone…");
  current.stream = await navigator.mediaDevices.getUserMedia({
    // The model was trained on unprocessed recordings: no echo cancelling, denoising or gain riding.
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  try {
    current.source = current.context.createMediaStreamSource(current.stream);
  } catch (error) {
    if (!atModelRate) throw error;
    current.context.close();
    current.context = await openContext();
    current.source = current.context.createMediaStreamSource(current.stream);
  }
}

function openSocket() {
  const url = new URL("v1/stream", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // A browser cannot set headers on a WebSocket, so the key travels in the query.
  const query = { sample_rate: SAMPLE_RATE, format: "f32le", ...(apiKey() && { api_key: apiKey() }) };
  url.search = new URLSearchParams(query);
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(socket);
    socket.onclose = (event) => whyRefused(event).then((message) => reject(new Error(message)));
  });
}

async function whyRefused(event) {
  // A browser hides the HTTP status of a refused handshake (401 for the key, 503 when busy): ask an HTTP
  // route that takes the same key.
  try {
    const response = await fetch("v1/models", { headers: authHeaders() });
    if (!response.ok) return `cannot stream: ${await errorMessage(response)}`;
  } catch {
    return "cannot reach the server";
  }
  return `the server refused the stream (${closeReason(event)}); it may be busy: try again shortly`;
}

function closeReason(event) {  // the close code, and the server's reason where it gave one
  return event.reason ? `${event.code}: ${event.reason}` : `code ${event.code}`;
}

function onServerMessage(event) {
  if (!live || typeof event.data !== "string") return;
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    setStatus(liveStatus, `the server sent something that is not JSON: ${event.data.slice(0, 80)}`, "error");
    return;
  }
  if (message.type === "partial") showPartial(message);
  else if (message.type === "final") showFinal(message);
  else if (message.type === "error") {
    live.failed = true;
    setStatus(liveStatus, message.error, "error");
  } else if (message.type === "done") {
    live.gotDone = true;
    live.resolveDone();
  }
}

async function startRecording() {
  setLiveState("starting");
  finalsList.replaceChildren();
  partialLine.textContent = "";
  Object.assign(transcript.dataset, { partials: "0", finals: "0" });
  delete transcript.dataset.partialsBeforeFirstFinal;
  const current = { failed: false, stopping: false, pending: [] };
  current.done = new Promise((resolve) => { current.resolveDone = resolve; });
  live = current;
  try {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("the microphone needs a secure page: open it over https, or as http://localhost");
    }
    await openMicrophone(current);
    current.node = new AudioWorkletNode(current.context, "recorder", {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
      processorOptions: { blockSeconds: 0.1 },
    });
    current.node.port.onmessage = (event) => {
      // Float32Array samples in the machine's byte order: little-endian on every platform browsers run on.
      // Blocks recorded while the connection opens wait for it, so that the first words are not lost.
      if (event.data instanceof Float32Array) {
        if (current.socket?.readyState === WebSocket.OPEN) current.socket.send(event.data.buffer);
        else if (!current.socket) current.pending.push(event.data.buffer);
      } else if (event.data === "flushed") {
        current.resolveFlushed?.();
      }
    };
    // Only nodes that lead to the destination are pulled by every browser: a muted path keeps the worklet running.
    const mute = new GainNode(current.context, { gain: 0 });
    current.source.connect(current.node).connect(mute).connect(current.context.destination);
    if (current.context.state === "suspended") await current.context.resume();
    for (const track of current.stream.getAudioTracks()) track.onended = () => stopRecording();

    setStatus(liveStatus, "Connecting…");
    const socket = await openSocket();
    if (live !== current) {  // failed or stopped meanwhile
      socket.close();
      return;
    }
    current.socket = socket;
    socket.onmessage = onServerMessage;
    socket.onclose = (event) => {
      if (live !== current || current.finished || current.gotDone) return;
      // After an error event the server's message says more than the close code.
      fail(current.failed ? null : new Error(`the connection closed (${closeReason(event)})`));
    };
    for (const block of current.pending) socket.send(block);
    current.pending = [];
    setLiveState("recording");
    const rate = current.context.sampleRate;
    const resampling = rate !== SAMPLE_RATE ? ` (resampling ${rate} Hz here)` : "";
    setStatus(liveStatus, `Recording${resampling}: speak, then press Stop.`);
  } catch (error) {
    if (live === current) fail(describeStartError(error));
  }
}

function describeStartError(error) {
  if (error.name === "NotAllowedError") return new Error("the microphone is blocked: allow it for this page");
  if (error.name === "NotFoundError") return new Error("no microphone found");
  if (error.name === "NotReadableError") return new Error("the microphone is in use by another program");
  return error;
}

async function stopRecording() {
  if (!live || live.stopping) return;
  if (!live.socket) {  // the microphone ended (unplugged) before the connection opened
    fail(new Error("the microphone stopped"));
    return;
  }
  live.stopping = true;
  setLiveState("stopping");
  setStatus(liveStatus, "Finishing the last words…");
  const current = live;
  for (const track of current.stream.getTracks()) track.stop();
  // The worklet holds up to 100 ms not yet sent: ask for it before saying the audio is over.
  await Promise.race([
    new Promise((resolve) => { current.resolveFlushed = resolve; current.node.port.postMessage("flush"); }),
    new Promise((resolve) => setTimeout(resolve, 1000)),
  ]);
  current.source.disconnect();
  current.node.disconnect();
  if (current.socket.readyState !== WebSocket.OPEN) return;  // closed meanwhile: fail() has said why
  current.socket.send(JSON.stringify({ type: "end" }));
  const done = await Promise.race([
    current.done.then(() => true),
    new Promise((resolve) => setTimeout(() => resolve(false), DONE_TIMEOUT_MS)),
  ]);
  if (live !== current) return;
  if (!done) {
    fail(new Error(`the server did not finish within ${DONE_TIMEOUT_MS / 1000} s`));
    return;
  }
  current.finished = true;
  current.socket.close(1000);
  current.context.close();
  live = null;
  setLiveState("done");
  if (!current.failed) {
    const n = finalsList.children.length;
    setStatus(liveStatus, `Done: ${n} utterance${n === 1 ? "" : "s"}.`);
  }
}

function fail(error) {  // error: null where the status line already says what went wrong
  if (error) setStatus(liveStatus, error.message, "error");
  if (live) {
    live.finished = true;
    live.stream?.getTracks().forEach((track) => track.stop());
    if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close();
    live.context?.close();
    live = null;
  }
  partialLine.textContent = "";
  setLiveState("error");
}

recordButton.addEventListener("click", () => (live ? stopRecording() : startRecording()));

// --- file: upload -> verbose_json -> text, words, subtitles ----------------------------------------------

const fileInput = $("file-input");
const dropZone = $("drop-zone");
const fileStatus = $("file-status");
const fileResult = $("file-result");
let currentFile = null;  // kept to ask for the subtitles: the server keeps nothing between requests

async function transcriptionRequest(file, format) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", "asr");  // the server has one model and takes any name, as OpenAI's API requires one
  form.append("response_format", format);
  if (format === "verbose_json") {
    for (const granularity of ["word", "segment"]) form.append("timestamp_granularities[]", granularity);
  }
  let response;
  try {
    response = await fetch("v1/audio/transcriptions", { method: "POST", headers: authHeaders(), body: form });
  } catch {
    throw new Error("cannot reach the server");
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.text();
    try {
      message = JSON.parse(body).error?.message ?? message;
    } catch {
      if (body) message = body.slice(0, 200);
    }
  } catch {
    // keep the status line
  }
  if (response.status === 401) {
    $("settings").open = true;
    return `${message.replace(/\.$/, "")}. Enter the key under “API key” at the top of the page.`;
  }
  const retry = response.headers.get("Retry-After");
  return retry ? `${message} (the server is busy: try again in ${retry} s)` : message;
}

async function transcribeFile(file) {
  currentFile = file;
  fileResult.hidden = true;
  setStatus(fileStatus, `Transcribing ${file.name}…`);
  const started = performance.now();
  try {
    const result = await (await transcriptionRequest(file, "verbose_json")).json();
    if (currentFile !== file) return;  // another file was chosen meanwhile
    showFileResult(result);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(fileStatus, `${file.name}: ${result.duration.toFixed(1)} s of audio, transcribed in ${seconds} s.`);
  } catch (error) {
    if (currentFile === file) setStatus(fileStatus, named(file, error.message), "error");
  }
}

function showFileResult(result) {
  $("file-text").textContent = result.text || "(no words)";
  const warning = $("file-warning");
  warning.textContent = result.warning ?? "";
  warning.hidden = !result.warning;
  const rows = (result.words ?? []).map((word) => {
    const row = document.createElement("tr");
    if (word.confidence < LOW_CONFIDENCE) row.className = "low";
    const cells = [word.word, word.start.toFixed(2), word.end.toFixed(2), word.confidence?.toFixed(2) ?? "—"];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  });
  $("words").tBodies[0].replaceChildren(...rows);
  fileResult.hidden = false;
}

async function download(format, button) {
  const file = currentFile;
  if (!file) return;
  button.disabled = true;
  setStatus(fileStatus, `Making ${file.name}'s .${format}…`);
  try {
    const text = await (await transcriptionRequest(file, format)).text();
    const type = format === "srt" ? "application/x-subrip" : "text/vtt";
    const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
    const link = Object.assign(document.createElement("a"), { href: url, download: `${stem(file.name)}.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus(fileStatus, `Saved ${link.download}.`);
  } catch (error) {
    setStatus(fileStatus, named(file, error.message), "error");
  } finally {
    button.disabled = false;
  }
}

function named(file, message) {  // the server's messages about a file name it already
  return message.includes(file.name) ? message : `${file.name}: ${message}`;
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

fileInput.addEventListener("change", () => {
  if (fileInput.files.length) transcribeFile(fileInput.files[0]);
  fileInput.value = "";  // choosing the same file again transcribes it again
});
for (const [id, format] of [["download-srt", "srt"], ["download-vtt", "vtt"]]) {
  $(id).addEventListener("click", (event) => download(format, event.currentTarget));
}
// A file dropped anywhere on the page is taken, rather than opened by the browser in place of the page.
for (const type of ["dragenter", "dragover"]) {
  window.addEventListener(type, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
window.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) dropZone.classList.remove("dragging");
});
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  const file = event.dataTransfer?.files[0];
  if (file) transcribeFile(file);
});

// --- ready -------------------------------------------------------------------------------------------

if (window.isSecureContext && navigator.mediaDevices?.getUserMedia) {
  recordButton.disabled = false;
  setStatus(liveStatus, "Press Record and speak.");
} else {
  setStatus(liveStatus, "The microphone needs a secure page: open this over https, or as http://localhost. "
    + "Files work here.");
}
document.body.dataset.ready = "true";
