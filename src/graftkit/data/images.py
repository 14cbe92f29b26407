"""Image decoding: any common file (and DICOM) becomes a `[C, H, W]` tensor, upright.

8-bit sources give uint8; sources with more depth (16-bit PNG/TIFF, 32-bit integer or float TIFF,
DICOM) give float32 in [0, 1], so no precision is lost before normalisation. `channels=3` (the
default) repeats grey sources three times; `channels=1` keeps one channel (colour sources become
luma, ITU-R 601) for one-channel models (`--in-chans 1`). `window=(centre, width)` maps a grey
window of the source's own values (raw 16-bit values; for DICOM, values after the rescale
slope/intercept, e.g. Hounsfield units) linearly onto [0, 1]; see `graftkit.data.dicom`.

JPEGs (the common case) take a fast path through `torchvision.io.decode_jpeg`, which applies the
EXIF orientation itself and is about 1.6x faster than PIL at 500x375 (PERFORMANCE.md). Every other
format, and JPEGs that the fast path cannot read, go through PIL, where each pixel mode is
converted explicitly:

| mode                       | becomes                                                          |
|----------------------------|------------------------------------------------------------------|
| `RGB`                      | itself                                                           |
| `L`, `1`, `CMYK`, `YCbCr`  | `Image.convert("RGB")`                                           |
| `P` (palette)              | RGB; with a transparent index, alpha-composited on white         |
| `RGBA`, `LA`, `PA`, `RGBa` | alpha-composited on white (transparent pixels become white)      |
| `I;16`, `I;16B`, `I;16L`   | 16-bit grey, float32 `v / 65535` (or the `window`)               |
| `I` (32-bit integer)       | treated as 16-bit grey (PIL's mode for 16-bit PNG/TIFF): clipped |
|                            | to 0..65535, then float32 `v / 65535` (or the `window`)          |
| `F` (32-bit float)         | float32: kept if every value is in [0, 1]; otherwise clipped to  |
|                            | 0..255 and divided by 255; NaN becomes 0                         |
| DICOM                      | float32 in [0, 1] (`graftkit.data.dicom`)                        |

The full 16-bit range maps to [0, 1]; no per-image contrast stretching is done, so the same pixel
value always gives the same result.
Multi-frame files (GIF, TIFF) use their first frame. EXIF orientation is applied for every format.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch  # the decoders return tensors; torch itself is imported when one runs

# Register exactly the decoders we use (`Image.open(..., formats=...)` needs them loaded; PIL's
# `preinit` does not load TIFF or WebP; MPO is what JPEG returns for multi-picture files). About 20 ms, once.
from PIL import (  # noqa: F401  (imported for their registration side effect)
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from graftkit.errors import DataError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "PIL_FORMATS",
    "JPEG_MAGIC",
    "load_image",
    "decode_image_bytes",
    "check_image",
    "is_image_file",
    "apply_window",
    "Window",
]

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm", ".dicom"}
)
"""Lower-case file extensions accepted as images (compare with `Path.suffix.lower()`)."""

# PIL format names we decode; restricting `Image.open` to them means a PDF or an EPS renamed to
# `.jpg` is reported as unreadable rather than half-decoded. MPO is the multi-picture JPEG that
# many cameras write (PIL's JPEG opener returns it; it has no opener of its own).
PIL_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP")
"""PIL format names decoded (pass as `Image.open(..., formats=PIL_FORMATS)` to probe an image the same way)."""

JPEG_MAGIC = b"\xff\xd8\xff"
"""The first bytes of every JPEG."""
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")
Window = tuple[float, float]
"""A grey window `(centre, width)` in the source's own units."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` has one of `SUPPORTED_EXTENSIONS` (case-insensitive); the content is not read."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def readable(path: Any) -> Any:
    """`path` as something with `read_bytes()`, `suffix` and `name`: a `Path`, or an image inside a
    tar shard (`graftkit.data.webdataset.ShardMember`), which is kept as it is."""
    return path if hasattr(path, "read_bytes") else Path(path)


