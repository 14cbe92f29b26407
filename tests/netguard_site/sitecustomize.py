"""Installs the test network guard in every Python process started with this folder on PYTHONPATH.

Each refused attempt is appended as one line to the file `GRAFTKIT_NETGUARD_LOG` names.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for netguard

from netguard import NetworkGuard  # noqa: E402

_log = os.environ.get("GRAFTKIT_NETGUARD_LOG")


def _write(what: str) -> None:
    if _log:
        with open(_log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {what}\n")


NetworkGuard(_write).install()
sys.path.pop(0)
