"""Open the built book in headless Chromium: a screenshot per chapter, and what rendered.

    python -m trainattn.book.browser_check _build/html [--screenshots DIR] [--mathjax DIR]

For every page named in ``_toc.yml``, the page is loaded from ``file://`` in a
real browser (the system's Chromium, driven by Playwright's sync API through
``executable_path``: no browser is downloaded), a full-page PNG is saved, and
the page is checked:

* figures: every local ``<img>`` in the article loaded (``naturalWidth > 0``),
  and there are at least as many as the page's source produces (markdown
  images, image outputs of an executed notebook);
* tables: at least as many ``<table>`` elements as the source produces
  (markdown tables, HTML tables in outputs);
* no error on the page: error or stderr output blocks, traceback text in an
  output, docutils system messages, unresolved references, MathJax errors,
  citations that rendered empty (``[]``);
* no error in the browser: a console message of type ``error`` or an uncaught
  JavaScript exception fails the page, with its text.
* nothing clipped: a table or code block wider than its box (at the 1280 px
  window) fails the page unless something around it scrolls sideways; one that
  scrolls is a note naming its first row and widths.

Remote images (the "Open in Colab" badge) and MathJax (loaded from a CDN) need
the network; offline they are reported as notes, not failures, and so are the
console's "Failed to load resource" errors for remote URLs. With ``--mathjax
DIR`` (or ``$TRAINATTN_MATHJAX``), the root of a local copy of the ``mathjax@3``
npm package (``npm pack mathjax@3``), the browser is served that copy in place
of the CDN, so that math is typeset offline too and untypeset math becomes a
failure. Exit status: 0 every page passed, 1 some page failed, 2 no built book,
no Chromium or a browser error. Everything but :class:`Browser` is pure and
tested without a browser (``tests/test_browser_check.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# myst-nb's order of preference among an output's MIME types (HTML builder)
MIME_PRIORITY = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html",
                 "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/latex",
                 "text/plain")
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\s*(?:\w+\.)*\w*(?:Error|Exception)\b:",
                          re.MULTILINE)
_FENCE_RE = re.compile(r"^\s*(```+|~~~+)")
_MD_IMAGE_RE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
_TABLE_CELL_RE = re.compile(r"^\s*:?-+:?\s*$")
_DIRECTIVE_RE = re.compile(r"^\s*(?:```+|:::+)\s*\{([\w-]+)\}")
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"  # Sphinx's default mathjax_path prefix
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


def _remote(src: str) -> bool:
    return bool(re.match(r"^(https?:)?//", src))


# ------------------------------------------------------------ what a page should show


def _table_rule(line: str) -> bool:
    """A pipe table's delimiter row (``|---|:--:|``); a bare ``---`` is a thematic break."""
    if "|" not in line:
        return False
    cells = line.strip().strip("|").split("|")
    return all(_TABLE_CELL_RE.match(c) for c in cells)


@dataclass
class Expectation:
    """How many figures (local images) and tables a page's source produces."""

    figures: int = 0
    tables: int = 0

    def __add__(self, other: Expectation) -> Expectation:
        return Expectation(self.figures + other.figures, self.tables + other.tables)


def markdown_expectation(text: str) -> Expectation:
    """Local images and tables of MyST markdown, ignoring fenced code blocks.

    A figure is ``![alt](local/path)``, a ``{figure}``/``{image}`` directive or a raw
    ``<img>`` with a local source; a table is a pipe table (its ``|---|`` rule), a
    ``{table}``/``{list-table}``/``{csv-table}`` directive or a raw ``<table>``.
    Images from ``http(s)://`` (badges) are not counted: they need the network.
    """
    figures = tables = 0
    fence = None
    for line in text.splitlines():
        directive = _DIRECTIVE_RE.match(line)
        if directive and fence is None:
            name = directive.group(1)
            figures += name in ("figure", "image")
            tables += name in ("table", "list-table", "csv-table")
            if line.lstrip().startswith("`"):
                fence = _FENCE_RE.match(line).group(1)
            continue
        opener = _FENCE_RE.match(line)
        if opener:
            if fence is None:
                fence = opener.group(1)
            elif opener.group(1).startswith(fence[0]) and len(opener.group(1)) >= len(fence):
                fence = None
            continue
        if fence is not None:
            continue
        figures += sum(not _remote(src) for src in _MD_IMAGE_RE.findall(line))
        figures += sum(not _remote(src) for src in re.findall(r"<img[^>]*\bsrc=[\"']([^\"']+)", line))
        tables += _table_rule(line) + len(re.findall(r"<table\b", line))
    return Expectation(figures, tables)


