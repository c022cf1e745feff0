"""Sphinx extension for publishing the book: a website that works offline.

Jupyter Book 1 always loads ``sphinx_thebe``, even with ``launch_buttons.thebe:
false``.  Its assets are useless then, and harmful: Sphinx 7.4 writes its inline
configuration script twice on every page (an asset added with ``filename=None``
after the builder started is re-added as ``''``), so every page throws
``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``, and the
script names a CDN.  With thebe off, this extension removes those assets and the
per-page thebe configuration, so that no page refers to another host.

Colab
    Colab opens only ``.ipynb`` files from GitHub, and the chapters are markdown.
    The Pages workflow publishes every executed chapter, with a first cell that
    installs ``gdla``, to the branch ``gdla_colab_branch`` (``tools/colab.py``);
    each chapter's launch menu gets a "Colab" entry beside Binder's that opens
    it there.  The theme's own Colab button cannot do this: it would open the
    ``.md`` source of the branch Binder uses.

Tables in the PDF
    LaTeX's default ``tabulary`` shares the text width among the columns by the
    length of their content: a wide table of numbers beside a column of prose gets
    columns narrower than its numbers, which break ("8.9e-" / "16") or run into
    the margin, headers are hyphenated letter by letter, and a tall table cannot
    break across pages.  Here every table of the PDF is set in small type, never
    hyphenated; one of more than a dozen rows is a ``longtable``, which breaks
    across pages with its header repeated; and LaTeX measures the column widths
    before setting the table: a column of numbers or short words is exactly as
    wide as its widest entry (and its header's longest word), so it never wraps;
    the columns of prose share what is left of the line, in proportion to their
    length, each at least as wide as its longest word (a long name such as
    ``torch.linalg.svd_lowrank`` may break after a dot or an underscore).  Room
    left on the line goes to the columns whose header would wrap.  A table that
    does not fit is set one size smaller (``\\scriptsize``), and then with less
    space between the columns.

Numbers and code in the PDF
    A number never breaks across lines: a hyphen before a digit ("8.9e-16",
    "-0.5") allows no break, while one between letters ("heavy-ball") still does.
    Long lines of code and output wrap at spaces, commas, brackets and the like,
    but not after a full stop or a hyphen, which would split "2.14e-14"; a long
    web address may break after a hyphen.

Rebuilds
    Sphinx re-reads every page when an extension's ``env_version`` changes; this
    one's changes with the source of ``book/_ext``, so an edit there reaches
    every page (executed outputs come from the cache).

MathJax on every page
    Sphinx loads MathJax only on pages with math of their own, but the navigation
    of every page shows the chapter titles, some with math: every page loads it.

Docstrings on the API page
    ``gdla`` writes batch shapes as ``(*, m, n)`` in plain text, which reST reads
    as the start of an emphasis; outside literals such stars are escaped.  Napoleon
    reads the first line of a module constant's ``#:`` comment as ``type: text``
    when it holds a colon; the package annotates its constants instead, so
    napoleon is kept away from ``data`` and ``attribute`` docstrings.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.texescape import escape as tex_escape


def _thebe_enabled(app: Sphinx) -> bool:
    options = app.config.html_theme_options or {}
    return bool(options.get("launch_buttons", {}).get("thebe"))


def _is_thebe_asset(filename: str | None, attributes: dict[str, Any]) -> bool:
    return "thebe" in str(filename or "") or "THEBE_JS_URL" in str(attributes.get("body", ""))


def _drop_thebe_assets(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Runs after sphinx_thebe's own ``env-before-read-docs`` handler added its assets."""
    if _thebe_enabled(app):
        return
    registry = app.registry
    registry.js_files = [(f, a) for f, a in registry.js_files if not _is_thebe_asset(f, a)]
    registry.css_files = [(f, a) for f, a in registry.css_files if not _is_thebe_asset(f, a)]
    builder: Any = app.builder  # the HTML builder keeps its assets in private lists
    if hasattr(builder, "_js_files"):
        builder._js_files = [
            js for js in builder._js_files if not _is_thebe_asset(js.filename, dict(js.attributes))
        ]
        builder._css_files = [css for css in builder._css_files if "thebe" not in str(css.filename)]


