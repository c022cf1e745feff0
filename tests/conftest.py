"""Shared fixtures: the book build, and system tools that some tests need.

Tests that need a system tool (TeX, Chromium, poppler) call :func:`require_tool`:
outside CI a missing tool skips the test with a one-line reason; under
``CI=true`` it fails it, since ``.ci/run`` installs every tool.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() == "true"
CHAPTERS = sorted((ROOT / "book").glob("*.md"))


def toc_docnames() -> list[str]:
    """The documents in reading order (``book/intro``, ``book/tensors``...), from _toc.yml."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    docnames = [toc["root"]]
    for part in toc.get("parts", []):
        docnames += [chapter["file"] for chapter in part["chapters"]]
    return docnames


#: Seconds a two-process run may take; a hang (a rank waiting for a collective) ends here.
TWO_RANKS_TIMEOUT = 120

#: The end of a worker script for :func:`run_two_ranks`, after it has saved its results.
WORKER_EXIT = """
dist.barrier()  # no rank tears the group down while the other still uses it
dist.destroy_process_group()
# Leave without the interpreter's teardown, where gloo's threads sometimes end the
# process with "terminate called without an active exception" (torch 2.13).
sys.stdout.flush()
os._exit(0)
"""


def run_two_ranks(folder: Path, worker: str) -> list[dict[str, Any]]:
    """Run ``worker`` (a script that saves ``rank{r}.pt`` in the folder given as its
    argument) on two ranks of one ``torchrun`` launch (gloo, loopback, one thread
    each) and return what each rank saved; fail on a non-zero exit or a hang."""
    import torch

    script = folder / "worker.py"
    script.write_text(worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(script), str(folder)]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=TWO_RANKS_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the 2-process run hung for {TWO_RANKS_TIMEOUT} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def is_notebook(docname: str) -> bool:
    """Whether myst-nb executes the document: a kernelspec in its front matter."""
    text = (ROOT / f"{docname}.md").read_text(encoding="utf-8")
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


def h1_title(docname: str) -> str:
    """The document's title, its first ``# `` heading."""
    text = (ROOT / f"{docname}.md").read_text(encoding="utf-8")
    match = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
    assert match, f"{docname}.md has no # title"
    return match.group(1).strip()


def require_tool(name: str, debian_package: str) -> str:
    """Return the path of executable ``name``; skip (or fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (apt-get install {debian_package})"
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return path


def build_book(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the README's build command on the book at ``root``; return the finished process."""
    return subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(root), "-W", "-n", "--keep-going", *extra],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def html_dir() -> Path:
    """The website, built once per test session with the same command as ``make book``."""
    process = build_book(ROOT)
    if process.returncode != 0:
        pytest.fail(f"book build failed:\n{process.stdout[-4000:]}\n{process.stderr[-4000:]}")
    return ROOT / "_build" / "html"


@pytest.fixture(scope="session")
def pdf_path() -> Path:
    """The whole book as one PDF, built once per test session like ``make pdf`` (xelatex)."""
    for tool, package in (("xelatex", "texlive-xetex"), ("latexmk", "latexmk")):
        require_tool(tool, package)
    latex = ROOT / "_build" / "latex"
    shutil.rmtree(latex, ignore_errors=True)  # a stale LaTeX build keeps failing
    process = build_book(ROOT, "--builder", "pdflatex")
    pdf = latex / "book.pdf"
    if process.returncode != 0 or not pdf.exists():
        log = latex / "book.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        output = f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
        pytest.fail(f"PDF build failed:\n{output}\n{tail}")
    return pdf


@pytest.fixture(scope="session")
def kernel_notebooks() -> dict[str, object]:
    """Every chapter executed once through a fresh Jupyter kernel, as a Binder reader would.

    jupytext reads the MyST chapter into a notebook and nbclient runs it with the
    ``python3`` kernel of this environment, in ``book/``. Returns the executed
    notebooks by chapter name (``"tensors"``); a failing chapter fails the fixture.
    """
    import jupytext
    from nbclient import NotebookClient

    executed = {}
    for chapter in CHAPTERS:
        notebook = jupytext.read(chapter)
        if not any(cell.cell_type == "code" for cell in notebook.cells):
            continue
        client = NotebookClient(
            notebook,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(chapter.parent)}},
        )
        client.execute()
        executed[chapter.stem] = notebook
    return executed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the bad-input table of tests/test_bad_input.py when it ran."""
    module = sys.modules.get("test_bad_input")
    lines = module.summary_lines() if module is not None else []
    if lines:
        terminalreporter.section("bad input, measured")
        for line in lines:
            terminalreporter.write_line(line)