def _output_expectation(output: dict) -> Expectation:
    if output.get("output_type") not in ("display_data", "execute_result"):
        return Expectation()
    data = output.get("data", {})
    mime = next((m for m in MIME_PRIORITY if m in data), None)
    text = data.get(mime, "")
    text = "".join(text) if isinstance(text, list) else str(text)
    if mime in ("image/svg+xml", "image/png", "image/jpeg"):
        return Expectation(figures=1)
    if mime == "text/html":
        images = [s for s in re.findall(r"<img[^>]*\bsrc=[\"']([^\"']+)", text) if not _remote(s)]
        return Expectation(len(images), len(re.findall(r"<table\b", text)))
    if mime == "text/markdown":
        return markdown_expectation(text)
    return Expectation()


def notebook_expectation(nb: dict) -> Expectation:
    """Figures and tables of an executed notebook: its markdown cells and rich outputs.

    Cells tagged ``remove-cell``/``remove-output`` (not rendered) are skipped.
    """
    total = Expectation()
    for cell in nb.get("cells", []):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "remove-cell" in tags:
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "markdown":
            total += markdown_expectation(source)
        elif cell.get("cell_type") == "code" and "remove-output" not in tags:
            for output in cell.get("outputs", []):
                total += _output_expectation(output)
    return total


