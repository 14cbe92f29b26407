"""MODEL_CARD.md: what a run is, how well it works, what it is for and how to load it.

Built from `graft.json` and `metrics.json` alone (plus `export/parity.json` when the run was
exported), so it can be rewritten at any time, on any machine. A leaf module like `report.py`:
it imports nothing from graftkit but `evaluation.metrics` and the run spec (`rundir.spec`), so
training can call it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graftkit.evaluation.metrics import headline_metrics
from graftkit.rundir._files import read_run_json
from graftkit.rundir.spec import RunSpec

MODEL_CARD_MD = "MODEL_CARD.md"
_SMALL_PER_CLASS = 50  # fewer training examples per class than this: say the estimate is rough


def write_model_card(run_dir: str | Path, task_card: dict[str, Any] | None = None) -> Path:
    """Write `RUN/MODEL_CARD.md` from the run's graft.json and metrics.json.

    Sections: summary, intended use, how to load it, data, metrics (per class where the task has
    classes), training settings, limitations, export and provenance.

    Args:
        run_dir: A run directory with graft.json and metrics.json.
        task_card: The run's task's own words (`Task.card()`): `does` (what the model does with
            an input) and `caveats` (limitations of the task itself).

    Returns:
        The path of MODEL_CARD.md.

    Raises:
        RunDirError: graft.json is missing or invalid. FileNotFoundError: metrics.json is missing.

    Example:
        >>> write_model_card("runs/flowers").read_text().splitlines()[0]
        '# Model card: flowers'
    """
    run = Path(run_dir)
    meta = RunSpec.read(run)
    metrics = read_run_json(run / "metrics.json")
    parity_path = run / "export" / "parity.json"
    parity = read_run_json(parity_path, fix=f"export the run again (`graft export {run}`)") if parity_path.is_file() else {}
    sections = [
        _summary(run, meta, metrics),
        _intended_use(meta, task_card or {}),
        _how_to_load(run, meta, parity),
        _data(meta),
        _metrics(metrics),
        _settings(meta, metrics),
        _limitations(meta, metrics, task_card or {}),
        _export(parity),
        _provenance(meta),
    ]
    path = run / MODEL_CARD_MD
    path.write_text("\n\n".join(s for s in sections if s).rstrip() + "\n", encoding="utf-8")
    return path


def _modality(meta: RunSpec) -> str:
    return meta.modality


def _classes(meta: RunSpec) -> list[str]:
    return list(meta.task.get("classes") or [])


def _summary(run: Path, meta: RunSpec, metrics: dict[str, Any]) -> str:
    task = meta.task["name"]
    model = meta.model
    classes = _classes(meta)
    what = f"{task} model over {len(classes)} classes" if classes else f"{task} model"
    modality = _modality(meta)
    lines = [
        f"# Model card: {run.name}",
        "",
        f"{'An' if modality == 'image' else 'A'} {modality} {what}: `{model.model_id}` (`{model.arch}`) with a new output layer, "
        f"trained by graftkit with the `{meta.strategy}` strategy.",
        "",
        f"- Created: {meta.created}; status: {meta.status}",
    ]
    head = headline_metrics(metrics.get("val") or {})
    if head:
        lines.append("- Validation: " + ", ".join(f"{k} {_num(v)}" for k, v in list(head.items())[:4]) + f" (n = {metrics['val'].get('n', '?')})")
    if classes:
        shown = ", ".join(f"`{c}`" for c in classes[:30]) + (f" … ({len(classes)} in all)" if len(classes) > 30 else "")
        lines.append(f"- Classes: {shown}")
    return "\n".join(lines)


def _intended_use(meta: RunSpec, task_card: dict[str, Any]) -> str:
    modality = _modality(meta)
    inputs = f"{modality}s like those it was trained on"
    does = task_card.get("does") or f"performs its {meta.task['name']} task on each input"
    return (
        "## Intended use\n\n"
        f"The model {does}, for {inputs} (see Data). It is meant for the data set it was trained on and for "
        "inputs from the same source: other cameras, domains, languages or label definitions need a new "
        "evaluation (`graft evaluate RUN NEW_DATA`) before anyone relies on it. It is not meant for decisions "
        "about people without a human review of each output."
    )


def _how_to_load(run: Path, meta: RunSpec, parity: dict[str, Any]) -> str:
    text = {"image": "photo.jpg", "audio": "clip.wav"}.get(_modality(meta), "a text to classify")
    example = text if _modality(meta) in ("image", "audio") else repr(text)  # quoted for the shell
    lines = [
        "## How to load it",
        "",
        "Everything needed is in this folder: no training data, no network, no pickle.",
        "",
        "```bash",
        f"graft predict {run} {example} --top-k 3",
        f"graft serve {run} --port 8080          # JSON API and a web page at http://localhost:8080/",
        f"graft export {run} --format onnx       # export/model.onnx + export/preprocess.json",
        "```",
        "",
        "```python",
        "import graftkit",
        f'predictor = graftkit.load("{run}")            # backend="onnx" runs export/model.onnx',
        f"print(predictor.predict([{text!r}], top_k=3)[0])",
        "```",
    ]
    if parity:
        lines += ["", "The exported model in `export/` takes the inputs described in `export/preprocess.json` "
                      "(preprocessing, input names and shapes, label map) and can be run by any ONNX Runtime client."]  # fmt: skip
    return "\n".join(lines)


def _data(meta: RunSpec) -> str:
    data = meta.data
    if not data:
        return ""
    lines = ["## Data", ""]
    lines.append(f"- Source: `{data.get('root', '?')}` ({data.get('layout', '?')}); validation split: {data.get('split', '?')}")
    totals = data.get("totals") or {}
    if totals:
        lines.append("- Examples: " + ", ".join(f"{k} {v}" for k, v in totals.items() if v))
    counts = data.get("counts") or {}
    splits = [k for k in ("train", "val", "test") if any((counts.get(k) or {}).values())]
    if "train" in splits:
        lines += ["", "| class | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        for c in counts["train"]:
            lines.append(f"| {_cell(c)} | " + " | ".join(str(counts[k].get(c, 0)) for k in splits) + " |")
    return "\n".join(lines)


def _metrics(metrics: dict[str, Any]) -> str:
    lines = ["## Metrics"]
    for split in ("val", "test"):
        m = metrics.get(split)
        if not m:
            continue
        head = headline_metrics(m)
        lines += ["", f"**{'Validation' if split == 'val' else 'Test'}** (n = {m.get('n', '?')}): "
                  + ", ".join(f"{k} {_num(v)}" for k, v in head.items())]  # fmt: skip
        per_class = m.get("per_class") or {}
        if per_class:
            lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            for c, r in per_class.items():
                lines.append(f"| {_cell(c)} | {_num(r.get('precision'))} | {_num(r.get('recall'))} | {_num(r.get('f1'))} | {r.get('support', '')} |")
    if len(lines) == 1:
        return ""
    lines += ["", f"Trained {metrics.get('epochs', '?')} epochs in {metrics.get('train_seconds', '?')} s; best epoch {metrics.get('best_epoch', '?')}."]
    return "\n".join(lines)


def _settings(meta: RunSpec, metrics: dict[str, Any]) -> str:
    cfg = {k: v for k, v in meta.config.items() if v is not None}
    if not cfg:
        return ""
    lines = ["## Training settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(json.dumps(v) if isinstance(v, (dict, list)) else str(v))} |" for k, v in cfg.items()]
    precision = meta.precision
    lines += ["", f"Precision: training {precision.train}, inference {precision.inference} "
                  f"({precision.inference_reason})".rstrip(" ()")]  # fmt: skip
    return "\n".join(lines)


def _limitations(meta: RunSpec, metrics: dict[str, Any], task_card: dict[str, Any]) -> str:
    notes = []
    counts = (meta.data.get("counts") or {}).get("train") or {}
    small = [c for c, n in counts.items() if n < _SMALL_PER_CLASS]
    if small:
        notes.append(f"{len(small)} of {len(counts)} classes have fewer than {_SMALL_PER_CLASS} training examples: "
                     "the metrics above are rough estimates with wide error bars.")  # fmt: skip
    n_val = (metrics.get("val") or {}).get("n")
    if isinstance(n_val, int) and n_val < 200:
        notes.append(f"Validation used {n_val} examples; one example moves accuracy by {100 / max(n_val, 1):.1f} points.")
    per_class = (metrics.get("val") or {}).get("per_class") or {}
    weak = sorted((r.get("recall", 1.0), c) for c, r in per_class.items() if r.get("recall", 1.0) < 0.7)
    if weak:
        notes.append("Weakest classes (validation recall < 0.7): " + ", ".join(f"`{c}` {_num(r)}" for r, c in weak[:8]) + ".")
    notes.extend(task_card.get("caveats", []))
    if _modality(meta) == "image":
        size = meta.preprocess.get("input_size")
        notes.append(f"Images are resized and centre-cropped to {size}x{size} pixels: small details and content near the edges may be lost.")
    elif _modality(meta) == "audio":
        notes.append(f"Clips are resampled to {meta.preprocess.get('sample_rate')} Hz mono and cut or zero-padded to {meta.preprocess.get('max_seconds')} s: anything later is not heard.")
    else:
        notes.append(f"Texts longer than {meta.preprocess.get('max_length')} tokens are cut; only their start is read.")
    notes.append(f"The pretrained weights (`{meta.model.model_id}`) carry the biases of the data they were trained on.")
    return "## Limitations\n\n" + "\n".join(f"- {n}" for n in notes)


def _export(parity: dict[str, Any]) -> str:
    if not parity:
        return ""
    lines = ["## Export", "", "| file | agreement with PyTorch | max abs logit diff | inputs | validation | latency (1 input) |", "|---|---|---|---|---|---|"]
    for key, r in parity.items():
        val = r.get("validation") or {}
        metric = val.get("metric")
        v = f"{metric} {_num(val[key][metric])} (change {val['change']:+.4f})" if metric and key in val else ""
        lat = (r.get("latency_ms_single") or {}).get(key)
        lines.append(f"| `{r.get('file')}` | {_num(r.get('agreement'))} ({r.get('agreement_on')}) | {r.get('max_abs_logit_diff', 0):.3g} | "
                     f"{_cell(str(r.get('inputs')))} | {v} | {f'{lat:.1f} ms' if lat else ''} |")  # fmt: skip
    return "\n".join(lines)


def _provenance(meta: RunSpec) -> str:
    model = meta.model
    versions = meta.versions
    lines = ["## Provenance", "", f"- Pretrained weights: `{model.model_id}` from {model.source}, SHA-256 `{model.sha256}`"]
    if versions:
        lines.append("- Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("- Everything above comes from `graft.json` and `metrics.json` in this folder.")
    return "\n".join(lines)


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")
