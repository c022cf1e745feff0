"""Quality gates of the book build: failures are loud and cached outputs never go stale.

Each test builds a tiny book in a temporary folder with the project's own
configuration, extension and build command, so it runs in seconds and leaves
the real build alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

pytestmark = pytest.mark.slow

FRONT_MATTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""

TOC = """format: jb-book
root: book/intro
parts:
  - caption: Chapters
    chapters:
      - file: book/probe
"""


def make_book(tmp_path: Path, probe_body: str, *, with_package: bool = False) -> Path:
    """A copy of the project's configuration with an intro and one chapter, ``book/probe.md``."""
    root = tmp_path / "book_copy"
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    for folder in ("_ext", "_static", "_extra"):
        shutil.copytree(ROOT / "book" / folder, root / "book" / folder)
    shutil.copy(ROOT / "book" / "references.bib", root / "book" / "references.bib")
    (root / "_toc.yml").write_text(TOC)
    (root / "book" / "intro.md").write_text("# Intro\n\nA probe book.\n")
    (root / "book" / "probe.md").write_text(FRONT_MATTER + probe_body)
    if with_package:
        shutil.copytree(ROOT / "gdla", root / "gdla", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def build(root: Path) -> subprocess.CompletedProcess[str]:
    # The kernel inherits PYTHONPATH, so a copied gdla shadows the installed one.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(root), "-W", "-n", "--keep-going"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def output_of(root: Path) -> str:
    return (root / "_build" / "html" / "book" / "probe.html").read_text()


def test_a_raising_cell_fails_the_build_and_names_the_chapter(tmp_path: Path) -> None:
    root = make_book(
        tmp_path,
        "# Probe\n\n```{code-cell} ipython3\nraise RuntimeError('deliberately broken')\n```\n",
    )
    process = build(root)
    assert process.returncode != 0
    log = process.stdout + process.stderr
    assert "probe" in log
    assert "deliberately broken" in log


def test_a_broken_cross_reference_fails_the_build(tmp_path: Path) -> None:
    root = make_book(tmp_path, "# Probe\n\nSee {numref}`fig-that-does-not-exist`.\n")
    process = build(root)
    assert process.returncode != 0
    assert "fig-that-does-not-exist" in process.stdout + process.stderr


def test_a_missing_figure_fails_the_build(tmp_path: Path) -> None:
    root = make_book(tmp_path, "# Probe\n\n```{figure} missing-image.png\nA caption.\n```\n")
    process = build(root)
    assert process.returncode != 0
    assert "missing-image.png" in process.stdout + process.stderr


def test_a_change_to_gdla_reexecutes_the_chapters_that_import_it(tmp_path: Path) -> None:
    body = (
        "# Probe\n\n```{code-cell} ipython3\nimport gdla\n"
        "print('ORIGINAL-SEED', gdla.original.SEED)\n```\n"
    )
    root = make_book(tmp_path, body, with_package=True)
    assert build(root).returncode == 0
    assert "ORIGINAL-SEED 314" in output_of(root)

    second = build(root)  # unchanged: served from the cache, no execution
    assert second.returncode == 0
    assert "Executing notebook" not in second.stdout + second.stderr

    original = root / "gdla" / "original.py"
    source = original.read_text()
    original.write_text(re.sub(r"^SEED = 314$", "SEED = 2718", source, flags=re.M))
    third = build(root)
    assert third.returncode == 0, third.stdout[-3000:]
    assert "ORIGINAL-SEED 2718" in output_of(root)


def test_a_contradicted_claim_fails_the_build_and_names_chapter_and_claim(tmp_path: Path) -> None:
    body = (
        "# Probe\n\n```{code-cell} ipython3\nfrom gdla.claims import Claims\n"
        "claims = Claims('probe')\nfast, slow = 2.0, 1.0\n```\n\n"
        "The first method is faster.\n\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\n"
        "claims.check(fast < slow, 'the first method is faster', fast=fast, slow=slow)\n```\n"
    )
    root = make_book(tmp_path, body, with_package=True)
    process = build(root)
    assert process.returncode != 0
    log = process.stdout + process.stderr
    assert "probe" in log
    assert '[probe] the text says "the first method is faster"' in log
    assert "fast=2" in log
