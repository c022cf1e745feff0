"""Sphinx extension for this book: stale-output guard and offline MathJax.

Stale outputs
    myst-nb's jupyter cache keys a chapter on its own cells only, so a change to
    ``gdla``'s source would leave the outputs of unchanged chapters stale.  We
    keep a hash of the package's source beside the cache; when it changes, the
    cache is cleared and every chapter that imports ``gdla`` is marked outdated,
    so Sphinx re-reads it and myst-nb re-executes it.

Offline MathJax
    Sphinx loads MathJax from a CDN by default.  The book serves its own copy,
    MathJax 3 from the ``django-static-mathjax`` wheel, under ``_static/mathjax``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gdla"
HASH_FILE_NAME = "gdla-source.sha256"
MATHJAX_ENTRY = "mathjax/tex-chtml.js"


def package_hash(package: Path = PACKAGE) -> str:
    """SHA-256 over the relative paths and contents of the package's ``.py`` files."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cache_dir(app: Sphinx) -> Path:
    configured = getattr(app.config, "nb_execution_cache_path", "") or ""
    if configured:
        return Path(configured)
    return Path(app.outdir).parent / ".jupyter_cache"


def _check_package_hash(app: Sphinx) -> None:
    """Clear the execution cache when gdla's source changed since the last build."""
    cache = _cache_dir(app)
    stamp = cache.parent / HASH_FILE_NAME
    current = package_hash()
    previous = stamp.read_text().strip() if stamp.exists() else None
    app.gdla_source_changed = previous != current  # type: ignore[attr-defined]
    if app.gdla_source_changed and cache.exists():  # type: ignore[attr-defined]
        logger.info("gdla source changed: clearing the execution cache %s", cache)
        shutil.rmtree(cache)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")


def _outdated_chapters(
    app: Sphinx,
    env: BuildEnvironment,
    added: set[str],
    changed: set[str],
    removed: set[str],
) -> list[str]:
    """Mark every chapter that imports gdla as outdated after a package change."""
    if not getattr(app, "gdla_source_changed", False):
        return []
    importing = []
    for docname in env.found_docs:
        source = Path(env.doc2path(docname))
        if source.suffix == ".md" and "import gdla" in source.read_text(encoding="utf-8"):
            importing.append(docname)
    if importing:
        logger.info("gdla source changed: re-executing %s", ", ".join(sorted(importing)))
    return importing


def _mathjax_source() -> Path:
    import mathjax  # the django-static-mathjax wheel ships MathJax 3 under mathjax/static

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _use_local_mathjax(app: Sphinx) -> None:
    app.config.mathjax_path = MATHJAX_ENTRY


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    if not (target / "tex-chtml.js").exists():
        shutil.copytree(_mathjax_source(), target, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", _check_package_hash)
    app.connect("builder-inited", _use_local_mathjax)
    app.connect("env-get-outdated", _outdated_chapters)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
