"""The newest versions the pins allow, and what changed: the weekly freshness job's steps.

``requirements.txt`` pins every package the book and the tests use to an exact
version (``constraints.txt`` pins what those pull in). Once a week
``.github/workflows/freshness.yml`` installs, instead, the newest release of the
same major version as each pin (``name==X.Y.Z`` becomes ``name>=X.Y.Z,<X+1``:
the upgrades a maintainer could take without a migration; jupyter-book stays
at 1.x, whose 2.x is another tool), with nothing from ``constraints.txt``, then
lints, tests and builds the book with them, and writes what it installed and
what broke to the run's summary. Nothing is merged or committed: a person reads
the summary and moves the pins.

    python tools/freshness.py relax requirements.txt > newest.txt
    python tools/freshness.py report constraints.txt --outcome lint=success ...

``report`` prints a Markdown summary (each step's outcome, then every pinned
distribution whose installed version is not its pin) and exits with status 1
when a step did not succeed, so the job fails and the people watching it hear.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)\s*(?P<rest>.*)$")


def relax(requirements: str) -> str:
    """Rewrite each exact pin as a range: at least the pin, below its next major version.

    Comments, blank lines and lines that are not exact pins are kept as they are.

    >>> print(relax("# the book\\njupyter-book==1.0.4.post1\\ntorch==2.13.0  # CPU\\n"), end="")
    # the book
    jupyter-book>=1.0.4.post1,<2
    torch>=2.13.0,<3  # CPU
    """
    lines = []
    for line in requirements.splitlines():
        match = PIN.match(line.strip())
        if match is None:
            lines.append(line)
            continue
        pinned = Version(match["version"])
        relaxed = f"{match['name']}>={pinned},<{pinned.major + 1}"
        lines.append(f"{relaxed}  {match['rest']}" if match["rest"] else relaxed)
    return "\n".join(lines) + "\n"


def pins(constraints: str) -> dict[str, str]:
    """The exact pins of a requirements or constraints file, by canonical name."""
    found = {}
    for line in constraints.splitlines():
        match = PIN.match(line.strip())
        if match is not None:
            found[canonicalize_name(match["name"])] = match["version"]
    return found


def change(pinned: str, installed: str) -> str:
    """The kind of move from ``pinned`` to ``installed``: major, minor, patch or older.

    >>> change("2.13.0", "2.14.1"), change("1.0.4", "1.0.4.post2"), change("3.1", "2.9")
    ('minor', 'patch', 'older')
    """
    old, new = Version(pinned), Version(installed)
    if new < old:
        return "older"
    if new.major != old.major:
        return "major"
    if new.minor != old.minor:
        return "minor"
    return "patch"


def report(
    pinned: Mapping[str, str],
    outcomes: Mapping[str, str],
    installed: Callable[[str], str | None],
) -> tuple[str, bool]:
    """The Markdown summary of one freshness run, and whether every step succeeded.

    ``installed(name)`` is the installed version of a distribution, or None.
    """
    ok = all(outcome == "success" for outcome in outcomes.values())
    lines = [
        "## Newest allowed versions: " + ("all steps passed" if ok else "something broke"),
        "",
        "| step | outcome |",
        "| --- | --- |",
        *(f"| `{step}` | {outcome} |" for step, outcome in outcomes.items()),
        "",
    ]
    moved = []
    for name, version in sorted(pinned.items()):
        now = installed(name)
        if now is not None and Version(now) != Version(version):
            moved.append(f"| {name} | {version} | {now} | {change(version, now)} |")
    if moved:
        lines += [
            f"{len(moved)} pinned distributions are at another version in this run:",
            "",
            "| distribution | pinned | installed | change |",
            "| --- | --- | --- | --- |",
            *moved,
        ]
    else:
        lines.append("Every pinned distribution is at its pin: the pins are the newest allowed.")
    if not ok:
        lines.append("")
        lines.append(
            "A step that passes with the pins and fails here points at one of the "
            "distributions above: its release notes, then a pin or a fix in a pull request."
            if moved
            else "Nothing moved, so no new release broke it: the step's log says what did."
        )
    return "\n".join(lines) + "\n", ok


def _installed(name: str) -> str | None:
    try:
        return installed_version(name)
    except PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    relax_parser = commands.add_parser("relax", help="print the requirements with ranges")
    relax_parser.add_argument("requirements", type=Path)
    report_parser = commands.add_parser("report", help="print the run's Markdown summary")
    report_parser.add_argument("constraints", type=Path)
    report_parser.add_argument(
        "--outcome", action="append", default=[], metavar="STEP=OUTCOME", help="repeatable"
    )
    args = parser.parse_args(argv)

    if args.command == "relax":
        sys.stdout.write(relax(args.requirements.read_text()))
        return 0
    outcomes = dict(item.split("=", 1) for item in args.outcome)
    summary, ok = report(pins(args.constraints.read_text()), outcomes, _installed)
    sys.stdout.write(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
