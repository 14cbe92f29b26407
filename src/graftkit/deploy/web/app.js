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
    if (info.modality === "text") setupText(); else setupImage();
    setStatus("ready");
  } catch (err) {
    showError(`cannot load the model card: ${err}`);
  }
}

main();
