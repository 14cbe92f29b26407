"""A run directory is never lost, knows its own weights, and a damaged one is named, not a traceback.

Issue 15 items 1-4: `--overwrite` builds the new run beside the old one; graft.json records the
SHA-256 of the run's own weights; damaged files give an `error:` line naming the file; `--resume`
refuses what it cannot continue.
"""

from __future__ import annotations

import json
import shutil

import pytest

import graftkit
from graftkit.cli import main
from graftkit.errors import RunDirError
from graftkit.rundir import build_dir
from tests.conftest import TINY_MODEL, make_image_folder


def _fit(data, out, **kw):
    return graftkit.fit(data, out=out, model=kw.pop("model", TINY_MODEL), epochs=kw.pop("epochs", 1), batch_size=8, num_workers=0, **kw)


def _files(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished tiny run (3 classes), copied by each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    data = make_image_folder(root / "images")
    return _fit(data, root / "run").dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "copy")


# --- 1. --overwrite builds beside the old run and swaps at the end -------------------------------


def test_overwrite_interrupted_mid_training_keeps_the_old_run(tiny_images, tmp_path):
    run = _fit(tiny_images, tmp_path / "run")
    before = _files(run.dir)

    class Crash:
        def on_epoch_end(self, state):
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        _fit(tiny_images, run.dir, overwrite=True, epochs=2, callbacks=[Crash()], probe_solver="sgd")  # epochs to crash in
    assert _files(run.dir) == before  # graft.json, weights, metrics, checkpoints, report: all as they were
    assert graftkit.load(run.dir).predict([next(tiny_images.rglob("*.png"))])[0].label in ("cat", "dog", "fox")


def test_overwrite_replaces_the_run_only_when_finished(tiny_images, tmp_path):
    run = _fit(tiny_images, tmp_path / "run")
    other = make_image_folder(tmp_path / "two", classes=("a", "b"))
    (run.dir / "eval").mkdir()
    (run.dir / "eval" / "stale.txt").write_text("from the old run")
    new = _fit(other, run.dir, overwrite=True)
    assert new.dir == run.dir and not build_dir(run.dir).exists()
    assert not (run.dir / "eval").exists()  # nothing of the old run is left beside the new one
    assert json.loads((run.dir / "graft.json").read_text())["task"]["classes"] == ["a", "b"]
    card = (run.dir / "MODEL_CARD.md").read_text()
    assert "graft-new" not in card and f"graft predict {run.dir}" in card


