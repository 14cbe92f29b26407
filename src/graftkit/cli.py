"""`graft`: a table from subcommand to one library call each. No logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any, Callable

from graftkit.errors import GraftError


def _train_flags(p: argparse.ArgumentParser) -> None:
    from graftkit.training.config import TrainConfig

    docs = _field_docs(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in ("model", "strategy"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if f.name == "feature_cache":
            p.add_argument("--no-feature-cache", dest="feature_cache", action="store_false", default=None, help="recompute features instead of using the on-disk cache")
        elif f.name == "channels_last":
            p.add_argument(flag, choices=["on", "off"], default=None, help=docs.get(f.name))
        elif kind.startswith("bool"):
            p.add_argument(flag, action="store_true", default=None, help=docs.get(f.name))
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=conv, default=None, help=docs.get(f.name), metavar=f.name.upper())


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


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from graftkit.training.config import TrainConfig

    out = {}
    for f in fields(TrainConfig):
        if f.name in ("model", "strategy"):
            continue
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = {"on": True, "off": False}.get(v, v) if f.name == "channels_last" else v
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from graftkit.training.fit import fit

    fit(args.data, model=args.model, strategy=args.strategy, out=args.out, val=args.val, resume=args.resume, overwrite=args.overwrite, **_settings(args))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from graftkit.evaluation import print_metrics
    from graftkit.evaluation.evaluate import evaluate

    result = evaluate(args.run, args.data, out=args.out, split=args.split, batch_size=args.batch_size)
    print_metrics(result["test"], title=f"{args.run} on {args.data}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from graftkit.data import list_image_files
    from graftkit.deploy import load

    predictor = load(args.run)  # a bad run directory is reported before the inputs are read
    files = list(args.inputs) if predictor.modality == "text" else list_image_files(args.inputs)
    preds = predictor.predict(files, top_k=args.top_k, batch_size=args.batch_size)
    if args.format == "json":
        for p in preds:
            print(json.dumps(p.to_dict()))
    elif args.format == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(["input", "label", "score"] + [f"top{i + 1}_{c}" for i in range(args.top_k) for c in ("label", "score")][2:])
        for p in preds:
            rest = [x for l, s in p.top_k[1:] for x in (l, f"{s:.6f}")]
            w.writerow([p.input, p.label, f"{p.score:.6f}", *rest])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("input", *[f"top {i + 1}" for i in range(args.top_k)])
        table.columns[0].overflow = "fold"
        for p in preds:
            table.add_row(p.input, *[f"{l} ({s:.1%})" for l, s in p.top_k])
        Console().print(table)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from graftkit.sources import list_models

    rows = list_models(args.pattern)
    if args.format == "json":
        for m in rows:
            print(json.dumps(m.to_dict() if hasattr(m, "to_dict") else vars(m), default=str))
        return 0
    table = Table("id", "source", "params", "input", "offline", "description")
    for m in rows:
        params = f"{m.params / 1e6:.1f}M" if m.params else "?"
        table.add_row(m.id, m.source, params, str(m.input_size), "yes" if m.available_offline else "no", m.description or "")
    Console().print(table)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graft", description="Transfer learning from pretrained models, fast and safe.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    p = add("train", cmd_train, "Train a new head (probe) or fine-tune a pretrained model; writes a run directory.")
    p.add_argument("data", help="image folder (ROOT/<class>/*, or ROOT/{train,val,test}/<class>/*) or CSV/JSONL manifest; "
                   "for text models a CSV/TSV/JSONL/TXT file (or a folder of train.*/val.*/test.* files)")
    p.add_argument("--model", default="efficientnet_lite0", help="model id (`graft models` lists them); hf:NAME_OR_PATH and minilm are text models")
    p.add_argument("--strategy", default=None, help="linear-probe (default) | finetune | partial:N | gradual | lora (default for seq2seq/causal-lm: finetune)")
    p.add_argument("--out", help="run directory (default runs/<data>-<strategy>)")
    p.add_argument("--val", help="separate validation folder or manifest")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    _train_flags(p)

    p = add("evaluate", cmd_evaluate, "Score a run on labelled data; writes metrics.json, report.html and plots.")
    p.add_argument("run")
    p.add_argument("data")
    p.add_argument("--out", help="output folder (default RUN/eval/<data name>)")
    p.add_argument("--split", choices=["train", "val", "test"], help="which split of a split folder or manifest to score")
    p.add_argument("--batch-size", type=int, default=64)

    p = add("predict", cmd_predict, "Predict classes (or generate text) for images, folders, globs or texts.")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns; texts for a text run")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--batch-size", type=int, default=32)

    p = add("models", cmd_models, "List model ids, their source, size, input size and offline availability.")
    p.add_argument("pattern", nargs="?", help="wildcard over all timm/torchvision names, e.g. 'timm:*resnet*'")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = add("pull", cmd_pull, "Download a model's weights into the local cache (for later offline use).")
    p.add_argument("model")

    p = add("demo", cmd_demo, "Offline demo: EfficientNet-Lite0 on bundled Fashion-MNIST images, or (`demo text`) MiniLM on movie-review sentiment.")
    p.add_argument("kind", nargs="?", choices=["image", "text"], default="image")
    p.add_argument("--out", default=None, help="run directory (default runs/demo or runs/demo-text)")
    p.add_argument("--strategy", default="linear-probe")
    p.add_argument("--epochs", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command not in ("models", "pull"):
            from graftkit.training.engine import tune_malloc

            tune_malloc()  # the CLI owns its process: 2x faster CPU inference (see tune_malloc)
        return args.fn(args)
    except GraftError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted. A training run continues from its last checkpoint with --resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
