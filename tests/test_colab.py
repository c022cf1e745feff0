"""Colab: each chapter's "Colab" link, and the notebook it opens.

Colab opens a notebook from GitHub at
``https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/<path>.ipynb``.
The Pages workflow writes every executed chapter with ``tools/colab.py`` (an
install cell first, then the chapter's cells with their outputs) and pushes them
to the branch ``gdla_colab_branch`` of ``_config.yml``; the book's extension links
each chapter page there. Colab itself cannot be reached from here: these tests
check the link, the notebook and the workflow step that joins the two.
"""

from __future__ import annotations

import ast
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from conftest import ROOT, is_notebook, toc_docnames

sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import colab  # noqa: E402  (tools/ is not a package)
import gdla_publish  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
BRANCH = CONFIG["sphinx"]["config"]["gdla_colab_branch"]
REPOSITORY = CONFIG["repository"]["url"]
NOTEBOOKS = [docname for docname in toc_docnames() if is_notebook(docname)]
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
# What a Colab runtime has before the install cell runs (Colab's own image).
COLAB_PREINSTALLED = {"torch", "numpy", "matplotlib", "IPython", "scipy", "pandas"}


def expected_url(docname: str) -> str:
    owner_repo = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/{docname}.ipynb"


class Links(HTMLParser):
    """The ``href`` of every link of a page, with the classes of the link."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append((values["href"] or "", values.get("class") or ""))


def page_links(path: Path) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.links


def code_sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def test_the_colab_link_form() -> None:
    assert BRANCH and CONFIG["repository"]["branch"] != BRANCH, "a branch of its own"
    url = gdla_publish.colab_url(REPOSITORY, BRANCH, "book/tensors")
    assert url == expected_url("book/tensors")
    assert re.fullmatch(
        r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w.-]+/book/tensors\.ipynb",
        url,
    )
    # The theme's own Colab button would open the .md of the main branch: it stays off.
    assert not CONFIG["launch_buttons"]["colab_url"]


def test_the_install_line_installs_gdla_from_the_release_by_default() -> None:
    version = colab.release_tag()
    assert version == "v" + __import__("gdla").__version__
    line = colab.install_line(version, colab.repository_url())
    assert line == f'%pip install --quiet myst-nb "gdla @ git+{REPOSITORY}@{version}"'


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_the_notebook_has_the_install_cell_first_then_the_chapter(docname: str) -> None:
    chapter = jupytext.read(ROOT / f"{docname}.md")
    line = colab.install_line("0123abc", REPOSITORY)
    notebook = colab.colab_notebook(chapter, line)
    nbformat.validate(notebook)
    first, *rest = notebook.cells
    assert first.cell_type == "code"
    assert first.source.splitlines()[-1] == line
    assert colab.INSTALL_TAG in first.metadata["tags"]
    assert code_sources(nbformat.from_dict({**notebook, "cells": rest})) == code_sources(chapter)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert len(chapter.cells) == len(notebook.cells) - 1, "the chapter itself is not changed"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_what_a_chapter_imports_is_on_colab_or_installed_by_the_first_cell(docname: str) -> None:
    installed = set(COLAB_PREINSTALLED) | {"gdla", "myst_nb"}
    assert "myst-nb" in colab.install_line("v0", REPOSITORY)
    modules = set()
    for cell in jupytext.read(ROOT / f"{docname}.md").cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    missing = modules - set(sys.stdlib_module_names) - installed
    assert not missing, f"{docname} imports what Colab lacks and the install cell omits: {missing}"


def test_the_tool_writes_one_notebook_per_executed_chapter(tmp_path: Path) -> None:
    executed = tmp_path / "jupyter_execute"
    for docname in NOTEBOOKS:
        path = executed / f"{docname}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(jupytext.read(ROOT / f"{docname}.md"), path)
    out = tmp_path / "colab"
    # Chapters that were never executed (no outputs, no cache) are refused.
    assert colab.main([str(executed), str(out), "--ref", "abc123"]) == 1
    for docname in NOTEBOOKS:
        path = executed / f"{docname}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        code = next(cell for cell in notebook.cells if cell.cell_type == "code")
        code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        nbformat.write(notebook, path)
    assert colab.main([str(executed), str(out), "--ref", "abc123"]) == 0
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*.ipynb"))
    assert written == sorted(f"{docname}.ipynb" for docname in NOTEBOOKS)
    first = nbformat.read(out / f"{NOTEBOOKS[0]}.ipynb", as_version=4).cells[0]
    assert first.source.endswith(f'"gdla @ git+{REPOSITORY}@abc123"')
    assert colab.main([str(tmp_path / "nothing"), str(out)]) == 1


def test_the_workflow_publishes_the_notebooks_to_the_linked_branch() -> None:
    build = WORKFLOW["jobs"]["build"]["steps"]
    runs = [step for step in build if "tools/colab.py" in step.get("run", "")]
    assert len(runs) == 1
    command = runs[0]["run"].split()
    assert command[1:4] == ["tools/colab.py", "_build/jupyter_execute", "_build/colab"]
    assert command[4:] == ["--ref", '"$GITHUB_SHA"'], "gdla from the commit that built them"
    build_index = build.index(runs[0])
    (upload,) = [
        step for step in build[build_index:] if step.get("with", {}).get("path") == "_build/colab"
    ]
    assert upload["uses"].startswith("actions/upload-artifact@")
    job = WORKFLOW["jobs"]["notebooks"]
    assert job["needs"] == "build"
    assert "github.event_name != 'pull_request'" in job["if"]
    assert "refs/heads/main" in job["if"]
    assert job["permissions"] == {"actions": "read", "contents": "write"}
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert f"--name {upload['with']['name']}" in script
    assert re.search(rf"push --force \S+ HEAD:{BRANCH}$", script, re.MULTILINE)
    assert "GITHUB_TOKEN" not in script and "${{" not in script, "the token stays in env"


@pytest.mark.slow
def test_every_chapter_page_opens_its_notebook_in_colab(html_dir: Path) -> None:
    for docname in toc_docnames():
        links = [
            (href, classes)
            for href, classes in page_links(html_dir / f"{docname}.html")
            if "colab.research.google.com" in href
        ]
        if docname in NOTEBOOKS:
            assert [href for href, _ in links] == [expected_url(docname)], docname
            assert "btn-colab-button" in links[0][1].split(), "in the launch menu"
        else:
            assert links == [], f"{docname} is not executed: nothing to open in Colab"


@pytest.mark.slow
def test_the_linked_notebooks_are_the_executed_chapters(html_dir: Path, tmp_path: Path) -> None:
    executed = html_dir.parent / "jupyter_execute"
    line = colab.install_line("abc123", REPOSITORY)
    written = colab.write_notebooks(executed, tmp_path, line)
    prefix = expected_url("")[: -len(".ipynb")]
    linked = sorted(
        href.removeprefix(prefix)
        for docname in NOTEBOOKS
        for href, _ in page_links(html_dir / f"{docname}.html")
        if href.startswith(prefix)
    )
    assert sorted(str(path.relative_to(tmp_path)) for path in written) == linked
    for docname in NOTEBOOKS:
        source = nbformat.read(executed / f"{docname}.ipynb", as_version=4)
        notebook = nbformat.read(tmp_path / f"{docname}.ipynb", as_version=4)
        assert notebook.cells[0].source.endswith(line)
        assert code_sources(nbformat.from_dict({**notebook, "cells": notebook.cells[1:]})) == (
            code_sources(source)
        ), f"{docname}: not the executed chapter's cells"
        # The build's outputs, from the notebook or from the execution cache.
        assert colab.has_outputs(notebook), f"{docname}: no outputs"
