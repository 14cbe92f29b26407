"""`graft` behaves like a good command line (issue 15, items 7-10): it starts fast, pipes cleanly,
prints whole tables when not on a terminal, shows defaults, and refuses bad ports before serving.
Subprocess tests: they run the real `graft` executable, as a user does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import graftkit
from tests.conftest import TINY_MODEL, make_image_folder

GRAFT = str(Path(sys.executable).with_name("graft"))
REPO = Path(__file__).resolve().parents[1]


def _graft(*args, check=False, timeout=300, **kw):
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=check, **kw)


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A finished tiny run, exported to ONNX; its class names are long and not ASCII."""
    root = tmp_path_factory.mktemp("cli")
    classes = ("猫 a cat whose very long class name keeps going", "chien", "renard")
    data = make_image_folder(root / "images", classes=classes, per_class=8)
    run = graftkit.fit(data, model=TINY_MODEL, out=root / "run", epochs=1, batch_size=8)
    from graftkit.deploy.export import export

    export(run.dir)
    return run.dir, data


@pytest.mark.parametrize("backend", [[], ["--backend", "onnx"]], ids=["default-auto", "onnx"])
def test_onnx_predict_never_imports_torch(exported_run, backend):
    """An exported run predicts through ONNX Runtime without torch; by default too (`--backend
    auto` takes the export's default backend), and it says which backend it took."""
    run, data = exported_run
    image = next(data.rglob("*.png"))
    code = (
        "import sys; from graftkit.cli import main; rc = main(['predict', sys.argv[1], sys.argv[2], '--format', 'json', *sys.argv[3:]]);"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(run), str(image), *backend], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert ("backend: onnx (the fp32 ONNX export (no int8 model))" in out.stderr) == (not backend)
    onnx_row = json.loads(out.stdout)
    torch_row = json.loads(_graft("predict", run, image, "--format", "json", "--backend", "torch", check=True).stdout)
    assert onnx_row["label"] == torch_row["label"]  # the same answer as the torch backend
    assert abs(onnx_row["score"] - torch_row["score"]) < 1e-3


def test_onnx_predict_is_fast(exported_run):
    run, data = exported_run
    image = next(data.rglob("*.png"))
    _graft("predict", run, image, "--backend", "onnx", check=True)  # warm the page cache
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _graft("predict", run, image, "--backend", "onnx", check=True)
        times.append(time.perf_counter() - t0)
    # The target is 1.5 s (benchmarks/startup.py measures it against `python -c pass`); this
    # loose bound only catches a return of the torch import (about 5 s more) on a loaded CI box.
    assert sorted(times)[1] < 4.0, times


def test_piping_into_head_is_not_an_error(exported_run):
    run, data = exported_run
    many = [str(p) for p in sorted(data.rglob("*.png"))] * 40
    graft = subprocess.Popen([GRAFT, "predict", str(run), *many, "--backend", "onnx", "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = graft.stdout.readline()
    graft.stdout.close()  # what `| head -1` does
    err = graft.stderr.read().decode()
    assert graft.wait(timeout=120) == 0 and json.loads(first)["input"]
    assert "BrokenPipeError" not in err and "Traceback" not in err


def test_tables_are_not_cut_when_piped_and_json_keeps_non_ascii(exported_run):
    run, data = exported_run
    image = next((data / "猫 a cat whose very long class name keeps going").glob("*.png"))
    table = _graft("predict", run, image, "--top-k", "3", check=True).stdout
    assert "猫 a cat whose very long class name keeps going" in table  # COLUMNS=80, stdout a pipe: no cut
    assert str(image) in table
    rows = _graft("predict", run, image, "--top-k", "3", "--format", "json", check=True).stdout
    assert "猫" in rows and "\\u" not in rows


def test_help_shows_defaults_and_top_k_must_be_positive(exported_run):
    run, data = exported_run
    help_text = " ".join(_graft("train", "--help", check=True).stdout.split())
    assert "(default: 10)" in help_text and "(default: 0.01)" in help_text  # --epochs, --weight-decay
    assert "(default: 32)" in " ".join(_graft("predict", "--help", check=True).stdout.split())
    bad = _graft("predict", run, next(data.rglob("*.png")), "--top-k", "0")
    assert bad.returncode == 2 and "--top-k: must be at least 1, got 0" in bad.stderr


def test_warnings_are_one_line_without_source(tmp_path):
    code = "import warnings, sys; from graftkit import cli; cli._route_warnings(); warnings.warn('careful, something odd', UserWarning)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stderr.strip() == "warning: careful, something odd"


def test_serve_refuses_bad_and_busy_ports_before_serving(exported_run):
    run, _ = exported_run
    bad = _graft("serve", run, "--port", "99999")
    assert bad.returncode == 2 and "a port is 1 to 65535, got 99999" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = _graft("serve", run, "--port", port, timeout=120)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: another program is using it" in out.stderr
    assert "serving" not in out.stderr


def test_make_sets_itself_up_on_first_use(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    fresh = subprocess.run(["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert 'python3 -m venv .venv && .venv/bin/pip install -e ".[test]"' in fresh and ".venv/bin/pytest" in fresh
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    again = subprocess.run(["make", "-n", "demo"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in again and ".venv/bin/graft demo" in again
    readme = (REPO / "README.md").read_text()
    assert readme.index("make demo") < readme.index("## Tour") and "make test" in readme


def test_report_settings_and_plots(tmp_path):
    from graftkit.evaluation.plots import _labels, plot_learning_curves
    from graftkit.evaluation.report import _fmt

    assert (_fmt(None), _fmt(False), _fmt(True)) == ("none", "no", "yes")
    assert max(len(line) for line in _labels(["a" * 60])[0].splitlines()) <= 18  # wrapped, not clipped
    history = [{"epoch": i, "train_loss": 0.5, "val_loss": 0.5, "val_accuracy": 0.9} for i in (1, 2, 3)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (CJK class names) would warn
        plot_learning_curves(history, tmp_path / "curves.png", best_epoch=2)
        from graftkit.evaluation.plots import plot_confusion_matrix

        import numpy as np

        plot_confusion_matrix(np.eye(2, dtype=int), ["猫", "犬"], tmp_path / "cm.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
