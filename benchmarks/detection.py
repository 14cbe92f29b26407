"""Detection by transfer: the same detector on an ImageNet-pretrained backbone vs the same
architecture from random weights, at the same budget, on the generated scenes; and train / predict
images/s per detector on this CPU.

Data: `scripts/make_detection_data.py` scenes (Fashion-MNIST items pasted on scikit-image textures
and photos), made once under OUT: train and val scenes (val picks each run's best epoch) and a
held-out test set that chose nothing (new scenes from items training never saw). Each round (seed)
fits both sides with the same detector, strategy, image size, batch size and epochs, so both spend
the same compute (the measured seconds are reported next to the mAP); the order of the sides
alternates each round. One torch thread per run (detectors run many tiny convolutions; on the
shared 2-core machine one thread is much faster than two); `--jobs 2` runs two rounds at once.
The speed part measures each detector `--speed-rounds` times (default 3), the order of the
detectors reversed every other round, and prints median [min, max] of the rounds' img/s.

    nice -n 10 python benchmarks/detection.py --out /tmp/detection-bench --rounds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

SIDES = {"pretrained": "efficientnet_lite0", "scratch": "scratch:efficientnet_lite0"}


def make_data(out: Path, train: int, val: int, test: int, size: int, seed: int) -> Path:
    """The scenes under `out/scenes` (made once)."""
    from make_detection_data import build, write

    root = out / "scenes"
    if (root / ".complete").is_file():
        return root
    scenes = build({"train": train, "val": val, "test": test}, size, seed)

    def put(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    write(scenes, size, put)
    (root / ".complete").write_text("ok")
    return root


def fit_side(side: str, root: Path, out: Path, seed: int, args: argparse.Namespace) -> dict:
    """Fit one side on train (best epoch on val), then score it on test; a finished side's
    figures are kept in `OUT/results/` and reused (more `--rounds` add rounds only)."""
    saved = out / "results" / f"{side}-seed{seed}.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    import torch

    import graftkit
    from graftkit.deploy.evaluate import evaluate

    torch.set_num_threads(1)
    run_dir = out / "runs" / f"{side}-seed{seed}"
    t, c = time.perf_counter(), time.process_time()
    run = graftkit.fit(root / "train.json", val=root / "val.json", model=SIDES[side], task="detection", detector=args.detector,
                       strategy=args.strategy, image_size=args.size, batch_size=args.batch_size, epochs=args.epochs, seed=seed,
                       out=run_dir, overwrite=True, offline=True, num_workers=0)  # fmt: skip
    train_s, train_cpu = time.perf_counter() - t, time.process_time() - c
    test = evaluate(run.dir, root / "test.json", num_workers=0)["test"]
    row = {"side": side, "seed": seed, "val_map": run.metrics["val"]["map"], "map": test["map"], "map50": test["map50"],
           "map75": test["map75"], "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1), "loadavg": os.getloadavg()[0]}  # fmt: skip
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(row))
    return row


def one_round(seed: int, root: Path, out: Path, args: argparse.Namespace) -> list[dict]:
    order = ["pretrained", "scratch"] if seed % 2 == 0 else ["scratch", "pretrained"]
    rows = []
    for side in order:
        rows.append(fit_side(side, root, out, seed, args))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def speed(detector: str, root: Path, args: argparse.Namespace) -> dict:
    """Train and predict images/s of one detector on real scenes (model only, one torch thread;
    data loading excluded), EfficientNet-Lite0 backbone fine-tuned, batch `--batch-size`."""
    import dataclasses as dc

    import torch

    from graftkit.data.images import load_image
    from graftkit.sources import load_backbone
    from graftkit.tasks.detection import DetectionModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    coco = json.loads((root / "train.json").read_text())
    bs = args.batch_size
    images = [load_image(root / im["file_name"]).float() / 255 for im in coco["images"][:bs]]
    targets = []
    for im in coco["images"][:bs]:
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32)
        targets.append({"boxes": boxes.reshape(-1, 4), "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)})
    backbone = load_backbone("efficientnet_lite0", offline=True)
    backbone.preprocess = dc.replace(backbone.preprocess, input_size=args.size)
    model = DetectionModel(backbone, detector, len(coco["categories"]))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    times = []
    for _ in range(args.speed_steps + 1):  # the first step warms up
        t = time.perf_counter()
        loss = model((images, targets)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    model.eval()
    batch = torch.stack(images)
    pred = []
    with torch.no_grad():
        for _ in range(args.speed_steps + 1):
            t = time.perf_counter()
            model(batch)
            pred.append(time.perf_counter() - t)
    return {"detector": detector, "train_img_s": round(bs / statistics.median(times[1:]), 2), "predict_img_s": round(bs / statistics.median(pred[1:]), 2),
            "params": sum(p.numel() for p in model.parameters())}  # fmt: skip


def summary(rows: list[dict]) -> dict:
    out: dict = {}
    for side in SIDES:
        mine = [r for r in rows if r["side"] == side]
        out[side] = {k: {"median": round(statistics.median(r[k] for r in mine), 4), "min": round(min(r[k] for r in mine), 4), "max": round(max(r[k] for r in mine), 4)}
                     for k in ("map", "map50", "val_map", "train_s", "train_cpu_s")}  # fmt: skip
    s = out["scratch"]["map"]["median"]
    out["ratio_map_pretrained_over_scratch"] = round(out["pretrained"]["map"]["median"] / s, 2) if s > 0 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/_work/detection"))
    ap.add_argument("--train", type=int, default=240)
    ap.add_argument("--val", type=int, default=60)
    ap.add_argument("--test", type=int, default=120)
    ap.add_argument("--size", type=int, default=128, help="scene and model input size (px)")
    ap.add_argument("--data-seed", type=int, default=1, help="seed of the scenes (the bundled demo set uses 0)")
    ap.add_argument("--detector", default="fcos")
    ap.add_argument("--strategy", default="finetune")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="rounds run at once (each one torch thread)")
    ap.add_argument("--speed-steps", type=int, default=3)
    ap.add_argument("--speed-rounds", type=int, default=3, help="speed measurements per detector, the order alternating (at least 3)")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRAFTKIT_CACHE", str(args.out / "cache"))
    t0, load0 = time.perf_counter(), os.getloadavg()
    root = make_data(args.out, args.train, args.val, args.test, args.size, args.data_seed)
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "loadavg_start": load0}
    if not args.skip_compare:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [r for rs in pool.map(one_round, range(args.rounds), [root] * args.rounds, [args.out] * args.rounds, [args] * args.rounds) for r in rs]
        result["rounds"] = rows
        result["summary"] = summary(rows)
    if not args.skip_speed:
        from graftkit.tasks.detection import DETECTORS

        sys.path.insert(0, str(Path(__file__).parent))
        from _common import alternating, median_spread

        per_round: dict[str, list[dict]] = {d: [] for d in DETECTORS}
        for r, d in alternating(list(DETECTORS), args.speed_rounds):  # the order of the detectors alternates
            per_round[d].append(speed(d, root, args))
            print(f"speed round {r + 1}: {json.dumps(per_round[d][-1])}", flush=True)
        result["speed"] = []
        for d, rs in per_round.items():
            row = {"detector": d, "params": rs[0]["params"], "rounds": len(rs)}
            for k in ("train_img_s", "predict_img_s"):
                row[k] = statistics.median(x[k] for x in rs)
                row[f"{k}_spread"] = median_spread([x[k] for x in rs])
            result["speed"].append(row)
            print(json.dumps(row), flush=True)
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    (args.out / "detection.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rounds",)}, indent=1))


if __name__ == "__main__":
    main()
