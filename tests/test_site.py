"""The website as a reader gets it: every page in headless Chromium, offline.

The built site is served by a local ``http.server`` on 127.0.0.1 (and one page is
opened from disk, ``file://``). Every page must load without a console error and
without a single request to another host; its math must be typeset by the
site's own MathJax and its images must load. Navigation, search, the launch and
download buttons and dark mode are exercised as a reader would. Screenshots land
in ``_build/screenshots/`` for people to look at. An offline link check of the
HTML needs no browser.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

from conftest import ROOT, h1_title, is_notebook, require_tool, toc_docnames

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


NOTEBOOKS = [docname for docname in toc_docnames() if is_notebook(docname)]


def site_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the site, relative to its root, without the copied sources."""
    return sorted(
        path.relative_to(html_dir).as_posix()
        for path in html_dir.rglob("*.html")
        if not path.relative_to(html_dir).parts[0].startswith(("_static", "_sources", "_images"))
    )


# --- the offline link check (no browser) -----------------------------------------------------


LOADING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "preconnect", "icon"}


class _Links(HTMLParser):
    """Collects element ids and the href/src of a page, and resources taken from other hosts."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.foreign_resources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("id", "name"):
            if values.get(name) and (name == "id" or tag == "a"):
                self.ids.add(values[name])
        for name in ("href", "src"):
            if name in values:
                self.links.append(values[name])
        rel = set(values.get("rel", "").split())
        if tag in ("script", "img", "iframe", "source", "video", "audio"):
            url = values.get("src", "")
        elif tag == "link" and rel & LOADING_RELS:
            url = values.get("href", "")
        else:
            return
        if urlsplit(url).netloc:
            self.foreign_resources.append(f"<{tag}> {url}")


@functools.cache
def parsed(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_internal_link_resolves(html_dir: Path) -> None:
    broken = []
    for page in site_pages(html_dir):
        source = html_dir / page
        for link in parsed(source).links:
            url = urlsplit(link)
            if url.scheme or url.netloc or link.startswith(("javascript:", "data:")) or link == "#":
                continue
            target = (source.parent / unquote(url.path)).resolve() if url.path else source
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page}: {link} (no file {target.relative_to(html_dir)})")
            elif (
                url.fragment
                and target.suffix == ".html"
                and unquote(url.fragment) not in parsed(target).ids
            ):
                broken.append(f"{page}: {link} (no id #{url.fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_no_page_takes_scripts_styles_or_images_from_another_host(html_dir: Path) -> None:
    foreign = [
        f"{page}: {resource}"
        for page in site_pages(html_dir)
        for resource in parsed(html_dir / page).foreign_resources
    ]
    assert not foreign, "\n".join(foreign)


def test_no_figure_is_shown_twice(html_dir: Path) -> None:
    """A figure made in a cell that glues it shows there too, unless the cell closes it."""
    repeated = []
    for docname in NOTEBOOKS:
        sources = re.findall(
            r'src="(\.\./_images/[^"]+)"', (html_dir / f"{docname}.html").read_text()
        )
        repeated += [f"{docname}: {src}" for src in set(sources) if sources.count(src) > 1]
    assert not repeated, "figures shown twice on a page:\n" + "\n".join(sorted(repeated))


def test_the_api_reference_documents_every_public_name(html_dir: Path) -> None:
    import gdla

    ids = parsed(html_dir / "book" / "api.html").ids
    missing = [name for name in gdla.__all__ if not {f"gdla.{name}", f"module-gdla.{name}"} & ids]
    assert not missing, f"gdla.__all__ names missing from book/api.md: {missing}"


# --- the browser ---------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site(html_dir: Path) -> Iterator[str]:
    """The built site served over HTTP on a free port of 127.0.0.1; yields its root URL."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium of the system (Playwright cannot download its own here)."""
    executable = require_tool("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """What a page did while it loaded."""

    page: object
    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)


def is_local(url: str, site_root: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme in ("file", "data", "blob", "about") or url.startswith(site_root)


MATHJAX_READY = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
}"""

UNLOADED_IMAGES = """async () => {
  const images = [...document.images];
  const settled = images.map((img) => {
    img.loading = "eager";
    if (img.complete) return null;
    return new Promise((done) => {
      img.addEventListener("load", done);
      img.addEventListener("error", done);
    });
  });
  const timeout = new Promise((done) => setTimeout(done, 15000));
  await Promise.race([Promise.all(settled), timeout]);
  return images.filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => img.getAttribute("src"));
}"""

# The text of the page's article outside code, with typeset math left out: raw
# TeX delimiters there mean math that MathJax did not typeset.
PROSE = """() => {
  const main = document.querySelector("main") || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll("pre, code, script, style, mjx-container, .highlight")
    .forEach((node) => node.remove());
  return copy.textContent;
}"""

UNTYPESET_MATH = """() => [...document.querySelectorAll("span.math, div.math")]
  .filter((node) => !node.querySelector("mjx-container"))
  .map((node) => node.textContent.slice(0, 80))"""


def visit(context: object, url: str, site_root: str, redirect: str | None = None) -> Visit:
    """Open ``url`` in a new tab (and follow it to ``redirect``), then wait for MathJax."""
    page = context.new_page()
    result = Visit(page)

    def on_console(message: object) -> None:
        if message.type == "error":
            result.errors.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: result.errors.append(f"page error: {error}"))
    page.on(
        "requestfailed",
        lambda request: result.errors.append(f"failed: {request.url} {request.failure}"),
    )

    def on_request(request: object) -> None:
        if not is_local(request.url, site_root):
            result.foreign_requests.append(request.url)

    page.on("request", on_request)
    page.goto(url, wait_until="load")
    if redirect is not None:
        page.wait_for_url(redirect, wait_until="load", timeout=10_000)
    page.evaluate(MATHJAX_READY)
    return result