def source_expectation(path: Path) -> Expectation:
    """The expectation of a page from its source file (``.md`` or ``.ipynb``)."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".ipynb":
        return notebook_expectation(json.loads(text))
    return markdown_expectation(text)


@dataclass
class Chapter:
    """A page of the book: its ``_toc.yml`` entry, its source and its built HTML."""

    entry: str
    source: Path | None
    html: Path

    @property
    def name(self) -> str:
        return Path(self.entry).name


def toc_entries(toc: dict) -> list[str]:
    """The ``file`` entries of a Jupyter Book ``_toc.yml`` in reading order (root first)."""
    entries = [toc["root"]]

    def walk(items):
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            walk(item.get("sections"))
            walk(item.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return [str(Path(e).with_suffix("")) if Path(e).suffix in (".md", ".ipynb") else e for e in entries]


def chapters(html_dir: str | Path, toc_path: str | Path) -> list[Chapter]:
    """Every page named in ``toc_path`` with its source (next to the toc) and built HTML."""
    html_dir, toc_path = Path(html_dir), Path(toc_path)
    root = toc_path.parent
    found = []
    for entry in toc_entries(yaml.safe_load(toc_path.read_text(encoding="utf-8"))):
        source = next((root / f"{entry}{s}" for s in (".md", ".ipynb")
                       if (root / f"{entry}{s}").is_file()), None)
        found.append(Chapter(entry, source, html_dir / f"{entry}.html"))
    return found


# ------------------------------------------------------------ what a page shows


class _ArticleParser(HTMLParser):
    """Tables, images and error markers inside a page's article (the whole body if none)."""

    def __init__(self, root: str = "article"):
        super().__init__(convert_charrefs=True)
        self.root = root  # "article" (article.bd-article), "main" or "body" (everything)
        self.stack: list[tuple[str, set[str]]] = []
        self.article_depth: int | None = -1 if root == "body" else None
        self.tables = 0
        self.images: list[str] = []
        self.problems: list[str] = []
        self._capture: list[tuple[int, str, list[str]]] = []  # (depth, label, text parts)
        self._output_text: list[str] = []
        self._text: list[str] = []

    def _in_article(self) -> bool:
        return self.article_depth is not None

    def _inside(self, cls: str) -> bool:
        return any(cls in classes for _, classes in self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if not self._in_article() and (
                (self.root == "article" and tag == "article" and "bd-article" in classes)
                or (self.root == "main" and tag == "main")):
            self.article_depth = len(self.stack)
        if self._in_article():
            label = None
            if tag == "table":
                self.tables += 1
            elif tag == "img":
                self.images.append(attrs.get("src") or "")
            if "output" in classes and classes & {"traceback", "stderr", "error"}:
                label = f"error output ({' '.join(sorted(classes & {'traceback', 'stderr', 'error'}))})"
            elif "system-message" in classes:
                label = "docutils system message"
            elif "problematic" in classes:
                label = "unresolved markup"
            elif tag == "mjx-merror":
                label = "MathJax error"
            elif "bibtex-citation" in classes:
                label = "citation"  # a problem only if it rendered empty (see handle_endtag)
            if label and tag not in _VOID:
                self._capture.append((len(self.stack), label, []))
            elif label:
                self.problems.append(label)
        if tag not in _VOID:
            self.stack.append((tag, classes))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            t, _ = self.stack.pop()
            depth = len(self.stack)
            while self._capture and self._capture[-1][0] == depth:
                _, label, parts = self._capture.pop()
                snippet = " ".join("".join(parts).split())[:160]
                if label != "citation":
                    self.problems.append(f"{label}: {snippet}" if snippet else label)
                elif snippet.strip("[]() ?") == "":
                    self.problems.append(f"empty citation {snippet!r} (a stale or failed bibtex build?)")
            if self.article_depth is not None and depth == self.article_depth:
                self.article_depth = None
            if t == tag:
                break

    def handle_data(self, data):
        if not self._in_article():
            return
        for _, _, parts in self._capture:
            parts.append(data)
        if self._inside("cell_input"):
            return
        self._text.append(data)
        if self._inside("cell_output"):
            self._output_text.append(data)

    def close(self):
        super().close()
        output = "".join(self._output_text)
        for match in TRACEBACK_RE.finditer(output):
            line = output[match.start():].strip().splitlines()[0][:160]
            self.problems.append(f"traceback text in an output: {line}")
        marker = "Traceback (most recent call last)"
        if marker in "".join(self._text) and marker not in output:
            self.problems.append("traceback text on the page")


@dataclass
class PageAnalysis:
    """What the rendered DOM of a page's article holds."""

    tables: int
    images: list[str]
    problems: list[str]


def analyse_html(html: str) -> PageAnalysis:
    """Tables, image sources and error markers of a page's article (see :class:`_ArticleParser`)."""
    if re.search(r"<article\b[^>]*\bclass=[\"'][^\"']*\bbd-article\b", html):
        root = "article"
    else:
        root = "main" if re.search(r"<main\b", html) else "body"
    parser = _ArticleParser(root)
    parser.feed(html)
    parser.close()
    return PageAnalysis(parser.tables, parser.images, parser.problems)


# ------------------------------------------------------------ the verdict


@dataclass
class Rendered:
    """What the browser saw: the DOM after load, each article image's state, notes.

    ``console_errors`` are the page's console messages of type ``error``
    (``{"text", "url"}``, the URL of the script or resource it names) and
    ``page_errors`` its uncaught JavaScript exceptions; :func:`check_page` judges them.
    """

    dom: str
    images: list[dict] = field(default_factory=list)  # {"src", "loaded", "remote"}
    notes: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)  # found by the browser itself
    console_errors: list[dict] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@dataclass
class PageResult:
    """The verdict on one page: ``problems`` empty means it passed."""

    name: str
    expected: Expectation
    figures: int
    tables: int
    problems: list[str]
    notes: list[str]
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _offline(message: dict) -> bool:
    """A console error that only says a remote resource did not load (no network)."""
    return message["text"].startswith("Failed to load resource") and _remote(message.get("url", ""))


