"""Plumbing shared by the weight sources: offline mode, checksums, the `graft pull` hint."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from graftkit.errors import WeightsNotAvailableError

_TRUE = {"1", "ON", "YES", "TRUE"}


def is_offline(offline: bool = False) -> bool:
    """Whether the network must not be touched.

    Args:
        offline: The caller's `--offline` flag.

    Returns:
        True when `offline` is set, or the environment sets `HF_HUB_OFFLINE` or
        `GRAFTKIT_OFFLINE` to 1/true/yes/on.
    """
    env = (os.environ.get(v, "").strip().upper() for v in ("HF_HUB_OFFLINE", "GRAFTKIT_OFFLINE"))
    return offline or any(v in _TRUE for v in env)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hex; remembered per (path, size, mtime) so repeated loads skip hashing.

    Args:
        path: The file (symlinks are followed).

    Returns:
        The hex digest.
    """
    real = Path(path).resolve()
    st = real.stat()
    return _sha256_cached(str(real), st.st_size, st.st_mtime_ns)


def not_available(model_id: str, where: str, *, offline: bool, cause: str = "") -> WeightsNotAvailableError:
    """The error for weights that are not on this machine, naming the command that fetches them.

    Args:
        model_id: The id the user asked for.
        where: Where the weights were looked for (a cache path).
        offline: Whether offline mode stopped a download.
        cause: Why a download failed, when one was tried.

    Returns:
        The exception to raise.
    """
    if offline:
        why = "offline mode is on (--offline, HF_HUB_OFFLINE or GRAFTKIT_OFFLINE)"
    else:
        why = f"the download failed ({cause})" if cause else "the download failed"
    return WeightsNotAvailableError(
        f"Weights for {model_id} are not on this machine (looked in {where}) and {why}. "
        f"Run `graft pull {model_id}` on a machine with network access (and copy the cache here), "
        f"or use scratch:{model_id} for random weights."
    )


def download_errors() -> tuple[type[BaseException], ...]:
    """The failures that mean "this download can't happen here": no network, a timeout, offline
    mode, an HTTP error from the hub (all `OSError`s in huggingface_hub and requests), and the
    transport and status errors of httpx (or its fork httpx2, which huggingface_hub uses when
    installed). Anything else is a bug and must surface with its own cause, not be turned into
    "run graft pull"."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors += [getattr(module, cls) for cls in ("TransportError", "HTTPStatusError") if hasattr(module, cls)]
    return tuple(errors)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block without disturbing the global RNG state outside it.

    Args:
        seed: The seed for the block.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
