"""The repository as a maintainer or a contributor meets it.

The workflows: every action pinned to a full commit SHA with its release in a
comment, the same release pinned to the same commit everywhere, permissions
asked for per job (none by default, writes never where a pull request runs),
no credentials kept by checkout; the test workflow runs the fast tests, then
the full suite with the system packages of ``.ci/run``, and keeps the book when
it fails; the weekly freshness job only reads. The release: one version in
``pyproject.toml``, ``gdla.__version__``, the top release of ``CHANGELOG.md``
and every install line of the README and the book (a tag, never a branch);
every public name has a stability status on the API page. And the workflow
linter of ``make lint`` really lints, pins included.
"""

from __future__ import annotations

import doctest
import importlib
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

import gdla
from conftest import BIN, ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SHA_PIN = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})"
    r"\s+#\s+(?P<release>v\d+(?:\.\d+){0,2})\s*$"
)
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<target>\S+)")
RELEASE_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?$")
GIT_INSTALL = re.compile(r"git\+https://github\.com/[\w.-]+/gdla(?:\.git)?(?P<ref>@[^\s\"'`)]+)?")
INSTALL_DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md")), ROOT / "binder"]

sys.path.insert(0, str(ROOT / "tools"))
import freshness  # noqa: E402  (tools/ is not a package)