def _drop_thebe_config(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Remove the ``text/x-thebe-config`` block sphinx_thebe appends to every page."""
    if _thebe_enabled(app):
        return
    for raw in list(doctree.findall(nodes.raw)):
        text = raw.astext()
        if "x-thebe-config" in text or text.strip().startswith("<script>kernelName"):
            raw.parent.remove(raw)


# Literal spans (``code``, `text`, :role:`target`) are left alone.
_LITERAL = re.compile(r"``.+?``|`[^`]*`")
# A star that opens a batch shape, "(*, m, n)", "(*batch, n)" or "(*)", and not an
# emphasis in brackets, "(*this*)": no other star before the closing bracket.
_SHAPE_STAR = re.compile(r"(?<=\()\*(?=[^*()]*\))|(?<=\[)\*(?=[^*\[\]]*\])")


# The docstrings of data and attributes as they were before napoleon, by name.
_PLAIN_DOCSTRINGS: dict[str, list[str]] = {}


def _escape_shape_stars(line: str) -> str:
    pieces, last = [], 0
    for literal in _LITERAL.finditer(line):
        pieces += [_SHAPE_STAR.sub(r"\\*", line[last : literal.start()]), literal.group()]
        last = literal.end()
    pieces.append(_SHAPE_STAR.sub(r"\\*", line[last:]))
    return "".join(pieces)


def _before_napoleon(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    lines[:] = [_escape_shape_stars(line) for line in lines]
    if what in ("data", "attribute"):
        _PLAIN_DOCSTRINGS[name] = list(lines)


def _after_napoleon(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if what in ("data", "attribute"):
        lines[:] = _PLAIN_DOCSTRINGS.pop(name, lines)


COLAB_URL = "https://colab.research.google.com"


def colab_url(repository: str, branch: str, docname: str) -> str:
    """Where Colab opens the notebook ``<docname>.ipynb`` of ``branch`` of a GitHub repository.

    >>> colab_url("https://github.com/gdla-book/gdla", "notebooks", "book/tensors")
    'https://colab.research.google.com/github/gdla-book/gdla/blob/notebooks/book/tensors.ipynb'
    """
    owner_repo = repository.removeprefix("https://github.com/").strip("/")
    return f"{COLAB_URL}/github/{owner_repo}/blob/{branch}/{docname}.ipynb"


def _add_colab_button(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Add "Colab" to the launch menu of an executed chapter (after the theme built the menu)."""
    branch = app.config.gdla_colab_branch
    repository = (app.config.html_theme_options or {}).get("repository_url", "")
    metadata = app.env.metadata.get(pagename, {})
    if not branch or "github.com/" not in repository or "kernelspec" not in metadata:
        return
    buttons = context.get("header_buttons")
    if buttons is None:
        return
    launch = next((group for group in buttons if group.get("label") == "launch-buttons"), None)
    if launch is None:
        launch = {
            "type": "group",
            "tooltip": "Launch interactive content",
            "icon": "fas fa-rocket",
            "buttons": [],
            "label": "launch-buttons",
        }
        buttons.append(launch)
    launch["buttons"].append(
        {
            "type": "link",
            "text": "Colab",
            "tooltip": "Open this chapter in Colab",
            "icon": "_static/images/logo_colab.png",
            "url": colab_url(repository, branch, pagename),
            "label": "colab-button",
        }
    )


# The LaTeX side of the table layout (see "Tables in the PDF"): measuring commands,
# the column widths from the measures, and the table's font, spacing and hyphenation.
PRINT_STY = r"""\NeedsTeXFormat{LaTeX2e}
\ProvidesPackage{gdlaprint}[2026/12/01 gdla: tables that fit the page, numbers that never break]
\newdimen\gdla@dim \newdimen\gdla@fixed \newdimen\gdla@prose \newdimen\gdla@rest
\newdimen\gdla@total \newdimen\gdla@want \newcount\gdla@col
% The width stored for column #2 under name #1 (nat: widest entry, min: longest word, w: set).
\def\gdla@get#1#2{\csname gdla@#1@\number#2\endcsname}
\def\gdla@set#1#2#3{\expandafter\xdef\csname gdla@#1@\number#2\endcsname{\the\dimexpr#3\relax}}
\def\gdla@keepmax#1#2{\ifdim\gdla@dim>\gdla@get{#1}{#2}\relax\gdla@set{#1}{#2}{\gdla@dim}\fi}
% Measures, in the table's font: an entry of column #1 set on one line, a word of it.
\newcommand\gdlaEntry[2]{\settowidth\gdla@dim{#2}\gdla@keepmax{nat}{#1}}
\newcommand\gdlaWord[2]{\settowidth\gdla@dim{#2}\gdla@keepmax{min}{#1}}
\newcommand\gdlaHeadWord[2]{\settowidth\gdla@dim{\sphinxstyletheadfamily#2}\gdla@keepmax{min}{#1}}
\newcommand\gdlaHead[2]{\settowidth\gdla@dim{\sphinxstyletheadfamily#2}\gdla@keepmax{head}{#1}}
% The width of column #1 of the table being set (a p{} column).
\newcommand\gdlaColumn[1]{\gdla@get{w}{#1}}
% Widths from the measures; #1 lists the columns' kinds: r, l (never wrap), L (prose).
\def\gdla@layout#1{%
  \gdla@fixed\z@ \gdla@prose\z@ \gdla@col\z@
  \@tfor\gdla@kind:=#1\do{\advance\gdla@col\@ne
    \gdla@dim\gdla@get{nat}\gdla@col\relax
    \if L\gdla@kind \advance\gdla@prose\gdla@dim
    \else
      \ifdim\gdla@get{min}\gdla@col>\gdla@dim \gdla@dim\gdla@get{min}\gdla@col\relax\fi
      \gdla@set{w}\gdla@col{\gdla@dim}\advance\gdla@fixed\gdla@dim
    \fi}%
  \gdla@rest\dimexpr\linewidth-\gdla@fixed-\tabcolsep*\gdla@col*2\relax
  \gdla@total\dimexpr\gdla@fixed+\tabcolsep*\gdla@col*2\relax
  \gdla@col\z@
  \@tfor\gdla@kind:=#1\do{\advance\gdla@col\@ne
    \if L\gdla@kind
      \gdla@dim\gdla@get{nat}\gdla@col\relax
      \ifdim\gdla@prose>\gdla@rest
        \ifdim\gdla@rest>\z@
          \gdla@dim\dimexpr\gdla@rest*\number\gdla@dim/\number\gdla@prose\relax
        \else \gdla@dim\z@ \fi
      \fi
      \ifdim\gdla@get{min}\gdla@col>\gdla@dim \gdla@dim\gdla@get{min}\gdla@col\relax\fi
      \gdla@set{w}\gdla@col{\gdla@dim}\advance\gdla@total\gdla@dim
    \fi}%
  % Room left on the line widens the columns whose header would otherwise wrap.
  \gdla@want\z@ \gdla@col\z@
  \@tfor\gdla@kind:=#1\do{\advance\gdla@col\@ne
    \ifdim\gdla@get{head}\gdla@col>\gdla@get{w}\gdla@col\relax
      \advance\gdla@want\dimexpr\gdla@get{head}\gdla@col-\gdla@get{w}\gdla@col\relax
    \fi}%
  \gdla@rest\dimexpr\linewidth-\gdla@total\relax
  \ifdim\gdla@want>\z@ \ifdim\gdla@rest>\z@
    \gdla@col\z@
    \@tfor\gdla@kind:=#1\do{\advance\gdla@col\@ne
      \ifdim\gdla@get{head}\gdla@col>\gdla@get{w}\gdla@col\relax
        \gdla@dim\dimexpr\gdla@get{head}\gdla@col-\gdla@get{w}\gdla@col\relax
        \ifdim\gdla@want>\gdla@rest
          \gdla@dim\dimexpr\gdla@rest*\number\gdla@dim/\number\gdla@want\relax
        \fi
        \advance\gdla@total\gdla@dim
        \gdla@set{w}\gdla@col{\gdla@get{w}\gdla@col+\gdla@dim}%
      \fi}%
  \fi\fi}
% Measure (#2: \gdlaEntry and \gdlaWord commands) and lay out (#3: kinds) in font #1.
\def\gdla@try#1#2#3{#1\relax
  \gdla@col\z@
  \@tfor\gdla@kind:=#3\do{\advance\gdla@col\@ne
    \gdla@set{nat}\gdla@col\z@ \gdla@set{min}\gdla@col\z@ \gdla@set{head}\gdla@col\z@}%
  #2\gdla@layout{#3}}
% Before a table: its font, spacing and hyphenation, and its column widths (the
% table follows in the same group, closed by \gdlaTableEnd).
\newcommand\gdlaTable[2]{\begingroup
  \setlength\tabcolsep{4pt}%
  \hyphenpenalty\@M \exhyphenpenalty\@M \uchyph\z@
  \let\sphinxhyphen\sphinxhyphennobreak
  \gdla@try\footnotesize{#1}{#2}%
  \ifdim\gdla@total>\linewidth \gdla@try\scriptsize{#1}{#2}\fi
  \ifdim\gdla@total>\linewidth \setlength\tabcolsep{2pt}\gdla@try\scriptsize{#1}{#2}\fi
  \ifdim\gdla@total>\linewidth \gdla@try\tiny{#1}{#2}\fi}
\newcommand\gdlaTableEnd{\endgroup}
% A hyphen before a digit or a sign, as in 8.9e-16, allows no line break (the
% #1 swallows the {} of the \sphinxhyphen{} mark-up); between letters it does.
\protected\def\sphinxhyphen#1{\futurelet\gdla@next\gdla@hyphen}
\def\gdla@hyphen{\ifcat\noexpand\gdla@next a-\kern\z@\else\mbox{-}\fi}
% Wrapped code and output: no break after a full stop or a hyphen (Sphinx's lists less
% those); inline code in prose still breaks after a full stop (torch.linalg.svd).
\RequirePackage{etoolbox}
\AtBeginEnvironment{sphinxVerbatim}{%
  \renewcommand*\sphinxbreaksafteractivelist{\do\,\do\;\do\?\do\!\do\/}}
\renewcommand*\sphinxbreaksafterlist{%
  \do\PYGZus\_\do\PYGZcb\}\do\PYGZca\^\do\PYGZam\&\do\PYGZgt\>\do\PYGZti\~\do\PYGZbs\\}
% A long web address may also break after a hyphen.
\AtBeginDocument{\g@addto@macro\UrlBreaks{\do\-}}
\endinput
"""

_NUMBER_CELL = re.compile(r"[-+\u2212]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+\u2212]?\d+)?\s*%?")
# A column whose entries are at most this many characters is set at its natural width.
_SHORT_ENTRY = 16
# A table with more rows may break across pages (a longtable); a shorter one is kept whole.
_ROWS_ON_ONE_PAGE = 12


def _latex_text(cell: nodes.Element) -> str:
    """The entry as the table prints it, approximately: its text, in code type if it is code."""
    text = " ".join(cell.astext().split())
    escaped = tex_escape(text, "xelatex")
    if any(True for _ in cell.findall(nodes.literal)):
        return rf"\sphinxcode{{\sphinxupquote{{{escaped}}}}}"
    return escaped


# Where a long name in prose may break: after a dot or an underscore before a letter
# ("torch.linalg.|svd_|lowrank"), never inside a number ("2.5").
_NAME_BREAK = re.compile(r"(?<=[A-Za-z][._])(?=[A-Za-z])")


def _allow_name_breaks(cell: nodes.Element) -> None:
    """Let LaTeX break the long names of a prose entry at ``_NAME_BREAK``."""
    for text in list(cell.findall(nodes.Text)):
        if isinstance(text.parent, (nodes.literal, nodes.raw, nodes.math)):
            continue
        pieces = _NAME_BREAK.split(str(text))
        if len(pieces) == 1:
            continue
        replacement: list[nodes.Node] = [nodes.Text(pieces[0])]
        for piece in pieces[1:]:
            replacement += [nodes.raw("", r"\allowbreak{}", format="latex"), nodes.Text(piece)]
        text.parent.replace(text, replacement)


def _children(node: nodes.Element, kind: type[nodes.Element]) -> list[nodes.Element]:
    return [child for child in node.children if isinstance(child, kind)]


def _simple_rows(table: nodes.table) -> tuple[list[nodes.Element], list[nodes.Element]] | None:
    """The header and body rows of a table with one group and no spanning entries."""
    groups = _children(table, nodes.tgroup)
    if len(groups) != 1:
        return None
    group = groups[0]
    header = [row for head in _children(group, nodes.thead) for row in _children(head, nodes.row)]
    body = [row for part in _children(group, nodes.tbody) for row in _children(part, nodes.row)]
    columns = int(group.get("cols", 0))
    for row in header + body:
        entries = _children(row, nodes.entry)
        if len(entries) != columns or any(e.get("morecols") or e.get("morerows") for e in entries):
            return None
    return (header, body) if body and columns else None


def _fit_table(table: nodes.table) -> bool:
    """Have LaTeX measure ``table``'s columns (see "Tables in the PDF"); False if left alone."""
    rows = _simple_rows(table)
    parent = table.parent
    if rows is None or parent is None:
        return False
    index = parent.index(table)
    if index > 0 and isinstance(parent[index - 1], addnodes.tabular_col_spec):
        return False  # the author chose the columns
    if any(
        isinstance(node, (nodes.Admonition, nodes.footnote, nodes.table))
        for node in _ancestors(table)
    ):
        return False  # a longtable cannot go into a box; leave these to Sphinx
    header, body = rows
    columns = len(_children(body[0], nodes.entry))
    kinds, measures = [], []
    for column in range(columns):
        cells = [_children(row, nodes.entry)[column] for row in body]
        texts = [" ".join(cell.astext().split()) for cell in cells]
        numeric = all(_NUMBER_CELL.fullmatch(text) for text in texts if text)
        short = max(len(text) for text in texts) <= _SHORT_ENTRY
        kinds.append("r" if numeric else "l" if short else "L")
        for cell in cells:
            latex = _latex_text(cell)
            measures.append(rf"\gdlaEntry{{{column + 1}}}{{{latex}}}")
            words = cell.astext().split()
            if kinds[-1] == "L":
                words = [part for word in words for part in _NAME_BREAK.split(word)]
                _allow_name_breaks(cell)
            measures += [
                rf"\gdlaWord{{{column + 1}}}{{{tex_escape(word, 'xelatex')}}}" for word in words
            ]
        for row in header:
            entry = _children(row, nodes.entry)[column]
            measures.append(rf"\gdlaHead{{{column + 1}}}{{{_latex_text(entry)}}}")
            measures += [
                rf"\gdlaHeadWord{{{column + 1}}}{{{tex_escape(word, 'xelatex')}}}"
                for word in entry.astext().split()
            ]
    align = {"r": r"\raggedleft", "l": r"\raggedright", "L": r"\raggedright"}
    spec = "".join(
        rf">{{{align[kind]}\arraybackslash}}p{{\gdlaColumn{{{column + 1}}}}}"
        for column, kind in enumerate(kinds)
    )
    start = "\\gdlaTable{%\n" + "%\n".join(measures) + "}{" + "".join(kinds) + "}\n"
    parent.insert(index, nodes.raw("", start, format="latex"))
    parent.insert(index + 1, addnodes.tabular_col_spec(spec=spec))
    parent.insert(index + 3, nodes.raw("", "\\gdlaTableEnd\n", format="latex"))
    if len(body) > _ROWS_ON_ONE_PAGE and "longtable" not in table["classes"]:
        table["classes"].append("longtable")
    return True


def _ancestors(node: nodes.Node) -> list[nodes.Node]:
    found = []
    while node.parent is not None:
        node = node.parent
        found.append(node)
    return found


def _fit_tables(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    if app.builder.format != "latex":
        return
    for table in list(doctree.findall(nodes.table)):
        _fit_table(table)


def _write_print_package(app: Sphinx) -> None:
    if app.builder.format == "latex":
        Path(app.outdir).mkdir(parents=True, exist_ok=True)
        (Path(app.outdir) / "gdlaprint.sty").write_text(PRINT_STY)


def _extensions_version() -> int:
    """A number that changes with the source of the book's extensions (``book/_ext``).

    Sphinx rebuilds every page when an extension's ``env_version`` changes, and
    otherwise only pages whose source changed, so that an edit here would not
    reach pages already built.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return int(digest.hexdigest()[:12], 16)


def setup(app: Sphinx) -> dict[str, object]:
    # Chapter titles with math ("The inverse and $Ax = b$") appear in the navigation
    # of every page, so every page needs MathJax, not only those with math of their own.
    app.set_html_assets_policy("always")
    app.connect("env-before-read-docs", _drop_thebe_assets, priority=900)
    app.connect("doctree-resolved", _drop_thebe_config, priority=900)
    # sphinx.ext.napoleon processes docstrings at the default priority, 500.
    app.connect("autodoc-process-docstring", _before_napoleon, priority=400)
    app.connect("autodoc-process-docstring", _after_napoleon, priority=600)
    # The branch the Pages workflow publishes the Colab notebooks to ("" for none).
    app.add_config_value("gdla_colab_branch", "", "html", types=[str])
    # The PDF's tables: measured column widths, small type, breaking across pages.
    app.add_latex_package("gdlaprint")
    app.connect("builder-inited", _write_print_package)
    app.connect("doctree-resolved", _fit_tables)
    # sphinx_book_theme builds the launch menu at priority 501.
    app.connect("html-page-context", _add_colab_button, priority=600)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "env_version": _extensions_version(),
    }
