"""Transfer benefit on real data: Fashion-MNIST, 100 training images per class, 2,000 test images.

    .venv/bin/python benchmarks/transfer.py    # needs `apt-get install -y dataset-fashion-mnist`

Linear probe and fine-tuning of the ImageNet-pretrained EfficientNet-Lite0 vs the same
architecture from random init (`scratch:`) trained with the same budget (strategy, epochs, image
size, learning rate). Test accuracy on 200 unseen images per class from the official test split.
"""

from __future__ import annotations

import argparse
import shutil
import time

from _common import WORK, fashion_mnist_folder, fresh_cache, machine, report


def run(name: str, train, test, **settings) -> tuple[float, float, float]:
    import graftkit
    from graftkit.deploy.evaluate import evaluate

    out = WORK / "runs" / f"transfer-{name}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    r = graftkit.fit(train, out=out, seed=0, **settings)
    seconds = time.perf_counter() - t0
    test_acc = evaluate(out, test)["test"]["accuracy"]
    print(f"{name}: val {r.metrics['val']['accuracy']:.3f} test {test_acc:.3f} in {seconds:.0f} s", flush=True)
    return r.metrics["val"]["accuracy"], test_acc, seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ft-epochs", type=int, default=6)
    p.add_argument("--ft-size", type=int, default=128, help="fine-tuning image size (CPU budget)")
    p.add_argument("--ft-augment", default="light", help="augmentation preset for fine-tuning")
    p.add_argument("--only", default="", help="comma-separated row prefixes to run, e.g. 'fine-tune'")
    args = p.parse_args()
    train = fashion_mnist_folder("fmnist-train-100pc-png", "train", 100, fmt="png", size=None, seed=1)
    test = fashion_mnist_folder("fmnist-test-200pc-png", "t10k", 200, fmt="png", size=None, seed=2)
    fresh_cache("transfer")
    ft = dict(strategy="finetune", epochs=args.ft_epochs, image_size=args.ft_size, augment=args.ft_augment)  # the rest at defaults
    probe = dict(strategy="linear-probe", epochs=20)
    rows = []
    for name, model, settings in [
        ("probe (pretrained)", "efficientnet_lite0", probe),
        ("probe (random init)", "scratch:efficientnet_lite0", probe),
        ("fine-tune (pretrained)", "efficientnet_lite0", ft),
        ("fine-tune (random init, same budget)", "scratch:efficientnet_lite0", ft),
    ]:
        if args.only and not any(name.startswith(o) for o in args.only.split(",")):
            continue
        val, test_acc, seconds = run(name.split(" ")[0] + ("-scratch" if "random" in name else ""), train, test, model=model, **settings)
        rows.append((name, f"{test_acc:.3f}", f"{val:.3f}", f"{seconds:.0f}"))
    report(
        f"Transfer benefit: Fashion-MNIST, 1,000 train / 2,000 test, EfficientNet-Lite0 ({machine()})",
        rows,
        ("model", "test accuracy", "val accuracy", "train s"),
        {"finetune": ft, "probe": probe},
    )


if __name__ == "__main__":
    main()
