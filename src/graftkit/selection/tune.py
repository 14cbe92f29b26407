"""`graft tune`: an Optuna search over the settings that matter most for transfer.

Every trial is a complete `graftkit.fit()` run into `OUT/trials/trial-NNN`; its validation metric
is reported to Optuna after every epoch through a loop callback, and Optuna's `MedianPruner`
stops a trial whose metric falls below the median of earlier trials at the same epoch (the
callback answers `Decision(stop=True)`). The time budget is kept twice: `study.optimize(timeout=)`
starts no trial after it, and a `TimeBudget` callback ends a running trial before an epoch would
end past it. The best trial's run directory is copied to `OUT/best` — a normal, complete run
directory that `graft evaluate`, `graft predict` and `graftkit.load` take — and `OUT/report.html`
shows the trials table, the optimisation history and the parameter importances.

Search space (`SPACE`; every parameter is sampled in every trial so that importances compare
like with like — a probe ignores augmentation and depth):

| parameter | values |
|---|---|
| `strategy` | `linear-probe`, `partial`, `finetune` (restrict with `strategies=`) |
| `depth` | N of `partial:N`, 1 … layer groups − 1 |
| `lr` | 1e-5 … 3e-2, log scale |
| `weight_decay` | 1e-5 … 0.1, log scale |
| `augment` | `none`, `light`, `strong` |
| `label_smoothing` | 0 … 0.2 |
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

SPACE: dict[str, Any] = {
    "strategy": ("linear-probe", "partial", "finetune"),
    "lr": (1e-5, 3e-2),
    "weight_decay": (1e-5, 1e-1),
    "augment": ("none", "light", "strong"),
    "label_smoothing": (0.0, 0.2),
}
"""The search space; `depth` (1 … layer groups − 1) is added per model."""

TUNE_JSON = "tune.json"
TRIALS_CSV = "trials.csv"
HISTORY_PNG = "tune_history.png"
IMPORTANCE_PNG = "param_importance.png"
REPORT_HTML = "report.html"


@dataclass
class TuneResult:
    """The search: every trial, the best one and where its run directory was kept."""

    best_value: float | None
    best_params: dict[str, Any]
    best_dir: Path | None
    trials: list[dict[str, Any]]
    importances: dict[str, float] = field(default_factory=dict)
    monitor: str = "accuracy"
    seconds: float = 0.0
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_dir": str(self.best_dir) if self.best_dir else None,
            "importances": self.importances,
            "seconds": self.seconds,
            "trials": self.trials,
        }


class OptunaReporter:
    """Loop callback: report the epoch's validation metric to an Optuna trial; stop if pruned.

    Args:
        trial: The `optuna.Trial`.
        monitor: The validation metric (`accuracy`, `macro_f1`, `loss`, ...).
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_epoch_end(self, state):
        from graftkit.training.loop import Decision

        self.trial.report(float(state.history[-1][f"val_{self.monitor}"]), step=state.epoch)
        if self.trial.should_prune():
            self.pruned = True
            return Decision(stop=True, reason=f"pruned by Optuna's median rule after epoch {state.epoch + 1}")
        return None


