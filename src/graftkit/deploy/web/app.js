// graftkit web page: plain JS, no build step. Talks to the same server's /info and /predict.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TOP_K = 5;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(v) {
  return typeof v === "number" ? (Math.abs(v) < 1e4 && !Number.isInteger(v) ? v.toFixed(3) : String(v)) : String(v);
}

function setStatus(text) { $("#status").textContent = text; }

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function renderCard(info) {
  document.title = `graftkit · ${info.name}`;
  $("#title").textContent = info.name;
  $("#subtitle").textContent = `${info.task} · ${info.modality} · ${info.model.id} · ${info.model.strategy} · backend ${info.backend}`;
  const card = $("#card");
  card.replaceChildren(el("h2", {}, "Model card"));
  const facts = el("table", { class: "kv" });
  const rows = [["task", info.task], ["model", `${info.model.id} (${info.model.arch})`], ["strategy", info.model.strategy],
    ["classes", info.classes.length ? info.classes.join(", ") : "—"], ["created", info.created || "?"]];
  if (info.input.kind === "image") rows.push(["input", `image, ${info.input.input_size}×${info.input.input_size} after resize and crop`]);
  else if (info.input.kind === "audio") rows.push(["input", `audio, ${info.input.sample_rate} Hz mono, cut or padded to ${info.input.max_seconds} s`]);
  else rows.push(["input", `text, up to ${info.input.max_tokens} tokens`]);
  if (info.data && info.data.totals) rows.push(["data", Object.entries(info.data.totals).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ")]);
  for (const [k, v] of rows) facts.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  card.append(facts);

  const val = info.metrics.val || {};
  if (Object.keys(val).length) {
    card.append(el("h3", {}, "Validation metrics"));
    const t = el("table", { class: "kv", id: "metrics" });
    for (const [k, v] of Object.entries(val)) t.append(el("tr", {}, el("th", {}, k), el("td", { class: "num" }, fmt(v))));
    card.append(t);
  }
  const per = info.metrics.per_class || {};
  if (Object.keys(per).length) {
    card.append(el("h3", {}, "Per class"));
    const t = el("table", { class: "grid" }, el("tr", {}, el("th", {}, "class"), el("th", {}, "precision"), el("th", {}, "recall"), el("th", {}, "F1"), el("th", {}, "n")));
    for (const [c, r] of Object.entries(per)) {
      const f3 = (v) => Number(v).toFixed(3);
      t.append(el("tr", {}, el("td", {}, c), el("td", { class: "num" }, f3(r.precision)), el("td", { class: "num" }, f3(r.recall)),
        el("td", { class: "num" }, f3(r.f1)), el("td", { class: "num" }, r.support)));
    }
    card.append(t);
  }
}

function renderPredictions(predictions) {
  const box = $("#results");
  box.replaceChildren();
  for (const p of predictions) {
    const list = el("ol", { class: "predictions" });
    for (const { label, score } of p.top_k) {
      const pct = Math.max(0, Math.min(1, score)) * 100;
      list.append(el("li", { class: "pred" },
        el("span", { class: "label" }, label),
        el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${pct.toFixed(1)}%` })),
        el("span", { class: "score" }, `${pct.toFixed(1)}%`)));
    }
    box.append(el("div", { class: "result" }, el("p", { class: "input meta" }, p.input), list));
  }
}

async function predict(init) {
  showError("");
  setStatus("predicting…");
  try {
    const response = await fetch(`predict?top_k=${TOP_K}`, { method: "POST", ...init });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      showError(body.error || `HTTP ${response.status}`);
      setStatus("error");
      return;
    }
    renderPredictions(body.predictions);
    setStatus("done");
  } catch (err) {
    showError(`request failed: ${err}`);
    setStatus("error");
  }
}

function predictFiles(files) {
  if (!files || !files.length) return;
  const preview = $("#preview");
  preview.onerror = () => { preview.hidden = true; };  // DICOM, 16-bit TIFF: the browser cannot show them; the model still reads them
  preview.src = URL.createObjectURL(files[0]);
  preview.hidden = false;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  predict({ body: form });
}

function setupImage() {
  $("#image-input").hidden = false;
  $("#file").addEventListener("change", (e) => predictFiles(e.target.files));
  const drop = $("#drop");
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => predictFiles(e.dataTransfer.files));
}

// --- audio: upload a file, or record from the microphone ------------------------------------
// A recording is MediaRecorder's webm/ogg (Opus), which libsndfile on the server cannot read, so
// the page decodes it with the Web Audio API, mixes it to mono and uploads a 16-bit PCM WAV; the
// server resamples it to the model's rate as it does any upload.

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
  }
  return new Blob([buffer], { type: "audio/wav" });
}

async function recordingToWav(blob) {
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  try {
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    const mono = new Float32Array(audio.length);
    for (let c = 0; c < audio.numberOfChannels; c++) {
      const ch = audio.getChannelData(c);
      for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / audio.numberOfChannels;
    }
    return { wav: encodeWav(mono, audio.sampleRate), seconds: audio.duration };
  } finally {
    ctx.close();
  }
}

function predictAudio(blob, name) {
  const playback = $("#playback");
  playback.src = URL.createObjectURL(blob);
  playback.hidden = false;
  const form = new FormData();
  form.append("file", blob, name);
  predict({ body: form });
}

function setupAudio(info) {
  $("#audio-input").hidden = false;
  const maxSeconds = Number(info.input.max_seconds) || 10;
  $("#audio-file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) predictAudio(f, f.name); });
  const drop = $("#audio-drop");
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  drop.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) predictAudio(f, f.name); });

  const button = $("#record");
  const note = (t) => { $("#record-status").textContent = t; };
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    button.disabled = true;
    note("recording needs a browser with MediaRecorder, on https or localhost");
    return;
  }
  let recorder = null, timer = null;
  note(`up to ${maxSeconds} s`);
  button.addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") { recorder.stop(); return; }
    showError("");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError(`no microphone: ${err.message || err}`);
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    recorder.onstop = async () => {
      clearTimeout(timer);
      stream.getTracks().forEach((t) => t.stop());
      button.classList.remove("recording");
      button.textContent = "● Record";
      note("encoding…");
      try {
        const { wav, seconds } = await recordingToWav(new Blob(chunks, { type: recorder.mimeType }));
        note(`recorded ${seconds.toFixed(1)} s (${recorder.mimeType || "audio"} → WAV)`);
        predictAudio(wav, "recording.wav");
      } catch (err) {
        showError(`cannot decode the recording: ${err.message || err}`);
        note("");
      }
    };
    recorder.start();
    button.classList.add("recording");
    button.textContent = "■ Stop";
    note(`recording… (stops by itself after ${maxSeconds} s)`);
    timer = setTimeout(() => { if (recorder.state === "recording") recorder.stop(); }, maxSeconds * 1000);
  });
}

function setupText() {
  $("#text-input").hidden = false;
  $("#text-input").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("#text").value;
    if (!text.trim()) { showError("type some text first"); return; }
    predict({ headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }) });
  });
}

async function main() {
  try {
    const info = await (await fetch("info")).json();
    renderCard(info);
    if (info.modality === "text") setupText(); else if (info.modality === "audio") setupAudio(info); else setupImage();
    setStatus("ready");
  } catch (err) {
    showError(`cannot load the model card: ${err}`);
  }
}

main();
