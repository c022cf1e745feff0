"""The website build: it succeeds, and every chapter shows executed outputs and glued numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow


def toc_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_chapter_file_is_in_the_toc() -> None:
    listed = set(toc_chapters())
    on_disk = {f"book/{path.stem}" for path in (ROOT / "book").glob("*.md")}
    assert on_disk == listed


def test_index_redirects_to_the_introduction(html_dir: Path) -> None:
    assert "book/intro.html" in (html_dir / "index.html").read_text()


@pytest.mark.parametrize("chapter", [c for c in toc_chapters() if c != "book/bibliography"])
def test_chapter_page_has_no_unresolved_glue_or_error(html_dir: Path, chapter: str) -> None:
    page = (html_dir / f"{chapter}.html").read_text()
    assert "Traceback" not in page
    assert "{glue" not in page
    assert "could not find" not in page.lower()


def test_tensors_chapter_shows_the_originals_gradients(html_dir: Path) -> None:
    text = re.sub(r"<[^>]+>", "", (html_dir / "book" / "tensors.html").read_text())
    assert "16807" in text
    assert "36015" in text
    assert re.search(r"tensor\(\[ ?7, 14, 21\]\)", text)


def test_pages_load_mathjax_from_the_site_itself(html_dir: Path) -> None:
    page = (html_dir / "book" / "tensors.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page
    assert "cdn.jsdelivr" not in page
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000


@pytest.mark.parametrize("chapter", [c for c in toc_chapters() if c != "book/bibliography"])
def test_every_glued_figure_shows_an_image(html_dir: Path, chapter: str) -> None:
    # A glued object that the kernel cannot render as an image leaves an empty
    # figure with its caption and no warning: count the images inside figures.
    expected = len(re.findall(r"```\{glue:figure\}", (ROOT / f"{chapter}.md").read_text()))
    page = (html_dir / f"{chapter}.html").read_text()
    figures = re.findall(r"<figure[^>]*>.*?</figure>", page, flags=re.S)
    assert sum("<img" in figure for figure in figures) >= expected


def numbered_chapters() -> list[str]:
    """The chapters of the numbered parts of _toc.yml, in order: chapter 1, 2, ..."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] if part.get("numbered") for c in part["chapters"]]


@pytest.mark.parametrize("chapter", numbered_chapters())
def test_exercises_are_numbered_by_chapter(html_dir: Path, chapter: str) -> None:
    # "Exercise 7.2", the second exercise of chapter 7, in its title and in its solution's.
    number = numbered_chapters().index(chapter) + 1
    source = (ROOT / f"{chapter}.md").read_text()
    count = len(re.findall(r"^(?:`{3,}|:{3,})\{exercise\}", source, flags=re.MULTILINE))
    page = (html_dir / f"{chapter}.html").read_text()
    titles = re.findall(r'<span class="caption-number">Exercise (\d+)\.(\d+) </span>', page)
    assert titles == [(str(number), str(k)) for k in range(1, count + 1)], titles
    solutions = re.findall(r"Solution to<a [^>]*> Exercise (\d+)\.(\d+)</a>", page)
    assert sorted(solutions) == titles, f"solutions titled {solutions}"
    heading = re.search(r"<h1><span class=\"section-number\">(\d+)\. </span>", page)
    assert heading and heading.group(1) == str(number)