def tune(
    data: str | Path,
    *,
    model: str = "efficientnet_lite0",
    out: str | Path = "runs/tune",
    trials: int = 20,
    time_budget: float | None = None,
    epochs: int = 5,
    strategies: Sequence[str] = SPACE["strategy"],
    seed: int = 0,
    overwrite: bool = False,
    settings: dict[str, Any] | None = None,
) -> TuneResult:
    """Search learning rate, weight decay, strategy, depth, augmentation and label smoothing.

    Args:
        data: Training data, as for `graft train` (the same seeded split in every trial).
        model: Model id.
        out: Output folder: `trials/` (one run per trial), `best/` (the best run), `report.html`,
            `tune.json`, `trials.csv`, plots.
        trials: Most trials to run.
        time_budget: Seconds for the whole search (None: no limit).
        epochs: Epochs per trial (pruning may stop a trial earlier).
        strategies: Strategies to search among (`linear-probe`, `partial`, `finetune`).
        seed: Seeds the sampler and every trial's training.
        overwrite: Replace an existing `out`.
        settings: Fixed `TrainConfig` settings for every trial (`batch_size`, `image_size`, ...).

    Returns:
        A `TuneResult`; `best_dir` is a complete run directory.

    Raises:
        ConfigError: Bad strategies or trial count, or `out` exists without `overwrite`.

    Example:
        >>> r = tune("data/", model="efficientnet_lite0", trials=20, time_budget=1800)
        >>> graftkit.load(r.best_dir).predict(["x.jpg"])
    """
    import optuna

    from graftkit.errors import ConfigError
    from graftkit.selection._output import fresh_out_dir
    from graftkit.training.budget import TimeBudget
    from graftkit.training.fit import fit
    from graftkit.engine.progress import info

    settings = dict(settings or {})
    problems = []
    bad = [s for s in strategies if s not in SPACE["strategy"]]
    if bad or not strategies:
        problems.append(f"--strategies {','.join(strategies)!r}: choose among {', '.join(SPACE['strategy'])}")
    if trials < 1:
        problems.append(f"--trials must be at least 1, got {trials}")
    clash = sorted({"strategy", "lr", "weight_decay", "augment", "label_smoothing", "epochs", "seed", "time_budget"} & set(settings))
    if clash:
        problems.append(f"{', '.join(clash)} are searched or set by tune itself; drop them from the fixed settings")
    if problems:
        raise ConfigError("invalid tuning settings:\n" + "\n".join(f"  - {p}" for p in problems))
    out = fresh_out_dir(out, overwrite)
    (out / "trials").mkdir(parents=True)

    monitor = settings.get("monitor") or "accuracy"
    n_groups = _layer_groups(model, settings)
    start = time.perf_counter()
    budget = TimeBudget(time_budget, start=start) if time_budget is not None else None
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    direction = "minimize" if monitor in ("loss", "mae", "rmse", "perplexity") else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        if budget is not None and budget.remaining() <= 0:
            study.stop()
            raise optuna.TrialPruned("time budget spent")
        params = _suggest(trial, strategies, n_groups)
        strategy = f"partial:{params['depth']}" if params["strategy"] == "partial" else params["strategy"]
        reporter = OptunaReporter(trial, monitor)
        callbacks = [reporter] + ([budget] if budget is not None else [])
        run_dir = out / "trials" / f"trial-{trial.number:03d}"
        info(f"tune: trial {trial.number}: {strategy}, " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items() if k not in ("strategy", "depth")))
        run = fit(data, model=model, strategy=strategy, out=run_dir, epochs=epochs, seed=seed, callbacks=callbacks,
                  lr=params["lr"], weight_decay=params["weight_decay"], augment=params["augment"],
                  label_smoothing=params["label_smoothing"], **settings)  # fmt: skip
        value = float(run.metrics["val"][monitor])
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("epochs", run.metrics["epochs"])
        trial.set_user_attr("train_seconds", run.metrics["train_seconds"])
        trial.set_user_attr("stopped", run.metrics.get("stopped_early"))
        if reporter.pruned:
            raise optuna.TrialPruned(f"pruned after {run.metrics['epochs']} epochs at {value:.4f}")
        return value

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, n_trials=trials, timeout=time_budget, catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    result = TuneResult(None, {}, None, [_trial_row(t) for t in study.trials], monitor=monitor)
    if done:
        best = study.best_trial
        result.best_value, result.best_params = best.value, dict(best.params)
        result.best_dir = out / "best"
        shutil.copytree(best.user_attrs["run_dir"], result.best_dir)
        result.importances = _importances(study)
        info(f"tune: best trial {best.number}: val {monitor} {best.value:.4f} → {result.best_dir}")
    result.seconds = round(time.perf_counter() - start, 1)
    result.out = write_tune_report(result, out)
    return result


def _layer_groups(model: str, settings: dict[str, Any]) -> int:
    """How many layer groups the model has (bounds `partial:N`); built without weights."""
    from graftkit.sources.loading import build_architecture

    try:
        from graftkit.sources.ids import resolve

        arch = resolve(model).arch
        return len(build_architecture(arch).layer_groups())
    except Exception:  # e.g. text models, rebuilt from their saved config instead
        from graftkit.training.config import TrainConfig
        from graftkit.training.plan import load_backbone_for

        cfg = TrainConfig.from_settings(model=model, **{k: v for k, v in settings.items() if k in ("offline", "max_length", "pooling")})
        return len(load_backbone_for(cfg, resolve(model).modality).layer_groups())


