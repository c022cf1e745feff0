"""Determinism: a chapter executed twice prints the same numbers.

Each chapter is executed again through a fresh Jupyter kernel, as a reader's
Binder session would, and its outputs are compared with those of the book
build: every text output and every glued value must be identical, except in
cells tagged ``timing`` (wall-clock measurements, marked as such in the book) or
``rounding`` (errors at the level of rounding, whose leading digit depends on the
order in which the BLAS sums: threads and memory alignment differ between runs).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402  (tools/ is not a package)

pytestmark = pytest.mark.slow

TEXT_MIMES = ("text/plain", "text/markdown", "text/latex")
MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-f]{6,}")


def text_outputs(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, text) of every text output of cells not tagged ``timing`` or ``rounding``."""
    texts = []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for index, cell in enumerate(code_cells):
        if {"timing", "rounding"} & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                texts.append((index, output["text"]))
            for mime in TEXT_MIMES:
                if mime in output.get("data", {}):
                    texts.append((index, str(output["data"][mime])))
    return texts


def built_notebook(html_dir: Path, chapter: Path) -> nbformat.NotebookNode:
    path = html_dir.parent / "jupyter_execute" / "book" / f"{chapter.stem}.ipynb"
    # myst-nb writes a chapter it took from its execution cache without outputs
    # (an incremental build where only prose changed): they come from that cache then.
    return colab.with_cached_outputs(
        nbformat.read(path, as_version=4), html_dir.parent / ".jupyter_cache"
    )


def chapters_with_code() -> list[Path]:
    return [
        path
        for path in sorted((ROOT / "book").glob("*.md"))
        if "```{code-cell}" in path.read_text(encoding="utf-8")
    ]


@pytest.mark.parametrize("chapter", chapters_with_code(), ids=lambda path: path.stem)
def test_every_chapter_is_seeded(chapter: Path) -> None:
    assert "manual_seed(" in chapter.read_text(encoding="utf-8")


@pytest.mark.parametrize("chapter", chapters_with_code(), ids=lambda path: path.stem)
def test_outputs_hold_no_memory_addresses(html_dir: Path, chapter: Path) -> None:
    for index, text in text_outputs(built_notebook(html_dir, chapter)):
        assert not MEMORY_ADDRESS.search(text), f"code cell {index} prints an address: {text!r}"


@pytest.mark.parametrize("chapter", chapters_with_code(), ids=lambda path: path.stem)
def test_a_second_execution_prints_the_same_outputs(
    html_dir: Path, kernel_notebooks: dict[str, Any], chapter: Path
) -> None:
    first = text_outputs(built_notebook(html_dir, chapter))
    second = text_outputs(kernel_notebooks[chapter.stem])
    assert first, "the built chapter has no text outputs to compare"
    assert first == second
