"""Start-up cost of `graft` commands, side by side with `python -c pass` (issue 15, item 7).

Builds a tiny exported image run, then times whole processes, alternating the order of the sides
every round: `python -c pass`, `graft predict RUN img --backend onnx` (the torch-free client),
`graft predict RUN img` (torch backend) and `graft serve` until `/health` answers. Prints the
median and the min-max spread of the wall time per command, over `--rounds` rounds.

    .venv/bin/python benchmarks/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _serve_ready(graft: str, run: Path, port: int) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([graft, "serve", str(run), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                return time.perf_counter() - t0
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("graft serve exited")
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import graftkit
    from graftkit.deploy.export import export
    from tests.conftest import TINY_MODEL, make_image_folder

    from _common import alternating, load_average

    graft = str(Path(sys.executable).with_name("graft"))
    with tempfile.TemporaryDirectory() as tmp:
        data = make_image_folder(Path(tmp) / "images")
        run = graftkit.fit(data, model=TINY_MODEL, out=Path(tmp) / "run", epochs=1).dir
        export(run)
        image = str(next(data.rglob("*.png")))
        sides = {
            "python -c pass": lambda: _wall([sys.executable, "-c", "pass"]),
            "graft predict --backend onnx": lambda: _wall([graft, "predict", str(run), image, "--backend", "onnx"]),
            "graft predict (torch)": lambda: _wall([graft, "predict", str(run), image]),
            "graft serve until /health": lambda: _serve_ready(graft, run, 8765),
        }
        for fn in sides.values():  # warm the page cache
            fn()
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _, name in alternating(list(sides), args.rounds):
            times[name].append(sides[name]())
    print(f"{'command':32} {'median s':>9} {'min':>7} {'max':>7}   ({args.rounds} rounds, order alternated; {load_average()})")
    for name, ts in times.items():
        print(f"{name:32} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f}")


if __name__ == "__main__":
    main()
