"""graft.json as a typed `RunSpec`: strict keys, round trips, and schema-1 runs written by the v1 code.

The schema-1 run directories in `tests/fixtures/runs_v1/` were trained by graftkit at commit
abf4d05 (`tests/fixtures/make_runs_v1.py`); `expected.json` holds what that code predicted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import graftkit
from graftkit.errors import RunDirError
from graftkit.rundir import SCHEMA_VERSION, ModelInfo, Precision, RunSpec, TextInfo, check_run_dir, library_versions, migrate

V1 = Path(__file__).resolve().parent / "fixtures" / "runs_v1"
EXPECTED = json.loads((V1 / "expected.json").read_text())


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(V1 / name, tmp_path / name))


def _current(name: str = "image") -> dict:
    return RunSpec.read(V1 / name).to_json()


# ----------------------------------------------------------------------------------------------
# Schema-1 runs from the v1 code


def test_schema_is_3_and_v1_fixtures_are_schema_1():
    assert SCHEMA_VERSION == 3
    for name in ("image", "text"):
        assert json.loads((V1 / name / "graft.json").read_text())["schema_version"] == 1


@pytest.mark.parametrize("name", ["image", "text"])
def test_v1_run_reads_as_current_spec(name):
    spec = RunSpec.read(V1 / name)
    assert spec.schema_version == SCHEMA_VERSION and spec.status == "done" and spec.finished
    assert spec.modality == name and spec.strategy == "linear-probe" and spec.config["epochs"] == 1
    assert isinstance(spec.model, ModelInfo) and isinstance(spec.precision, Precision)
    assert spec.lora is None and spec.auto is None and spec.time_budget is None and spec.calibration is not None
    if name == "image":
        assert spec.model.arch == "timm:test_efficientnet" and spec.task["classes"] == ["cat", "dog", "fox"]
        assert spec.text is None and spec.preprocess["input_size"] == 160
    else:
        assert spec.model.arch == "hf:bert" and spec.task["classes"] == ["negative", "positive"]
        assert spec.text == TextInfo(head_kind="features", kind="encoder", architecture_dir="hf")
    assert check_run_dir(V1 / name) == V1 / name


def test_v1_image_run_predicts_what_the_v1_code_predicted():
    expected = EXPECTED["image"]
    predictor = graftkit.load(V1 / "image", calibrated=False, precision="fp32")  # the raw fp32 scores, as the v1 code predicted them
    images = [str(V1 / "inputs" / n) for n in expected]
    preds = predictor.predict(images)
    probs = predictor.predict_proba(images)
    for p, row, (name, want) in zip(preds, probs.tolist(), expected.items()):
        assert p.label in predictor.classes and p.label == want["label"], name
        assert row == pytest.approx(want["probs"], abs=1e-4), name


def test_v1_text_run_predicts_what_the_v1_code_predicted():
    expected = EXPECTED["text"]
    predictor = graftkit.load(V1 / "text", calibrated=False, precision="fp32")  # the raw fp32 scores, as the v1 code predicted them
    texts = list(expected)
    preds = predictor.predict(texts)
    probs = predictor.predict_proba(texts)
    for p, row, want in zip(preds, probs.tolist(), expected.values()):
        assert p.label in ("negative", "positive") and p.label == want["label"], p.input
        assert row == pytest.approx(want["probs"], abs=1e-4), p.input


@pytest.mark.parametrize("name", ["image", "text"])
def test_v1_run_exports_to_onnx_with_parity(name, tmp_path):
    from graftkit.deploy.export import export

    run = _copy(name, tmp_path)  # export writes into the run directory
    export(run, "onnx")
    parity = json.loads((run / "export" / "parity.json").read_text())["onnx"]
    assert parity["passed"] and parity["agreement"] >= 0.99 and parity["max_abs_logit_diff"] < 1e-3
    assert parity["inputs"].startswith("synthetic")  # the v1 run's training data is not on this machine
    onnx = graftkit.load(run, backend="onnx")
    inputs = [str(p) for p in sorted((V1 / "inputs").glob("*.png"))] if name == "image" else list(EXPECTED["text"])
    assert [p.label for p in onnx.predict(inputs)] == [e["label"] for e in EXPECTED[name].values()]


def test_v1_run_with_unknown_key_is_refused_by_name(tmp_path):
    run = _copy("image", tmp_path)
    meta = json.loads((run / "graft.json").read_text())
    meta["optimiser"] = "adamw"
    (run / "graft.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match=r"graft\.json .*unknown key 'optimiser'.*Restore graft\.json"):
        graftkit.load(run)


def test_v1_run_missing_a_required_key_is_refused_by_name():
    meta = json.loads((V1 / "text" / "graft.json").read_text())
    del meta["strategy"], meta["precision"]["device"]
    with pytest.raises(RunDirError, match=r"missing key 'strategy'.*missing key 'precision\.device'"):
        RunSpec.from_json(meta)


def test_migration_fills_only_what_v1_left_out():
    meta = json.loads((V1 / "image" / "graft.json").read_text())
    out = migrate(meta)
    assert meta["schema_version"] == 1 and "lora" not in meta  # the input is not changed
    assert out["schema_version"] == 3 and out["lora"] is None and out["text"] is None and out["auto"] is None
    assert out["files"] is None  # no hashes recorded: the weights load unchecked
    del meta["modality"]  # runs from before text models
    assert migrate(meta)["modality"] == "image"


# ----------------------------------------------------------------------------------------------
# The current schema


def test_to_json_from_json_round_trip(tmp_path):
    for name in ("image", "text"):
        spec = RunSpec.read(V1 / name)
        data = spec.to_json()
        assert list(data)[:3] == ["schema_version", "status", "created"] and set(data) == {f for f in RunSpec.__dataclass_fields__}
        assert RunSpec.from_json(json.loads(json.dumps(data))) == spec
        (tmp_path / name).mkdir()
        spec.write(tmp_path / name)
        assert RunSpec.read(tmp_path / name) == spec
        assert json.loads((tmp_path / name / "graft.json").read_text()) == data
        assert not list((tmp_path / name).glob("*.tmp"))  # written through a temporary file and a rename


def test_unknown_key_is_named():
    data = _current()
    data["colour"] = "red"
    with pytest.raises(RunDirError, match=r"schema 3: unknown key 'colour'"):
        RunSpec.from_json(data)
    data = _current()
    data["precision"]["dtype"] = "fp8"
    with pytest.raises(RunDirError, match=r"unknown key 'precision\.dtype'"):
        RunSpec.from_json(data)


def test_missing_key_is_named_even_an_optional_one(tmp_path):
    data = _current()
    del data["lora"]  # schema 2+ writes every key: a missing one is an error, not "no LoRA"
    with pytest.raises(RunDirError, match=r"missing key 'lora'"):
        RunSpec.from_json(data)
    del data["versions"]
    (tmp_path / "graft.json").write_text(json.dumps(data))
    with pytest.raises(RunDirError, match=rf"{tmp_path / 'graft.json'} does not match .*missing keys 'versions', 'lora'"):
        RunSpec.read(tmp_path)


def test_wrong_types_are_named_all_at_once():
    data = _current()
    data["status"] = "finished"
    data["head"] = 3
    data["precision"]["channels_last"] = "yes"
    with pytest.raises(RunDirError) as e:
        RunSpec.from_json(data)
    msg = str(e.value)
    assert "'status' is 'finished', not one of 'training', 'done'" in msg
    assert "'head' is an integer, not an object" in msg and "'precision.channels_last' is a string, not true/false" in msg


def test_text_run_needs_its_text_entry():
    data = _current("text")
    data["text"] = None
    with pytest.raises(RunDirError, match=r"'text' is null in a text run"):
        RunSpec.from_json(data)


def test_newer_schema_is_refused_with_upgrade(tmp_path):
    run = _copy("image", tmp_path)
    data = _current()
    data["schema_version"] = SCHEMA_VERSION + 1
    (run / "graft.json").write_text(json.dumps(data))
    with pytest.raises(RunDirError, match=rf"newer graftkit \(schema {SCHEMA_VERSION + 1}.*Upgrade graftkit"):
        graftkit.load(run)
    with pytest.raises(RunDirError, match="no schema_version"):
        RunSpec.from_json({k: v for k, v in data.items() if k != "schema_version"})


def test_not_json_names_the_file_and_line(tmp_path):
    (tmp_path / "graft.json").write_text('{"schema_version": 2,\n oops}')
    with pytest.raises(RunDirError, match=r"graft\.json is not valid JSON \(line 2"):
        RunSpec.read(tmp_path)
    with pytest.raises(RunDirError, match="holds no run"):
        RunSpec.read(tmp_path / "nothing")


def test_unfinished_run_is_not_loadable_and_says_resume(tmp_path):
    run = _copy("image", tmp_path)
    RunSpec.read(run).replace(status="training", finished=None).write(run)
    with pytest.raises(RunDirError, match="status 'training'.*--resume"):
        graftkit.load(run)


def test_new_replace_done(tmp_path):
    old = RunSpec.read(V1 / "image")
    spec = RunSpec.new(
        backbone_weights=old.model.to_dict(), task=old.task, preprocess=old.preprocess, head=old.head, strategy="lora",
        config=old.config, precision=old.precision.to_dict(), data=old.data, modality="image",
    )  # fmt: skip
    assert spec.status == "training" and spec.finished is None and spec.schema_version == SCHEMA_VERSION
    assert spec.versions == library_versions() and spec.model == old.model and spec.precision == old.precision
    with pytest.raises(AttributeError):
        spec.status = "done"  # frozen: updates are new specs
    spec = spec.replace(lora={"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["conv"]})
    spec.write(tmp_path)
    assert RunSpec.read(tmp_path) == spec
    done = spec.done()
    assert done.status == "done" and done.finished and done.lora == spec.lora and spec.status == "training"
    with pytest.raises(RunDirError, match=r"'strategy' is an integer"):
        spec.replace(strategy=3)
    with pytest.raises(RunDirError, match=r"missing key 'Precision\.device'"):
        spec.replace(precision={k: v for k, v in old.precision.to_dict().items() if k != "device"})


def test_versions_come_from_the_package_metadata():
    from importlib.metadata import version

    assert library_versions()["graftkit"] == version("graftkit") == graftkit.__version__
