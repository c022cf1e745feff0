"""Plotting helpers for the book, so that chapters call one line instead of
pasting matplotlib code into their cells.

Every helper draws on a given ``ax`` (or a new figure), returns the figure, and
uses a log scale where the quantity spans orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_curves", "plot_convergence", "markdown_table"]


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax  # type: ignore[return-value]


def plot_curves(
    x: Sequence[float] | np.ndarray,
    curves: Mapping[str, Sequence[float] | np.ndarray],
    *,
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    styles: Sequence[str] = ("-", "--", ":", "-."),
) -> Figure:
    """Plot several named curves against the same ``x``, each in its own line style.

    Examples
    --------
    >>> fig = plot_curves([0, 1, 2], {"y": [0, 1, 4]}, title="square")
    >>> fig.axes[0].get_title()
    'square'
    """
    fig, ax = _axes(ax, (6.0, 3.2))
    for index, (label, y) in enumerate(curves.items()):
        ax.plot(np.asarray(x), np.asarray(y), styles[index % len(styles)], label=label, lw=2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_convergence(
    histories: Mapping[str, Sequence[float]],
    *,
    ax: Axes | None = None,
    title: str = "",
    ylabel: str = "residual",
    xlabel: str = "iteration",
    logx: bool = False,
    floor: float | None = None,
) -> Figure:
    """Plot residual histories (one per method or matrix) on a log scale.

    ``floor`` draws a horizontal dotted line, for a tolerance or attainable accuracy.

    Examples
    --------
    >>> fig = plot_convergence({"gd": [1.0, 0.1, 0.01]}, floor=1e-3)
    >>> fig.axes[0].get_yscale()
    'log'
    """
    fig, ax = _axes(ax, (6.0, 3.4))
    for label, history in histories.items():
        values = np.asarray(history, dtype=float)
        iterations = np.arange(1, len(values) + 1)
        ax.plot(iterations, values, label=label, lw=1.8)
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if floor is not None:
        ax.axhline(floor, color="0.4", ls=":", lw=1)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """A table that a notebook renders as Markdown (an ``IPython.display.Markdown`` object).

    Cells are converted with ``str``; a ``|`` inside a cell is escaped.

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [[1, 2]]).data)
    | a | b |
    | --- | --- |
    | 1 | 2 |
    """
    from IPython.display import Markdown

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    lines = [line(headers), "| " + " | ".join("---" for _ in headers) + " |"]
    lines += [line(row) for row in rows]
    return Markdown("\n".join(lines))