def load(workflow: Path) -> dict[Any, Any]:
    document = yaml.safe_load(workflow.read_text())
    assert isinstance(document, dict), workflow.name
    return document


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The ``on:`` block (YAML 1.1 reads the bare key ``on`` as True)."""
    events = workflow.get("on", workflow.get(True))
    if isinstance(events, str):
        return {events: None}
    if isinstance(events, list):
        return dict.fromkeys(events)
    assert isinstance(events, dict)
    return events


def steps(workflow: dict[Any, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def all_uses(node: object) -> Iterator[str]:
    """Every ``uses:`` value anywhere in a parsed workflow (steps and reusable workflows)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "uses" and isinstance(value, str):
                yield value
            else:
                yield from all_uses(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_uses(item)


def run_commands(workflow: dict[Any, Any], job: str) -> str:
    return "\n".join(step.get("run", "") for step in workflow["jobs"][job]["steps"])


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def changelog_releases() -> list[tuple[str, str | None]]:
    releases = []
    for line in (ROOT / "CHANGELOG.md").read_text().splitlines():
        match = RELEASE_HEADING.match(line)
        if match:
            releases.append((match["version"], match["date"]))
    return releases


def changelog_section(version: str) -> str:
    text = (ROOT / "CHANGELOG.md").read_text()
    start = text.index(f"## [{version}]")
    end = text.find("\n## [", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_there_are_workflows_to_check() -> None:
    assert {path.name for path in WORKFLOWS} >= {"pages.yml", "test.yml", "freshness.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_release_in_a_comment(
    workflow: Path,
) -> None:
    lines = workflow.read_text().splitlines()
    uses_lines = [line for line in lines if USES_LINE.match(line)]
    # Every `uses:` the YAML holds is on a line of its own that this test reads.
    targets = [USES_LINE.match(line)["target"] for line in uses_lines]
    assert sorted(targets) == sorted(all_uses(load(workflow)))
    assert uses_lines, f"{workflow.name} uses no action"
    unpinned = [
        line.strip()
        for line in uses_lines
        if not SHA_PIN.match(line) and not USES_LINE.match(line)["target"].startswith("./")
    ]
    assert not unpinned, f"{workflow.name}: not `owner/repo@<40-hex sha> # vX.Y.Z`: {unpinned}"


def test_a_release_is_pinned_to_the_same_commit_in_every_workflow() -> None:
    commits: dict[tuple[str, str], set[str]] = {}
    releases: dict[tuple[str, str], set[str]] = {}
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            match = SHA_PIN.match(line)
            if match:
                commits.setdefault((match["action"], match["release"]), set()).add(match["sha"])
                releases.setdefault((match["action"], match["sha"]), set()).add(match["release"])
    assert commits
    assert {key: shas for key, shas in commits.items() if len(shas) > 1} == {}
    assert {key: tags for key, tags in releases.items() if len(tags) > 1} == {}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_permissions_are_asked_for_per_job_and_writes_never_run_on_pull_requests(
    workflow: Path,
) -> None:
    document = load(workflow)
    assert document.get("permissions") == {}, "grant nothing by default; each job asks"
    runs_on_pull_requests = bool({"pull_request", "pull_request_target"} & set(triggers(document)))
    for name, job in document["jobs"].items():
        assert "permissions" in job, f"{workflow.name}: job {name} has no permissions"
        permissions = job["permissions"]
        assert isinstance(permissions, dict), f"{name}: list scopes, not {permissions!r}"
        writes = sorted(scope for scope, level in permissions.items() if level == "write")
        if writes and runs_on_pull_requests:
            condition = str(job.get("if", ""))
            assert "github.event_name != 'pull_request'" in condition, (
                f"{workflow.name}: job {name} writes {writes} and may run on a pull request"
            )
        assert "timeout-minutes" in job, f"{workflow.name}: job {name} has no timeout"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_checkout_keeps_no_credentials(workflow: Path) -> None:
    for job, step in steps(load(workflow)):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, job


def test_the_test_workflow_runs_the_fast_tests_then_the_full_suite() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "test.yml")
    events = triggers(workflow)
    assert "pull_request" in events
    assert events["push"]["branches"] == ["main"]
    jobs = workflow["jobs"]
    assert re.search(r"^make test-fast$", run_commands(workflow, "fast"), re.MULTILINE)
    assert jobs["full"]["needs"] == "fast"
    assert re.search(r"^make test$", run_commands(workflow, "full"), re.MULTILINE)
    for _, step in steps(workflow):
        if str(step.get("uses", "")).startswith("actions/setup-python@"):
            assert step["with"]["python-version"] == "3.11"
    assert workflow["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert all(job["runs-on"].startswith("ubuntu-") for job in jobs.values())


def test_the_full_suite_gets_the_system_packages_of_ci_run() -> None:
    def apt_packages(script: str) -> set[str]:
        command = re.search(r"apt-get install ((?:[^\n]*\\\n)*[^\n]*)", script)
        assert command, "no apt-get install"
        words = shlex.split(command[1].replace("\\\n", " "))
        return {word for word in words if not word.startswith("-")}

    ci_run = apt_packages((ROOT / ".ci" / "run").read_text())
    workflow = load(ROOT / ".github" / "workflows" / "test.yml")
    installed = apt_packages(run_commands(workflow, "full"))
    # Ubuntu's chromium package is only a stub for the snap: the job links the
    # runner's own Chrome as `chromium` instead.
    assert ci_run - {"chromium"} <= installed, ci_run - installed
    assert "ln -s" in run_commands(workflow, "full")


def test_a_failed_full_suite_keeps_the_site_the_pdf_and_the_screenshots() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "test.yml")
    uploads = [
        step
        for _, step in steps(workflow)
        if str(step.get("uses", "")).startswith("actions/upload-artifact@")
    ]
    assert len(uploads) == 1
    assert uploads[0]["if"] == "failure()"
    kept = set(uploads[0]["with"]["path"].split())
    assert kept == {"_build/html", "_build/latex/book.pdf", "_build/screenshots"}


def test_the_freshness_job_is_weekly_reads_only_and_reports() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "freshness.yml")
    events = triggers(workflow)
    (schedule,) = events["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit(), "once a week"
    assert "pull_request" not in events and "push" not in events
    for job in workflow["jobs"].values():
        assert set(job["permissions"].values()) == {"read"}
    text = (ROOT / ".github" / "workflows" / "freshness.yml").read_text()
    assert "tools/freshness.py relax requirements.txt" in text
    assert "tools/freshness.py report constraints.txt" in text
    assert "GITHUB_STEP_SUMMARY" in text
    assert not re.search(r"git push|gh pr|pull-request", text)


def test_dependabot_proposes_new_releases_of_the_pinned_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert "github-actions" in ecosystems


def test_relax_allows_the_newest_release_of_the_same_major_version() -> None:
    relaxed = freshness.relax((ROOT / "requirements.txt").read_text())
    assert "jupyter-book>=1.0.4.post1,<2" in relaxed.splitlines()
    assert not [line for line in relaxed.splitlines() if "==" in line.split("#")[0]]
    assert freshness.relax("-r other.txt\n") == "-r other.txt\n"


def test_the_freshness_report_names_what_moved_and_fails_when_a_step_failed() -> None:
    pinned = {"numpy": "2.4.6", "torch": "2.13.0", "ruff": "0.17.6"}
    installed = {"numpy": "3.0.1", "torch": "2.13.0", "ruff": "0.18.0"}.get
    summary, ok = freshness.report(pinned, {"make lint": "failure"}, installed)
    assert not ok
    assert "| numpy | 2.4.6 | 3.0.1 | major |" in summary
    assert "| ruff | 0.17.6 | 0.18.0 | minor |" in summary
    assert "torch" not in summary
    summary, ok = freshness.report(pinned, {"make book": "success"}, {}.get)
    assert ok and "at its pin" in summary


def test_the_freshness_script_exits_nonzero_when_a_step_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    constraints = str(ROOT / "constraints.txt")
    assert freshness.main(["report", constraints, "--outcome", "make book=success"]) == 0
    assert freshness.main(["report", constraints, "--outcome", "make book=failure"]) == 1
    assert "| `make book` | failure |" in capsys.readouterr().out


def test_the_freshness_doctests() -> None:
    failures, tried = doctest.testmod(freshness)
    assert tried and not failures


def test_the_version_is_written_once_and_read_everywhere() -> None:
    version = project_version()
    Version(version)  # a valid version
    assert gdla.__version__ == version, "reinstall (pip install -e .) after a version change"
    assert changelog_releases()[0] == ("Unreleased", None)
    assert changelog_releases()[1][0] == version, "CHANGELOG.md's top release"
    init = (ROOT / "gdla" / "__init__.py").read_text()
    assert not re.search(r"__version__\s*=\s*['\"]\d+\.\d+", init), "the version is typed in gdla"


def test_the_changelog_has_this_release_with_entries_and_links() -> None:
    releases = changelog_releases()[1:]
    versions = [Version(version) for version, _ in releases]
    assert versions == sorted(versions, reverse=True), "newest first"
    dates = [date for _, date in releases]
    assert None not in dates and dates == sorted(dates, reverse=True)
    section = changelog_section(project_version())
    assert re.search(r"^### (Added|Changed|Deprecated|Removed|Fixed|Security)$", section, re.M)
    assert re.search(r"^- \S", section, re.MULTILINE), "the release lists its changes"
    text = (ROOT / "CHANGELOG.md").read_text()
    for version, _ in changelog_releases():
        assert re.search(rf"^\[{re.escape(version)}\]: https://\S+$", text, re.MULTILINE)


def install_lines() -> Iterator[tuple[Path, re.Match[str]]]:
    for location in INSTALL_DOCUMENTS:
        files = sorted(location.iterdir()) if location.is_dir() else [location]
        for path in files:
            for match in GIT_INSTALL.finditer(path.read_text()):
                yield path, match


def test_install_lines_name_this_release_tag_not_a_branch() -> None:
    found = list(install_lines())
    assert {path.name for path, _ in found} >= {"README.md", "api.md"}
    tag = f"@v{project_version()}"
    wrong = [f"{path.name}: {match[0]}" for path, match in found if match["ref"] != tag]
    assert not wrong, f"install from the tag {tag}, not a branch or another release: {wrong}"
    readme = (ROOT / "README.md").read_text()
    assert f"mybinder.org/v2/gh/gdla-book/gdla/v{project_version()}" in readme


def stability_table() -> dict[str, str]:
    """The names of the API page's stability table and their status."""
    text = (ROOT / "book" / "api.md").read_text()
    section = text.split("## Public API and stability", 1)[1].split("\n## ", 1)[0]
    statuses = {}
    for row in re.findall(r"^\|(.+)\|$", section, flags=re.MULTILINE):
        cells = [cell.strip() for cell in row.split("|")]
        for name in re.findall(r"`(gdla(?:\.\w+)+)`", cells[0]):
            statuses[name] = cells[-1]
    return statuses


def test_every_public_name_has_a_stability_status_on_the_api_page() -> None:
    statuses = stability_table()
    missing = [name for name in gdla.__all__ if f"gdla.{name}" not in statuses]
    assert not missing, f"book/api.md's stability table lacks {missing}"
    for name, status in statuses.items():
        assert re.match(r"(stable|experimental)\b", status), (name, status)
        module, _, attribute = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), f"{name} does not exist"


