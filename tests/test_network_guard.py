"""Offline means offline, and the tests can tell (issue 11, item 5).

The guard in `tests/netguard.py` runs around every test (`tests/conftest.py`). These tests prove it
can fail: it records an attempt that the code under test swallows, it lets loopback through, and
in a subprocess it records a deliberate connection before the real `graft train`, `predict` and
`export` run under it and record none.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from graftkit.errors import WeightsNotAvailableError
from tests.conftest import TINY_MODEL, make_image_folder

GRAFT = str(Path(sys.executable).with_name("graft"))
SITE = Path(__file__).with_name("netguard_site")


def _swallowing_download() -> None:
    """What a careless download does: try, and hide every failure."""
    try:
        urllib.request.urlopen("https://huggingface.co/api/models", timeout=2)
    except Exception:
        pass


def test_an_attempt_that_the_code_swallows_is_still_recorded(network_guard):
    network_guard.expect()
    _swallowing_download()
    assert network_guard.attempts == ["lookup huggingface.co"]
    with socket.socket() as sock, pytest.raises(OSError, match="refused"):
        sock.connect(("93.184.215.14", 80))  # a literal address: no lookup, the connect itself is refused
    assert network_guard.attempts[-1] == "connect 93.184.215.14:80"


def test_loopback_stays_open(network_guard):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        accepted = threading.Thread(target=lambda: server.accept()[0].close())
        accepted.start()
        with socket.create_connection(server.getsockname(), timeout=5):
            accepted.join(5)
    assert network_guard.attempts == []


def test_loading_hub_weights_online_is_refused_and_recorded(network_guard, monkeypatch):
    """The case the old socket patch missed: the download code caught the refusal and the test passed."""
    network_guard.expect()
    _online(monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(Path.cwd() / "torch"))
    from graftkit.sources import load_backbone

    with pytest.raises(WeightsNotAvailableError, match="graft pull timm:resnet18"):
        load_backbone("timm:resnet18")
    assert any("huggingface.co" in a for a in network_guard.attempts), network_guard.attempts


def _online(monkeypatch) -> None:
    """Online mode, also for a huggingface_hub imported earlier in offline mode (it reads
    HF_HUB_OFFLINE once, at import)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(Path.cwd() / "hf"))


def _guarded_env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "GRAFTKIT_OFFLINE")}
    return {**env, "PYTHONPATH": path, "GRAFTKIT_NETGUARD_LOG": str(log)}


def test_graft_train_predict_and_export_touch_no_network(tmp_path):
    """Run in subprocesses as a user runs them, online mode (no HF_HUB_OFFLINE), under the guard."""
    log = tmp_path / "attempts.log"
    env = _guarded_env(log)
    # First prove the guard is live in a subprocess: a deliberate connection must be recorded.
    probe = subprocess.run([sys.executable, "-c", "import tests.test_network_guard as t; t._swallowing_download()"],
                           env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert "lookup huggingface.co" in log.read_text()
    log.unlink()

    data = make_image_folder(tmp_path / "images", per_class=6)
    image = next(data.rglob("*.png"))
    run = tmp_path / "run"
    for args in (
        ["train", data, "--model", TINY_MODEL, "--out", run, "--epochs", "1", "--batch-size", "8"],
        ["predict", run, image],
        ["export", run],
        ["predict", run, image, "--backend", "onnx"],
    ):
        done = subprocess.run([GRAFT, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"graft {args[0]}: {done.stderr[-2000:]}"
    assert not log.exists(), f"graft tried to reach the network:\n{log.read_text()}"


@pytest.mark.parametrize("model_id", ["timm:resnet18", "hf:someone/missing-model"])
def test_downloads_let_unexpected_errors_surface_with_their_cause(model_id, monkeypatch):
    """A bug inside the download path is not "run graft pull": it keeps its own type and message;
    a network failure still becomes the `graft pull` error."""
    import huggingface_hub

    from graftkit.sources import load_backbone

    _online(monkeypatch)

    def broken(*args, **kwargs):
        raise ValueError("a bug in the download code")

    def down(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    for target in ("get_hf_file_metadata",):
        monkeypatch.setattr(huggingface_hub, target, broken)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", broken)
    with pytest.raises(ValueError, match="a bug in the download code"):
        load_backbone(model_id)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", down)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", down)
    with pytest.raises(WeightsNotAvailableError, match=f"graft pull {model_id}.*|ConnectionError"):
        load_backbone(model_id)


def test_torchvision_downloads_let_unexpected_errors_surface(monkeypatch):
    import torch

    from graftkit.sources import load_backbone

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(Path.cwd() / "torch"))

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the download code")

    def bad_hash(*args, **kwargs):
        raise RuntimeError('invalid hash value (expected "5c1e", got "0000")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    with pytest.raises(RuntimeError, match="a bug in the download code"):
        load_backbone("tv:resnet18")
    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_hash)
    with pytest.raises(WeightsNotAvailableError, match="invalid hash value.*graft pull tv:resnet18"):
        load_backbone("tv:resnet18")
