"""The PDF as a reader gets it: the whole book, read back with poppler and pypdf.

``make pdf`` builds one PDF with xelatex. Its text (``pdftotext``) must hold the
title page, the contents, every chapter title, every number a chapter glues into
its prose, its code output and its numbered equations, and the bibliography; it
must embed at least as many images as the website shows figures. Everything is
derived from the sources, so a new chapter is checked without editing this file.

Tables and numbers are read back too: every number in a table of the website
must appear in the PDF as one piece, in its table's order (a table crushed into
narrow columns breaks "8.9e-16" over two lines, or loses entries past the
margin), and no number of the prose or of wrapped code may be split by a line
break.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
import json
import re
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import nbformat
import pytest
import yaml
from myst_nb.core.variables import format_plain_text

from conftest import ROOT, h1_title, is_notebook, require_tool, toc_docnames

sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402  (tools/ is not a package)

pytestmark = pytest.mark.slow

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
DOCNAMES = toc_docnames()
NOTEBOOKS = [docname for docname in DOCNAMES if is_notebook(docname)]
EXECUTED = ROOT / "_build" / "jupyter_execute"

# {glue}`key`, {glue:}`key`, {glue:any}`key`, {glue:text}`key:format`
GLUE_ROLE = re.compile(r"\{glue(:text|:any|:)?\}`([^`]+)`")
NUMBER = re.compile(r"[-+]?\d[\d,]*(\.\d*)?([eE][-+]?\d+)?%?")
MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-f]+")
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell"}


def letters(text: str) -> str:
    """Only the letters and digits, case-folded: immune to line breaks, hyphenation, dashes.

    NFKC turns the PDF's mathematical italic letters (U+1D434 ...) into plain ones.
    """
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", text).casefold())


def squeezed(text: str) -> str:
    """Without whitespace: a number split over two lines at a hyphen reads as one again."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def pdf_text(pdf_path: Path) -> str:
    pdftotext = require_tool("pdftotext", "poppler-utils")
    # -raw keeps the content stream's order: the default reading-order analysis
    # splits a wide, space-aligned tensor printout into columns.
    return subprocess.run(
        [pdftotext, "-raw", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout


def timing_glue_keys(docname: str) -> set[str]:
    """Names glued by the chapter's cells tagged ``timing`` (``glue("name", ...)`` or
    ``record(name=...)``).

    The PDF build may execute a chapter again (its execution cache is keyed on the
    sources, and a timing cell prints another time each run): values computed from
    wall-clock times can differ between the HTML store and the PDF, as their cells
    say, so they are not compared.
    """
    notebook = nbformat.read(EXECUTED / f"{docname}.ipynb", as_version=4)
    keys: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code" or "timing" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id == "record":
                keys.update(keyword.arg for keyword in node.keywords if keyword.arg)
            elif node.func.id == "glue" and node.args and isinstance(node.args[0], ast.Constant):
                keys.add(str(node.args[0].value))
    return keys


def glued_numbers(docname: str) -> list[str]:
    """Every number the chapter's prose shows through a glue role, as the PDF must read it.

    Formatted as myst-nb does. A number of one or two digits would be found
    anywhere, so it is checked together with the word that follows it ("13 goals").
    Values glued by cells tagged ``timing`` are left out (:func:`timing_glue_keys`).
    """
    source = (ROOT / f"{docname}.md").read_text(encoding="utf-8")
    store = json.loads((EXECUTED / f"{docname}.glue.json").read_text())
    timed = timing_glue_keys(docname)
    numbers = []
    for match in GLUE_ROLE.finditer(source):
        role, content = match.group(1), match.group(2)
        if "::" in content:  # a value glued in another document
            continue
        key, _, spec = content.partition(":")
        if key in timed:
            continue
        data = store[key]["data"]
        if role != ":text" and set(data) != {"text/plain"}:
            continue  # {glue} of a figure or of rich output, not text
        text = format_plain_text(data["text/plain"], spec)
        if not NUMBER.fullmatch(text):
            continue
        if sum(char.isdigit() for char in text) >= 3:
            numbers.append(text)
        elif word := re.match(r"\s*([A-Za-z]{2,})", source[match.end() :]):
            numbers.append(f"{text} {word.group(1)}")
    return numbers


def shown_text_outputs(docname: str) -> list[str]:
    """First line of every plain-text output the chapter shows (stdout and results).

    Results with a richer form (Markdown, LaTeX, an image) show that form instead.
    """
    # myst-nb writes a chapter it took from its execution cache without outputs:
    # they come from that cache then.
    notebook = colab.with_cached_outputs(
        nbformat.read(EXECUTED / f"{docname}.ipynb", as_version=4),
        EXECUTED.parent / ".jupyter_cache",
    )
    assert colab.has_outputs(notebook), f"{docname}: no outputs in the build or its cache"
    lines = []
    for cell in notebook.cells:
        if cell.cell_type != "code" or HIDDEN_OUTPUT_TAGS & set(cell.metadata.get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                text = output["text"]
            elif output.get("output_type") == "execute_result" and set(output["data"]) == {
                "text/plain"
            }:
                text = output["data"]["text/plain"]
            else:
                continue
            first = next((line for line in text.splitlines() if line.strip()), "")
            if len(letters(first)) >= 4 and not MEMORY_ADDRESS.search(first):
                lines.append(first)
    return lines


def labelled_equations(docname: str) -> int:
    source = (ROOT / f"{docname}.md").read_text(encoding="utf-8")
    return len(re.findall(r"```\{math\}[^\n]*\n:label:", source)) + len(
        re.findall(r"\$\$\s*\([\w:-]+\)", source)
    )


def test_the_pdf_has_a_title_page_contents_and_enough_pages(pdf_path: Path, pdf_text: str) -> None:
    from pypdf import PdfReader

    reader = PdfReader(pdf_path)
    assert len(reader.pages) > 5
    first_page = letters(reader.pages[0].extract_text())
    assert letters(CONFIG["title"]) in first_page
    assert letters(CONFIG["author"]) in first_page
    assert "CONTENTS" in pdf_text


@pytest.mark.parametrize("docname", DOCNAMES)
def test_every_chapter_title_is_in_the_pdf(pdf_text: str, docname: str) -> None:
    assert letters(h1_title(docname)) in letters(pdf_text)


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_every_glued_number_is_in_the_pdf(pdf_text: str, docname: str) -> None:
    numbers = glued_numbers(docname)
    assert numbers, f"{docname} glues no number into its prose"
    text, words = squeezed(pdf_text), letters(pdf_text)
    missing = [
        number
        for number in numbers
        if (letters(number) not in words if " " in number else number not in text)
    ]
    assert not missing, f"{docname}: glued numbers missing from the PDF: {missing}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_every_code_output_is_in_the_pdf(pdf_text: str, docname: str) -> None:
    text = letters(pdf_text)
    missing = [line for line in shown_text_outputs(docname) if letters(line) not in text]
    assert not missing, f"{docname}: outputs missing from the PDF: {missing}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_numbered_equations_are_in_the_pdf(pdf_text: str, docname: str) -> None:
    chapter = DOCNAMES.index(docname)  # the root is not numbered: chapters count from 1
    text = squeezed(pdf_text)
    missing = [
        f"({chapter}.{k})"
        for k in range(1, labelled_equations(docname) + 1)
        if f"({chapter}.{k})" not in text
    ]
    assert not missing, f"{docname}: equation numbers missing from the PDF: {missing}"


def test_every_figure_of_the_website_is_embedded(
    pdf_path: Path, pdf_text: str, html_dir: Path
) -> None:
    from pypdf import PdfReader

    figures = {
        src
        for docname in DOCNAMES
        for src in re.findall(
            r'src="(\.\./_images/[^"]+)"', (html_dir / f"{docname}.html").read_text()
        )
    }
    embedded = {
        hashlib.sha256(image.data).hexdigest()
        for page in PdfReader(pdf_path).pages
        for image in page.images
    }
    assert len(embedded) >= len(figures) > 0, "distinct images: PDF, website"
    # An output LaTeX cannot show (an SVG-only figure, HTML) falls back to its text repr.
    assert "<Figure size" not in pdf_text
    assert "<IPython.core.display" not in pdf_text


def test_the_bibliography_lists_every_reference(pdf_text: str) -> None:
    from pybtex.database import parse_file

    references = parse_file(str(ROOT / CONFIG["bibtex_bibfiles"][0]))
    text = letters(pdf_text)
    missing = [
        key
        for key, entry in references.entries.items()
        if letters(entry.fields["title"]) not in text
    ]
    assert not missing, f"bibliography entries missing from the PDF: {missing}"


class TableCells(HTMLParser):
    """The body entries (``<td>``) of every table of a page, as text, table by table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[str]] = []
        self.entry: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "td" and self.tables:
            self.entry = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.entry is not None:
            self.tables[-1].append(" ".join("".join(self.entry).split()))
            self.entry = None

    def handle_data(self, data: str) -> None:
        if self.entry is not None:
            self.entry.append(data)


def numeric_table_cells(html_dir: Path) -> list[list[str]]:
    """The numeric entries of every table of the website, one list per table, row by row."""
    tables = []
    for docname in DOCNAMES:
        parser = TableCells()
        parser.feed((html_dir / f"{docname}.html").read_text(encoding="utf-8"))
        for entries in parser.tables:
            numbers = [entry.replace("\u2212", "-") for entry in entries]
            numbers = [entry for entry in numbers if NUMBER.fullmatch(entry)]
            if numbers:
                tables.append(numbers)
    return tables


# How far (in words of the PDF's text) the next number of a table may follow the last
# one found: the prose entries of the row between them.
TABLE_GAP = 80


def intact_in_order(numbers: list[str], where: dict[str, list[int]]) -> int:
    """How many of a table's numbers the PDF's words hold whole, in the table's order.

    The table is looked for from each place where one of its first numbers is;
    from there, each number is matched to its next occurrence as a word within
    ``TABLE_GAP`` words per number passed over. A number broken over two lines
    ("8.9e-" / "16") or lost past the margin is not a word of the text.
    """
    best = 0
    for start in sorted({place for number in numbers[:3] for place in where.get(number, [])}):
        found, position, last = 0, start - 1, -1
        for index, number in enumerate(numbers):
            places = where.get(number, [])
            k = bisect.bisect_right(places, position)
            if k < len(places) and places[k] - position <= TABLE_GAP * (index - last):
                found, position, last = found + 1, places[k], index
        best = max(best, found)
    return best


def test_every_number_of_the_websites_tables_is_intact_in_the_pdf(
    pdf_text: str, html_dir: Path
) -> None:
    tables = numeric_table_cells(html_dir)
    words = [word.replace("\u2212", "-").strip(",;()[]") for word in pdf_text.split()]
    where: dict[str, list[int]] = {}
    for place, word in enumerate(words):
        where.setdefault(word, []).append(place)
    intact = [intact_in_order(numbers, where) for numbers in tables]
    total = sum(len(numbers) for numbers in tables)
    print(f"numeric table entries intact in the PDF: {sum(intact)} of {total}")
    assert total >= 50, "the website's tables hold fewer numbers than the book shows"
    damaged = [
        f"{numbers[:3]}...: {found} of {len(numbers)}"
        for numbers, found in zip(tables, intact, strict=True)
        if found < len(numbers)
    ]
    assert sum(intact) >= 0.95 * total, f"{sum(intact)} of {total} intact; {damaged}"


def test_no_table_is_wider_than_the_text(pdf_path: Path) -> None:
    """LaTeX's log of the PDF: no table (an alignment) overflows the text width."""
    log = pdf_path.with_suffix(".log").read_text(errors="replace")
    wide = re.findall(
        r"Overfull \\hbox \((\d+\.?\d*)pt too wide\) in alignment at lines (\S+)", log
    )
    assert not [(points, lines) for points, lines in wide if float(points) > 1.0], wide


# A wrapped line of code or output continues after this mark.
CONTINUED = "\u21aa"


def test_no_number_is_split_across_lines(pdf_text: str) -> None:
    """Numbers in prose, tables, code and output never break at a hyphen or a full stop."""
    lines = pdf_text.splitlines()
    split = []
    for line, following in pairwise(lines):
        head = following.lstrip()
        if head.startswith(CONTINUED):  # a wrapped line of code or output
            head = head[1:]
            if re.search(r"(\d[.eE]?|\d[eE]-|[\[(=,]-)$", line.rstrip()) and re.match(
                r"[\d.]", head
            ):
                split.append(f"{line[-20:]} | {head[:20]}")
        elif re.search(r"\d(\.\d+)?[eE]?-$", line.rstrip()) and re.match(r"\d", head):
            split.append(f"{line[-20:]} | {head[:20]}")
    assert not split, f"numbers split over two lines: {split}"
