"""User-facing errors. Every message names the file or value at fault and says how to fix it."""

from __future__ import annotations


class GraftError(Exception):
    """Base class for every error graftkit raises because of user input."""


class ConfigError(GraftError, ValueError):
    """A setting is invalid; the message names the flag and the allowed values."""


class UnknownModelError(GraftError, KeyError):
    """A model id is not in the registry; the message lists the closest matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsNotAvailableError(GraftError):
    """Pretrained weights are not on this machine; the message names `graft pull ID`."""


class WeightsMismatchError(GraftError):
    """Weights do not fit the architecture or fail their checksum."""


class DataError(GraftError):
    """The data set has problems; all of them are listed at once in `problems`."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) in {source}" if source else f"{len(self.problems)} data problem(s)"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}:\n{body}")


class RunDirError(GraftError):
    """A run directory is missing, incomplete, or cannot be written."""


class TrainingDivergedError(GraftError):
    """The training loss became NaN, infinite or exploded before any epoch gave usable weights;
    the message names `--lr`."""
