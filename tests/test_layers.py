"""The package's layer picture (ARCHITECTURE.md) holds in the code.

Every module under src/graftkit is parsed with `ast`; every import counts, including
function-local, `TYPE_CHECKING` and relative ones. Each module belongs to a *unit*: the first
component under `graftkit` (a subpackage such as `sources`, or a top-level module such as
`cli`). The checks:

(a) a unit imports only its own unit and units of LOWER layers (`LAYERS`, lowest first);
(b) the unit import graph has no cycle;
(c) no module uses a `_`-prefixed name or module of ANOTHER unit (imported, or as an attribute
    of an imported module);
(d) nothing inside the package imports the `graftkit` facade itself (`graftkit/__init__.py`
    is the lazy public entry point at the very top, above every layer).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "graftkit"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "lazy"),
    ("engine",),
    ("backbones",),  # the contract and its adapters over already-built networks
    ("sources",),  # model ids -> weights -> backbones
    ("data",),
    ("evaluation",),  # metrics, calibration, plots, report, model card: leaf modules below tasks
    ("tasks",),
    ("strategies",),
    ("rundir",),
    ("training",),
    ("selection",),
    ("deploy",),  # includes `graft evaluate` (deploy/evaluate.py)
    ("demo", "cli"),
    ("__main__",),  # `python -m graftkit`: the cli, run
]
"""Units from the lowest layer to the highest; units in one tuple share a layer."""

LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


@dataclass(frozen=True)
class Import:
    """One imported graftkit module or name, as written in `file` at `line`."""

    file: str
    """Path of the importing module, relative to src/graftkit (e.g. `sources/loading.py`)."""
    line: int
    target: str
    """Dotted module path under graftkit (`sources.loading`); empty for the facade itself."""
    name: str | None
    """The imported name (`from M import name`), or None for `import M` / a module attribute."""
    text: str
    """The import as written, for messages."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def unit_of(relpath: str) -> str:
    """`sources/loading.py` -> `sources`; `cli.py` -> `cli`; `__init__.py` -> `` (the facade)."""
    first = relpath.split("/", 1)[0]
    return "" if first == "__init__.py" else first.removesuffix(".py")


def _module_parts(relpath: str) -> list[str]:
    # `sources/loading.py` -> ["sources", "loading"]; `sources/__init__.py` -> ["sources"].
    parts = relpath.removesuffix(".py").split("/")
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_package(relpath: str) -> bool:
    return relpath.endswith("__init__.py")


def parse_imports(relpath: str, source: str, modules: set[str]) -> list[Import]:
    """Every graftkit import in one module, with the names it binds.

    Args:
        relpath: The module's path relative to src/graftkit.
        source: Its text.
        modules: Dotted paths (under graftkit) of every module and package, to tell
            `from graftkit.x import submodule` from `from graftkit.x import name`.

    Returns:
        One `Import` per imported module or name, plus one per `_`-prefixed attribute read on a
        name bound to a graftkit module (`loading._classifier_keys(...)`).
    """
    tree = ast.parse(source, filename=relpath)
    here = _module_parts(relpath)
    package = here if _is_package(relpath) else here[:-1]
    found: list[Import] = []
    aliases: dict[str, str] = {}  # local name -> graftkit module it is bound to
    for node in ast.walk(tree):
        text = ast.get_source_segment(source, node) if isinstance(node, (ast.Import, ast.ImportFrom)) else None
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name != "graftkit" and not alias.name.startswith("graftkit."):
                    continue
                target = alias.name.removeprefix("graftkit").removeprefix(".")
                found.append(Import(relpath, node.lineno, target, None, text or alias.name))
                if alias.asname:
                    aliases[alias.asname] = target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    continue  # above graftkit: not ours
                target = ".".join(base + (node.module.split(".") if node.module else []))
            elif node.module == "graftkit" or (node.module or "").startswith("graftkit."):
                target = node.module.removeprefix("graftkit").removeprefix(".")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in modules:  # a submodule: record it as a module import
                    found.append(Import(relpath, node.lineno, sub, None, text or sub))
                    aliases[alias.asname or alias.name] = sub
                else:
                    found.append(Import(relpath, node.lineno, target, alias.name, text or target))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            target = aliases[node.value.id]
            found.append(Import(relpath, node.lineno, target, node.attr, f"{node.value.id}.{node.attr}"))
    return sorted(found, key=lambda imp: imp.line)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def check(sources: dict[str, str]) -> dict[str, list[str]]:
    """All layer violations in a package given as {path relative to graftkit: source}.

    Returns:
        {"unknown units", "upward", "cycle", "private", "facade"} -> offending lines
        (`file:line: import`); empty lists when the package keeps its layers.
    """
    modules = {".".join(_module_parts(p)) for p in sources} - {""}
    problems: dict[str, list[str]] = {k: [] for k in ("unknown units", "upward", "cycle", "private", "facade")}
    edges: dict[tuple[str, str], list[Import]] = {}
    for relpath, source in sorted(sources.items()):
        unit = unit_of(relpath)
        if unit and unit not in LAYER_OF:
            problems["unknown units"].append(f"{relpath}: unit {unit!r} is in no layer; add it to LAYERS")
            continue
        for imp in parse_imports(relpath, source, modules):
            target_unit = imp.target.split(".", 1)[0]
            if not target_unit:
                if unit:  # the facade may import whatever it re-exports
                    problems["facade"].append(f"{imp} (import the defining module, not the graftkit facade)")
                continue
            if not unit or target_unit == unit:
                continue
            private = [p for p in imp.target.split(".")[1:] if _private(p)]
            if imp.name and _private(imp.name):
                private.append(imp.name)
            if private:
                problems["private"].append(f"{imp} (private {', '.join(private)} of {target_unit}/)")
            if target_unit not in LAYER_OF:
                continue  # reported as an unknown unit from its own files
            if LAYER_OF[target_unit] > LAYER_OF[unit]:
                problems["upward"].append(f"{imp} ({unit} is below {target_unit})")
            edges.setdefault((unit, target_unit), []).append(imp)
    for cycle in _cycles({a for a, _ in edges}, edges):
        hops = zip(cycle, cycle[1:] + cycle[:1])
        where = "; ".join(f"{a} -> {b} at {edges[(a, b)][0]}" for a, b in hops)
        problems["cycle"].append(" -> ".join(cycle + cycle[:1]) + f": {where}")
    return problems


