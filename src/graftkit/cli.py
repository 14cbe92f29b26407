"""`graft`: a table from subcommand to one library call each. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from dataclasses import MISSING, fields
from typing import Any, Callable

from graftkit.errors import GraftError


def _train_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    from graftkit.training.config import TrainConfig

    docs = _field_docs(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in ("model", "strategy") or f.name in skip:
            continue
        doc = docs.get(f.name) or ""
        if f.default not in (None, False, MISSING) and "default" not in doc:  # the flag's own default is None: "not given"
            docs[f.name] = f"{doc} (default: {str(f.default).replace('%', '%%')})".strip()
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if f.name == "time_budget":
            p.add_argument(flag, type=_duration, default=None, help=docs.get(f.name), metavar="DURATION")
        elif f.name == "feature_cache":
            p.add_argument("--no-feature-cache", dest="feature_cache", action="store_false", default=None, help="recompute features instead of using the on-disk cache")
        elif f.name == "freeze_bn":
            p.add_argument("--no-freeze-bn", dest="freeze_bn", action="store_false", default=None, help="detection: let the backbone's BatchNorm train")
        elif f.name == "refit":
            p.add_argument("--no-refit", dest="refit", action="store_false", default=None, help=docs.get(f.name))
        elif f.name == "channels_last":
            p.add_argument(flag, choices=["on", "off"], default=None, help=docs.get(f.name))
        elif kind.startswith("bool"):
            p.add_argument(flag, action="store_true", default=None, help=docs.get(f.name))
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=conv, default=None, help=docs.get(f.name), metavar=f.name.upper())


BACKEND_HELP = ("onnx/onnx-int8 run export/model*.onnx under ONNX Runtime (graft export first); auto: the export's default "
                "(int8 only when `graft export --quantize int8` kept it within a point of fp32, else fp32 ONNX), torch when "
                "there is no export or --precision/--channels-last are given")  # fmt: skip


def _precision_flags(p: argparse.ArgumentParser, what: str, *, default: str = "auto", run: bool = True) -> None:
    """`--precision` and `--channels-last` of a command that runs a model; left to auto, the
    engine decides (`graftkit.engine.inference_settings` / `training_settings`)."""
    auto = "the run's own --precision, else chosen for this device and model" if run else "chosen for this device and model"
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=default, help=f"numeric format of {what} (auto: {auto}; default {default})")
    layout = "the run's own, else per model" if run else "per model"
    p.add_argument("--channels-last", choices=["on", "off"], default=None, help=f"channels_last memory format for CNNs in {what} (default: {layout})")


def _positive_int(text: str) -> int:
    """An integer of at least 1 (`--top-k`, `--batch-size`, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, unless it is unset (None/False) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default is argparse.SUPPRESS
        if "default" in text or unset or not action.option_strings or action.nargs == 0:
            return text
        return f"{text.strip()} (default: %(default)s)".strip()


def _on_off(value: str | None) -> bool | None:
    return None if value is None else value == "on"


def _duration(text: str) -> float:
    """`--time-budget` values (`90s`, `10m`, `1.5h`) in seconds."""
    from graftkit.strategies.auto import parse_duration

    try:
        return parse_duration(text)
    except GraftError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _field_docs(cls) -> dict[str, str]:
    """Field docstrings (the string literal after each field) for --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(getattr(b, "value", None), ast.Constant):
            docs[a.target.id] = str(b.value.value).replace("%", "%%")
    return docs


def _settings(args: argparse.Namespace, own: tuple[str, ...] = ()) -> dict[str, Any]:
    from graftkit.training.config import TrainConfig

    out = {}
    for f in fields(TrainConfig):
        if f.name in ("model", "strategy") or f.name in own:  # `own`: the command's flags, not training settings
            continue
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = {"on": True, "off": False}.get(v, v) if f.name == "channels_last" else v
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from graftkit.engine.distributed import is_distributed, launch
    from graftkit.training.fit import fit

    if args.devices > 1 and not is_distributed():  # start the N processes; each runs this command again
        return launch(args.devices, args.argv)
    fit(args.data, model=args.model, strategy=args.strategy, out=args.out, val=args.val, resume=args.resume, overwrite=args.overwrite,
        track=args.track, **_settings(args))  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from graftkit.evaluation import print_metrics
    from graftkit.deploy.evaluate import evaluate

    result = evaluate(args.run, args.data, out=args.out, split=args.split, batch_size=args.batch_size,
                      precision=args.precision, channels_last=_on_off(args.channels_last))  # fmt: skip
    print_metrics(result["test"], title=f"{args.run} on {args.data}")
    return 0


def _backend(args: argparse.Namespace) -> str:
    """`--backend auto`: the export's default backend (int8 only when it kept its accuracy), else torch."""
    from graftkit.deploy.runtime import resolve_backend

    backend, why = resolve_backend(args.run, args.backend, torch_settings=args.precision != "auto" or args.channels_last is not None)
    if args.backend == "auto" and backend != "torch":
        from graftkit.engine.progress import info

        info(f"backend: {backend} ({why})")
    elif args.backend == "auto" and "other weights" in why:
        from graftkit.engine.progress import warn

        warn(f"not using the ONNX export: {why}")
    return backend


def cmd_predict(args: argparse.Namespace) -> int:
    from graftkit.deploy.batch import expand_inputs, write_predictions
    from graftkit.deploy.onnx_client import client_for

    args.backend = _backend(args)
    predictor = client_for(args.run, args.backend, calibrated=not args.raw_scores)  # ONNX image classifiers: no torch import at all
    if predictor is None:
        from graftkit.deploy import load

        predictor = load(args.run, backend=args.backend, precision=args.precision, channels_last=_on_off(args.channels_last),
                         calibrated=not args.raw_scores)  # a bad run directory is reported before the inputs are read
    items = expand_inputs(args.inputs, predictor.modality, column=args.column)
    predictions = predictor.predict_iter(items, top_k=args.top_k, batch_size=args.batch_size, progress=True)
    if args.draw:  # detection: each image with its boxes drawn
        from graftkit.deploy.batch import draw_predictions

        predictions = draw_predictions(predictions, args.draw)
    write_predictions(predictions, args.format, args.top_k)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from graftkit.deploy.export import export

    result = export(args.run, args.format, quantize=args.quantize, min_agreement=args.min_agreement, max_samples=args.max_samples, exporter=args.exporter,
                    precision=args.precision, channels_last=_on_off(args.channels_last))  # fmt: skip
    print(result.summary())
    from graftkit.training.tracking import log_exports

    if log_exports(Path(args.run), Path(args.run) / "export"):  # a run trained with --track mlflow: exports join its MLflow run
        from graftkit.engine.progress import info

        info("export/ logged to the run's MLflow run")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from graftkit.deploy.serve import serve

    args.backend = _backend(args)
    serve(args.run, host=args.host, port=args.port, backend=args.backend, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          precision=args.precision, channels_last=_on_off(args.channels_last))  # fmt: skip
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from graftkit.engine.progress import results_console
    from graftkit.rundir.listing import format_runs, list_runs

    out = format_runs(list_runs(args.folder, sort=args.sort), args.format)
    if isinstance(out, str):
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    else:
        results_console().print(out)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from graftkit.engine.progress import results_console
    from graftkit.sources import list_models

    rows = list_models(args.pattern)
    if args.format == "json":
        for m in rows:
            print(json.dumps(m.to_dict() if hasattr(m, "to_dict") else vars(m), default=str, ensure_ascii=False))
        return 0
    table = Table("id", "source", "params", "input", "offline", "description")
    for m in rows:
        params = f"{m.params / 1e6:.1f}M" if m.params else "?"
        table.add_row(m.id, m.source, params, "-" if m.input_size is None else str(m.input_size), "yes" if m.available_offline else "no", m.description or "")
    results_console().print(table)
    if not args.pattern:
        print("Any timm or torchvision model works too: `graft models 'timm:*resnet*'` searches them.")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from graftkit.sources import pull

    path = pull(args.model)
    print(f"{args.model}: weights at {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from graftkit.demo import run_demo

    run_demo(args.kind, out=args.out, strategy=args.strategy, epochs=args.epochs)
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from graftkit.engine.progress import results_console
    from graftkit.selection.rank import format_ranking_table, rank

    ranking = rank(args.data, [m.strip() for m in args.models.split(",") if m.strip()], out=args.out, by=args.by, folds=args.folds,
                   max_per_class=args.max_per_class, image_size=args.image_size, batch_size=args.batch_size,
                   num_workers=args.num_workers, offline=args.offline, seed=args.seed, device=args.device,
                   precision=args.precision, channels_last=_on_off(args.channels_last))  # fmt: skip
    results_console().print(format_ranking_table(ranking))
    for m in ranking.models:
        if m.status != "ok":
            print(f"skipped {m.model}: {m.reason}")
    print(f"report: {ranking.out / 'report.html'}" if ranking.out else "")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from graftkit.selection.lr_find import lr_find

    r = lr_find(args.data, model=args.model, strategy=args.strategy, out=args.out, start_lr=args.start_lr, end_lr=args.end_lr,
                steps=args.steps, batch_size=args.batch_size, image_size=args.image_size, augment=args.augment,
                num_workers=args.num_workers, offline=args.offline, seed=args.seed, device=args.device,
                precision=args.precision, channels_last=_on_off(args.channels_last),
                settings={k: v for k in ("mix", "grad_clip", "accumulate") if (v := getattr(args, k)) is not None})  # fmt: skip
    more = f" (steepest descent at {r.steepest:.2e})" if r.steepest else ""
    print(f"suggested learning rate: {r.suggestion:.2e}{more}; use --lr {r.suggestion:.2g}")
    if r.still_falling:
        print("note: the loss was still falling at --end-lr; raise it to find the minimum")
    print(f"plot: {r.out / 'lr_find.png'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from graftkit.selection.tune import tune

    r = tune(args.data, model=args.model, out=args.out, trials=args.trials, time_budget=args.time_budget, epochs=args.epochs,
             strategies=args.strategies.split(","), seed=args.seed, overwrite=args.overwrite, settings=_settings(args, own=("epochs", "seed", "time_budget")))  # fmt: skip
    if r.best_dir is not None:
        print(f"best val {r.monitor} {r.best_value:.4f} with {json.dumps(r.best_params)} → {r.best_dir}")
    print(f"{len(r.trials)} trials in {r.seconds:.0f} s; report: {r.out / 'report.html'}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from graftkit.selection.curve import curve

    r = curve(args.data, model=args.model, fractions=[float(f) for f in args.fractions.split(",")], out=args.out,
              strategy=args.strategy, epochs=args.epochs, scratch=not args.no_scratch, seed=args.seed,
              overwrite=args.overwrite, settings=_settings(args, own=("epochs", "seed")))  # fmt: skip
    for line in r.summary:
        print(line)
    print(f"report: {r.out / 'report.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graft", description="Transfer learning from pretrained models, fast and safe.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("train", cmd_train, "Train a new head (probe) or fine-tune a pretrained model; writes a run directory.")
    p.add_argument("data", help="image folder (ROOT/<class>/*, or ROOT/{train,val,test}/<class>/*) or CSV/JSONL manifest; "
                   "WebDataset tar shards (a folder of .tar, or 'data-{000..009}.tar': KEY.jpg|png + KEY.cls|txt|json); "
                   "for text models a CSV/TSV/JSONL/TXT file (or a folder of train.*/val.*/test.* files)")
    p.add_argument("--model", default=None, help="model id (`graft models` lists them; default efficientnet_lite0); hf:NAME_OR_PATH and minilm are text models")
    p.add_argument("--strategy", default=None, help="linear-probe (default) | finetune | partial:N | gradual | lora | contrastive (text, few labels: SetFit-style pairs, then the probe) | auto; default for seq2seq/causal-lm: finetune")
    p.add_argument("--out", help="run directory (default runs/<data>-<strategy>)")
    p.add_argument("--val", help="separate validation folder or manifest")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out with its saved settings (same data; flags that differ are refused)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out: the new run is built beside it and swapped in only when it has finished; if it fails, the old run stays as it was")
    # scale (issue 11): processes and tracking
    p.add_argument("--devices", type=_positive_int, default=1, help="train in N processes (DDP through Accelerate: one per GPU with "
                   "--device cuda, else N CPU processes on gloo); --batch-size stays the global batch. Multi-node: accelerate launch -m graftkit train ...")
    p.add_argument("--track", choices=["mlflow", "tensorboard"], default=None, help="also log params, per-epoch metrics and the run's files to "
                   "MLflow (MLFLOW_TRACKING_URI, default sqlite:///<runs folder>/mlflow.db) or TensorBoard (<run>/tensorboard)")
    _train_flags(p)

    p = add("evaluate", cmd_evaluate, "Score a run on labelled data; writes metrics.json, report.html and plots.")
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--out", help="output folder (default RUN/eval/<data name>)")
    p.add_argument("--split", choices=["train", "val", "test"], help="which split of a split folder or manifest to score")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    _precision_flags(p, "the model")

    p = add("predict", cmd_predict, "Predict classes (or generate text) for images, folders, globs or texts.")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", help="image files, folders, glob patterns, CSV/JSONL manifests or - (stdin, one per line); texts for a text run")
    p.add_argument("--top-k", type=_positive_int, default=1, help="classes shown per input")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto", help=BACKEND_HELP)
    p.add_argument("--column", help="manifest column to read (default: path for images, text for texts)")
    p.add_argument("--draw", metavar="DIR", help="detection runs: also write each image with its boxes drawn (score >= 0.3) into DIR")
    p.add_argument("--raw-scores", action="store_true", help="scores without the temperature fitted on validation (default: calibrated)")
    _precision_flags(p, "the torch backend")

    p = add("export", cmd_export, "Export a run to ONNX or TorchScript, check it against PyTorch, optionally quantize to int8.")
    p.add_argument("run")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--quantize", choices=["int8"], help="also write export/model.int8.onnx (static for images, dynamic for text); accuracy and speed are measured")
    p.add_argument("--min-agreement", type=float, help="parity threshold: share of inputs where export and PyTorch agree (default 0.99 fp32; int8: measured per model from its logit margins, see parity.json)")
    p.add_argument("--max-samples", type=_positive_int, default=256, help="validation samples used for parity, calibration and accuracy")
    p.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript", help="PyTorch's ONNX exporter")
    _precision_flags(p, "the PyTorch reference the export is checked against (fp32: the exported graph's own)", default="fp32")

    p = add("serve", cmd_serve, "Serve a run over HTTP: POST /predict, GET /info, /health, /openapi.json, and a web page at /.")
    p.add_argument("run")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=_port, default=8080, help="TCP port (1-65535)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto", help=BACKEND_HELP)
    p.add_argument("--max-batch", type=_positive_int, default=16, help="most inputs run together when requests arrive at once")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the first request of a batch waits for others")
    _precision_flags(p, "the torch backend")

    p = add("rank", cmd_rank, "Rank pretrained backbones for your data: LogME, H-score, NCE/LEEP and a k-fold probe per model.")
    p.add_argument("data", help="labelled images or text, as for `graft train`")
    p.add_argument("--models", required=True, help="comma-separated model ids, e.g. efficientnet_lite0,efficientnet_lite2,timm:resnet50")
    p.add_argument("--out", default="runs/rank", help="folder for ranking.json and report.html")
    p.add_argument("--by", default="probe_accuracy", choices=["probe_accuracy", "logme", "h_score", "leep", "nce"], help="score that orders the table")
    p.add_argument("--folds", type=_positive_int, default=5, help="folds of the cross-validated linear probe")
    p.add_argument("--max-per-class", type=_positive_int, help="use at most this many examples per class (seeded), for speed")
    p.add_argument("--image-size", type=_positive_int, help="input size of every image model (default: each model's own)")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--offline", action="store_true", help="never touch the network; models without local weights are skipped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one) | cpu | cuda[:N]")
    _precision_flags(p, "feature extraction", run=False)

    p = add("lr-find", cmd_lr_find, "Sweep the learning rate exponentially; plot the loss and suggest a learning rate.")
    p.add_argument("data", help="labelled data, as for `graft train`")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--strategy", default="linear-probe", help="linear-probe (head on cached features) | finetune | partial:N | gradual")
    p.add_argument("--out", default="runs/lr-find", help="folder for lr_find.png and lr_find.json")
    p.add_argument("--start-lr", type=float, default=1e-7)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=_positive_int, default=100, help="learning rates tried, one batch each")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--image-size", type=_positive_int)
    p.add_argument("--augment", default="light", choices=["none", "light", "strong", "randaugment"])
    p.add_argument("--num-workers", type=int)
    p.add_argument("--offline", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one) | cpu | cuda[:N]")
    _precision_flags(p, "the sweep, as graft train uses them", run=False)
    p.add_argument("--mix", choices=["mixup", "cutmix", "mixup-cutmix"], help="batch mixing of the run to sweep for (unfrozen strategies)")
    p.add_argument("--grad-clip", type=float, help="gradient-norm clipping of the run to sweep for (default 1.0, as graft train)")
    p.add_argument("--accumulate", type=_positive_int, help="gradient accumulation of the run to sweep for (one learning rate per optimizer step)")

    p = add("tune", cmd_tune, "Optuna search over lr, weight decay, strategy, depth, augmentation and label smoothing; keeps the best run.")
    p.add_argument("data", help="labelled data, as for `graft train`")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--out", default="runs/tune", help="folder: trials/, best/ (the best run directory), report.html")
    p.add_argument("--trials", type=_positive_int, default=20)
    p.add_argument("--time-budget", type=_duration, help="for the whole search, e.g. 30m")
    p.add_argument("--epochs", type=_positive_int, default=5, help="epochs per trial (pruning may stop a trial earlier)")
    p.add_argument("--strategies", default="linear-probe,partial,finetune", help="strategies to search among")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _train_flags(p, skip=("lr", "weight_decay", "augment", "label_smoothing", "epochs", "seed", "time_budget"))

    p = add("curve", cmd_curve, "Transfer vs from-scratch learning curves: accuracy against labels and wall time.")
    p.add_argument("data", help="labelled data, as for `graft train`")
    p.add_argument("--model", default="efficientnet_lite0", help="the pretrained model; its scratch: twin is the baseline")
    p.add_argument("--fractions", default="0.1,0.25,0.5,1", help="fractions of the training split")
    p.add_argument("--strategy", default="linear-probe", help="strategy of the transfer runs (scratch runs fine-tune)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="epochs of every run")
    p.add_argument("--no-scratch", action="store_true", help="skip the from-scratch baseline")
    p.add_argument("--out", default="runs/curve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _train_flags(p, skip=("epochs", "seed", "time_budget"))

    p = add("runs", cmd_runs, "Compare the run directories in a folder: model, strategy, task, headline metric, time, data size.")
    p.add_argument("folder", nargs="?", default="runs", help="folder holding run directories (default runs)")
    p.add_argument("--sort", default="finished", help="column to sort by: run, status, model, strategy, task, metric, value (best first), "
                   "finished, train, val, seconds (default finished)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = add("models", cmd_models, "List model ids, their source, size, input size and offline availability.")
    p.add_argument("pattern", nargs="?", help="wildcard over all timm/torchvision names, e.g. 'timm:*resnet*'")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = add("pull", cmd_pull, "Download a model's weights into the local cache (for later offline use).")
    p.add_argument("model")

    p = add("demo", cmd_demo, "Offline demo: EfficientNet-Lite0 on bundled Fashion-MNIST images, (`demo text`) MiniLM on movie-review sentiment, (`demo audio`) speech_embedding on spoken digits, or (`demo detection`) FCOS on pasted scenes.")
    p.add_argument("kind", nargs="?", choices=["image", "text", "audio", "detection"], default="image")
    p.add_argument("--out", default=None, help="run directory (default runs/demo, runs/demo-text, runs/demo-audio or runs/demo-detection)")
    p.add_argument("--strategy", default=None, help="default: linear-probe (image, text, audio), detection: frozen backbone, the FPN and head train")
    p.add_argument("--epochs", type=_positive_int, default=None)
    for command in sub.choices.values():  # argparse skips options without help text: give them one
        for action in command._actions:
            if action.help is None and action.option_strings and action.default not in (None, False):
                action.help = "(default: %(default)s)"
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --devices N` starts N processes of the same command
    _route_warnings()
    _terminate_as_interrupt()
    _quiet_other_ranks()
    try:
        if args.command not in ("models", "pull"):
            from graftkit.engine import tune_malloc

            tune_malloc()  # the CLI owns its process: 2x faster CPU inference (see tune_malloc)
        return args.fn(args)
    except GraftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        by = str(e) or "SIGINT"
        print(f"interrupted ({by}). {_resume_hint(args)}", file=sys.stderr)
        return 143 if by == "SIGTERM" else 130
    except BrokenPipeError:  # `graft predict ... | head`: the reader left; that is not an error
        _silence_stdout()
        return 0


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler's stop, `kill`) ends the command like Ctrl-C: an orderly exit with the
    message naming --resume, and no half-written file (every artifact is written atomically)."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _resume_hint(args: argparse.Namespace) -> str:
    if getattr(args, "command", None) != "train":
        return "Nothing was left half-written."
    out = getattr(args, "out", None)
    if getattr(args, "overwrite", False):
        return f"The run that was in {out} is unchanged (--overwrite replaces it only when the new run is done)."
    checkpoints = Path(out) / "checkpoints" / "last.pt" if out else None
    if checkpoints is not None and checkpoints.is_file():
        return (f"The last finished epoch is saved in {checkpoints.parent}; run the same `graft train` command with --resume "
                "to continue from it (the interrupted epoch is repeated exactly).")  # fmt: skip
    return "No epoch had finished, so there is no checkpoint yet: run the command again (add --resume once an epoch has finished)."


def _quiet_other_ranks() -> None:
    """Processes other than rank 0 of a multi-process run print nothing but errors."""
    import os

    if int(os.environ.get("RANK", "0") or 0) != 0:  # as engine.distributed.is_main_process, without importing torch
        from graftkit.engine.progress import console

        console.quiet = True


def _route_warnings() -> None:
    """Every library's `warnings.warn` becomes one `warning:` line on stderr (no source line)."""
    import warnings

    from graftkit.engine.progress import warn

    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: warn(str(message))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