def _suggest(trial: Any, strategies: Sequence[str], n_groups: int) -> dict[str, Any]:
    lo, hi = SPACE["lr"]
    wd_lo, wd_hi = SPACE["weight_decay"]
    return {
        "strategy": trial.suggest_categorical("strategy", list(strategies)),
        "depth": trial.suggest_int("depth", 1, max(1, n_groups - 1)),
        "lr": trial.suggest_float("lr", lo, hi, log=True),
        "weight_decay": trial.suggest_float("weight_decay", wd_lo, wd_hi, log=True),
        "augment": trial.suggest_categorical("augment", list(SPACE["augment"])),
        "label_smoothing": trial.suggest_float("label_smoothing", *SPACE["label_smoothing"]),
    }


def _trial_row(t: Any) -> dict[str, Any]:
    seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    last = max(t.intermediate_values) if t.intermediate_values else None
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": t.value if t.value is not None else (t.intermediate_values[last] if last is not None else None),
        "params": dict(t.params),
        "epochs": t.user_attrs.get("epochs"),
        "seconds": None if seconds is None else round(seconds, 1),
        "stopped": t.user_attrs.get("stopped"),
        "run_dir": t.user_attrs.get("run_dir"),
    }


def _importances(study: Any) -> dict[str, float]:
    """fANOVA parameter importances (Optuna's default evaluator); empty with < 2 finished trials."""
    import optuna

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)).items()}
    except (RuntimeError, ValueError):  # e.g. every trial has the same value
        return {}


def write_tune_report(result: TuneResult, out: str | Path) -> Path:
    """Write `tune.json`, `trials.csv`, the history and importance plots and `report.html`."""
    import csv
    from html import escape

    from graftkit.selection._report import img, new_figure, save_figure, table_html, write_page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / TUNE_JSON).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    names = list(SPACE.keys())[:1] + ["depth"] + list(SPACE.keys())[1:]
    with open(out / TRIALS_CSV, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "state", result.monitor, *names, "epochs", "seconds"])
        for t in result.trials:
            w.writerow([t["number"], t["state"], t["value"], *[t["params"].get(n) for n in names], t["epochs"], t["seconds"]])
    sections = []
    if result.best_dir is not None:
        sections.append(
            f"<h2>Best trial</h2><p>val {escape(result.monitor)} <b>{result.best_value:.4f}</b> with "
            f"{escape(json.dumps(result.best_params))}; run directory <code>{escape(str(result.best_dir))}</code> "
            "(use it with <code>graft evaluate</code>, <code>graft predict</code>, <code>graftkit.load</code>).</p>"
        )
    else:
        sections.append("<h2>Best trial</h2><p>No trial finished inside the budget.</p>")
    rows = [[t["number"], t["state"], t["value"], *[t["params"].get(n) for n in names], t["epochs"], t["seconds"]] for t in result.trials]
    sections += ["<h2>Trials</h2>", table_html(["trial", "state", f"val {result.monitor}", *names, "epochs", "seconds"], rows)]
    values = [(t["number"], t["value"], t["state"]) for t in result.trials if t["value"] is not None]
    if values:
        fig, ax = new_figure(6.4, 3.6)
        for state, colour in (("complete", "tab:blue"), ("pruned", "tab:orange")):
            pts = [(n, v) for n, v, s in values if s == state]
            if pts:
                ax.scatter(*zip(*pts), color=colour, label=state, zorder=3)
        done = [(n, v) for n, v, s in values if s == "complete"]
        if done:
            best, running = [], None
            for n, v in done:
                running = v if running is None else (min(running, v) if result.monitor in ("loss", "mae", "rmse", "perplexity") else max(running, v))
                best.append((n, running))
            ax.step(*zip(*best), where="post", color="tab:green", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"val {result.monitor}")
        ax.set_title("optimisation history")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, out / HISTORY_PNG)
        sections += ["<h2>Optimisation history</h2>", img(HISTORY_PNG, "value per trial")]
    if result.importances:
        fig, ax = new_figure(6.4, 0.8 + 0.4 * len(result.importances))
        items = sorted(result.importances.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title("parameter importance")
        ax.grid(axis="x", alpha=0.3)
        save_figure(fig, out / IMPORTANCE_PNG)
        sections += ["<h2>Parameter importance</h2>", img(IMPORTANCE_PNG, "parameter importance"),
                     table_html(["parameter", "importance"], [[k, v] for k, v in result.importances.items()])]  # fmt: skip
    sections.append(f'<p class="meta">{len(result.trials)} trials in {result.seconds:.0f} s.</p>')
    write_page(out / REPORT_HTML, "graft tune", sections)
    return out
