"""`graft serve` under load (issue 11, item 8): 32 concurrent clients on loopback with a slow
client among them, and refusal with 503 + Retry-After beyond what it can queue. The 60-second run
with its memory figures is `benchmarks/serve_load.py` (RESULTS.md "Service under load")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests._deploy_runs import image_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import serve_load  # noqa: E402

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from graftkit.deploy.serve import ServeLimits, create_app  # noqa: E402


def test_32_clients_and_a_slow_one_get_answers_without_errors(tmp_path_factory):
    run = image_run(tmp_path_factory)
    port = serve_load.free_port()
    server = serve_load.start_server(run, port)
    try:
        result = serve_load.run_load(port, server.pid, clients=32, seconds=6, byte_seconds=0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)
    summary = result.summary()
    assert result.errors == [] and result.refused_503 == 0, summary
    assert result.requests >= 32, summary  # every client was answered at least once
    assert summary["p99_ms"] < 5000, summary  # the slow client stalls nobody: answers keep coming
    assert result.slow_client_status == 200, summary  # and it is answered itself when it is done


def test_more_than_the_queue_holds_is_refused_with_503_and_retry_after(tmp_path_factory):
    run = image_run(tmp_path_factory)
    app = create_app(run, limits=ServeLimits(max_queued_inputs=2))
    png = serve_load.png_bytes()
    with TestClient(app) as client:
        files = [("file", (f"{i}.png", png, "image/png")) for i in range(3)]
        busy = client.post("/predict", files=files)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert "the service is busy" in busy.json()["error"] and "at most 2" in busy.json()["error"]
        fine = client.post("/predict", files=files[:2])
        assert fine.status_code == 200 and len(fine.json()["predictions"]) == 2
        assert client.get("/health").json()["in_flight"] == 0  # what was admitted is released