def test_overwrite_help_says_it_builds_beside(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "built beside it and swapped in only when it has finished" in " ".join(capsys.readouterr().out.split())


# --- 2. a run knows its own weights ---------------------------------------------------------------


def test_weights_of_another_run_are_refused(run_copy, tmp_path, capsys):
    other = _fit(make_image_folder(tmp_path / "two", classes=("a", "b")), tmp_path / "other")
    # Same architecture, other classes: the hash catches it before any shape does.
    shutil.copy(other.dir / "model.safetensors", run_copy / "model.safetensors")
    assert main(["predict", str(run_copy), str(next((tmp_path / "two").rglob("*.png")))]) == 2
    err = capsys.readouterr().err
    assert f"error: {run_copy}/model.safetensors is not the file this run wrote" in err and "Traceback" not in err


def test_same_shape_weights_of_another_run_are_refused(run_copy, tiny_images, tmp_path):
    twin = _fit(tiny_images, tmp_path / "twin", seed=1)  # same classes, same shapes, other weights
    shutil.copy(twin.dir / "model.safetensors", run_copy / "model.safetensors")
    with pytest.raises(RunDirError, match="SHA-256 differs from graft.json"):
        graftkit.load(run_copy)


# --- 3. damaged run directories: an error line naming the file -----------------------------------


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_truncated_weights_named_by_every_command(run_copy, tiny_images, command, capsys):
    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    args = {"predict": [str(next(tiny_images.rglob("*.png")))], "evaluate": [str(tiny_images)], "export": []}[command]
    assert main([command, str(run_copy), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.safetensors" in err and "Traceback" not in err


def test_truncated_weights_without_recorded_hashes_still_named(run_copy):
    spec = json.loads((run_copy / "graft.json").read_text())
    spec["files"] = None  # as a run from before hashes were recorded
    (run_copy / "graft.json").write_text(json.dumps(spec))
    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RunDirError, match=r"model.safetensors is damaged"):
        graftkit.load(run_copy)


def test_serve_refuses_truncated_weights(run_copy):
    from graftkit.deploy.serve import create_app

    weights = run_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RunDirError, match="model.safetensors"):
        create_app(run_copy)


@pytest.mark.parametrize(
    "content, message",
    [('{"schema_version": 3,', "is not valid JSON"), ("[1, 2]", "holds list, not a JSON object"),
     ('{"schema_version": 3, "status": "done"}', "does not match graft.json schema 3: missing key")],
)  # fmt: skip
def test_corrupt_or_restructured_graft_json(run_copy, tiny_images, content, message, capsys):
    (run_copy / "graft.json").write_text(content)
    assert main(["predict", str(run_copy), str(next(tiny_images.rglob("*.png")))]) == 2
    err = capsys.readouterr().err
    assert "graft.json" in err and message in err and "Traceback" not in err


def test_export_with_corrupt_metrics_writes_nothing(run_copy, capsys):
    (run_copy / "metrics.json").write_text('{"val": ')
    assert main(["export", str(run_copy)]) == 2
    assert "metrics.json is not valid JSON" in capsys.readouterr().err
    assert not (run_copy / "export").exists() and not list(run_copy.glob(".export*"))  # not half an export


def test_export_that_crashes_keeps_the_previous_export(run_copy, monkeypatch):
    from graftkit.deploy import export as export_module

    export_module.export(run_copy)
    before = _files(run_copy / "export")

    def crash(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(export_module, "_write_preprocess", crash)
    with pytest.raises(RuntimeError, match="disk gone"):
        export_module.export(run_copy, "torchscript")
    assert _files(run_copy / "export") == before and not list(run_copy.glob(".export*"))


def test_truncated_onnx_named_by_the_onnx_backend(run_copy, tiny_images, capsys):
    assert main(["export", str(run_copy)]) == 0
    onnx_file = run_copy / "export" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:5000])
    capsys.readouterr()
    assert main(["predict", str(run_copy), str(next(tiny_images.rglob("*.png"))), "--backend", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "export/model.onnx is damaged or was replaced" in err and f"graft export {run_copy} --format onnx" in err


# --- 4. --resume checks what it resumes -----------------------------------------------------------


@pytest.fixture
def interrupted(tiny_images, tmp_path):
    class Stop:
        def on_epoch_end(self, state):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tiny_images, tmp_path / "run", epochs=3, callbacks=[Stop()], probe_solver="sgd")  # epochs to stop in
    return tmp_path / "run"


def test_resume_refuses_other_classes(interrupted, tmp_path):
    other = make_image_folder(tmp_path / "images", classes=("cat", "dog", "fox", "owl"))
    with pytest.raises(RunDirError, match=r"the data's classes differ from the run's \(new: owl\)"):
        graftkit.fit(other, out=interrupted, resume=True)


def test_resume_refuses_other_data(interrupted, tmp_path):
    elsewhere = make_image_folder(tmp_path / "elsewhere")
    with pytest.raises(RunDirError, match=rf"it was started on .*images, not {elsewhere}"):
        graftkit.fit(elsewhere, out=interrupted, resume=True)
    split = json.loads((interrupted / "split.json").read_text())
    assert split["root"].endswith("images")  # nothing rewritten


def test_resume_refuses_settings_that_differ(interrupted, tiny_images, capsys):
    rc = main(["train", str(tiny_images), "--out", str(interrupted), "--resume", "--lr", "0.5", "--epochs", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and "--lr 0.5 (saved: " in err and "--epochs" not in err  # the same value is no difference
    run = graftkit.fit(tiny_images, out=interrupted, resume=True, epochs=3)  # same settings: continues
    assert run.metrics["epochs"] == 3


def test_resume_of_a_finished_run_is_refused(finished_run, tiny_images, capsys):
    assert main(["train", str(tiny_images), "--out", str(finished_run), "--resume", "--epochs", "9"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
