"""Small HTML and PNG helpers shared by the selection reports (rank, lr-find, tune, curve).

The page uses the run report's stylesheet so every graftkit report looks the same; matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Sequence


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; every cell is escaped, numbers right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(fmt(c))}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool) else f"<td>{escape(fmt(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def img(filename: str, alt: str) -> str:
    return f'<img src="{escape(filename)}" alt="{escape(alt)}">'


def write_page(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    """Write a self-contained HTML page (inline CSS; images by relative file name).

    Args:
        path: The HTML file to write (its folder is created).
        title: Page title (escaped).
        sections: HTML fragments, already escaped by their builders.

    Returns:
        `path` as a `Path`.
    """
    from graftkit.evaluation.report import html_page

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(title, sections), encoding="utf-8")
    return path


def new_figure(width: float, height: float, ncols: int = 1):
    """A figure on its own Agg canvas (no pyplot state), and its axes."""
    from graftkit.evaluation import plots

    return plots.new_figure(width, height, ncols=ncols)


def save_figure(fig, path: str | Path) -> Path:
    """Write the PNG and clear the figure; returns `path` as a `Path`."""
    from graftkit.evaluation import plots

    return plots.save_figure(fig, path)
