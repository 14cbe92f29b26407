"""Image decoding: any common file becomes a uint8 RGB tensor `[3, H, W]`, upright.

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
| `I;16`, `I;16B`, `I;16L`   | 16-bit grey: the full 0..65535 range is scaled to 0..255          |
| `I` (32-bit integer)       | treated as 16-bit grey (PIL's mode for 16-bit PNG/TIFF): clipped |
|                            | to 0..65535, then scaled to 0..255                               |
| `F` (32-bit float)         | if every value is in [0, 1]: times 255; otherwise clipped to     |
|                            | 0..255; NaN becomes 0                                            |

16-bit scaling is `round(v * 255 / 65535)`, i.e. the full range maps to the full range; no
per-image contrast stretching is done, so the same pixel value always gives the same result.
Multi-frame files (GIF, TIFF) use their first frame. EXIF orientation is applied for every format.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

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
]

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
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


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` has one of `SUPPORTED_EXTENSIONS` (case-insensitive); the content is not read."""
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decode an image file into an upright RGB tensor.

    Args:
        path: An image file in any of `SUPPORTED_EXTENSIONS` (the content decides the decoder, not
            the extension).

    Returns:
        A uint8 tensor `[3, H, W]`, EXIF orientation applied, transparency composited on white;
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
    path = Path(path)
    try:
        data = bytearray(path.read_bytes())
    except OSError as e:
        raise DataError([f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"], str(path)) from e
    if not data:
        raise DataError([f"{path}: file is empty (0 bytes): remove it or replace it with a valid image"], str(path))
    return decode_image_bytes(data, path)


def decode_image_bytes(data: bytes | bytearray, name: str | os.PathLike[str] = "<bytes>") -> torch.Tensor:
    """Decode an encoded image (file contents, an upload) exactly as `load_image` decodes a file.

    Args:
        data: The encoded bytes (JPEG, PNG, BMP, GIF, TIFF, WebP), not empty.
        name: Names the image in error messages (a file name or path).

    Returns:
        A uint8 tensor `[3, H, W]`, upright RGB (see `load_image`).

    Raises:
        DataError: The bytes cannot be decoded; the message names `name`.

    Example:
        >>> decode_image_bytes(request_body, "upload.jpg").shape
        torch.Size([3, 375, 500])
    """
    buf = data if isinstance(data, bytearray) else bytearray(data)  # torch.frombuffer needs writable memory
    if _jpeg_components(buf) in (1, 3):
        image = _decode_jpeg_fast(buf)
        if image is not None:
            return image
    return _decode_with_pil(buf, Path(name))


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
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"{path}: cannot be read ({e.strerror or e}): check the path and permissions"
    if size == 0:
        return f"{path}: file is empty (0 bytes): remove it or replace it with a valid image"
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


def _decode_with_pil(data: bytes | bytearray, path: Path) -> torch.Tensor:
    import torch

    return torch.from_numpy(decode_rgb_array(data, path)).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W), channels-last strides


def decode_rgb_array(data: bytes | bytearray, name: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode an encoded image with PIL into an upright RGB `[H, W, 3]` uint8 array (writable),
    by the rules of `load_image`, without torch (the ONNX client's decoder).

    Raises:
        DataError: The bytes cannot be decoded; the message names `name`.
    """
    path = Path(name)
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            im.seek(0)  # multi-frame files: the first frame
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to rotate
            rgb = _to_rgb_array(im)
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError([f"{path}: {_describe(e)}: remove it or replace it with a valid image"], str(path)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError([f"{path}: cannot be decoded as an image ({_describe(e)}): remove it or replace it"], str(path)) from e
    return rgb if rgb.flags.writeable else rgb.copy()


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to an `[H, W, 3]` uint8 array (rules in the module docstring)."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        return _to_rgb_array(im)
    if mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im).astype(np.int64)
        values = np.clip(values, 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))  # L, 1, CMYK, YCbCr, RGBX, LAB, HSV ...


def _describe(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    if isinstance(e, UnidentifiedImageError):
        return "not a recognised image format (is it really an image?)"
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image is too large to decode safely ({text})"
    return text.split("\n")[0]
