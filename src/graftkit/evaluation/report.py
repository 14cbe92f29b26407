"""report.html: one self-contained page with the metrics, settings, data summary and plots."""

from __future__ import annotations

import datetime as _dt
import json
from html import escape
from pathlib import Path
from typing import Any

from graftkit.evaluation.metrics import headline_metrics

LEARNING_CURVES_PNG = "learning_curves.png"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class.png"
REPORT_HTML = "report.html"
_SCORES = ("precision", "recall", "f1")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.meta { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .9rem; min-width: 7rem; }
.card .v { font-size: 1.4rem; font-weight: 600; }
.card .k { color: #666; font-size: .8rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: .5rem 0; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
"""


def _fmt_metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and abs(value) < 1e4 else _fmt(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"  # settings such as lr=1e-5 must not print as 0.0000
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td class="key">{escape(k)}</td><td>{escape(_fmt(v))}</td></tr>'
        for k, v in _flatten(d)
    )
    return f"<table>{rows}</table>"


def _headline_html(metrics: dict[str, Any]) -> str:
    cards = "".join(
        f'<div class="card"><div class="v">{escape(_fmt_metric(v))}</div>'
        f'<div class="k">{escape(k)}</div></div>'
        for k, v in headline_metrics(metrics).items()
    )
    if "n" in metrics:
        n = escape(str(metrics["n"]))
        cards += f'<div class="card"><div class="v">{n}</div><div class="k">n</div></div>'
    return f'<div class="cards">{cards}</div>'


def _per_task_html(tasks: dict[str, dict[str, Any]]) -> str:
    """One row per task of a multitask run: its labelled samples and scalar metrics."""
    names = list(dict.fromkeys(k for m in tasks.values() for k, v in m.items() if isinstance(v, (int, float)) and k != "n"))
    head = "<tr><th>task</th><th>n</th>" + "".join(f"<th>{escape(k)}</th>" for k in names) + "</tr>"
    rows = "".join(
        f"<tr><td>{escape(str(t))}</td><td class=\"num\">{escape(str(m.get('n', '')))}</td>"
        + "".join(f'<td class="num">{escape(_fmt_metric(m[k])) if isinstance(m.get(k), (int, float)) else "–"}</td>' for k in names)
        + "</tr>"
        for t, m in tasks.items()
    )
    return f"<table>{head}{rows}</table>"


def _per_class_html(per_class: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td>"
        + "".join(f'<td class="num">{float(r.get(k, 0.0)):.3f}</td>' for k in _SCORES)
        + f'<td class="num">{int(r.get("support", 0))}</td></tr>'
        for name, r in per_class.items()
    )
    return f"<table>{head}{rows}</table>"


def _img(filename: str, alt: str) -> str:
    return f'<img src="{escape(filename)}" alt="{escape(alt)}">'


def html_page(title: str, sections: list[str]) -> str:
    """A whole self-contained HTML page: the report's style, `title`, then `sections` (HTML)."""
    created = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">graftkit report &middot; {escape(created)}</p>\n'
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    metrics: dict[str, Any],
    split_name: str = "val",
    history: list[dict[str, Any]] | None = None,
    warmup: list[dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    data_summary: dict[str, Any] | None = None,
    best_epoch: int | None = None,
    examples: list[dict[str, Any]] | None = None,
    auto: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    figures: list[dict[str, Any]] | None = None,
    adaptation: dict[str, Any] | None = None,
) -> Path:
    """Write ``report.html`` and its PNG plots into ``out_dir``.

    Plots: ``learning_curves.png`` (only when ``history`` is given), ``confusion_matrix.png``
    (when ``metrics`` has a confusion matrix) and ``per_class.png`` (when it has per-class
    scores). The HTML has inline CSS and refers to the PNGs by relative file name, so the
    directory can be moved or zipped as a whole. Every user-supplied string is HTML-escaped.

    Args:
        out_dir: Directory to write into (created if missing).
        title: Page title, e.g. the run name.
        metrics: A dict from `classification_metrics` for the ``split_name`` split.
        split_name: Which split ``metrics`` describes (``"val"``, ``"test"``...).
        history: Per-epoch rows for the learning curves (see `plot_learning_curves`).
        warmup: LP-FT's head warm-up rows, drawn before epoch 1 in a shaded band.
        settings: Training settings; nested dicts are flattened to dotted keys.
        data_summary: Facts about the data (counts per split, class balance...).
        best_epoch: Epoch whose weights were kept, marked on the learning curves.
        figures: Pictures a task drew into ``out_dir`` (``title``, ``file``), shown in order
            (detection: precision-recall curves, validation images with boxes).
        examples: Rows of generated text (``input``, ``reference``, ``generated``) to show.
        auto: How ``--strategy auto`` / ``--time-budget`` planned the run (``strategy``,
            ``epochs``, ``reasons``, ``measurements``).
        adaptation: Domain adaptation's record (`training/adapt.py`): per-epoch label-free target
            scores, the choice and why, proxy A-distance, embedding plots, seeds, agreement.
        calibration: Temperature scaling fitted on validation (``temperature``, ``ece``,
            ``ece_calibrated``, ``cross_fit``: how the "after" figure was obtained; runs from before
            cross-fitting lack it and are shown as in-sample); shown with ``reliability.png`` when
            that file is in ``out_dir``.

    Returns:
        The path of ``report.html``.

    Example:
        >>> write_report("runs/cats", title="cats", metrics=m, history=rows)  # doctest: +SKIP
    """
    from graftkit.evaluation.plots import (
        plot_confusion_matrix,
        plot_learning_curves,
        plot_per_class,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {k: v for k, v in metrics.items() if k != "examples"}
    per_class = metrics.get("per_class") or {}
    class_names = list(per_class)
    split = escape(split_name)

    sections: list[str] = [
        f"<h2>Metrics ({split})</h2>",
        _headline_html(metrics),
    ]
    if metrics.get("cross_fit") and metrics.get("thresholds"):  # multi-label: figures at thresholds tuned on validation
        sections.append(f'<p class="meta">Decision thresholds: {escape(str(metrics["cross_fit"]))}.</p>')
    if isinstance(metrics.get("tasks"), dict):  # multitask: each task's own scalar metrics, on its labelled samples
        sections += [f"<h2>Per task ({split})</h2>", _per_task_html(metrics["tasks"])]
    if history:
        plot_learning_curves(history, out / LEARNING_CURVES_PNG, best_epoch=best_epoch, warmup=warmup)
        sections += ["<h2>Learning curves</h2>", _img(LEARNING_CURVES_PNG, "learning curves")]
        if warmup:
            sections.append(f'<p class="meta">Epochs {1 - len(warmup)} to 0 (shaded): the head warm-up, a linear probe on the '
                            f"frozen backbone's cached features before fine-tuning starts at epoch 1.</p>")  # fmt: skip
        if best_epoch is not None:
            sections.append(f'<p class="meta">Best epoch: {escape(str(best_epoch))}</p>')
    cm = metrics.get("confusion_matrix")
    if cm is not None and class_names and len(cm) == len(class_names):
        plot_confusion_matrix(cm, class_names, out / CONFUSION_MATRIX_PNG)
        sections += [
            f"<h2>Confusion matrix ({split})</h2>",
            '<p class="meta">Rows: true class; columns: predicted class; '
            "each row normalised to sum to 1.</p>",
            _img(CONFUSION_MATRIX_PNG, "confusion matrix"),
        ]
    if per_class:
        plot_per_class(per_class, out / PER_CLASS_PNG)
        sections += [
            f"<h2>Per-class scores ({split})</h2>",
            _per_class_html(per_class),
            _img(PER_CLASS_PNG, "per-class precision, recall and F1"),
        ]
    if metrics.get("clinical"):
        sections += _clinical_html(metrics["clinical"], out, split)
    if auto:
        reasons = "".join(f"<li>{escape(str(r))}</li>" for r in auto.get("reasons", []))
        sections += [
            f"<h2>Strategy: {escape(str(auto.get('strategy')))}"
            + (f", {escape(str(auto['epochs']))} epochs" if auto.get("epochs") is not None else " (solved, no epochs)") + "</h2>",
            f"<ul>{reasons}</ul>",
        ]
    if calibration:
        sections += [
            "<h2>Calibration (val)</h2>",
            f'<p class="meta">Temperature scaling: T = '
            f"{calibration['temperature']:.3f}; expected calibration error (15 bins) "
            f"{calibration['ece']:.4f} before, {calibration['ece_calibrated']:.4f} after "
            f"({escape(calibration.get('cross_fit') or 'fitted on the validation split; figures in-sample')}). "
            "Scaling never changes the predicted class.</p>",
        ]
        if (out / "reliability.png").is_file():
            sections.append(_img("reliability.png", "reliability diagram"))
    per_class_ap = metrics.get("per_class_ap") or {}
    if per_class_ap:
        head = "<tr><th>class</th><th>AP</th><th>AP50</th><th>recall</th><th>objects</th></tr>"
        cells = lambda r: "".join(f'<td class="num">{"–" if r.get(k) is None else f"{r[k]:.3f}"}</td>' for k in ("ap", "ap50", "recall"))  # noqa: E731
        rows = "".join(f"<tr><td>{escape(str(n))}</td>{cells(r)}<td class=\"num\">{int(r.get('support', 0))}</td></tr>" for n, r in per_class_ap.items())
        sections += [f"<h2>Average precision per class ({split})</h2>", f"<table>{head}{rows}</table>"]
    if adaptation:
        from graftkit.evaluation.adaptation import adaptation_html

        sections += adaptation_html(adaptation, _img)
    for fig in figures or []:
        sections += [f"<h2>{escape(str(fig['title']))}</h2>", _img(str(fig["file"]), str(fig["title"]))]
    if examples:
        cols = list(examples[0])
        rows = "".join("<tr>" + "".join(f"<td>{escape(str(e.get(c, '')))}</td>" for c in cols) + "</tr>" for e in examples)
        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        sections += [f"<h2>Examples ({split})</h2>", f"<table><tr>{head}</tr>{rows}</table>"]
    if data_summary:
        sections += ["<h2>Data</h2>", _kv_table(data_summary)]
    if settings:
        sections += ["<h2>Settings</h2>", _kv_table(settings)]

    html = html_page(title, sections)
    path = out / REPORT_HTML
    path.write_text(html, encoding="utf-8")
    return path


ROC_PNG = "roc.png"


def _clinical_html(clinical: dict[str, Any], out: Path, split: str) -> list[str]:
    """ROC-AUC / PR-AUC with CIs and the operating point per finding, and the ROC curve."""
    from graftkit.evaluation.clinical import findings, plot_roc

    def ci(m: dict[str, Any], key: str) -> str:
        value, interval = m.get(key), m.get(f"{key}_ci")
        if value is None:
            return "n/a"
        return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    head = "<tr><th>finding</th><th>ROC-AUC [95% CI]</th><th>PR-AUC [95% CI]</th><th>threshold</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th></tr>"
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{ci(m, 'roc_auc')}</td><td>{ci(m, 'pr_auc')}</td><td>{m['threshold']:.4f}</td>"
        + "".join(f"<td>{_fmt(m.get(k))}</td>" for k in ("sensitivity", "specificity", "ppv", "npv")) + "</tr>"
        for name, m in findings(clinical).items()
    )  # fmt: skip
    first = next(iter(findings(clinical).values()))
    rule, how = first["rule"], f"; thresholds {first['cross_fit']}" if first.get("cross_fit") else ""
    parts = [f"<h2>Clinical metrics ({split})</h2>",
             f'<p class="meta">Operating point: {escape(rule)}{escape(how)}; bootstrap 95% intervals (500 stratified resamples).</p>',
             f"<table>{head}{rows}</table>"]  # fmt: skip
    if any(m.get("roc_curve") for m in findings(clinical).values()):
        plot_roc(clinical, out / ROC_PNG)
        parts.append(_img(ROC_PNG, "ROC curve"))
    return parts
