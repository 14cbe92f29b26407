"""Medical inputs: DICOM on pydicom's real test files, 16-bit depth, grey windows, one-channel runs.

The real-file checks run on every image file pydicom and pydicom-data ship (about 130): each one
decodes with its shape and range, or is refused with the reason (missing decoder by name,
multi-frame with its frame count, truncated).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graftkit
from graftkit.backbones.base import ImagePreprocess
from graftkit.data import load_image
from graftkit.data.dicom import decode_dicom
from graftkit.data.images import apply_window
from graftkit.data.transforms import build_transform
from graftkit.errors import ConfigError, DataError
from tests.conftest import TINY_MODEL

pydicom = pytest.importorskip("pydicom")  # a test dependency (pyproject [test]); never skipped in CI
from pydicom.data import get_testdata_file, get_testdata_files  # noqa: E402
from pydicom.pixels import get_decoder  # noqa: E402


def _survey() -> dict[str, dict[Path, tuple[str, str, str]]]:
    """Every real test file that holds an image → (modality, photometric, transfer syntax), by what
    graftkit must do with it: decode (one frame, a decoder installed), name the missing decoder
    (one frame, compressed, none installed), refuse as multi-frame, or refuse as truncated."""
    kinds: dict[str, dict[Path, tuple[str, str, str]]] = {"decodable": {}, "undecodable": {}, "multiframe": {}, "truncated": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in get_testdata_files("*"):
            path = Path(f)
            if not path.is_file():
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
                if "Rows" not in ds or "BitsAllocated" not in ds:  # no image (reports, plans, waveforms)
                    continue
                frames = int(ds.get("NumberOfFrames", 1) or 1)
                syntax = ds.file_meta.TransferSyntaxUID
                complete = "PixelData" in pydicom.dcmread(f)
            except Exception:  # noqa: BLE001 - not DICOM, or a deliberately broken header
                continue
            what = (str(ds.get("Modality", "OT")), str(ds.PhotometricInterpretation), syntax.name)
            if not complete:
                kinds["truncated"][path] = what
            elif frames > 1:
                kinds["multiframe"][path] = what
            elif syntax.is_compressed and not get_decoder(syntax).is_available:
                kinds["undecodable"][path] = what
            else:
                kinds["decodable"][path] = what
    return kinds


SURVEY = _survey()
DECODABLE, UNDECODABLE, MULTIFRAME = SURVEY["decodable"], SURVEY["undecodable"], SURVEY["multiframe"]
_ids = lambda p: p.name  # noqa: E731


def test_the_real_files_cover_the_modalities():
    assert {"CT", "MR", "CR", "US", "NM"} <= {k[0] for k in DECODABLE.values()}
    assert {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"} <= {k[1] for k in DECODABLE.values()}
    assert len(DECODABLE) >= 80 and UNDECODABLE and MULTIFRAME and SURVEY["truncated"]


@pytest.mark.parametrize("path", sorted(DECODABLE), ids=_ids)
def test_every_decodable_dicom_loads_with_shape_and_range(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            ds.pixel_array
        except Exception:  # noqa: BLE001 - an installed plugin fails (e.g. Pillow on 12-bit JPEG): named, with the others
            with pytest.raises(DataError) as err:
                load_image(path)
            message = err.value.problems[0]
            assert "cannot be decoded" in message and path.name in message
            if ds.file_meta.TransferSyntaxUID.is_compressed:  # the other plugins that would decode it, by name
                assert "pylibjpeg" in message or "gdcm" in message
            return
        grey = str(ds.PhotometricInterpretation).startswith("MONOCHROME")
        image = load_image(path, channels=1 if grey else 3)
    assert image.shape == (1 if grey else 3, int(ds.Rows), int(ds.Columns))
    assert image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.max()) > float(image.min())  # real pixels, not a constant


@pytest.mark.parametrize("path", sorted(UNDECODABLE), ids=_ids)
def test_every_undecodable_compressed_dicom_names_the_missing_decoder(path):
    with pytest.raises(DataError) as err:
        load_image(path)
    message = err.value.problems[0]
    assert UNDECODABLE[path][2] in message and "no installed decoder" in message
    assert "pylibjpeg" in message or "gdcm" in message  # the plugins that would decode it, by name


@pytest.mark.parametrize("path", sorted(MULTIFRAME), ids=_ids)
def test_every_multiframe_dicom_is_refused_with_its_frame_count(path):
    frames = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    with pytest.raises(DataError, match=rf"multi-frame DICOM \({frames} frames.*one image per file"):
        load_image(path)


@pytest.mark.parametrize("path", sorted(SURVEY["truncated"]), ids=_ids)
def test_truncated_dicom_is_named_truncated(path):
    with pytest.raises(DataError, match=r"the DICOM file is truncated .*replace it with a complete copy"):
        load_image(path)


@pytest.mark.parametrize(("name", "kind"), [("reportsi.dcm", "SR"), ("rtplan.dcm", "RTPLAN"), ("waveform_ecg.dcm", "ECG")])
def test_dicom_without_pixels_is_refused_by_kind(name, kind):
    with pytest.raises(DataError, match=rf"DICOM file without pixel data \({kind} .*remove it from the image folder"):
        load_image(get_testdata_file(name))


def test_dicom_without_file_meta_is_read_as_native_pixels():
    path = Path(get_testdata_file("OT-PAL-8-face.dcm"))  # ACR-NEMA style: no preamble, no transfer syntax
    image = load_image(path)
    assert image.shape == (3, 480, 640) and 0.0 <= float(image.min()) < float(image.max()) <= 1.0


def test_voi_lut_sequence_is_applied(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("vlut_04.dcm"))  # 8-bit pixels, a 256-entry 16-bit VOI LUT
    lut = (65535 * (np.arange(256) / 255.0) ** 2).round().astype(np.uint16)  # a curve, so the LUT is visible
    ds.VOILUTSequence[0].LUTData = lut.tolist()
    ds.save_as(tmp_path / "curve.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "VOI LUT on a float input" warning: the LUT is indexed by integers
        image = load_image(tmp_path / "curve.dcm", channels=1)[0].numpy()
    assert np.allclose(image, lut[ds.pixel_array] / 65535.0, atol=1e-6)
    assert not np.allclose(image, ds.pixel_array / 255.0, atol=1e-2)


def test_file_window_is_used_and_an_explicit_window_wins():
    path = Path(get_testdata_file("MR_small.dcm"))  # WindowCenter 600, WindowWidth 1600, no rescale
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert np.allclose(load_image(path, channels=1)[0].numpy(), apply_window(raw, (600, 1600)), atol=1e-6)
    assert np.allclose(load_image(path, channels=1, window=(1000, 500))[0].numpy(), apply_window(raw, (1000, 500)), atol=1e-6)


def test_modality_lut_sequence_is_applied():
    path = Path(get_testdata_file("mlut_18.dcm"))
    ds = pydicom.dcmread(path)
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    image = load_image(path, channels=1)[0].numpy().astype(np.float64)
    assert np.corrcoef(values.ravel(), image.ravel())[0, 1] > 0.999  # the LUT output, linearly to [0, 1]


def test_ct_rescale_and_window_give_hounsfield_windows():
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = load_image(path, channels=1, window=(40, 400))
    assert np.allclose(image[0].numpy(), apply_window(hu, (40, 400)), atol=1e-6)
    assert not torch.equal(image, load_image(path, channels=1, window=(400, 2000)))


def test_monochrome1_is_inverted_so_bright_is_high():
    path = min((p for p, k in DECODABLE.items() if k[1] == "MONOCHROME1"), key=lambda p: p.stat().st_size)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64).ravel()
    image = load_image(path, channels=1)[0].numpy().astype(np.float64).ravel()
    assert np.corrcoef(raw, image)[0, 1] < -0.9


def _distinct_copy(src: Path, dest: Path, number: int) -> None:
    """A copy of a DICOM file with its own instance number (byte-identical copies are duplicates)."""
    ds = pydicom.dcmread(src)
    ds.InstanceNumber = number
    ds.save_as(dest)


def test_dicom_folder_trains_predicts_and_records_one_channel(tmp_path):
    data = tmp_path / "scans"
    for c, name in enumerate(("ct", "mr")):
        (data / name).mkdir(parents=True)
        src = Path(get_testdata_file("CT_small.dcm" if c == 0 else "MR_small.dcm"))
        for i in range(6):
            _distinct_copy(src, data / name / f"{name}_{i}.dcm", i)
    run = graftkit.fit(data, out=tmp_path / "run", model=TINY_MODEL, epochs=10, lr=0.1, batch_size=4, num_workers=0)
    spec = json.loads((run.dir / "graft.json").read_text())
    assert spec["preprocess"]["in_chans"] == 1 and len(spec["preprocess"]["mean"]) == 1
    assert "grey" in spec["model"]["extra"]["input"]["reason"]
    preds = graftkit.load(run.dir).predict([data / "ct" / "ct_0.dcm", data / "mr" / "mr_0.dcm"])
    assert [p.label for p in preds] == ["ct", "mr"]


def test_unreadable_dicom_in_a_folder_is_reported_before_training(tmp_path):
    data = tmp_path / "scans"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i in range(3):
            _distinct_copy(Path(get_testdata_file("CT_small.dcm")), data / name / f"{i}.dcm", i)
    shutil.copy(min(UNDECODABLE, key=lambda p: p.stat().st_size), data / "a" / "compressed.dcm")
    with pytest.raises(DataError, match=r"compressed\.dcm: pixel data is compressed as .* no installed decoder"):
        graftkit.fit(data, out=tmp_path / "run", model=TINY_MODEL, epochs=1, num_workers=0)


# ----------------------------------------------------------------------------------------------
# 16-bit depth


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_sixteen_bit_precision_survives_to_the_network_input(tmp_path, ext):
    # Two images one 16-bit step apart (1/65535): uint8 decoding would make them identical.
    for value in (30000, 30001):
        Image.fromarray(np.full((32, 32), value, dtype=np.uint16)).save(tmp_path / f"{value}.{ext}")
    assert Image.open(tmp_path / f"30000.{ext}").mode.startswith("I;16")  # really stored as 16-bit
    tf = build_transform(ImagePreprocess(input_size=16, mean=(0.5,), std=(0.5,), in_chans=1), "none")
    a, b = (tf(load_image(tmp_path / f"{v}.{ext}", channels=1)) for v in (30000, 30001))
    assert a.shape == (1, 16, 16)
    step = (b - a).mean().item() * 0.5  # undo the std
    assert step == pytest.approx(1 / 65535, rel=0.02)  # float32 rounding of values near 0.46


def test_window_applies_to_sixteen_bit_values(tmp_path):
    Image.fromarray(np.array([[1000, 1100, 1200]], dtype=np.uint16)).save(tmp_path / "w.png")
    assert load_image(tmp_path / "w.png", channels=1, window=(1100.5, 201))[0, 0].tolist() == [0.0, 0.5, 1.0]  # DICOM: lower edge c - 0.5 - (w - 1) / 2


def test_bad_window_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--window 'soft' must be CENTRE,WIDTH"):
        graftkit.fit("nowhere", out="x", model=TINY_MODEL, window="soft")
    with pytest.raises(ConfigError, match=r"the width must be at least 1"):
        graftkit.fit("nowhere", out="x", model=TINY_MODEL, window="40,0")


def _grey16_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("low", "high")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = 20000 + 20000 * c
            img = (base + rng.integers(0, 4000, (24, 24))).astype(np.uint16)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_window_and_dataset_intensity_are_recorded_and_key_the_cache(tmp_path):
    data = _grey16_folder(tmp_path / "d")
    kw = dict(model=TINY_MODEL, epochs=1, batch_size=4, num_workers=0)
    a = graftkit.fit(data, out=tmp_path / "a", **kw)
    b = graftkit.fit(data, out=tmp_path / "b", window="30000,40000", intensity="dataset", **kw)
    pre = json.loads((b.dir / "graft.json").read_text())["preprocess"]
    assert pre["window"] == [30000.0, 40000.0] and pre["intensity"] == "dataset"
    assert 0.2 < pre["mean"][0] < 0.8 and pre["std"][0] > 0.01  # measured on the windowed training images
    features_b = json.loads((b.dir / "metrics.json").read_text())["features"]
    assert features_b["cached"] == 0  # a different window: no feature of run a is reused
    assert json.loads((a.dir / "graft.json").read_text())["preprocess"].get("window") is None


def test_in_chans_three_copies_grey_and_export_matches(tmp_path):
    data = _grey16_folder(tmp_path / "d")
    run = graftkit.fit(data, out=tmp_path / "run", model=TINY_MODEL, epochs=1, batch_size=4, num_workers=0, in_chans=3)
    pre = json.loads((run.dir / "graft.json").read_text())["preprocess"]
    assert pre.get("in_chans", 3) == 3 and len(pre["mean"]) == 3
    assert json.loads((run.dir / "graft.json").read_text())["model"]["extra"]["input"]["reason"] == "--in-chans 3"
    assert len(graftkit.load(run.dir).predict(sorted(data.glob("*/*.png"))[:2])) == 2


def test_one_channel_run_exports_with_parity(tmp_path):
    from graftkit.deploy.export import export

    data = _grey16_folder(tmp_path / "d")
    run = graftkit.fit(data, out=tmp_path / "run", model=TINY_MODEL, epochs=1, batch_size=4, num_workers=0)
    result = export(run.dir, "onnx")
    preprocess = json.loads(result.preprocess.read_text())
    assert preprocess["image"]["channels"] == 1
    parity = result.parity["onnx"]
    assert parity["passed"] and parity["top1_agreement"] == 1.0 and parity["real_inputs"]
