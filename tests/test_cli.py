"""Every `graft` command end to end on tiny data, checking what it printed and wrote."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graftkit.cli import main
from tests.conftest import TINY_MODEL


@pytest.fixture
def trained_run(tiny_images, tmp_path) -> Path:
    out = tmp_path / "run"
    rc = main(["train", str(tiny_images), "--model", TINY_MODEL, "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--out", str(out)])
    assert rc == 0
    return out


def test_train_writes_run(trained_run):
    assert (trained_run / "model.safetensors").is_file() and (trained_run / "report.html").is_file()


def test_train_finetune_flags(tiny_images, tmp_path):
    out = tmp_path / "ft"
    rc = main(["train", str(tiny_images), "--model", TINY_MODEL, "--strategy", "finetune", "--epochs", "1", "--lr", "0.001",
               "--augment", "light", "--label-smoothing", "0.1", "--lr-decay", "0.8", "--channels-last", "on",
               "--num-workers", "0", "--out", str(out)])
    assert rc == 0
    cfg = json.loads((out / "graft.json").read_text())["config"]
    assert cfg["lr"] == 0.001 and cfg["label_smoothing"] == 0.1 and cfg["channels_last"] is True


def test_evaluate_writes_metrics_under_test_key(trained_run, tiny_images, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(trained_run), str(tiny_images), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 24 and "accuracy" in metrics["test"]
    assert (out / "report.html").is_file() and (out / "confusion_matrix.png").is_file()
    assert "accuracy" in capsys.readouterr().out


def test_evaluate_default_out_dir(trained_run, tiny_images):
    assert main(["evaluate", str(trained_run), str(tiny_images)]) == 0
    assert (trained_run / "eval" / tiny_images.name / "metrics.json").is_file()


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_predict_formats(trained_run, tiny_images, capsys, fmt):
    files = sorted(tiny_images.glob("*/*.png"))[:3]
    assert main(["predict", str(trained_run), *map(str, files), "--top-k", "2", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        rows = [json.loads(line) for line in out.splitlines()]
        assert len(rows) == 3 and len(rows[0]["top_k"]) == 2 and rows[0]["label"] in ("cat", "dog", "fox")
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == 3 and set(rows[0]) >= {"input", "label", "score", "top2_label", "top2_score"}
    else:
        assert "top 2" in out


def test_predict_folder_and_glob(trained_run, tiny_images, capsys):
    assert main(["predict", str(trained_run), str(tiny_images / "cat"), str(tiny_images / "dog" / "*.png"), "--format", "json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 16


def test_predict_works_from_copied_run_directory_alone(trained_run, tiny_images, tmp_path, capsys):
    moved = tmp_path / "elsewhere"
    shutil.copytree(trained_run, moved)
    shutil.rmtree(trained_run)
    f = next(tiny_images.glob("cat/*.png"))
    assert main(["predict", str(moved), str(f), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == str(f)


def test_models_lists_builtins_with_offline_flag(capsys):
    assert main(["models", "--format", "json"]) == 0
    rows = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["efficientnet_lite0"]["available_offline"] is True
    assert rows["efficientnet_lite0"]["params"] > 3_000_000
    assert "timm:resnet50" in rows


def test_models_pattern(capsys):
    assert main(["models", "timm:*lite0*", "--format", "json"]) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert "timm:tf_efficientnet_lite0" in ids


def test_pull_without_network_names_the_problem(capsys):
    rc = main(["pull", "timm:resnet18"])
    assert rc == 2
    assert "error:" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("graft")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("train", "evaluate", "predict", "models", "pull", "demo"):
        assert cmd in out


def test_evaluate_a_split_folder_needs_and_takes_split(tiny_split_images, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(tiny_split_images), "--model", TINY_MODEL, "--epochs", "1", "--num-workers", "0", "--out", str(out)]) == 0
    assert (out / "split.json").is_file()
    assert main(["evaluate", str(out), str(tiny_split_images), "--split", "test"]) == 0
    metrics = json.loads((out / "eval" / f"{tiny_split_images.name}-test" / "metrics.json").read_text())
    assert metrics["test"]["n"] == 9 and metrics["split"] == "test"


def test_help_does_not_import_torch():
    code = "import sys, graftkit.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # `graft --help` answers instantly


def test_python_dash_m_graftkit_is_the_graft_command():
    """`python -m graftkit` (what `accelerate launch -m graftkit train ...` runs) is `graft`."""
    out = subprocess.run([sys.executable, "-m", "graftkit", "models"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "efficientnet_lite0" in out.stdout
