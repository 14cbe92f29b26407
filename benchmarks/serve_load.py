"""`graft serve` under load: concurrent clients on loopback for a fixed time.

    .venv/bin/python benchmarks/serve_load.py                          # trains the image demo run first
    .venv/bin/python benchmarks/serve_load.py --run runs/demo --backend onnx --clients 16 --seconds 60
    .venv/bin/python benchmarks/serve_load.py --text                   # the text demo run (MiniLM)

The server is a separate process (`graft serve`, uvicorn, micro-batching on); each client is an
asyncio task with its own keep-alive connection that posts one validation image (multipart) or
text (JSON) after another, cycling through the run's validation samples. Reported: requests per
second, latency p50/p99 as each client sees it, errors (non-200 answers and transport errors),
and the mean batch size the server formed (from `/health`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, WORK, machine, report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _payloads(run: Path) -> tuple[str, list]:
    from graftkit.deploy.modality import validation_samples
    from graftkit.rundir import read_json

    meta = read_json(run / "graft.json")
    samples = validation_samples(run, meta, limit=64)
    if meta.get("modality") == "text":
        return "text", [{"json": {"text": t}} for t in samples.items]
    return "image", [{"files": {"file": (Path(p).name, Path(p).read_bytes(), "image/png")}} for p in samples.items]


async def _client(base: str, payloads: list, stop_at: float, offset: int, latencies: list, errors: list) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        i = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await client.post("/predict", **payloads[i % len(payloads)])
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:100]}")
                else:
                    latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")
            i += 1


async def _load(base: str, payloads: list, clients: int, seconds: float) -> tuple[list, list, float]:
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*[_client(base, payloads, stop_at, k * 7, latencies, errors) for k in range(clients)])
    return latencies, errors, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="run directory (default: train the demo run into benchmarks/_work)")
    ap.add_argument("--text", action="store_true", help="use the text demo run (MiniLM) when --run is not given")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-batch", type=int, default=16)
    args = ap.parse_args()
    import httpx

    run = args.run
    if run is None:
        from deploy import _demo_run

        run = _demo_run("text" if args.text else "image")
    run = run.resolve()  # the server runs from the repository root
    if args.backend != "torch" and not (run / "export" / "model.onnx").is_file():
        from graftkit.deploy.export import export

        export(run, "onnx", quantize="int8" if args.backend == "onnx-int8" else None)
    kind, payloads = _payloads(run)
    port = _free_port()
    graft = str(Path(sys.executable).with_name("graft"))
    server = subprocess.Popen([graft, "serve", str(run), "--port", str(port), "--backend", args.backend, "--max-batch", str(args.max_batch)],
                              cwd=ROOT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.25)
        asyncio.run(_load(base, payloads, 2, 3))  # warm-up: first batches, allocator, connections
        before = httpx.get(f"{base}/health").json()
        latencies, errors, wall = asyncio.run(_load(base, payloads, args.clients, args.seconds))
        after = httpx.get(f"{base}/health").json()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
    lat = np.array(latencies) * 1000
    batches = max(after["batches"] - before["batches"], 1)
    mean_batch = (after["items"] - before["items"]) / batches
    rows = [(args.backend, args.clients, f"{args.seconds:.0f}", f"{len(lat) / wall:.1f}", f"{np.percentile(lat, 50):.0f}",
             f"{np.percentile(lat, 99):.0f}", len(errors), f"{mean_batch:.1f}")]  # fmt: skip
    report(f"graft serve under load ({kind} run: {run.name})", rows,
           ("backend", "clients", "seconds", "requests/s", "p50 ms", "p99 ms", "errors", "mean batch"),
           extra={"machine": machine(), "run": str(run), "requests": len(lat), "first_errors": errors[:5]})  # fmt: skip
    (WORK / f"serve_load-{kind}-{args.backend}.json").write_text(json.dumps({"requests_per_s": len(lat) / wall, "errors": len(errors)}))


if __name__ == "__main__":
    main()
