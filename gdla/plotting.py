"""Plotting helpers for the book, so that chapters call one line instead of
pasting matplotlib code into their cells.

Every helper draws on a given ``ax`` (or a new figure), returns the figure, and
uses a log scale where the quantity spans orders of magnitude.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "BookAnimation",
    "BookFigure",
    "new_figure",
    "plot_curves",
    "plot_convergence",
    "plot_work_precision",
    "show_images",
    "markdown_table",
]


class BookFigure(Figure):
    """A matplotlib figure that a notebook displays as a PNG image by itself.

    Figures made through pyplot are displayed by the notebook's inline backend,
    which also shows every open figure at the end of a cell (so a glued figure
    would appear twice).  A ``BookFigure`` is not registered with pyplot and
    renders itself through ``_repr_png_``, so it appears exactly where it is
    displayed or glued, with or without pyplot.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()


def new_figure(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.0, 3.4)
) -> tuple[Figure, Any]:
    """A figure and its axes, like ``plt.subplots``, but not registered with pyplot.

    A notebook shows every open pyplot figure at the end of a cell, so a figure
    made with ``plt.subplots`` and glued with ``display=False`` would appear
    twice; a bare :class:`~matplotlib.figure.Figure` appears only where it is glued.
    Returns one ``Axes`` for a 1 x 1 grid, else an array of them.

    Examples
    --------
    >>> fig, (left, right) = new_figure(1, 2)
    >>> len(fig.axes), fig._repr_png_().startswith(b"\\x89PNG")
    (2, True)
    """
    fig = BookFigure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols)


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        return new_figure(figsize=figsize)
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


def plot_work_precision(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    *,
    tolerance: float | None = None,
    ylabel: str = "residual",
    title: str = "",
) -> Figure:
    """A work–precision figure: the residual against matrix products and against seconds.

    ``curves`` maps a method's name to three sequences of equal length, one entry per
    iteration: the matrix products done so far, the seconds elapsed so far and the
    residual reached.  The left panel plots residual against products, the right one
    against seconds, both on log-log axes, each method in the same colour in both;
    ``tolerance`` draws a dotted horizontal line at the accuracy compared.

    Examples
    --------
    >>> fig = plot_work_precision({"gd": ([2, 4, 6], [0.1, 0.2, 0.3], [1e-1, 1e-2, 1e-3])},
    ...                           tolerance=1e-2)
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['matrix products', 'seconds']
    """
    fig, (left, right) = new_figure(1, 2, figsize=(8.0, 3.4))
    for label, (products, seconds, residuals) in curves.items():
        (line,) = left.loglog(np.asarray(products), np.asarray(residuals), label=label, lw=1.8)
        right.loglog(np.asarray(seconds), np.asarray(residuals), color=line.get_color(), lw=1.8)
    for ax, xlabel in ((left, "matrix products"), (right, "seconds")):
        if tolerance is not None:
            ax.axhline(tolerance, color="0.4", ls=":", lw=1)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def show_images(
    images: Mapping[str, Any],
    *,
    ncols: int | None = None,
    width: float = 2.4,
    cmap: str = "gray",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> Figure:
    """Show grayscale images side by side, each under its title, without axes.

    ``images`` maps a title (newlines allowed) to a 2-D array or tensor; they are
    laid out in rows of ``ncols`` (default: all in one row), each panel ``width``
    inches wide and as tall as the first image's aspect ratio needs.  Values are
    clipped to ``[vmin, vmax]`` by the colour map (pass ``None`` to scale each
    image to its own range).

    Examples
    --------
    >>> fig = show_images({"zeros": np.zeros((3, 2)), "ones": np.ones((3, 2))}, ncols=1)
    >>> len(fig.axes), fig.axes[1].get_title()
    (2, 'ones')
    """
    arrays = {title: np.asarray(image, dtype=float) for title, image in images.items()}
    ncols = len(arrays) if ncols is None else max(1, min(ncols, len(arrays)))
    nrows = -(-len(arrays) // ncols)
    first = next(iter(arrays.values()))
    height = width * first.shape[0] / first.shape[1] + 0.5
    fig = BookFigure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(arrays) :]:
        ax.remove()
    for ax, (title, image) in zip(axes.flat, arrays.items(), strict=False):
        ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
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


_PLAYER_GLYPHS = {
    "fa-minus": "\u2212",
    "fa-fast-backward": "\u23ee",
    "fa-step-backward": "\u23f4",
    "fa-play fa-flip-horizontal": "\u25c0",
    "fa-pause": "\u23f8",
    "fa-play": "\u25b6",
    "fa-step-forward": "\u23f5",
    "fa-fast-forward": "\u23ed",
    "fa-plus": "+",
}


class BookAnimation:
    """An animation that plays in the web page with no kernel and no network, and prints as a still.

    The website gets matplotlib's JavaScript player (``to_jshtml``) with every
    frame embedded as a PNG, so it plays from disk, offline, with no CDN; the PDF
    and any other client that prefers images gets the frame ``still`` as a PNG.

    Parameters
    ----------
    fig : Figure
        The figure the frames are drawn on (e.g. from :func:`new_figure`).
    update : callable
        ``update(frame)`` redraws ``fig`` for one element of ``frames``.
    frames : sequence
        The frames, in order.
    interval : int, optional
        Milliseconds between frames when playing.
    still : int, optional
        Index of the frame printed where animations cannot play (default: the last).
    alt : str, optional
        Alternative text describing the animation, for readers who cannot see it.

    Examples
    --------
    >>> fig, ax = new_figure()
    >>> (line,) = ax.plot([0, 1], [0, 0])
    >>> movie = BookAnimation(fig, lambda y: line.set_ydata([0, y]), [0.0, 0.5, 1.0], alt="a line")
    >>> html = movie._repr_html_()
    >>> "data:image/png;base64" in html, 'alt="a line"' in html, "http" in html, "fa-" in html
    (True, True, False, False)
    >>> movie._repr_png_().startswith(b"\\x89PNG")
    True
    """

    def __init__(
        self,
        fig: Figure,
        update: Any,
        frames: Sequence[Any],
        *,
        interval: int = 250,
        still: int = -1,
        alt: str = "",
        dpi: int = 80,
    ) -> None:
        self.fig = fig
        self.update = update
        self.frames = list(frames)
        self.interval = interval
        self.still = still
        self.alt = alt
        self.dpi = dpi

    def __repr__(self) -> str:
        # No memory address: a notebook's plain-text output must be the same in every run.
        return f"<BookAnimation: {len(self.frames)} frames>"

    def _repr_html_(self) -> str:
        from matplotlib.animation import FuncAnimation

        animation = FuncAnimation(
            self.fig, self.update, frames=self.frames, interval=self.interval, repeat=False
        )
        self.fig.set_dpi(self.dpi)
        html = animation.to_jshtml(default_mode="once")
        # matplotlib's player draws its buttons with Font Awesome from a CDN: the book
        # works offline, so the stylesheet goes and each icon becomes a Unicode glyph.
        html = re.sub(r"<link rel=\"stylesheet\"\s+href=\"https?://[^\"]*\">", "", html)
        for icon, glyph in _PLAYER_GLYPHS.items():
            html = html.replace(f'<i class="fa {icon}"></i>', glyph)
        alt = self.alt.replace('"', "&quot;")
        # The player's <img> gets the description; matplotlib writes it without alt text.
        return html.replace("<img id=", f'<img alt="{alt}" id=', 1)

    def _repr_png_(self) -> bytes:
        self.update(self.frames[self.still])
        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()
