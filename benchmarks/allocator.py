"""The allocator lever: glibc defaults vs graftkit's `tune_malloc()` vs tcmalloc, each in a fresh process.

    .venv/bin/python benchmarks/allocator.py      # tcmalloc row needs `apt-get install -y libgoogle-perftools4`
    .venv/bin/python benchmarks/allocator.py --rounds 5

EfficientNet-Lite0, fp32 + channels_last: inference at batch 64 / 224 px, training steps at batch 16.
Each measurement is a fresh process; `--rounds` rounds (default 3), the order of the allocators
reversed every other round. Reported per allocator: img/s as median [min, max] over the rounds,
and the ratio to glibc's defaults paired by round (median [min, max]).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"


def child(mode: str) -> None:
    import timm
    import torch

    if mode == "graftkit":
        from graftkit.engine import tune_malloc

        assert tune_malloc()
    m = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(64, 3, 224, 224).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        m(x)
        t0 = time.perf_counter()
        for _ in range(4):
            m(x)
    infer = 256 / (time.perf_counter() - t0)
    m.train()
    opt = torch.optim.AdamW(m.parameters())
    x = x[:16]
    m(x).sum().backward()
    t0 = time.perf_counter()
    for _ in range(3):
        opt.zero_grad()
        m(x).sum().backward()
        opt.step()
    print(f"{infer:.1f} {48 / (time.perf_counter() - t0):.1f}")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import alternating, load_average, machine, median_spread, report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per allocator, the order alternating (at least 3)")
    args = p.parse_args()
    modes = ["glibc default", "graftkit"] + (["tcmalloc"] if Path(TCMALLOC).exists() else [])
    figures: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}  # per round: (inference, train) img/s
    for r, mode in alternating(modes, args.rounds):
        env = dict(os.environ, GRAFTKIT_TUNE_MALLOC="1")
        if mode == "tcmalloc":
            env["LD_PRELOAD"] = TCMALLOC
        out = subprocess.run([sys.executable, __file__, "--child", mode.split()[0]], env=env, capture_output=True, text=True, check=True).stdout
        figures[mode].append(tuple(map(float, out.split())))
        print(f"round {r + 1} {mode}: inference {figures[mode][-1][0]:.1f}, train {figures[mode][-1][1]:.1f} img/s", flush=True)
    base = figures["glibc default"]
    rows = []
    for mode in modes:
        infer, train = [f[0] for f in figures[mode]], [f[1] for f in figures[mode]]
        r_infer = [a[0] / b[0] for a, b in zip(figures[mode], base)]  # paired by round
        r_train = [a[1] / b[1] for a, b in zip(figures[mode], base)]
        rows.append((mode, median_spread(infer, ".1f"), median_spread(r_infer, ".2f", "×"),
                     median_spread(train, ".1f"), median_spread(r_train, ".2f", "×")))  # fmt: skip
    report(f"Allocator: EfficientNet-Lite0 fp32 channels_last, {args.rounds} alternating rounds ({machine()}; {load_average()})", rows,
           ("allocator", "inference img/s", "ratio (paired)", "train img/s", "ratio (paired)"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