def check_page(result: Visit, page_name: str) -> list[str]:
    """Problems a reader would see on the loaded page."""
    page = result.page
    problems = list(result.errors)
    problems += [f"request to another host: {url}" for url in result.foreign_requests]
    problems += [f"image did not load: {src}" for src in page.evaluate(UNLOADED_IMAGES)]
    problems += [f"math not typeset: {tex}" for tex in page.evaluate(UNTYPESET_MATH)]
    prose = page.evaluate(PROSE)
    for delimiter in ("$$", "\\(", "\\[", "\\begin{"):
        if delimiter in prose:
            at = prose.index(delimiter)
            problems.append(f"raw TeX in the text: {prose[max(0, at - 40) : at + 40]!r}")
    return [f"{page_name}: {problem}" for problem in problems]


@pytest.fixture(scope="module")
def context(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="module")
def opened(context: object) -> Iterator[dict[str, Visit]]:
    """Pages loaded once (a chapter takes about two seconds to load and typeset) and kept
    open for the tests that only read them, by URL; closed at the end of the module."""
    pages: dict[str, Visit] = {}
    yield pages
    for result in pages.values():
        result.page.close()


def open_once(
    opened: dict[str, Visit], context: object, url: str, site_root: str, redirect: str | None = None
) -> Visit:
    """:func:`visit`, or the visit of ``url`` an earlier test of this module made."""
    if url not in opened:
        opened[url] = visit(context, url, site_root, redirect)
    return opened[url]


def test_every_page_loads_offline_with_math_and_images(
    html_dir: Path, site: str, context: object, opened: dict[str, Visit]
) -> None:
    problems = []
    typeset_pages = 0
    for name in site_pages(html_dir):
        # index.html redirects to the root document
        redirect = f"{site}{toc_docnames()[0]}.html" if name == "index.html" else None
        result = open_once(opened, context, site + name, site, redirect)
        problems += check_page(result, name)
        typeset_pages += result.page.locator("mjx-container").count() > 0
    assert not problems, "\n".join(problems)
    assert typeset_pages >= len(NOTEBOOKS), "MathJax typeset fewer pages than there are chapters"


def test_a_chapter_opened_from_disk_works(html_dir: Path, browser: object) -> None:
    context = browser.new_context()
    chapter = NOTEBOOKS[0]
    result = visit(context, (html_dir / f"{chapter}.html").as_uri(), "file://")
    problems = check_page(result, f"file://{chapter}.html")
    assert result.page.locator("mjx-container").count() > 0
    context.close()
    assert not problems, "\n".join(problems)


def test_next_and_previous_links_follow_the_table_of_contents(site: str, context: object) -> None:
    docs = toc_docnames()
    page = visit(context, f"{site}{docs[0]}.html", site).page
    page.click("a.right-next")
    page.wait_for_url(f"{site}{docs[1]}.html")
    heading = page.locator("main article h1").first.inner_text().rstrip("#").strip()
    assert heading == f"1. {h1_title(docs[1])}"  # the first chapter, numbered (_toc.yml)
    page.click("a.left-prev")
    page.wait_for_url(f"{site}{docs[0]}.html")
    page.close()


def test_search_finds_gradient(site: str, context: object) -> None:
    page = visit(context, f"{site}search.html?q=gradient", site).page
    results = page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=20_000)
    count = results.count()
    hrefs = [link.get_attribute("href") for link in page.locator("#search-results a").all()]
    page.close()
    assert count > 0
    assert any(href.startswith(tuple(toc_docnames())) for href in hrefs), hrefs


