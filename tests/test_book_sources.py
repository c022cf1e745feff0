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
