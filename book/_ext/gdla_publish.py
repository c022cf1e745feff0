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
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


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
    # sphinx_book_theme builds the launch menu at priority 501.
    app.connect("html-page-context", _add_colab_button, priority=600)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "env_version": _extensions_version(),
    }
