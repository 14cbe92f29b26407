"""graftkit: transfer learning as the fast, safe default for small labelled data sets."""

from __future__ import annotations

from graftkit.errors import GraftError  # cheap; no torch import


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graftkit")  # pyproject.toml's version, recorded at install time
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str):
    # Lazy public API: `import graftkit` stays instant and imports torch only when used
    # (importlib.metadata costs about 0.1 s, benchmarks/RESULTS.md: the version is read on first use).
    if name == "__version__":
        return _installed_version()
    if name == "fit":
        from graftkit.training.fit import fit

        return fit
    if name == "load":
        from graftkit.deploy.predictor import load

        return load
    if name == "evaluate":
        from graftkit.deploy.evaluate import evaluate

        return evaluate
    if name == "TrainConfig":
        from graftkit.training.config import TrainConfig

        return TrainConfig
    if name in ("rank", "lr_find", "tune", "curve"):  # choose and adjust (graftkit.selection)
        import importlib

        return getattr(importlib.import_module(f"graftkit.selection.{name}"), name)
    raise AttributeError(f"module 'graftkit' has no attribute {name!r}")


__all__ = ["fit", "load", "evaluate", "TrainConfig", "rank", "lr_find", "tune", "curve", "GraftError", "__version__"]
