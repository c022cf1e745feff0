"""Binder: the files repo2docker reads, and every chapter run through a Jupyter kernel.

mybinder.org cannot be reached from here, so the ``binder/`` folder is checked
for what repo2docker expects, the package list against what the chapters
import, postBuild's JupyterLab setting by running it, and the chapters by
executing each through a fresh ``python3`` kernel (the session fixture
``kernel_notebooks``: jupytext, nbformat, nbclient), as a Binder reader runs them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import jupytext
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import BIN, ROOT, is_notebook, toc_docnames

pytestmark = pytest.mark.slow

BINDER = ROOT / "binder"
NOTEBOOKS = [docname for docname in toc_docnames() if is_notebook(docname)]
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
# Files by which repo2docker would pick another environment than requirements.txt.
OTHER_ENVIRONMENTS = ("environment.yml", "Pipfile", "Pipfile.lock", "setup.py", "Project.toml")


def binder_requirements() -> dict[str, Requirement]:
    requirements = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            requirements[canonicalize_name(requirement.name)] = requirement
    return requirements


def imported_modules(docname: str) -> set[str]:
    """Top-level names of every module the chapter's code cells import."""
    notebook = jupytext.read(ROOT / f"{docname}.md")
    modules = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        # IPython magics and shell escapes are not Python.
        code = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_binder_folder_is_what_repo2docker_reads() -> None:
    assert (BINDER / "requirements.txt").is_file()
    assert re.fullmatch(r"python-3\.11\s*", (BINDER / "runtime.txt").read_text())
    assert not [name for name in OTHER_ENVIRONMENTS if (BINDER / name).exists()]

    lines = [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    assert CPU_INDEX in lines, "torch must come from the CPU-only index"
    assert CPU_INDEX not in (ROOT / "requirements.txt").read_text()
    assert "torch" in binder_requirements()

    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "postBuild must be executable"
    script = post_build.read_text()
    assert script.startswith("#!/bin/bash") or script.startswith("#!/usr/bin/env bash")
    assert re.search(r"^set -e", script, flags=re.MULTILINE)
    assert re.search(r"pip install (--no-deps )?-e \.$", script, flags=re.MULTILINE)
    subprocess.run(["bash", "-n", str(post_build)], check=True)


def test_binder_pins_match_the_book_build() -> None:
    """Binder runs the chapters with the versions the book was built and tested with."""
    pins = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    for name, requirement in binder_requirements().items():
        if name in pins:
            assert requirement.specifier == pins[name], name


def test_gdla_dependencies_are_installed_on_binder() -> None:
    """postBuild installs gdla with --no-deps: binder/requirements.txt must list its own."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {canonicalize_name(Requirement(line).name) for line in project["dependencies"]}
    assert not needed - binder_requirements().keys()


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_every_package_a_chapter_imports_is_installed_on_binder(docname: str) -> None:
    distributions = packages_distributions()
    listed = binder_requirements()
    missing = []
    for module in sorted(imported_modules(docname) - set(sys.stdlib_module_names)):
        if module == "gdla":  # installed by postBuild from the repository itself
            continue
        names = {canonicalize_name(name) for name in distributions.get(module, [module])}
        if not names & listed.keys():
            missing.append(f"{module} (distribution {', '.join(sorted(names))})")
    assert not missing, f"{docname} imports what binder/requirements.txt lacks: {missing}"


def test_post_build_makes_jupyterlab_open_markdown_chapters_as_notebooks(tmp_path: Path) -> None:
    commands = [
        line
        for line in (BINDER / "postBuild").read_text().splitlines()
        if line.startswith("jupytext-config ")
    ]
    assert commands
    env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER")}
    env["HOME"] = str(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, check=True)
    overrides = tmp_path / ".jupyter" / "labconfig" / "default_setting_overrides.json"
    viewers = json.loads(overrides.read_text())["@jupyterlab/docmanager-extension:plugin"]
    assert viewers["defaultViewers"]["markdown"] == "Jupytext Notebook"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_chapter_runs_through_a_jupyter_kernel(kernel_notebooks: dict, docname: str) -> None:
    notebook = kernel_notebooks[docname.rsplit("/", 1)[-1]]
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert outputs, f"{docname} produced no output"
    assert not [output for output in outputs if output.get("output_type") == "error"]
