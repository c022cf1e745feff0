"""Sphinx extension for this book: an author–year bibliography.

The book cites with ``bibtex_reference_style: author_year``, so the text reads
"Halko et al. (2011)". sphinxcontrib-bibtex's default bibliography style labels
the list alphabetically ("[HMT11]"), which the reader cannot match with the
text. This extension registers the pybtex formatting style ``gdla_author_year``
(``bibtex_default_style`` in ``_config.yml``): the entries of the ``alpha``
style, labelled as the text cites them, "[Halko et al. 2011]".

Works by one author in one year are told apart in ``references.bib`` itself, by
``year = {2020a}``, ``{2020b}``, ...: the text then cites "Arthought (2020b)"
and the list shows "[Arthought 2020b]". Should two labels still coincide, the
later ones get a suffix in the list (``tests/test_book_sources.py`` fails on
such a pair, since the text could not tell them apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx

STYLE_NAME = "gdla_author_year"


def _last_names(person: Any) -> str:
    """A person's last names as plain text (braces and LaTeX accents resolved)."""
    return " ".join(str(Text.from_latex(name)) for name in person.last_names)


def author_year_label(entry: Any) -> str:
    """'Last Year', 'Last and Last Year' or 'Last et al. Year', as the text cites the entry."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_names(person) for person in persons]
    if names and names[-1] == "others":  # "and others" in the bib file
        names = [names[0], "", ""]
    if not names:
        who = str(Text.from_latex(entry.fields.get("title", entry.key)))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who} {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):  # type: ignore[misc]
    """Labels "Author Year"; a repeated label gets a, b, ... in the list's order."""

    def format_labels(self, sorted_entries: Iterable[Any]) -> Iterator[str]:
        entries = list(sorted_entries)
        labels = [author_year_label(entry) for entry in entries]
        repeated = {label for label, count in Counter(labels).items() if count > 1}
        seen: Counter[str] = Counter()
        for label in labels:
            if label in repeated:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(AlphaStyle):  # type: ignore[misc]
    """The ``alpha`` entries, sorted by their author–year labels, then titles."""

    default_label_style = AuthorYearLabelStyle

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sort = _sort_by_label  # BaseStyle sets self.sort from its sorting style


def _sort_by_label(entries: Iterable[Any]) -> list[Any]:
    def key(entry: Any) -> tuple[str, str]:
        return author_year_label(entry).casefold(), entry.fields.get("title", "").casefold()

    return sorted(entries, key=key)


def setup(app: Sphinx) -> dict[str, object]:
    pybtex.plugin.register_plugin(
        "pybtex.style.formatting", STYLE_NAME, AuthorYearStyle, force=True
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