def browser_errors(rendered: Rendered, remote_broken: tuple[str, ...] | list[str] = ()
                   ) -> tuple[list[str], list[str]]:
    """The page's console errors and uncaught exceptions as (problems, notes).

    Each one is a problem, except a remote resource that failed to load (a note:
    offline; none for an image already noted among ``remote_broken``). The theme's
    own errors are fixed in the book's configuration, not excused here: sphinx-thebe's
    repeated script by ``book/_ext/unique_scripts.py``, pydata-sphinx-theme's unset
    mode by ``html_context.default_mode`` in ``_config.yml``.
    """
    problems, notes = [], []
    errors = [(f"console error: {m['text']}", m) for m in rendered.console_errors]
    errors += [(f"uncaught JavaScript error: {e}", {"text": e}) for e in rendered.page_errors]
    for text, message in errors:
        if _offline(message):
            if message.get("url") not in remote_broken:
                notes.append(f"remote resource not loaded (offline?): {message['url']}")
        else:
            problems.append(text)
    return problems, notes


def check_page(name: str, expected: Expectation, rendered: Rendered, machine_paths: tuple[str, ...] = ()) -> PageResult:
    """Compare what rendered with what the source produces, and list errors on the page
    (and in the browser: see :func:`browser_errors`). ``machine_paths``: absolute paths of the
    build machine (its checkout, its home) that no page may show."""
    analysis = analyse_html(rendered.dom)
    problems = list(analysis.problems) + list(rendered.problems)
    problems += [f"the build machine's path {p!r} is on the page" for p in machine_paths if p in rendered.dom]
    notes = list(rendered.notes)
    local = [i for i in rendered.images if not i.get("remote")]
    broken = [i["src"] for i in local if not i.get("loaded")]
    problems += [f"image did not load: {src}" for src in broken]
    remote_broken = [i["src"] for i in rendered.images if i.get("remote") and not i.get("loaded")]
    notes += [f"remote image not loaded (offline?): {src}" for src in remote_broken]
    more_problems, more_notes = browser_errors(rendered, remote_broken)
    problems += more_problems
    notes += more_notes
    figures = len(local) - len(broken)
    if figures < expected.figures:
        problems.append(f"{figures} figure(s) rendered, the source has {expected.figures}")
    if analysis.tables < expected.tables:
        problems.append(f"{analysis.tables} table(s) rendered, the source has {expected.tables}")
    return PageResult(name, expected, figures, analysis.tables, problems, notes, rendered.screenshot)


# ------------------------------------------------------------ the browser


