"""Collects data problems by kind so one `DataError` can report all of them, readably."""

from __future__ import annotations

from graftkit.errors import DataError

_CAP = 20  # messages shown per kind; the rest are counted, so 5,000 bad files stay readable


class Problems:
    """An ordered collection of problem messages grouped by kind.

    Each kind shows at most 20 messages, then one line counting the rest, so a folder with
    thousands of bad files still gives a readable error.
    """

    def __init__(self) -> None:
        self._by_kind: dict[str, list[str]] = {}

    def add(self, kind: str, message: str) -> None:
        """Record `message` under `kind` (a plural noun phrase, e.g. "unreadable files")."""
        self._by_kind.setdefault(kind, []).append(message)

    def has_kind(self, kind: str) -> bool:
        """Whether any problem of `kind` was recorded."""
        return kind in self._by_kind

    def __bool__(self) -> bool:
        return bool(self._by_kind)

    def messages(self) -> list[str]:
        """Every message in order of kind, capped per kind with a count of those left out."""
        out: list[str] = []
        for kind, messages in self._by_kind.items():
            out.extend(messages[:_CAP])
            if len(messages) > _CAP:
                out.append(f"... and {len(messages) - _CAP} more {kind} (first {_CAP} listed above)")
        return out

    def raise_if_any(self, source: object) -> None:
        """Raise one `DataError` listing every problem, if there are any."""
        if self:
            raise DataError(self.messages(), str(source))
