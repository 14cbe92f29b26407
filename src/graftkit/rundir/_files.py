"""JSON files of a run directory: written atomically, read with the file named in every error."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON through a temporary file and a rename: a crash mid-write
    leaves the old file, never half of a new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file (`json.JSONDecodeError` / `OSError` pass through)."""
    return json.loads(Path(path).read_text())
