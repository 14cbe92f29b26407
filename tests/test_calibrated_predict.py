"""The temperature fitted on validation is applied where users see scores (predict, serve and the
ONNX backends share `Predictor.predict_proba`); `calibrated=False` / `--raw-scores` gives raw ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graftkit
from graftkit.evaluation.calibration import apply_temperature
from tests.conftest import TINY_MODEL, make_image_folder


def test_predict_applies_the_fitted_temperature_and_raw_on_request(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=12)
    run = graftkit.fit(data, model=TINY_MODEL, out=tmp_path / "run", offline=True, num_workers=0)
    t = json.loads((run.dir / "graft.json").read_text())["calibration"]["temperature"]
    images = [str(p) for p in sorted(data.rglob("*.png"))[:6]]
    calibrated, raw = graftkit.load(run.dir), graftkit.load(run.dir, calibrated=False)
    assert calibrated.temperature == pytest.approx(t) and raw.temperature is None
    p_cal, p_raw = calibrated.predict_proba(images).numpy(), raw.predict_proba(images).numpy()
    assert p_cal == pytest.approx(apply_temperature(p_raw, t), abs=1e-5)
    assert (p_cal.argmax(1) == p_raw.argmax(1)).all()
    assert [p.score for p in calibrated.predict(images)] == pytest.approx(p_cal.max(1).tolist(), abs=1e-6)
    if abs(t - 1) > 0.05:  # a temperature away from 1 really changes what users see (compared in log space:
        # a confident probe's top probabilities can both round to 1.0 while the small ones differ by decades)
        assert not np.allclose(np.log(p_cal + 1e-30), np.log(p_raw + 1e-30), atol=1e-3)


def test_the_torch_free_onnx_client_applies_the_same_temperature(tmp_path):
    from graftkit.deploy.export import export
    from graftkit.deploy.onnx_client import client_for

    data = make_image_folder(tmp_path / "data", per_class=12)
    run = graftkit.fit(data, model=TINY_MODEL, out=tmp_path / "run", offline=True, num_workers=0)
    export(run.dir)
    t = json.loads((run.dir / "export" / "preprocess.json").read_text())["output"]["temperature"]
    assert t == pytest.approx(json.loads((run.dir / "graft.json").read_text())["calibration"]["temperature"])
    images = [str(p) for p in sorted(data.rglob("*.png"))[:6]]
    for calibrated in (True, False):
        client = client_for(run.dir, "onnx", calibrated=calibrated)
        torch_scores = [p.score for p in graftkit.load(run.dir, calibrated=calibrated).predict(images)]
        assert [p.score for p in client.predict(images)] == pytest.approx(torch_scores, abs=2e-4)
