"""graft.json schema migrations: an older run directory is brought to the current schema on read.

Each migration takes the JSON of schema N and returns the JSON of schema N + 1; `migrate` chains
them. A migration never guesses: it fills only what the older writer left out by design.

Schema history:
    1: keys absent when unused: `finished` (while training), `text` (image runs), `lora`,
       `calibration`, `auto`, `time_budget`; `modality` absent in runs from before text models.
    2: every key always present (null when unused), so a missing key is an error, named.
    3: `files`: the SHA-256 of the run's own weight files, checked on load (null in older runs,
       which are then loaded unchecked).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from graftkit.errors import RunDirError


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["schema_version"] = 2
    out.setdefault("modality", "image")  # runs from before text models were image runs
    for key in ("finished", "text", "lora", "calibration", "auto", "time_budget"):
        out.setdefault(key, None)
    return out


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["schema_version"] = 3
    out.setdefault("files", None)  # an older run recorded no hashes of its own files
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}
"""Schema N → the function bringing its JSON to schema N + 1."""

SCHEMA_VERSION = max(MIGRATIONS) + 1
"""The schema this graftkit writes."""


def migrate(data: dict[str, Any], source: str = "graft.json") -> dict[str, Any]:
    """Bring graft.json content of any known schema to `SCHEMA_VERSION` (a copy; `data` is kept).

    Args:
        data: The parsed graft.json.
        source: The file, for error messages.

    Returns:
        The content at the current schema (keys are checked later, by `RunSpec.from_json`).

    Raises:
        RunDirError: No usable `schema_version`, or one newer than this graftkit knows.

    Example:
        >>> migrate({"schema_version": 1, ...})["schema_version"]  # doctest: +SKIP
        3
    """
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunDirError(
            f"{source} has {'no' if version is None else f'an invalid ({version!r})'} schema_version, so it was not "
            "written by graftkit (or was edited). Restore the file graftkit wrote, or train the run again."
        )
    if version > SCHEMA_VERSION:
        raise RunDirError(
            f"{source} was written by a newer graftkit (schema {version}; this graftkit reads schemas 1 to {SCHEMA_VERSION}). "
            "Upgrade graftkit (`pip install -U graftkit`) to load it."
        )
    if version < 1:
        raise RunDirError(f"{source} has schema_version {version}, which no graftkit wrote. Restore the file graftkit wrote.")
    out = copy.deepcopy(data)
    while version < SCHEMA_VERSION:
        out = MIGRATIONS[version](out)
        version = out["schema_version"]
    return out
