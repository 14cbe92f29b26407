"""The allocator lever: glibc defaults vs graftkit's `tune_malloc()` vs tcmalloc, each in a fresh process.

    .venv/bin/python benchmarks/allocator.py      # tcmalloc row needs `apt-get install -y libgoogle-perftools4`

EfficientNet-Lite0, fp32 + channels_last: inference at batch 64 / 224 px, training steps at batch 16.
"""

from __future__ import annotations

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
    from _common import machine, report

    rows, base = [], None
    for mode in ("glibc default", "graftkit", "tcmalloc"):
        env = dict(os.environ, GRAFTKIT_TUNE_MALLOC="1")
        if mode == "tcmalloc":
            if not Path(TCMALLOC).exists():
                continue
            env["LD_PRELOAD"] = TCMALLOC
        out = subprocess.run([sys.executable, __file__, "--child", mode.split()[0]], env=env, capture_output=True, text=True, check=True).stdout
        infer, train = map(float, out.split())
        base = base or (infer, train)
        rows.append((mode, f"{infer:.1f}", f"{infer / base[0]:.2f}×", f"{train:.1f}", f"{train / base[1]:.2f}×"))
        print(rows[-1], flush=True)
    report(f"Allocator: EfficientNet-Lite0 fp32 channels_last ({machine()})", rows,
           ("allocator", "inference img/s", "ratio", "train img/s", "ratio"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