def find_chromium() -> str | None:
    """``$TRAINATTN_CHROMIUM`` or the first Chromium/Chrome on ``PATH`` (``None`` if none)."""
    explicit = os.environ.get("TRAINATTN_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class BrowserError(RuntimeError):
    """Playwright is missing, or Chromium failed to start or to render a page."""


# the article's images and untypeset math, and whether MathJax is there, after load
_PAGE_STATE_JS = """() => {
  const root = document.querySelector('article.bd-article') || document.querySelector('main')
    || document.body;
  const images = [...root.querySelectorAll('img')].map(img => {
    const src = img.getAttribute('src') || '';
    return {src, loaded: img.complete && img.naturalWidth > 0, remote: /^(https?:)?\\/\\//.test(src)};
  });
  const rawMath = [...root.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length;
  // a table or code block wider than its box either scrolls (an ancestor up to the article
  // scrolls sideways) or is clipped (cut off with nothing to scroll)
  const scroller = el => {
    for (let e = el; e && e !== root.parentElement; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if ((o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth + 1) return e;
    }
    return null;
  };
  const right = root.getBoundingClientRect().right;
  const wide = [...root.querySelectorAll('table, pre')].map(el => {
    const label = (el.tagName === 'TABLE' ? (el.rows[0] ? el.rows[0].innerText : '') : el.innerText)
      .replace(/\\s+/g, ' ').trim().slice(0, 60);
    const kind = el.tagName === 'TABLE' ? 'table' : 'code';
    const box = scroller(el);
    if (box) return {kind, label, scrolls: true, width: box.scrollWidth, column: box.clientWidth};
    if (el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > right + 1)
      return {kind, label, scrolls: false, width: el.scrollWidth, column: el.clientWidth};
    return null;
  }).filter(Boolean);
  return {dom: document.documentElement.outerHTML, images, rawMath, wide,
          mathjax: typeof MathJax !== 'undefined' && !!MathJax.typesetPromise};
}"""
# let a lazy image or MathJax finish
_SETTLE_JS = """() => new Promise(r => setTimeout(r, 300))
  .then(() => window.MathJax && MathJax.startup && MathJax.startup.promise)
  .then(() => null, () => null)"""


class Browser:
    """Headless system Chromium driven by Playwright; one fresh tab per rendered page.

    ``mathjax``: a local ``mathjax@3`` package root whose files answer the
    requests to :data:`MATHJAX_CDN` (others under it fail).
    """

    def __init__(self, executable: str, width: int = 1280, timeout: float = 30.0,
                 mathjax: str | Path | None = None):
        try:
            from playwright.sync_api import Error, sync_playwright
            from playwright.sync_api import TimeoutError as PlaywrightTimeout
        except ImportError as err:
            raise BrowserError("the playwright package is missing (pip install playwright); "
                               "its browser download is not needed") from err
        self._error, self._timeout_error = Error, PlaywrightTimeout  # the second subclasses the first
        self.width, self.timeout = width, timeout
        self.mathjax = Path(mathjax) if mathjax else None
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=executable, timeout=timeout * 1000, args=["--disable-gpu"])
            self._context = self._browser.new_context(viewport={"width": width, "height": 900})
            self._context.set_default_timeout(timeout * 1000)
            if self.mathjax is not None:
                self._context.route(lambda url: url.startswith(MATHJAX_CDN), self._serve_mathjax)
        except Error as err:
            self._playwright.stop()
            raise BrowserError(f"Chromium ({executable}) did not start: {err}") from err

    def _serve_mathjax(self, route) -> None:
        local = self.mathjax / route.request.url.split("?", 1)[0][len(MATHJAX_CDN):]
        if local.is_file():
            route.fulfill(path=local, headers={"Access-Control-Allow-Origin": "*"})
        else:
            route.abort()

    def render(self, html: Path, screenshot: Path | None, max_height: int = 30000) -> Rendered:
        """Load ``html`` from ``file://``, let it settle, save a full-page PNG, return the state."""
        console, exceptions, notes = [], [], []

        def on_console(message) -> None:
            if message.type == "error":
                console.append({"text": message.text, "url": message.location.get("url", "")})

        def on_page_error(exception) -> None:
            exceptions.append(f"{exception.name}: {exception.message}" if exception.name
                              else exception.message)

        page = self._context.new_page()
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        try:
            try:
                page.goto(Path(html).resolve().as_uri(), wait_until="load")
            except self._timeout_error:
                notes.append(f"the load event did not fire within {self.timeout:.0f} s")
            # a viewport as tall as the page: every image is in view (lazy ones load too)
            height = page.evaluate("() => document.documentElement.scrollHeight")
            page.set_viewport_size({"width": self.width, "height": int(min(max(height, 900), max_height))})
            page.evaluate(_SETTLE_JS)
            state = page.evaluate(_PAGE_STATE_JS)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=screenshot, timeout=120_000)
        except self._error as err:
            raise BrowserError(f"{html}: {err}") from err
        finally:
            page.close()
        problems = []
        if state["rawMath"] and self.mathjax is None and not state["mathjax"]:
            notes.append(f"MathJax not loaded (offline?): {state['rawMath']} math element(s) shown as TeX")
        elif state["rawMath"]:
            problems.append(f"{state['rawMath']} math element(s) not typeset by MathJax")
        for w in state["wide"]:
            if w["scrolls"]:
                notes.append(f"{w['kind']} scrolls sideways ({w['width']} px in a {w['column']} px box): "
                             f"{w['label']}")
            else:
                problems.append(f"{w['kind']} clipped ({w['width']} px in a {w['column']} px box, "
                                f"nothing to scroll): {w['label']}")
        return Rendered(state["dom"], state["images"], notes, screenshot, problems, console, exceptions)

    def close(self) -> None:
        """Close Chromium and stop Playwright."""
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------ the whole book


