"""The book's sources: every figure has alt text, every reference can be found and told apart.

These read the MyST sources and the bibliography only (no build, no kernel):

- a figure directive (``figure``, ``glue:figure``, ``image``) without an ``:alt:``
  option shows a reader of a screen reader the image's file name, so each needs
  one that describes the figure; so does a Markdown image ``![alt](path)``;
- every entry of ``references.bib`` has a ``url`` or a ``doi``;
- no two entries have the same authors and year, since the text cites by author
  and year ("Arthought (2020b)") and could not tell them apart.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from pybtex.database import parse_file

from conftest import ROOT

BOOK = ROOT / "book"
FIGURE_DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>figure|glue:figure|image)\}")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>[^)]+)\)")


def chapters() -> list[Path]:
    return sorted(BOOK.glob("*.md"))


def figures_without_alt(text: str) -> list[str]:
    """'line N: {directive} argument' for each figure directive of ``text`` lacking alt text."""
    lines = text.splitlines()
    missing = []
    for number, line in enumerate(lines, start=1):
        match = FIGURE_DIRECTIVE.match(line.strip())
        if not match:
            continue
        options: dict[str, str] = {}
        following = lines[number:]
        if following and following[0].strip() == "---":  # options as a YAML block
            for option_line in following[1:]:
                if option_line.strip() == "---":
                    break
                key, _, value = option_line.partition(":")
                options[key.strip()] = value.strip()
        else:
            for option_line in following:
                option = OPTION.match(option_line.strip())
                if not option:
                    break
                options[option["key"]] = option["value"]
        if not options.get("alt", "").strip():
            missing.append(f"line {number}: {line.strip()}")
    for number, line in enumerate(lines, start=1):
        for image in MARKDOWN_IMAGE.finditer(line):
            if not image["alt"].strip():
                missing.append(f"line {number}: {image.group(0)}")
    return missing


@pytest.mark.parametrize("chapter", chapters(), ids=lambda path: path.stem)
def test_every_figure_has_alt_text(chapter: Path) -> None:
    missing = figures_without_alt(chapter.read_text(encoding="utf-8"))
    assert not missing, f"{chapter.name}: figures without :alt: " + "; ".join(missing)


def test_the_alt_check_sees_a_missing_alt() -> None:
    """The check itself: a glue figure without ``:alt:`` is reported, one with it is not."""
    without = "```{glue:figure} fig_x\n:name: fig-x\n\nCaption.\n```\n"
    with_alt = "```{glue:figure} fig_x\n:name: fig-x\n:alt: A line falling.\n\nCaption.\n```\n"
    yaml_block = "```{figure} a.png\n---\nname: fig-a\nalt: A photograph.\n---\nCaption.\n```\n"
    assert figures_without_alt(without) == ["line 1: ```{glue:figure} fig_x"]
    assert figures_without_alt(with_alt) == []
    assert figures_without_alt(yaml_block) == []
    assert figures_without_alt("Text ![](plot.png) text.") == ["line 1: ![](plot.png)"]


def bibliography() -> dict[str, object]:
    return dict(parse_file(str(BOOK / "references.bib")).entries)


def test_every_reference_has_a_url_or_doi() -> None:
    missing = [
        key for key, entry in bibliography().items() if not {"url", "doi"} & set(entry.fields)
    ]
    assert not missing, f"bibliography entries without url or doi: {missing}"


def test_citations_of_one_author_and_year_are_told_apart() -> None:
    spec = importlib.util.spec_from_file_location(
        "gdla_bibliography", BOOK / "_ext" / "gdla_bibliography.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    labels: dict[str, list[str]] = {}
    for key, entry in bibliography().items():
        labels.setdefault(module.author_year_label(entry), []).append(key)
    shared = {label: keys for label, keys in labels.items() if len(keys) > 1}
    assert not shared, f"entries cited alike (give them years 2020a, 2020b, ...): {shared}"
    assert labels["Arthought 2020b"] == ["arthought2020part2"]


# --- the structure of a chapter (issue 13): prerequisites, summary, exercises, glue out of sight --

#: Pages of the table of contents that are not teaching chapters: no exercises expected.
NOT_CHAPTERS = {"book/intro", "book/reliability", "book/api", "book/bibliography"}
CODE_CELL = re.compile(r"^(?P<fence>`{3,})\{code-cell\}")
GLUE_LINE = re.compile(r"\bglue\(|\brecord\(|\.check\(")
HIDDEN_TAGS = {"remove-cell", "remove-input"}
EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}", re.MULTILINE)
EXERCISE_LABEL = re.compile(
    r"^(?:`{3,}|:{3,})\{exercise\}[^\n]*\n(?::[\w-]+:[^\n]*\n)*?:label:\s*(\S+)", re.MULTILINE
)
SOLUTION = re.compile(r"^(?:`{3,}|:{3,})\{solution(?:-start)?\}\s*(\S+)", re.MULTILINE)
#: Visible code may be at most this fraction of glue lines (``glue(``, ``record(``, ``.check(``).
GLUE_SHARE = 0.05


def toc_chapters() -> list[str]:
    """The teaching chapters of _toc.yml, in reading order (``book/tensors``...)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [entry["file"] for part in toc.get("parts", []) for entry in part["chapters"]]
    return [name for name in files if name not in NOT_CHAPTERS]