def load_image(path: str | os.PathLike[str], *, channels: int = 3, window: Window | None = None) -> torch.Tensor:
    """Decode an image file into an upright tensor.

    Args:
        path: An image file in any of `SUPPORTED_EXTENSIONS` (the content decides the decoder, not
            the extension; DICOM files are recognised by their `DICM` marker or extension).
        channels: 3 (grey repeated) or 1 (colour converted to luma).
        window: Grey window `(centre, width)` for high-depth grey sources (16-bit, DICOM).

    Returns:
        A tensor `[channels, H, W]`: uint8 for 8-bit sources, float32 in [0, 1] for 16-bit,
        float and DICOM sources. EXIF orientation applied, transparency composited on white;
        see the module docstring for how each pixel mode is converted. Its memory is
        channels-last (strides `(1, 3W, 3)`), as torchvision's decoder returns it: torch's uint8
        resize is ~1.8x faster on that layout. Call `.contiguous()` if you need the usual layout.

    Raises:
        DataError: The file is missing, empty, or cannot be decoded; the message names the file.

    Example:
        >>> img = load_image("data/cat/001.jpg")
        >>> img.shape, img.dtype
        (torch.Size([3, 375, 500]), torch.uint8)
    """
    path = readable(path)
    try:
        data = bytearray(path.read_bytes())
    except OSError as e:
        raise DataError([f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"], str(path)) from e
    if not data:
        raise DataError([f"{path}: file is empty (0 bytes): remove it or replace it with a valid image"], str(path))
    return decode_image_bytes(data, path, channels=channels, window=window)


def decode_image_bytes(
    data: bytes | bytearray, name: str | os.PathLike[str] = "<bytes>", *, channels: int = 3, window: Window | None = None
) -> torch.Tensor:
    """Decode an encoded image (file contents, an upload) exactly as `load_image` decodes a file.

    Args:
        data: The encoded bytes (JPEG, PNG, BMP, GIF, TIFF, WebP, DICOM), not empty.
        name: Names the image in error messages (a file name or path).
        channels: 3 or 1 (see `load_image`).
        window: Grey window `(centre, width)` (see `load_image`).

    Returns:
        A tensor `[channels, H, W]`, upright (see `load_image`).

    Raises:
        DataError: The bytes cannot be decoded; the message names `name`.

    Example:
        >>> decode_image_bytes(request_body, "upload.jpg").shape
        torch.Size([3, 375, 500])
    """
    import torch

    from graftkit.data import dicom

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    buf = data if isinstance(data, bytearray) else bytearray(data)  # torch.frombuffer needs writable memory
    if dicom.is_dicom(buf, name):
        return _with_channels(torch.from_numpy(dicom.decode_dicom(buf, readable(name), window)).permute(2, 0, 1), channels)
    if _jpeg_components(buf) in (1, 3):
        image = _decode_jpeg_fast(buf)
        if image is not None:
            return _with_channels(image, channels)
    return _with_channels(_decode_with_pil(buf, readable(name), window), channels)


def _with_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """`[1|3, H, W]` → `[channels, H, W]`: grey repeated (a view), colour to luma (same dtype)."""
    have = image.shape[0]
    if have == channels:
        return image
    if channels == 3:
        return image.expand(3, -1, -1)
    import torch

    weights = torch.tensor(_LUMA, dtype=torch.float32).view(3, 1, 1)
    luma = (image.to(torch.float32) * weights).sum(0, keepdim=True)
    return luma.round_().clamp_(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else luma


def check_image(path: str | os.PathLike[str]) -> str | None:
    """Cheaply check that a file is a readable image, without decoding its pixels where possible.

    JPEGs: the header is parsed and the file must end with the end-of-image marker (a file that
    does not is fully decoded to decide, so truncated JPEGs are caught). PNGs: every chunk's CRC is
    checked (`PIL.Image.verify`). Other formats (rare in data sets) are fully decoded.
    About 0.1 ms per JPEG or PNG; `graftkit.data.readers` runs it over a thread pool.

    Args:
        path: The file to check.

    Returns:
        None when the file is fine, else a one-line problem naming the file and the fix.

    Example:
        >>> check_image("data/cat/empty.jpg")
        'data/cat/empty.jpg: file is empty (0 bytes): remove it or replace it with a valid image'
    """
    from graftkit.data import dicom

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"
    if size == 0:
        return f"{path}: file is empty (0 bytes): remove it or replace it with a valid image"
    if path.suffix.lower() in dicom.DICOM_EXTENSIONS:
        return dicom.check_dicom(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as im:
                width, height = im.size
                fmt = im.format
                if width == 0 or height == 0:
                    return f"{path}: image has size {width}x{height}: remove it or replace it with a valid image"
                if fmt in ("JPEG", "MPO"):
                    if _jpeg_tail_ok(path):
                        return None
                    im.load()  # no end-of-image marker: truncated, or trailing data after it
                elif fmt == "PNG":
                    im.verify()
                else:
                    im.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"{path}: {_describe(e)}: remove it or replace it with a valid image"
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL raises all of these on bad data
        return f"{path}: cannot be decoded as an image ({_describe(e)}): remove it or replace it"
    return None


# ----------------------------------------------------------------------------------------------
# JPEG fast path


def _jpeg_components(data: bytes | bytearray) -> int | None:
    """Number of colour components in a JPEG's frame header (1 grey, 3 YCbCr, 4 CMYK/YCCK), or None."""
    if not data.startswith(JPEG_MAGIC):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC); Nf is the 10th byte of the segment
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[i + 9] if i + 9 < n else None
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        i += 2 + length
    return None


def _decode_jpeg_fast(data: bytearray) -> torch.Tensor | None:
    """Decode a 1- or 3-component JPEG with libjpeg-turbo via torchvision; None if it cannot.

    4-component (CMYK/YCCK) JPEGs never come here: PIL's Adobe-convention conversion is the
    reference and torchvision's CMYK handling varies between versions. torchvision 0.29
    deprecated its decoders in favour of TorchCodec; if a later release drops them, this returns
    None and PIL decodes everything (slower, same pixels up to JPEG decoder rounding).
    """
    decode = _torchvision_decode_jpeg()
    if decode is None:
        return None
    from torchvision.io import ImageReadMode

    import torch

    buffer = torch.frombuffer(data, dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see the docstring; PIL is the fallback
            return decode(buffer, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        return None  # let PIL try (and name the problem if it fails too)


@functools.cache
def _torchvision_decode_jpeg():
    """torchvision's `decode_jpeg` if it is importable and its image extension loaded, else None."""
    try:
        from torchvision.io import image as tv_image
    except ImportError:
        return None
    has_ops = getattr(tv_image, "_has_image_ops", lambda: True)
    return getattr(tv_image, "decode_jpeg", None) if has_ops() else None


def _jpeg_tail_ok(path: Path) -> bool:
    """Whether a JPEG file ends with the end-of-image marker (trailing NUL padding allowed)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64))
        tail = f.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


# ----------------------------------------------------------------------------------------------
# PIL path


def _decode_with_pil(data: bytes | bytearray, path: Path, window: Window | None = None) -> torch.Tensor:
    import torch

    return torch.from_numpy(decode_array(data, path, window)).permute(2, 0, 1)  # (H, W, C) -> (C, H, W), channels-last strides


def decode_rgb_array(data: bytes | bytearray, name: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode an 8-bit encoded image with PIL into an upright RGB `[H, W, 3]` uint8 array, by the
    rules of `load_image`, without torch (the ONNX client's decoder).

    Raises:
        DataError: The bytes cannot be decoded, or hold a 16-bit / float image (which only the
            torch backend reads); the message names `name`.
    """
    array = decode_array(data, readable(name))
    if array.dtype != np.uint8:
        raise DataError([f"{name}: a 16-bit or float image: predict it with --backend torch"], str(name))
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def decode_array(data: bytes | bytearray, name: str | os.PathLike[str] = "<bytes>", window: Window | None = None) -> np.ndarray:
    """Decode an encoded image with PIL into an upright writable `[H, W, C]` array (C = 1 for grey
    modes, 3 otherwise; uint8, or float32 in [0, 1] for 16-bit and float modes), without torch.

    Raises:
        DataError: The bytes cannot be decoded; the message names `name`.
    """
    path = readable(name)
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            im.seek(0)  # multi-frame files: the first frame
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to rotate
            rgb = _to_array(im, window)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError([f"{path}: {_describe(e)}: remove it or replace it with a valid image"], str(path)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError([f"{path}: cannot be decoded as an image ({_describe(e)}): remove it or replace it"], str(path)) from e
    return rgb if rgb.flags.writeable else rgb.copy()


def _to_array(im: Image.Image, window: Window | None = None) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an `[H, W, C]` array (rules in the module
    docstring): C = 1 for grey modes, 3 otherwise; uint8, or float32 in [0, 1] for 16-bit and float modes."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode == "L":
        return np.asarray(im)[..., None]
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        return _to_array(im)
    if mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in _SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(im).astype(np.float64), 0, 65535)
        grey = apply_window(values, window) if window is not None else values / 65535.0
        return grey.astype(np.float32)[..., None]
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if window is not None:
            return apply_window(values, window).astype(np.float32)[..., None]
        if not (values.size and values.min() >= 0.0 and values.max() <= 1.0):
            values = np.clip(values, 0, 255) / 255.0
        return values.astype(np.float32)[..., None]
    if mode == "1":
        return np.asarray(im.convert("L"))[..., None]
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, RGBX, LAB, HSV ...


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map a grey window linearly onto [0, 1] (DICOM PS3.3 C.11.2.1.2.1, `LINEAR`).

    Args:
        values: Grey values in the source's units (raw 16-bit values, or Hounsfield units).
        window: `(centre, width)`, width >= 1.

    Returns:
        float64 values in [0, 1]: `centre - width/2` and below become 0, `centre + width/2` and above 1.

    Example:
        >>> apply_window(np.array([-1000.0, 40.0, 1000.0]), (40, 400)).round(3).tolist()
        [0.0, 0.501, 1.0]
    """
    centre, width = float(window[0]), float(window[1])
    out = ((values.astype(np.float64) - (centre - 0.5)) / (width - 1.0)) + 0.5 if width > 1 else (values > centre - 0.5).astype(np.float64)
    return np.clip(out, 0.0, 1.0)


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, UnidentifiedImageError):
        return "not a recognised image format (is it really an image?)"
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image is too large to decode safely ({text})"
    return text.split("\n")[0]
