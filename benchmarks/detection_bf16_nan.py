"""Does detector training diverge in bf16 on this CPU? One epoch of FCOS on the tiny detection scenes
of the tests, for 8 split seeds, per strategy and precision; prints which seeds gave a NaN loss.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detection_bf16_nan.py [--seeds 8]

(This is what moved detector training to fp32 on CPU in `engine/precision.py: choose_precision`.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import graftkit  # noqa: E402
from graftkit.errors import TrainingDivergedError  # noqa: E402
from tests._detection_data import make_scenes, write_coco  # noqa: E402
from tests.conftest import TINY_MODEL  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    print(f"CPU native bf16: {any(x in flags for x in ('avx512_bf16', 'amx_bf16'))}")
    for strategy, precision in (("finetune", "bf16"), ("linear-probe", "bf16"), ("finetune", "fp32"), ("linear-probe", "fp32")):
        diverged = []
        for seed in range(args.seeds):
            d = Path(tempfile.mkdtemp())
            data = write_coco(d / "data", make_scenes(d / "data", n=10))
            try:
                graftkit.fit(data, out=d / "run", model=TINY_MODEL, task="detection", detector="fcos", epochs=1, batch_size=4, image_size=64,
                             num_workers=0, offline=True, lr=0.005, seed=seed, strategy=strategy, precision=precision)  # fmt: skip
            except TrainingDivergedError:
                diverged.append(seed)
        print(f"{strategy:13s} {precision}: {len(diverged)} of {args.seeds} seeds diverged {diverged}")


if __name__ == "__main__":
    main()