def code_cells(text: str) -> list[tuple[set[str], list[str]]]:
    """Each code cell of a MyST notebook as (its tags, its code lines without options)."""
    lines, cells, index = text.splitlines(), [], 0
    while index < len(lines):
        opening = CODE_CELL.match(lines[index].strip())
        index += 1
        if not opening:
            continue
        fence, tags, body = opening["fence"], set(), []
        if index < len(lines) and lines[index].strip() == "---":  # options as a YAML block
            index += 1
            while index < len(lines) and lines[index].strip() != "---":
                key, _, value = lines[index].partition(":")
                if key.strip() == "tags":
                    tags |= {tag.strip(" '\"") for tag in value.strip(" []").split(",")}
                index += 1
            index += 1
        while index < len(lines) and (option := OPTION.match(lines[index].strip())):
            if option["key"] == "tags":
                tags |= {tag.strip(" '\"") for tag in option["value"].strip(" []").split(",")}
            index += 1
        while index < len(lines) and lines[index].strip() != fence:
            body.append(lines[index])
            index += 1
        index += 1
        cells.append((tags - {""}, body))
    return cells


def glue_share(text: str) -> tuple[int, int]:
    """(glue lines, code lines) among the non-blank lines of the visible code cells."""
    visible = [
        line
        for tags, body in code_cells(text)
        if not tags & HIDDEN_TAGS
        for line in body
        if line.strip()
    ]
    return sum(bool(GLUE_LINE.search(line)) for line in visible), len(visible)


def structure_problems(text: str) -> list[str]:
    """What a chapter lacks of the book's structure (an empty list: nothing)."""
    problems = []
    if not re.search(r"^\*\*Prerequisites:\*\*", text, flags=re.MULTILINE):
        problems.append("no **Prerequisites:** line")
    summary = re.search(r"^## Summary\s*$", text, flags=re.MULTILINE)
    exercises = re.search(r"^## Exercises\s*$", text, flags=re.MULTILINE)
    if not summary:
        problems.append("no ## Summary section")
    if not exercises:
        problems.append("no ## Exercises section")
    elif summary and summary.start() > exercises.start():
        problems.append("## Summary comes after ## Exercises")
    section = text[exercises.end() :] if exercises else ""
    labels = EXERCISE_LABEL.findall(section)
    count = len(EXERCISE.findall(section))
    if count < 3:
        problems.append(f"{count} exercises under ## Exercises (at least 3)")
    if len(labels) != count:
        problems.append(f"{count - len(labels)} exercises without a :label:")
    solved = set(SOLUTION.findall(text))
    unsolved = [label for label in labels if label not in solved]
    if unsolved:
        problems.append(f"exercises without a solution: {unsolved}")
    return problems


def test_every_chapter_has_prerequisites_summary_and_exercises() -> None:
    problems = {
        name: found
        for name in toc_chapters()
        if (found := structure_problems((ROOT / f"{name}.md").read_text(encoding="utf-8")))
    }
    assert not problems, "\n".join(
        f"{name}: {'; '.join(found)}" for name, found in problems.items()
    )


def test_glue_is_kept_out_of_sight() -> None:
    shares = {
        name: glue_share((ROOT / f"{name}.md").read_text(encoding="utf-8"))
        for name in toc_chapters()
    }
    report = ", ".join(
        f"{name.removeprefix('book/')} {glue}/{total} = {glue / max(total, 1):.0%}"
        for name, (glue, total) in shares.items()
    )
    too_much = [name for name, (glue, total) in shares.items() if glue > GLUE_SHARE * total]
    assert not too_much, (
        f"glue lines above {GLUE_SHARE:.0%} of visible code in {too_much}: {report}"
    )


def test_the_structure_checks_see_what_is_missing() -> None:
    """The checks themselves, on small made-up chapters."""
    exercise = "```{{exercise}}\n:label: ex-{0}\n\nDo {0}.\n```\n\n"
    solution = (
        "```{{solution-start}} ex-{0}\n:class: dropdown\n```\n\nDone.\n\n"
        "```{{solution-end}}\n```\n\n"
    )
    good = "# T\n\n**Prerequisites:** none.\n\n## Summary\n\n- a\n\n## Exercises\n\n" + "".join(
        exercise.format(name) + solution.format(name) for name in "abc"
    )
    assert structure_problems(good) == []
    assert structure_problems(good.replace("**Prerequisites:** none.", "")) == [
        "no **Prerequisites:** line"
    ]
    unsolved = good.replace("```{solution-start} ex-b", "```{solution-start} ex-x")
    assert structure_problems(unsolved) == ["exercises without a solution: ['ex-b']"]
    two = good.split("```{exercise}\n:label: ex-c")[0]
    assert "2 exercises under ## Exercises (at least 3)" in structure_problems(two)
    cells = (
        "```{code-cell} ipython3\nx = 1\nrecord(x=x)\n```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-cell]\nglue('y', 2)\n"
        "claims.check(True, 'c')\n```\n\n"
        "```{code-cell} ipython3\n---\ntags: [remove-input, timing]\n---\nrecord(z=3)\n```\n"
    )
    assert glue_share(cells) == (1, 2)
