"""Creating a run directory for training, and checking that one holds a finished run."""

from __future__ import annotations

import shutil
from pathlib import Path

from graftkit.errors import RunDirError
from graftkit.rundir._files import replace_dir
from graftkit.rundir.spec import SPEC_FILE, RunSpec

REQUIRED_FILES = (SPEC_FILE, "model.safetensors")


def prepare_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create (or reuse, for --resume) the folder a run is written into, failing early if it
    cannot be written; return that folder.

    With `overwrite`, a run already in `out` is left untouched: the new run is built in a sibling
    folder (`build_dir(out)`, returned), and `publish_run` swaps it in once it has finished. A
    failed or interrupted new run never costs the old one.

    Raises:
        RunDirError: the folder cannot be created or written, or holds a run and neither `resume`
            nor `overwrite` was asked for (nothing saved is ever lost silently).
    """
    path = Path(out)
    if resume:
        if not (path / "checkpoints" / "last.pt").is_file():
            raise RunDirError(f"cannot resume: {path} has no checkpoints/last.pt. Run without --resume to start it.")
        return path
    if (path / SPEC_FILE).exists():
        if not overwrite:
            raise RunDirError(
                f"{path} already holds a run. Choose another --out, pass --overwrite to replace it, or --resume to continue it."
            )
        path = build_dir(path)
        shutil.rmtree(path, ignore_errors=True)  # what an earlier, failed overwrite left
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write to output folder {path}: {e.strerror or e}. Choose a writable --out.") from None
    return path


def build_dir(out: str | Path) -> Path:
    """Where `--overwrite` builds the new run beside the old one: `.<name>.graft-new`."""
    out = Path(out)
    return out.with_name(f".{out.name}.graft-new")


def publish_run(built: Path, out: Path) -> None:
    """Put a finished run built by `prepare_run_dir(..., overwrite=True)` at `out`, replacing the
    old run there (nothing to do when it was built in place)."""
    if Path(built) != Path(out):
        replace_dir(built, out)


def check_run_dir(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, once it is known to hold a finished run with a readable graft.json.

    Raises:
        RunDirError: the folder or one of its files is missing, graft.json is invalid or from a
            newer graftkit, or the run is still `training` (the message says what to do).
    """
    return read_finished(run_dir)[0]


def read_finished(run_dir: str | Path) -> tuple[Path, RunSpec]:
    """`check_run_dir`, also returning the parsed (and migrated) `RunSpec`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist. Train one with `graft train DATA --out {path}`.")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise RunDirError(
            f"{path} is not a finished run (missing {', '.join(missing)}). "
            "If training was interrupted, continue it with `graft train ... --resume`."
        )
    spec = RunSpec.read(path)
    if spec.status != "done":
        raise RunDirError(
            f"{path} is not a finished run (graft.json status {spec.status!r}). "
            "If training was interrupted, continue it with `graft train ... --resume`."
        )
    return path, spec