def actionlint(workflow: str) -> subprocess.CompletedProcess[str]:
    executable = BIN / "actionlint"
    assert executable.exists(), "actionlint is in requirements.txt (make install)"
    return subprocess.run(
        [str(executable), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", "-"],
        input=workflow,
        capture_output=True,
        text=True,
        check=False,
    )


def test_make_lint_reads_each_pin_as_its_release_so_the_inputs_are_checked() -> None:
    """Behind a SHA actionlint cannot see an action's inputs: `make lint` reads the tag too."""
    pinned = (ROOT / ".github" / "workflows" / "test.yml").read_text()
    typo = pinned.replace("persist-credentials: false", "persist-credential: false", 1)
    assert typo != pinned
    assert actionlint(typo).returncode == 0  # the pin hides the misspelt input
    makefile = (ROOT / "Makefile").read_text()
    sed = re.search(r"sed -E '(s/(.+)/(.+)/)'", makefile)
    assert sed, "the Makefile's sed that reads pins as tags"
    # sed works line by line; so does this (its [^ ]* would otherwise cross lines).
    as_tags = "\n".join(re.sub(sed[2], sed[3], line) for line in typo.splitlines())
    assert "actions/checkout@v7\n" in as_tags
    result = actionlint(as_tags)
    assert result.returncode == 1
    assert 'input "persist-credential" is not defined' in result.stdout
