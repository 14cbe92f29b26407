"""The run directory (DESIGN.md §5): the one artifact every command reads.

Writing happens in training; reading in evaluation and deploy. Nothing here unpickles: weights are
safetensors, everything else JSON. graft.json is a `RunSpec` (`rundir/spec.py`), migrated from
older schemas on read (`rundir/migrate.py`).
"""

from __future__ import annotations

from graftkit.rundir._files import atomic_write, read_json, read_run_json, remove_stale_temporaries, replace_dir, sha256_file, write_json
from graftkit.rundir.directory import REQUIRED_FILES, build_dir, check_run_dir, prepare_run_dir, publish_run, read_finished
from graftkit.rundir.load import load_model
from graftkit.rundir.migrate import SCHEMA_VERSION, migrate
from graftkit.rundir.spec import SPEC_FILE, ModelInfo, Precision, RunSpec, TextInfo, graftkit_version, library_versions, utc_now

__all__ = [
    "atomic_write",
    "remove_stale_temporaries",
    "build_dir",
    "publish_run",
    "read_run_json",
    "replace_dir",
    "sha256_file",
    "REQUIRED_FILES",
    "SCHEMA_VERSION",
    "SPEC_FILE",
    "ModelInfo",
    "Precision",
    "RunSpec",
    "TextInfo",
    "check_run_dir",
    "graftkit_version",
    "library_versions",
    "load_model",
    "migrate",
    "prepare_run_dir",
    "read_finished",
    "read_json",
    "utc_now",
    "write_json",
]
