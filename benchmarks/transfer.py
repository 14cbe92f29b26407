"""Transfer benefit on real data: Fashion-MNIST, 100 training images per class, 2,000 test images.

    .venv/bin/python benchmarks/transfer.py    # needs `apt-get install -y dataset-fashion-mnist`

Linear probe and fine-tuning of the ImageNet-pretrained EfficientNet-Lite0 vs the same
architecture from random init (`scratch:`) trained with the same budget (strategy, epochs, image
size, learning rate). Test accuracy on 200 unseen images per class from the official test split.
`--seeds` seeds (default 3: graftkit's split, initialisation and data order change with the seed),
the order of the rows reversed every other seed; each figure is quoted as median [min, max] over
the seeds, and pretrained − random init is paired by seed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from _common import WORK, alternating, fashion_mnist_folder, fresh_cache, load_average, machine, median_spread, report


def run(name: str, train, test, seed: int = 0, **settings) -> tuple[float, float, float]:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    out = WORK / "runs" / f"transfer-{name}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = graftkit.fit(train, out=out, seed=seed, **settings)
    seconds = time.perf_counter() - t0
    test_acc = evaluate(out, test)["test"]["accuracy"]
    print(f"{name} (seed {seed}): val {r.metrics['val']['accuracy']:.3f} test {test_acc:.3f} in {seconds:.0f} s", flush=True)
    return r.metrics["val"]["accuracy"], test_acc, seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ft-epochs", type=int, default=6)
    p.add_argument("--ft-size", type=int, default=128, help="fine-tuning image size (CPU budget)")
    p.add_argument("--ft-augment", default="light", help="augmentation preset for fine-tuning")
    p.add_argument("--only", default="", help="comma-separated row prefixes to run, e.g. 'fine-tune'")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1, the order of the rows alternating (at least 3)")
    args = p.parse_args()
    train = fashion_mnist_folder("fmnist-train-100pc-png", "train", 100, fmt="png", size=None, seed=1)
    test = fashion_mnist_folder("fmnist-test-200pc-png", "t10k", 200, fmt="png", size=None, seed=2)
    ft = dict(strategy="finetune", epochs=args.ft_epochs, image_size=args.ft_size, augment=args.ft_augment)  # the rest at defaults
    probe = dict(strategy="linear-probe", epochs=20)
    table = [
        ("probe (pretrained)", "efficientnet_lite0", probe),
        ("probe (random init)", "scratch:efficientnet_lite0", probe),
        ("fine-tune (pretrained)", "efficientnet_lite0", ft),
        ("fine-tune (random init, same budget)", "scratch:efficientnet_lite0", ft),
    ]
    table = [t for t in table if not args.only or any(t[0].startswith(o) for o in args.only.split(","))]
    got: dict[str, list[tuple[float, float, float]]] = {t[0]: [] for t in table}  # per seed: (val, test, seconds)
    for seed, (name, model, settings) in alternating(table, args.seeds):
        fresh_cache("transfer")  # every run from an empty feature cache, whatever ran before it
        got[name].append(run(name.split(" ")[0] + ("-scratch" if "random" in name else ""), train, test, seed=seed, model=model, **settings))
    rows = [(name, median_spread([g[1] for g in got[name]], ".3f"), median_spread([g[0] for g in got[name]], ".3f"), median_spread([g[2] for g in got[name]], ".0f"))
            for name, _, _ in table]  # fmt: skip
    gains = {}
    for kind in ("probe", "fine-tune"):
        pre = [n for n in got if n.startswith(kind) and "pretrained" in n]
        scr = [n for n in got if n.startswith(kind) and "random" in n]
        if pre and scr:
            diff = [a[1] - b[1] for a, b in zip(got[pre[0]], got[scr[0]])]  # test accuracy, paired by seed
            gains[kind] = {"per_seed": diff, "median": statistics.median(diff)}
            rows.append((f"{kind}: pretrained − random init, paired by seed", median_spread(diff, "+.3f"), "", ""))
    report(
        f"Transfer benefit: Fashion-MNIST, 1,000 train / 2,000 test, EfficientNet-Lite0, {args.seeds} seeds ({machine()}; {load_average()})",
        rows,
        ("model", "test accuracy", "val accuracy", "train s"),
        {"finetune": ft, "probe": probe, "seeds": args.seeds, "pretrained_minus_random_init": gains},
    )


if __name__ == "__main__":
    main()
