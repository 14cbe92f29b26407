"""`graft serve` under load: N concurrent clients for D seconds on loopback, plus one slow client.

Starts `graft serve RUN` as a subprocess, waits for /health, then runs N client threads, each
POSTing one PNG to /predict back to back, while one more client sends its request one byte at a
time (default one byte a second). Reports requests, errors (anything but 200), 503s, latency
p50/p99/max, and the server's RSS at the start and end of the load (from /proc). The test suite
runs the same driver for a few seconds (`tests/test_serve_load.py`).

    python benchmarks/serve_load.py RUN --clients 32 --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

GRAFT = str(Path(sys.executable).with_name("graft"))


def png_bytes(size: int = 48) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children's sum is not needed: uvicorn serves in one process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: Path, port: int, *extra: str, timeout: float = 180) -> subprocess.Popen:
    proc = subprocess.Popen([GRAFT, "serve", str(run), "--port", str(port), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"graft serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("graft serve did not answer /health in time")


@dataclass
class LoadResult:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    refused_503: int = 0
    latencies: list[float] = field(default_factory=list)
    slow_client_status: int | None = None
    slow_client_seconds: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)
    """The server's RSS every 5 s of the load: flat after warm-up, or growing."""

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    def summary(self) -> dict:
        return {"requests": self.requests, "errors": len(self.errors), "refused_503": self.refused_503,
                "p50_ms": round(1000 * self.percentile(0.50), 1), "p99_ms": round(1000 * self.percentile(0.99), 1),
                "max_ms": round(1000 * max(self.latencies, default=float("nan")), 1),
                "slow_client_status": self.slow_client_status, "slow_client_seconds": round(self.slow_client_seconds, 1),
                "rss_start_mb": round(self.rss_start_mb, 1), "rss_end_mb": round(self.rss_end_mb, 1),
                "rss_every_5s_mb": [round(x) for x in self.rss_samples_mb]}  # fmt: skip


def _client(port: int, body: bytes, stop: float, result: LoadResult, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "image/png"})
            response = conn.getresponse()
            payload = response.read()
            status = response.status
        except OSError as e:
            status, payload = -1, str(e).encode()
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        seconds = time.perf_counter() - t0
        with lock:
            result.requests += 1
            if status == 200:
                result.latencies.append(seconds)
            elif status == 503:
                result.refused_503 += 1
            else:
                result.errors.append(f"{status}: {payload[:200]!r}")
    conn.close()


def _slow_client(port: int, body: bytes, byte_seconds: float, stop: float, result: LoadResult) -> None:
    """Sends the request head one byte at a time until the load ends, then the rest at once."""
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sent = 0
        while sent < len(head) - 1 and time.monotonic() < stop:
            sock.sendall(head[sent : sent + 1])
            sent += 1
            time.sleep(byte_seconds)
        sock.sendall(head[sent:] + body)
        reply = sock.recv(65536).decode(errors="replace")
    result.slow_client_status = int(reply.split()[1]) if reply.startswith("HTTP/") else -1
    result.slow_client_seconds = time.perf_counter() - t0


def run_load(port: int, pid: int, *, clients: int, seconds: float, byte_seconds: float = 1.0) -> LoadResult:
    body = png_bytes()
    result, lock = LoadResult(), threading.Lock()
    result.rss_start_mb = rss_mb(pid)
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(port, body, stop, result, lock)) for _ in range(clients)]
    slow = threading.Thread(target=_slow_client, args=(port, body, byte_seconds, stop, result))
    def sample() -> None:
        while time.monotonic() < stop:
            time.sleep(5)
            result.rss_samples_mb.append(rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    slow.start()
    sampler.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow.join()
    result.rss_end_mb = rss_mb(pid)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--byte-seconds", type=float, default=1.0, help="the slow client's pause between bytes")
    parser.add_argument("--backend", default="torch")
    args = parser.parse_args()
    port = free_port()
    server = start_server(args.run, port, "--backend", args.backend)
    try:
        result = run_load(port, server.pid, clients=args.clients, seconds=args.seconds, byte_seconds=args.byte_seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"clients": args.clients, "seconds": args.seconds, "backend": args.backend, "cpus": os.cpu_count(), **result.summary()}, indent=2))


if __name__ == "__main__":
    main()