@pytest.mark.parametrize("chapter", NOTEBOOKS)
def test_launch_download_and_copy_buttons(
    site: str, context: object, opened: dict[str, Visit], chapter: str
) -> None:
    repository, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    owner_repo = urlsplit(repository).path.strip("/")
    launch = CONFIG["launch_buttons"]
    interface = {"jupyterlab": "lab/tree", "classic": "tree"}[launch["notebook_interface"]]
    page = open_once(opened, context, f"{site}{chapter}.html", site).page
    hrefs = [link.get_attribute("href") for link in page.locator("a[href]").all()]

    binder = (
        f"{launch['binderhub_url']}/v2/gh/{owner_repo}/{branch}?urlpath={interface}/{chapter}.md"
    )
    assert binder in hrefs
    assert (ROOT / f"{chapter}.md").is_file()  # the file Binder opens exists in the repository
    assert repository in hrefs
    # Colab opens the executed notebook the Pages workflow publishes (tests/test_colab.py).
    colab = f"https://colab.research.google.com/github/{owner_repo}/blob/"
    colab += f"{CONFIG['sphinx']['config']['gdla_colab_branch']}/{chapter}.ipynb"
    assert [href for href in hrefs if "colab.research.google.com" in href] == [colab]

    name = chapter.rsplit("/", 1)[-1]
    for kind, suffix in (("notebook", ".ipynb"), ("source", ".md")):
        link = page.locator(f"a.btn-download-{kind}-button")
        href = link.get_attribute("href")
        assert href.endswith(f"_sources/{chapter}{suffix}"), href
        response = page.request.get(urljoin(page.url, href))
        assert response.ok, href
        if suffix == ".ipynb":
            notebook = response.json()
            assert notebook["nbformat"] == 4 and notebook["cells"], name
    assert page.locator("button.btn-download-pdf-button").count() == 1  # prints to PDF

    copy_buttons = page.locator("button.copybtn").count()
    code_blocks = page.locator("div.cell_input pre").count()
    assert code_blocks > 0 and copy_buttons >= code_blocks


def chapter_with_figure(html_dir: Path) -> str:
    for chapter in NOTEBOOKS:
        if 'src="../_images/' in (html_dir / f"{chapter}.html").read_text(encoding="utf-8"):
            return chapter
    pytest.fail("no chapter shows a figure")


def test_dark_mode_keeps_figures_on_white_and_screenshots(
    html_dir: Path, site: str, browser: object
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    light = browser.new_context(viewport={"width": 1280, "height": 900})
    page = visit(light, f"{site}{toc_docnames()[0]}.html", site).page
    assert page.locator("#pst-header .search-button__button").count() == 0, "a top search bar"
    page.screenshot(path=SCREENSHOTS / "intro.png")
    page = visit(light, f"{site}{NOTEBOOKS[0]}.html", site).page
    page.screenshot(path=SCREENSHOTS / f"{NOTEBOOKS[0].rsplit('/', 1)[-1]}.png")
    page = visit(light, f"{site}book/api.html", site).page
    page.screenshot(path=SCREENSHOTS / "api.png")
    light.close()

    chapter = chapter_with_figure(html_dir)
    dark = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = visit(dark, f"{site}{chapter}.html", site).page
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    figures = page.locator("main figure img, main div.cell_output img")
    assert figures.count() > 0
    for index in range(figures.count()):
        style = figures.nth(index).evaluate(
            "(img) => [getComputedStyle(img).backgroundColor, getComputedStyle(img).filter]"
        )
        assert style == ["rgb(255, 255, 255)", "none"], style
    figures.first.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / f"{chapter.rsplit('/', 1)[-1]}-dark.png")
    dark.close()


def chapters_with_animations(html_dir: Path) -> list[str]:
    return [
        chapter
        for chapter in NOTEBOOKS
        if 'class="animation"' in (html_dir / f"{chapter}.html").read_text(encoding="utf-8")
    ]


MIN_ANIMATED_CHAPTERS = 2


def test_animations_play_offline(html_dir: Path, site: str, context: object) -> None:
    """Each animation's player advances its frames when played, with no request elsewhere."""
    chapters = chapters_with_animations(html_dir)
    assert len(chapters) >= MIN_ANIMATED_CHAPTERS, f"animations only in {chapters}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for chapter in chapters:
        result = visit(context, f"{site}{chapter}.html", site)
        page = result.page
        players = page.locator("div.animation")
        for index in range(players.count()):
            player = players.nth(index)
            player.scroll_into_view_if_needed()
            image, slider = player.locator("img"), player.locator("input.anim-slider")
            assert image.get_attribute("alt"), f"{chapter}: an animation without alt text"
            first_source = image.get_attribute("src")
            assert first_source and first_source.startswith("data:image/png"), chapter
            player.locator("button[title='Play']").click()
            page.wait_for_function(
                "(slider) => Number(slider.value) >= 3", arg=slider.element_handle(), timeout=15_000
            )
            assert image.get_attribute("src") != first_source, f"{chapter}: frames do not change"
        page.screenshot(path=SCREENSHOTS / f"{chapter.rsplit('/', 1)[-1]}-animation.png")
        problems = check_page(result, chapter)
        page.close()
        assert not problems, "\n".join(problems)
