"""The run directory (DESIGN.md §5): the one artifact every command reads.

Writing happens in training; reading in evaluation and deploy. Nothing here unpickles: weights are
safetensors, everything else JSON. graft.json is a `RunSpec` (`rundir/spec.py`), migrated from
older schemas on read (`rundir/migrate.py`).
"""

from __future__ import annotations

from graftkit.rundir._files import read_json, write_json
from graftkit.rundir.directory import REQUIRED_FILES, check_run_dir, prepare_run_dir, read_finished
from graftkit.rundir.load import load_model
from graftkit.rundir.migrate import SCHEMA_VERSION, migrate
from graftkit.rundir.spec import SPEC_FILE, ModelInfo, Precision, RunSpec, TextInfo, graftkit_version, library_versions, utc_now

__all__ = [
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
