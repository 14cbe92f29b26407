"""Shared pieces of the benchmarks: real data sets written as image folders, timing, machine facts."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
sys.path.insert(0, str(ROOT / "scripts"))


def fashion_mnist_folder(name: str, split: str, per_class: int, *, fmt: str = "jpg", size: int | None = 256, seed: int = 0) -> Path:
    """`per_class` seeded Fashion-MNIST images per class as an image folder (made once, reused)."""
    from fashion_mnist import pick_per_class, read_split, write_folder

    out = WORK / name
    if (out / ".complete").is_file():
        return out
    images, labels = read_split(split)
    write_folder(out, images, labels, pick_per_class(labels, per_class, seed=seed), fmt=fmt, size=size)
    (out / ".complete").write_text("ok")
    return out


def machine() -> str:
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    from graftkit.training.engine import cpu_has_native_bf16

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}"


@contextmanager
def timer(results: dict, key: str):
    t0 = time.perf_counter()
    yield
    results[key] = time.perf_counter() - t0


def fresh_cache(name: str) -> Path:
    """Point graftkit's cache at an empty folder."""
    import shutil

    path = WORK / "cache" / name
    shutil.rmtree(path, ignore_errors=True)
    os.environ["GRAFTKIT_CACHE"] = str(path)
    return path


def report(title: str, rows: list[tuple], header: tuple, extra: dict | None = None) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    if extra:
        print("\n```json\n" + json.dumps(extra, indent=1) + "\n```")
