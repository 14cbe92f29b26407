"""DICOM pixel data through pydicom: one image per file, float32 in [0, 1].

What happens to a file's pixels, in order (DICOM PS3.3 C.11, the grey-scale pipeline):

| step                 | grey (`MONOCHROME1`/`MONOCHROME2`)                                     |
|----------------------|------------------------------------------------------------------------|
| decode               | `ds.pixel_array`: pydicom picks the decoder plugin for the transfer     |
|                      | syntax; a compressed syntax without an installed plugin is refused,     |
|                      | naming the plugins that would decode it (`pip install ...`)             |
| modality LUT         | `RescaleSlope` / `RescaleIntercept` (or a Modality LUT), by pydicom's   |
|                      | `apply_modality_lut`: CT values become Hounsfield units                 |
| VOI (window)         | an explicit `window=(centre, width)` (`--window C,W`) wins; else the    |
|                      | file's VOI LUT Sequence (pydicom's `apply_voi_lut`); else its first      |
|                      | `WindowCenter`/`WindowWidth`; else the stored value range (from          |
|                      | `BitsStored` and `PixelRepresentation`, through the rescale; for a      |
|                      | Modality LUT, its output bit depth) — never a per-image stretch          |
| presentation         | `MONOCHROME1` (white is low) is inverted, so bright is always high      |

Colour files (`RGB`, `YBR_*`: converted to RGB by pydicom; `PALETTE COLOR`: through its palette)
are scaled by their bit depth. Multi-frame files (`NumberOfFrames` > 1: cine, volumes,
segmentations) are refused with the frame count: graftkit classifies one image per file, so split
them first (one file per frame). Files without pixel data (structured reports, plans) and
truncated files are refused. Files without a Transfer Syntax UID (no file meta group: ACR-NEMA
style) are read as native pixel data in the encoding pydicom detected.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from graftkit.errors import DataError

__all__ = ["DICOM_EXTENSIONS", "is_dicom", "decode_dicom", "check_dicom", "read_dicom_header", "is_single_channel_dicom"]

DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom"})
"""File extensions read as DICOM (files with the `DICM` marker are recognised whatever their name)."""

_MAGIC_OFFSET = 128  # a DICOM file: 128-byte preamble, then b"DICM"


def is_dicom(data: bytes | bytearray, name: str | os.PathLike[str] = "") -> bool:
    """Whether `data` is a DICOM file: the `DICM` marker after the preamble, or a `.dcm` / `.dicom` name."""
    return bytes(data[_MAGIC_OFFSET : _MAGIC_OFFSET + 4]) == b"DICM" or Path(str(name)).suffix.lower() in DICOM_EXTENSIONS


def decode_dicom(data: bytes | bytearray, path: Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode a single-frame DICOM file's pixels (the steps in the module docstring).

    Args:
        data: The file's bytes.
        path: Names the file in error messages.
        window: `(centre, width)` in modality units (after the rescale), overriding the file's own.

    Returns:
        float32 `[H, W, 1]` (grey) or `[H, W, 3]` (colour), values in [0, 1].

    Raises:
        DataError: not DICOM, no pixel data, several frames, a compressed transfer syntax with no
            installed decoder (naming the plugins that would decode it), or undecodable pixels.

    Example:
        >>> decode_dicom(Path("CT_small.dcm").read_bytes(), Path("CT_small.dcm")).shape
        (128, 128, 1)
    """
    ds = _read(data, path)
    _check_decodable(ds, path)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # pydicom raises RuntimeError/ValueError/... from its plugins
        raise DataError([f"{path}: its {_syntax_name(ds)} pixel data cannot be decoded ({_first_line(e)}){_decoder_hint(ds)}"], str(path)) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        grey = _grey_to_unit(pixels, ds, window)
        if photometric == "MONOCHROME1":
            grey = 1.0 - grey
        return grey.astype(np.float32)[..., None]
    return _colour_to_unit(pixels, ds, photometric, path).astype(np.float32)


def check_dicom(path: str | os.PathLike[str]) -> str | None:
    """Decode a DICOM file as training would; None when it is fine, else the one-line problem."""
    path = Path(path)
    try:
        decode_dicom(path.read_bytes(), path)
    except DataError as e:
        return e.problems[0]
    except OSError as e:
        return f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"
    return None


def read_dicom_header(path: str | os.PathLike[str]) -> Any:
    """The file's DICOM header, without its pixel data (fast: for checks and summaries)."""
    import pydicom

    return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)


def is_single_channel_dicom(path: str | os.PathLike[str]) -> bool:
    """Whether a DICOM file holds one grey channel (`SamplesPerPixel` 1, `MONOCHROME1/2`)."""
    ds = read_dicom_header(path)
    return int(ds.get("SamplesPerPixel", 1)) == 1 and str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper().startswith("MONOCHROME")