def build_machine_paths(html_dir: str | Path) -> tuple[str, ...]:
    """The checkout that built ``html_dir`` (two levels above it) and the home folder, each with a
    trailing separator: a page showing either leaks the build machine's layout."""
    paths = [Path(html_dir).resolve().parent.parent, Path.home()]
    return tuple(str(p).rstrip(os.sep) + os.sep for p in paths if len(p.parts) > 1)


def check_book(html_dir: str | Path, screenshots: str | Path | None = None,
               toc: str | Path | None = None, executable: str | None = None,
               mathjax: str | Path | None = None) -> list[PageResult]:
    """Render every page of ``toc`` (default: ``_toc.yml`` two levels above ``html_dir``).

    ``mathjax``: a local ``mathjax@3`` package root served in place of the CDN
    (default ``$TRAINATTN_MATHJAX``; none: the CDN, if reachable).
    """
    mathjax = mathjax or os.environ.get("TRAINATTN_MATHJAX") or None
    if mathjax and not (Path(mathjax) / "es5").is_dir():
        raise BrowserError(f"--mathjax {mathjax}: expected the root of the mathjax@3 npm package "
                           "(a folder holding es5/)")
    html_dir = Path(html_dir)
    toc = Path(toc) if toc else html_dir.resolve().parent.parent / "_toc.yml"
    screenshots = Path(screenshots) if screenshots else html_dir.parent / "screenshots"
    executable = executable or find_chromium()
    if executable is None:
        raise BrowserError("no Chromium found: install it (Debian: apt-get install chromium) "
                           "or set TRAINATTN_CHROMIUM to its path")
    machine_paths = build_machine_paths(html_dir)
    results = []
    with Browser(executable, mathjax=mathjax) as browser:
        for chapter in chapters(html_dir, toc):
            expected = source_expectation(chapter.source) if chapter.source else Expectation()
            if not chapter.html.is_file():
                results.append(PageResult(chapter.name, expected, 0, 0,
                                          [f"not built: {chapter.html}"], []))
                continue
            shot = screenshots / f"{chapter.entry.replace('/', '__')}.png"
            results.append(check_page(chapter.name, expected, browser.render(chapter.html, shot), machine_paths))
    return results


def format_results(results: list[PageResult]) -> str:
    """One line per page (figures and tables rendered / expected), then problems and notes."""
    lines = [f"{'page':<34}{'figures':>9}{'tables':>8}  verdict"]
    for r in results:
        lines.append(f"{r.name:<34}{r.figures:>5}/{r.expected.figures:<3}{r.tables:>4}/{r.expected.tables:<3}"
                     f"  {'ok' if r.ok else 'FAILED'}")
        lines += [f"    problem: {p}" for p in r.problems]
        lines += [f"    note: {n}" for n in r.notes]
        if r.screenshot:
            lines.append(f"    screenshot: {r.screenshot}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainattn.book.browser_check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html", help="the built book (HTML)")
    parser.add_argument("--screenshots", default=None,
                        help="folder for the PNGs (default: <html_dir>/../screenshots)")
    parser.add_argument("--toc", default=None, help="_toc.yml (default: two levels above html_dir)")
    parser.add_argument("--chromium", default=None, help="browser executable (default: found on PATH)")
    parser.add_argument("--mathjax", default=None,
                        help="root of a local mathjax@3 npm package to serve instead of the CDN "
                        "(default: $TRAINATTN_MATHJAX)")
    args = parser.parse_args(argv)
    if not Path(args.html_dir).is_dir():
        print(f"browser_check: no built book at {args.html_dir}", file=sys.stderr)
        return 2
    try:
        results = check_book(args.html_dir, args.screenshots, args.toc, args.chromium, args.mathjax)
    except BrowserError as err:
        print(f"browser_check: error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} page(s) passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
