"""`graft rank` on real data: does the ranking pick the backbone that transfers best, and how long does it take?

    .venv/bin/python benchmarks/rank.py                   # Fashion-MNIST images + VADER movie-review text
    .venv/bin/python benchmarks/rank.py --skip-text

Images: Fashion-MNIST, 100 per class from the training split (1,000 images, 28x28 PNGs), ranked
over the ImageNet EfficientNet-Lite0 and -Lite2 (built in), the Lite0 architecture from random
init (`scratch:timm:tf_efficientnet_lite0`), and `timm:resnet50`, whose weights are not on this
machine (it must show as skipped with its pull command). Each model's own input size. The
feature cache starts empty, so every time includes the model's feature pass. Then, to check
the ranking against what it predicts, each scored model trains a linear probe (`graftkit.fit`,
reusing the cached features) and is evaluated on 1,000 unseen test images (100 per class).

Text: 1,000 VADER movie-review snippets (500 per class), `minilm` vs `scratch:minilm`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import WORK, fashion_mnist_folder, fresh_cache, machine, report

IMAGE_MODELS = ["efficientnet_lite0", "efficientnet_lite2", "scratch:timm:tf_efficientnet_lite0", "timm:resnet50"]


def images(per_class: int) -> dict:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    train = fashion_mnist_folder(f"fmnist-train-{per_class}pc-png", "train", per_class, fmt="png", size=None, seed=1)
    test = fashion_mnist_folder("fmnist-test-100pc-png", "t10k", 100, fmt="png", size=None, seed=2)
    fresh_cache("rank")
    t0 = time.perf_counter()
    r = graftkit.rank(train, IMAGE_MODELS, out=WORK / "runs" / "rank-images", offline=True)
    seconds = time.perf_counter() - t0
    rows, check = [], {}
    for i, m in enumerate(r.models):
        if m.status != "ok":
            rows.append(("–", m.model, "skipped: " + m.reason, "", "", "", "", "", "", ""))
            continue
        out = WORK / "runs" / f"rank-probe-{m.model.replace(':', '_')}"
        shutil.rmtree(out, ignore_errors=True)
        graftkit.fit(train, model=m.model, strategy="linear-probe", epochs=20, out=out, offline=True)
        test_acc = evaluate(out, test)["test"]["accuracy"]
        check[m.model] = test_acc
        s = m.scores
        rows.append((i + 1, m.model, f"{s['probe_accuracy']:.3f}", f"{s['logme']:.3f}", f"{s['h_score']:.2f}",
                     "—" if s["leep"] is None else f"{s['leep']:.3f}", "—" if s["nce"] is None else f"{s['nce']:.3f}",
                     f"{m.seconds['features']:.0f}", f"{m.seconds['total']:.0f}", f"{test_acc:.3f}"))  # fmt: skip
    order_by_test = sorted(check, key=check.get, reverse=True)
    report(
        f"graft rank: Fashion-MNIST, {per_class * 10} images, cold cache ({machine()})",
        rows,
        ("rank", "model", "k-fold probe acc", "LogME", "H-score", "LEEP", "NCE", "features s", "total s", "probe test acc (1,000)"),
        {"recommendation": r.recommendation, "rank seconds (all models)": round(seconds, 1),
         "ranking agrees with test accuracy": [m.model for m in r.models if m.status == "ok"] == order_by_test},  # fmt: skip
    )
    return {"ranking": r.to_dict(), "test_accuracy": check, "seconds": seconds}


def text(n_per_class: int) -> dict:
    import graftkit
    from _common import few_shot, vader_split, write_text_csv

    train, _ = vader_split()
    data = write_text_csv(few_shot(train, n_per_class, seed=0), WORK / f"rank-text-{n_per_class}pc.csv")
    t0 = time.perf_counter()
    r = graftkit.rank(data, ["minilm", "scratch:minilm"], out=WORK / "runs" / "rank-text", offline=True)
    seconds = time.perf_counter() - t0
    rows = [(i + 1, m.model, f"{m.scores['probe_accuracy']:.3f}", f"{m.scores['logme']:.3f}", f"{m.scores['h_score']:.2f}", f"{m.seconds['total']:.0f}")
            for i, m in enumerate(r.models)]  # fmt: skip
    report(f"graft rank: VADER movie snippets, {2 * n_per_class} texts", rows, ("rank", "model", "k-fold probe acc", "LogME", "H-score", "total s"),
           {"recommendation": r.recommendation, "seconds": round(seconds, 1)})  # fmt: skip
    return {"ranking": r.to_dict(), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--text-per-class", type=int, default=500)
    p.add_argument("--skip-text", action="store_true")
    args = p.parse_args()
    results = {"images": images(args.per_class)}
    if not args.skip_text:
        results["text"] = text(args.text_per_class)
    (WORK / "results").mkdir(parents=True, exist_ok=True)
    (WORK / "results" / "rank.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
