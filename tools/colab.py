"""The chapters as Colab notebooks: each executed chapter, with an install cell first.

Colab opens notebooks from GitHub, by the address
``https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/<path>.ipynb``,
and only ``.ipynb`` files, while the chapters are MyST markdown. After the book is
built, the Pages workflow runs

    python tools/colab.py _build/jupyter_execute _build/colab --ref "$GITHUB_SHA"

and pushes ``_build/colab`` to the ``notebooks`` branch (one commit, replaced on
every push to ``main``). ``_build/colab/book/tensors.ipynb`` is the executed
chapter as the website shows it (every cell, the hidden ones included, with its
outputs), after one new first cell that installs what a fresh Colab runtime lacks:
``myst-nb`` (the chapters glue their numbers with ``myst_nb.glue``) and ``gdla``
from the commit that built the notebook, so the package and the chapter always
match. The book's extension (``book/_ext/gdla_publish.py``) adds the matching
"Colab" entry to each chapter's launch menu.

Without ``--ref``, ``gdla`` is installed from the release tag ``v<version>`` of
``pyproject.toml``: right for a build of a release.

The outputs come from the build's execution cache (``_build/.jupyter_cache``,
beside the executed notebooks): myst-nb writes a chapter it took from the cache
without them. A chapter with code but no outputs fails the command.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: The tag on the install cell, so that a reader (or a test) can tell it from the chapter's.
INSTALL_TAG = "colab-install"


def repository_url(root: Path = ROOT) -> str:
    """The book's GitHub repository, from ``_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    return str(config["repository"]["url"]).rstrip("/")


def release_tag(root: Path = ROOT) -> str:
    """``v<version>``, the version written once in ``pyproject.toml``."""
    return "v" + tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def install_line(ref: str, repository: str) -> str:
    """The ``%pip`` line that installs ``myst-nb`` and ``gdla`` at ``ref`` (a tag or commit)."""
    return f'%pip install --quiet myst-nb "gdla @ git+{repository}@{ref}"'


def chapter_docnames(root: Path = ROOT) -> list[str]:
    """The documents of ``_toc.yml`` in reading order (``book/intro``, ``book/tensors``...)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    docnames = [toc["root"]]
    for part in toc.get("parts", []):
        docnames += [chapter["file"] for chapter in part["chapters"]]
    return docnames


def colab_notebook(executed: nbformat.NotebookNode, line: str) -> nbformat.NotebookNode:
    """A copy of the executed chapter ``executed`` with the install cell ``line`` first."""
    notebook = nbformat.from_dict(executed)
    install = nbformat.v4.new_code_cell(
        "# Colab: install the book's package, gdla, and myst-nb (the chapter glues its\n"
        "# numbers with myst_nb.glue). Run this cell first.\n" + line,
        metadata={"tags": [INSTALL_TAG]},
    )
    notebook.cells = [install, *notebook.cells]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.validate(notebook)
    return notebook


def has_outputs(notebook: nbformat.NotebookNode) -> bool:
    return any(cell.get("outputs") for cell in notebook.cells)


def with_cached_outputs(notebook: nbformat.NotebookNode, cache: Path) -> nbformat.NotebookNode:
    """The notebook with the outputs the execution cache ``cache`` holds for its code, if any."""
    if has_outputs(notebook) or not (cache / "global.db").is_file():
        return notebook
    from jupyter_cache import get_cache  # myst-nb's cache

    try:
        _, merged = get_cache(cache).merge_match_into_notebook(notebook)
    except KeyError:  # not in the cache: the code changed since it ran
        return notebook
    return merged


def write_notebooks(
    executed_dir: Path, out_dir: Path, line: str, root: Path = ROOT, cache: Path | None = None
) -> list[Path]:
    """Write ``out_dir/<docname>.ipynb`` for every executed chapter of the table of contents.

    Outputs missing from an executed notebook are taken from the execution cache
    ``cache`` (default: ``.jupyter_cache`` beside ``executed_dir``). A document
    with no executed notebook (one without code, such as the bibliography) is
    skipped; the written paths are returned in reading order.
    """
    cache = executed_dir.parent / ".jupyter_cache" if cache is None else cache
    written = []
    for docname in chapter_docnames(root):
        source = executed_dir / f"{docname}.ipynb"
        if not source.is_file():
            continue
        executed = with_cached_outputs(nbformat.read(source, as_version=4), cache)
        notebook = colab_notebook(executed, line)
        target = out_dir / f"{docname}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("executed", type=Path, help="myst-nb's executed notebooks")
    parser.add_argument("out", type=Path, help="where to write the Colab notebooks")
    parser.add_argument("--ref", help="the tag or commit of gdla to install (default: release)")
    args = parser.parse_args(argv)
    line = install_line(args.ref or release_tag(), repository_url())
    written = write_notebooks(args.executed, args.out, line)
    if not written:
        print(f"no executed chapter under {args.executed}", file=sys.stderr)
        return 1
    bare = [
        path
        for path in written
        if not has_outputs(notebook := nbformat.read(path, as_version=4))
        and any(cell.cell_type == "code" for cell in notebook.cells[1:])
    ]
    if bare:
        print(f"chapters without outputs (build the book first): {bare}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
