"""`graft demo`: the offline EfficientNet-Lite0 on the bundled Fashion-MNIST subset, real weights, real data."""

from __future__ import annotations

import json

from graftkit.cli import main


def test_demo_trains_well_above_chance(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy" in printed and "report.html" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] >= 0.7  # 10 classes: chance is 0.1
    assert json.loads((out / "graft.json").read_text())["model"]["sha256"]


def test_audio_demo_recognises_spoken_digits_well_above_chance(tmp_path, capsys):
    out = tmp_path / "demo-audio"
    assert main(["demo", "audio", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out clips" in printed and "graft predict" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # 10 digits, 40 val clips: chance is 0.1; 24 of 40 by guessing has probability < 1e-12
    assert metrics["val"]["accuracy"] >= 0.6
    meta = json.loads((out / "graft.json").read_text())
    assert meta["model"]["sha256"] == "ba754db3cd768a524c655ea90655ee5e6055a43b8dfd29366a11e93716ae9e51"
    assert meta["modality"] == "audio" and 0.5 < meta["preprocess"]["max_seconds"] <= 2.0
