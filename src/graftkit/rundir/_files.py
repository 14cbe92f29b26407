"""Files of a run directory: written atomically, read with the file named in every error."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from graftkit.errors import RunDirError


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it over
    `path`: a crash or a full disk mid-write leaves the old file, never half of a new one.

    Raises:
        RunDirError: the disk is full or the folder is not writable (the old file is kept).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {e.strerror or e}. Free some disk space or choose another folder; the previous file is unchanged.") from None
    except BaseException:  # Ctrl-C or SIGTERM mid-write: the old file stays, the half-written one goes
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the `.NAME.tmp` files `atomic_write` leaves when a process is killed mid-write
    (`kill -9`, power loss); they are never read. Returns what was removed."""
    stale = sorted(Path(folder).glob(".*.tmp")) if Path(folder).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON atomically (`atomic_write`). Non-ASCII text is kept as is."""
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file (`json.JSONDecodeError` / `OSError` pass through)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_run_json(path: Path, fix: str = "train the run again (`graft train ... --out RUN --overwrite`)") -> Any:
    """`read_json` for a file of a run directory: a missing, unreadable or invalid file is a
    `RunDirError` naming it and saying how to fix it, never a traceback."""
    path = Path(path)
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing. Restore it, or {fix}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path} cannot be read ({e}). Restore it, or {fix}.") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). Restore it, or {fix}.") from None


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`, replacing what is there in two renames: the old
    folder moves aside first and is deleted only once `new` is in place."""
    new, target = Path(new), Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
