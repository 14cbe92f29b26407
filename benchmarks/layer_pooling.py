"""`--layer-pooling weighted` (the SUPERB protocol) vs the last layer, on real speech (issue 12,
requirement 2): Whisper tiny.en's encoder, the user-facing probe (`graft train --strategy
linear-probe`, then `graft evaluate`), on the keyword-transfer data of `keywords.py`.

Per language: train on the espeak-ng voices but the last few (English 5, French 4), validate on
those held-out synthetic voices (the dev split: the probe's L2 strength and the layer mix are
chosen or trained there, then refitted on train + val), and test once on the 57 real Asterisk
clips of one human speaker. Every clip is cut / padded to 1.5 s (`--max-seconds 1.5`). Features
are deterministic (frozen encoder), so the noise is the 57 real clips' sampling noise: Wilson 95 %
intervals, and paired bootstraps over the real clips (`graft predict`'s per-clip labels) of
weighted - last and, when `keywords.py LANG mfcc` has written its report, of each row - MFCC's
setting chosen on the same dev split (the keyword-transfer target of requirement 7).

    OMP_NUM_THREADS=1 python benchmarks/keywords.py en mfcc     # optional: the MFCC column
    OMP_NUM_THREADS=2 python benchmarks/layer_pooling.py en fr [--model whisper_tiny_en]
    python benchmarks/layer_pooling.py --table [JSON]           # the table of a saved run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keywords import CACHE, SOUNDS, bootstrap_diff, synthesise, vocabulary, voices, wilson  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "graftkit-layer-pooling"


def folders(lang: str) -> dict[str, Path]:
    """Class folders of symlinks: train (synthetic voices but the last few), dev (those), real."""
    root = WORK / lang
    if (root / ".complete").is_file():
        return {s: root / s for s in ("train", "dev", "real")}
    syn = synthesise(lang)
    vocab = vocabulary(lang)
    n_dev = 5 if lang == "en" else 4
    first_dev = len(voices(lang)) - n_dev
    for path, k, vi in syn:
        d = root / ("dev" if vi >= first_dev else "train") / f"w{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"v{vi:02d}.wav").symlink_to(path)
    for k, (rel, _) in enumerate(vocab):
        d = root / "real" / f"w{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "real.wav").symlink_to(SOUNDS[lang] / rel)
    (root / ".complete").write_text("ok")
    return {s: root / s for s in ("train", "dev", "real")}


def graft(*args: str) -> str:
    env = dict(os.environ, GRAFTKIT_CACHE=str(WORK / "cache"))
    return subprocess.run([sys.executable, "-m", "graftkit", *args], check=True, env=env, stdout=subprocess.PIPE, text=True).stdout


def one(lang: str, model: str, pooling: str, data: dict[str, Path]) -> dict:
    run = WORK / "runs" / f"{lang}-{model}-{pooling}"
    t0 = time.perf_counter()
    graft("train", str(data["train"]), "--val", str(data["dev"]), "--model", model, "--strategy", "linear-probe",
          "--layer-pooling", pooling, "--max-seconds", "1.5", "--offline", "--overwrite", "--out", str(run))  # fmt: skip
    train_s = time.perf_counter() - t0
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(graft("predict", str(run), str(data["real"]), "--format", "csv"))))
    hits = np.array([int(Path(r["input"]).parent.name == r["label"]) for r in rows])
    metrics = json.loads((run / "metrics.json").read_text())
    probe = metrics.get("probe", {})
    return {"lang": lang, "model": model, "pooling": pooling, "train_s": round(train_s, 1), "val": metrics.get("val", {}).get("accuracy"),
            "real_hits": hits.tolist(), "real_acc": float(hits.mean()), "layer_weights": probe.get("layer_weights"),
            "strength": probe.get("strength")}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("langs", nargs="*", help=f"of {', '.join(sorted(SOUNDS))}")
    p.add_argument("--model", default="whisper_tiny_en")
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "layer_pooling.json")
    p.add_argument("--poolings", default="last,weighted", help="comma-separated --layer-pooling values to run")
    p.add_argument("--table", action="store_true", help="print the table of --json only")
    args = p.parse_args()
    if args.table:
        table(json.loads(args.json.read_text())["rows"])
        return
    if not args.langs or set(args.langs) - set(SOUNDS):
        p.error(f"give languages of {', '.join(sorted(SOUNDS))}, or --table")
    rows = []
    for lang in args.langs:
        data = folders(lang)
        for pooling in args.poolings.split(","):
            row = one(lang, args.model, pooling, data)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "real_hits"}), flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"cache": str(CACHE), "rows": rows}, indent=1))
    table(rows)


def mfcc_hits(lang: str) -> np.ndarray | None:
    """MFCC's per-clip real hits at its dev-chosen setting (`keywords.py LANG mfcc`), if run."""
    f = CACHE / f"report-{lang}.json"
    if not f.is_file() or "mfcc" not in (rep := json.loads(f.read_text())):
        return None
    return np.array(rep["mfcc"]["rows"]["|".join(map(str, rep["mfcc"]["chosen"]))]["real_hits"])


def table(rows: list[dict]) -> None:
    print("\n| language | pooling | val (held-out synthetic voices) | real acc (57) [Wilson 95 %] | − MFCC, points [paired bootstrap 95 %] "
          "| − last, points [paired bootstrap 95 %] | layer weights (input → output) | train s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for lang in dict.fromkeys(r["lang"] for r in rows):
        mine = {r["pooling"]: r for r in rows if r["lang"] == lang}
        mfcc = mfcc_hits(lang)
        for pooling, r in mine.items():
            h = np.array(r["real_hits"])
            lo, hi = wilson(int(h.sum()), len(h))
            vs_mfcc = "—"
            if mfcc is not None:
                d = bootstrap_diff(h, mfcc)
                vs_mfcc = f"{100 * (h.mean() - mfcc.mean()):+.1f} [{100 * d[0]:+.1f}, {100 * d[1]:+.1f}] (MFCC {mfcc.sum()}/{len(mfcc)})"
            vs_last = "—"
            if pooling != "last" and "last" in mine:
                last = np.array(mine["last"]["real_hits"])
                d = bootstrap_diff(h, last)
                vs_last = f"{100 * (h.mean() - last.mean()):+.1f} [{100 * d[0]:+.1f}, {100 * d[1]:+.1f}]"
            lw = ", ".join(f"{w:.2f}" for w in r["layer_weights"]) if r["layer_weights"] else "—"
            print(f"| {lang} | {pooling} | {r['val']:.3f} | {h.mean():.3f} ({h.sum()}/{len(h)}) [{lo:.2f}, {hi:.2f}] | {vs_mfcc} | {vs_last} | {lw} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
