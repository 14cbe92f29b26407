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