# ----------------------------------------------------------------------------------------------


def _read(data: bytes | bytearray, path: Path) -> Any:
    try:
        import pydicom
    except ImportError:
        raise DataError([f"{path}: reading DICOM needs pydicom: pip install pydicom"], str(path)) from None
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError, AttributeError) as e:
        raise DataError([f"{path}: not a readable DICOM file ({_first_line(e)}): remove it or replace it"], str(path)) from e
    ended = [str(w.message) for w in caught if "End of file reached" in str(w.message)]
    if ended and "PixelData" not in ds:  # pydicom stops at the cut and keeps nothing of the pixel data
        raise DataError([f"{path}: the DICOM file is truncated ({_first_line(Exception(ended[0]))[:120]}): replace it with a complete copy"], str(path))
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = " ".join(str(x) for x in (ds.get("Modality", ""), _sop_class(ds)) if x)
        raise DataError([f"{path}: DICOM file without pixel data ({kind or 'no image'}): remove it from the image folder"], str(path))
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (ValueError, TypeError) as e:
        raise DataError([f"{path}: DICOM header is invalid ({_first_line(e)}): remove it or replace it"], str(path)) from e
    if frames > 1:
        raise DataError([
            f"{path}: multi-frame DICOM ({frames} frames, {ds.get('Modality', '?')}): graftkit takes one image per file; "
            "split it into single-frame files (one per frame) or keep the frame you want"
        ], str(path))  # fmt: skip
    _infer_missing_syntax(ds)
    return ds


def _infer_missing_syntax(ds: Any) -> None:
    """Files without a Transfer Syntax UID (no file meta: ACR-NEMA style, or a damaged meta group)
    hold native pixel data, encoded as pydicom found the dataset (implicit or explicit VR, byte
    order): record that syntax so pydicom can decode them, as dcmtk and GDCM do."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if _syntax(ds) is not None:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None or little is None:
        return
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit and little else ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _check_decodable(ds: Any, path: Path) -> None:
    """Refuse a compressed transfer syntax that no installed pydicom plugin decodes, naming them."""
    uid = _syntax(ds)
    if uid is None or not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DataError([f"{path}: pydicom has no decoder for its transfer syntax {uid.name} ({uid})"], str(path)) from None
    if not decoder.is_available:
        raise DataError([
            f"{path}: pixel data is compressed as {uid.name} ({uid}) and no installed decoder reads it; "
            f"install one of these pydicom plugins: {'; '.join(decoder.missing_dependencies)}"
        ], str(path))  # fmt: skip


def _decoder_hint(ds: Any) -> str:
    uid = _syntax(ds)
    if uid is None or not uid.is_compressed:
        return ""
    from pydicom.pixels import get_decoder

    try:
        missing = get_decoder(uid).missing_dependencies
    except NotImplementedError:
        return ""
    return f"; another decoder may read it: {'; '.join(missing)}" if missing else ""


def _grey_to_unit(pixels: np.ndarray, ds: Any, window: tuple[float, float] | None) -> np.ndarray:
    """Modality LUT, then the VOI (explicit window, VOI LUT, file window, or stored range) → [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from graftkit.data.images import apply_window

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if window is not None:
        return apply_window(values, window)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        indices = values.astype(np.int64) if np.array_equal(values, np.round(values)) else values  # a LUT is indexed by integers
        return np.clip(np.asarray(apply_voi_lut(indices, ds, prefer_lut=True), dtype=np.float64) / (2**bits - 1), 0.0, 1.0)
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if centre is not None and width is not None and width >= 1:
        return apply_window(values, (centre, width))
    lo, hi = _modality_range(ds)
    return np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _modality_range(ds: Any) -> tuple[float, float]:
    """The range stored values can take (`BitsStored`, signed or not), through the rescale; for a
    Modality LUT Sequence, the range of the LUT's output (its descriptor's bit depth)."""
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    return ends[0], ends[1]


def _colour_to_unit(pixels: np.ndarray, ds: Any, photometric: str, path: Path) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(pixels, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return np.asarray(rgb, dtype=np.float64) / (2**bits - 1)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise DataError([f"{path}: pixel data of shape {pixels.shape} with {photometric} is not one colour image"], str(path))
    bits = int(ds.get("BitsStored", 8) or 8)
    return np.clip(np.asarray(pixels, dtype=np.float64) / (2**bits - 1), 0.0, 1.0)  # pydicom converted YBR to RGB


def _first(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _syntax(ds: Any) -> Any:
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _syntax_name(ds: Any) -> str:
    uid = _syntax(ds)
    return uid.name if uid is not None else "uncompressed"


def _sop_class(ds: Any) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", "") if uid is not None else ""


def _first_line(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0][:200]
