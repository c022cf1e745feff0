"""Sphinx extension for publishing the book: a website that works offline.

Jupyter Book 1 always loads ``sphinx_thebe``, even with ``launch_buttons.thebe:
false``.  Its assets are useless then, and harmful: Sphinx 7.4 writes its inline
configuration script twice on every page (an asset added with ``filename=None``
after the builder started is re-added as ``''``), so every page throws
``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``, and the
script names a CDN.  With thebe off, this extension removes those assets and the
per-page thebe configuration, so that no page refers to another host.
"""

from __future__ import annotations

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
    builder = app.builder
    if hasattr(builder, "_js_files"):
        builder._js_files = [
            js
            for js in builder._js_files
            if not _is_thebe_asset(js.filename, dict(js.attributes))
        ]
        builder._css_files = [
            css for css in builder._css_files if "thebe" not in str(css.filename)
        ]


def _drop_thebe_config(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Remove the ``text/x-thebe-config`` block sphinx_thebe appends to every page."""
    if _thebe_enabled(app):
        return
    for raw in list(doctree.findall(nodes.raw)):
        text = raw.astext()
        if "x-thebe-config" in text or text.strip().startswith("<script>kernelName"):
            raw.parent.remove(raw)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("env-before-read-docs", _drop_thebe_assets, priority=900)
    app.connect("doctree-resolved", _drop_thebe_config, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