def _cycles(nodes: set[str], edges: dict[tuple[str, str], list[Import]]) -> list[list[str]]:
    # One cycle per strongly connected component with more than one unit (Tarjan), shown as a path.
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(sorted(c), graph) for c in components]


def _path_through(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    # A simple cycle inside the component, starting at its first unit (breadth-first back to it).
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def _package_sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


@functools.lru_cache(maxsize=1)
def _package_problems() -> dict[str, list[str]]:
    """The checker's findings on the package, computed once for the five tests below."""
    return check(_package_sources())


def _report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{kind}:\n  " + "\n  ".join(lines) for kind, lines in problems.items() if lines)


def test_every_unit_has_a_layer() -> None:
    problems = _package_problems()
    assert not problems["unknown units"], _report({"unknown units": problems["unknown units"]})


def test_no_import_goes_up_a_layer() -> None:
    problems = _package_problems()
    assert not problems["upward"], "Lower layers import higher ones:\n" + _report({"upward": problems["upward"]})


def test_package_graph_has_no_cycle() -> None:
    problems = _package_problems()
    assert not problems["cycle"], "Import cycles between packages:\n" + _report({"cycle": problems["cycle"]})


def test_no_private_name_crosses_packages() -> None:
    problems = _package_problems()
    assert not problems["private"], "Private names used across packages:\n" + _report({"private": problems["private"]})


def test_nothing_imports_the_facade() -> None:
    problems = _package_problems()
    assert not problems["facade"], "Imports of the graftkit facade:\n" + _report({"facade": problems["facade"]})


# -- the checker itself can fail ------------------------------------------------------------------

_FAKE = {
    "__init__.py": "from graftkit.cli import main\n",
    "errors.py": "",
    "backbones/__init__.py": "",
    "backbones/base.py": (
        "def f():\n"
        "    from graftkit.sources._common import sha256_file\n"  # upward, private module, cycle
        "    from graftkit import load\n"  # the facade
    ),
    "sources/__init__.py": "",
    "sources/_common.py": "def sha256_file(p): ...\n",
    "sources/loading.py": (
        "from ..backbones import base\n"  # relative, downward: fine
        "from graftkit.training.fit import fit\n"  # upward
        "def _classifier_keys(): ...\n"
    ),
    "selection/__init__.py": "",
    "selection/_source.py": (
        "from graftkit.sources import loading\n"
        "from graftkit.sources.loading import _classifier_keys\n"  # private name
        "keys = loading._classifier_keys()\n"  # private attribute
        "from . import _data\n"  # own package's private module: fine
    ),
    "selection/_data.py": "",
    "deploy/__init__.py": "import graftkit.selection._source as s\n",  # private module
    "widgets/__init__.py": "",  # no layer
}


def test_checker_reports_each_kind_of_violation() -> None:
    problems = check(_FAKE)
    assert problems["unknown units"] == ["widgets/__init__.py: unit 'widgets' is in no layer; add it to LAYERS"]
    assert problems["upward"] == [
        "backbones/base.py:2: from graftkit.sources._common import sha256_file (backbones is below sources)",
        "sources/loading.py:2: from graftkit.training.fit import fit (sources is below training)",
    ]
    assert problems["facade"] == [
        "backbones/base.py:3: from graftkit import load (import the defining module, not the graftkit facade)"
    ]
    assert problems["private"] == [
        "backbones/base.py:2: from graftkit.sources._common import sha256_file (private _common of sources/)",
        "deploy/__init__.py:1: import graftkit.selection._source as s (private _source of selection/)",
        "selection/_source.py:2: from graftkit.sources.loading import _classifier_keys "
        "(private _classifier_keys of sources/)",
        "selection/_source.py:3: loading._classifier_keys (private _classifier_keys of sources/)",
    ]
    assert len(problems["cycle"]) == 1
    assert problems["cycle"][0].startswith("backbones -> sources -> backbones: backbones -> sources at backbones/base.py:2")


def test_checker_passes_a_clean_package() -> None:
    clean = {
        "__init__.py": "import graftkit.sources\n",
        "errors.py": "",
        "backbones/__init__.py": "from graftkit.errors import ConfigError\n",
        "sources/__init__.py": "from .loading import load\n",
        "sources/loading.py": "from graftkit.backbones import base\nfrom . import _common\n",
        "sources/_common.py": "",
        "cli.py": "from graftkit import sources\nfrom graftkit.demo import run\n",
        "demo.py": "",
    }
    assert not any(check(clean).values()), _report(check(clean))
