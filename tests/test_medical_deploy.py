"""A one-channel, windowed run on real DICOM files (and 16-bit PNGs) through serve, predict,
evaluate and export: every path decodes an input exactly as `graft predict` decodes the file.

One tiny run for the module (pydicom's CT_small and MR_small, copies with their own instance
numbers, `--window 600,1600`), so the file stays a few seconds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graftkit
from graftkit.data import load_image
from tests.conftest import TINY_MODEL

pydicom = pytest.importorskip("pydicom")  # a test dependency (pyproject [test]); never skipped in CI
fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from graftkit.deploy.serve import create_app, decode_upload  # noqa: E402
from tests.test_medical_inputs import MULTIFRAME, UNDECODABLE  # noqa: E402 (the survey of pydicom's real files)

WINDOW = (600.0, 1600.0)  # CT_small: -896..1167 HU; MR_small: 127..2145; both cut by the window


def _copy(src: Path, dest: Path, number: int) -> None:
    ds = pydicom.dcmread(src)
    ds.InstanceNumber = number  # byte-identical copies would be reported as duplicates
    ds.save_as(dest)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("scans")
    for name, src in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        (data / name).mkdir()
        for i in range(6):
            _copy(Path(get_testdata_file(src)), data / name / f"{name}_{i}.dcm", i)
    return data


@pytest.fixture(scope="module")
def run_dir(scans, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "xray"
    run = graftkit.fit(scans, out=out, model=TINY_MODEL, epochs=10, lr=0.1, batch_size=4, num_workers=0, window=f"{WINDOW[0]:g},{WINDOW[1]:g}")
    return run.dir


@pytest.fixture(scope="module")
def png16(tmp_path_factory) -> Path:
    """A 16-bit grey PNG whose values sit inside the window (so the window changes them)."""
    path = tmp_path_factory.mktemp("png16") / "scan16.png"
    values = np.linspace(0, 1400, 40 * 48).reshape(40, 48).astype(np.uint16)
    Image.fromarray(values).save(path)
    return path


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(run_dir, max_wait_ms=1)) as c:
        yield c


def _scores(prediction: dict) -> dict[str, float]:
    return {t["label"]: t["score"] for t in prediction["top_k"]}


def test_the_run_is_one_channel_and_windowed(run_dir):
    pre = json.loads((run_dir / "graft.json").read_text())["preprocess"]
    assert pre["in_chans"] == 1 and pre["window"] == list(WINDOW)


def test_upload_decoding_is_the_file_decoding_with_channels_and_window(scans, png16):
    for path in (scans / "ct" / "ct_0.dcm", png16):
        upload = decode_upload(path.read_bytes(), path.name, 10**8, channels=1, window=WINDOW)
        assert torch.equal(upload, load_image(path, channels=1, window=WINDOW))
        assert upload.shape[0] == 1 and upload.dtype == torch.float32
        assert not torch.equal(upload, load_image(path, channels=1))  # the window matters for these files


def test_serve_predicts_dicom_and_16_bit_uploads_like_graft_predict(run_dir, scans, png16, client):
    files = [scans / "ct" / "ct_1.dcm", scans / "mr" / "mr_1.dcm", png16]
    expected = graftkit.load(run_dir).predict(files, top_k=2)
    multipart = [("file", (f.name, f.read_bytes(), "application/octet-stream")) for f in files]
    got = client.post("/predict", files=multipart, params={"top_k": 2})
    assert got.status_code == 200, got.text
    for want, have in zip(expected, got.json()["predictions"]):
        assert have["label"] == want.label
        assert _scores(have) == pytest.approx({t["label"]: t["score"] for t in want.to_dict()["top_k"]}, abs=1e-5)
    assert [p["label"] for p in got.json()["predictions"][:2]] == ["ct", "mr"]
    raw = client.post("/predict", content=files[0].read_bytes(), headers={"content-type": "application/dicom"})
    assert raw.status_code == 200 and raw.json()["predictions"][0]["label"] == "ct"


def test_serve_names_why_a_dicom_upload_cannot_be_read(client):
    multiframe = min(MULTIFRAME, key=lambda p: p.stat().st_size)
    answer = client.post("/predict", files={"file": (multiframe.name, multiframe.read_bytes())})
    assert answer.status_code == 422 and "multi-frame DICOM" in answer.json()["error"] and "one image per file" in answer.json()["error"]
    compressed = min(UNDECODABLE, key=lambda p: p.stat().st_size)
    syntax = UNDECODABLE[compressed][2]
    answer = client.post("/predict", files={"file": (compressed.name, compressed.read_bytes())})
    message = answer.json()["error"]
    assert answer.status_code == 422 and syntax in message and "no installed decoder" in message
    assert "pylibjpeg" in message or "gdcm" in message
    assert client.get("/health").json()["status"] == "ok"  # the service keeps serving


def test_serve_info_states_channels_window_and_dicom(client):
    spec = client.get("/info").json()["input"]
    assert spec["channels"] == 1 and spec["window"] == {"centre": WINDOW[0], "width": WINDOW[1]} and "dicom" in spec["formats"]


def test_cli_predict_on_dicom_files(run_dir, scans, capsys):
    from graftkit.cli import main

    assert main(["predict", str(run_dir), str(scans / "ct" / "ct_2.dcm"), str(scans / "mr" / "mr_2.dcm"), "--format", "json"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.strip()] if not out.lstrip().startswith("[") else json.loads(out)
    assert [r["label"] for r in rows] == ["ct", "mr"]


def test_evaluate_decodes_like_predict(run_dir, scans, tmp_path):
    result = graftkit.evaluate(run_dir, scans, out=tmp_path / "eval")
    files = sorted(scans.glob("*/*.dcm"))
    predicted = graftkit.load(run_dir).predict(files)
    accuracy = float(np.mean([p.label == f.parent.name for p, f in zip(predicted, files)]))
    assert result["test"]["accuracy"] == pytest.approx(accuracy) and accuracy >= 0.75


def test_onnx_export_has_parity_on_the_dicom_files_and_predicts_them(run_dir, scans):
    from graftkit.deploy.export import export

    result = export(run_dir, "onnx")
    parity = result.parity["onnx"]
    assert parity["passed"] and parity["real_inputs"] and parity["top1_agreement"] == 1.0
    image = json.loads(result.preprocess.read_text())["image"]
    assert image["channels"] == 1 and image["window"]["centre"] == WINDOW[0]
    files = [scans / "ct" / "ct_3.dcm", scans / "mr" / "mr_3.dcm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_p = graftkit.load(run_dir, precision="fp32").predict_proba(files)  # the exported graph is fp32
        onnx_p = graftkit.load(run_dir, backend="onnx").predict_proba(files)
    assert torch.allclose(torch_p, onnx_p, atol=1e-4)


def test_dicom_upload_over_the_pixel_limit_is_refused_from_its_header(scans):
    from graftkit.deploy.serve import ApiError

    data = (scans / "ct" / "ct_0.dcm").read_bytes()  # 128 x 128
    with pytest.raises(ApiError) as err:
        decode_upload(data, "big.dcm", 128 * 128 - 1)
    assert err.value.status == 413 and "128x128 = 16384 pixels" in err.value.message
    with pytest.raises(ApiError) as err:
        decode_upload(data[:200], "cut.dcm", 10**8)  # a header cut short: no image size
    assert err.value.status == 422 and err.value.message.startswith("cut.dcm: the DICOM header has no image size")
