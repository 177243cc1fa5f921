"""Open the built book in headless Chromium: a screenshot per chapter, and what rendered.

    python -m trainattn.browser_check _build/html [--screenshots DIR] [--toc _toc.yml]

For every page named in ``_toc.yml``, the page is loaded from ``file://`` in a
real browser (Chromium, driven over the DevTools protocol through a pipe, so no
driver package is needed), a full-page PNG is saved, and the rendered DOM is
checked:

* figures: every local ``<img>`` in the article loaded (``naturalWidth > 0``),
  and there are at least as many as the page's source produces (markdown
  images, image outputs of an executed notebook);
* tables: at least as many ``<table>`` elements as the source produces
  (markdown tables, HTML tables in outputs);
* no error on the page: error or stderr output blocks, traceback text in an
  output, docutils system messages, unresolved references, MathJax errors,
  citations that rendered empty (``[]``).

Remote images (the "Open in Colab" badge) and MathJax (loaded from a CDN) need
the network; offline they are reported as notes, not failures. With
``--mathjax DIR`` (or ``$TRAINATTN_MATHJAX``), the root of a local copy of the
``mathjax@3`` npm package (``npm pack mathjax@3``), the browser is served that
copy in place of the CDN, so that math is typeset offline too and untypeset
math becomes a failure. The parsing and checking functions are pure and tested
without a browser (``tests/test_browser_check.py``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
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
    """What the browser saw: the DOM after load, each article image's state, notes."""

    dom: str
    images: list[dict] = field(default_factory=list)  # {"src", "loaded", "remote"}
    notes: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)  # found by the browser itself


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


def check_page(name: str, expected: Expectation, rendered: Rendered) -> PageResult:
    """Compare what rendered with what the source produces, and list errors on the page."""
    analysis = analyse_html(rendered.dom)
    problems = list(analysis.problems) + list(rendered.problems)
    notes = list(rendered.notes)
    local = [i for i in rendered.images if not i.get("remote")]
    broken = [i["src"] for i in local if not i.get("loaded")]
    problems += [f"image did not load: {src}" for src in broken]
    remote_broken = [i["src"] for i in rendered.images if i.get("remote") and not i.get("loaded")]
    notes += [f"remote image not loaded (offline?): {src}" for src in remote_broken]
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
    """Chromium failed to start, answered with an error, or timed out."""


_PAGE_STATE_JS = """(() => {
  const root = document.querySelector('article.bd-article') || document.querySelector('main')
    || document.body;
  const images = [...root.querySelectorAll('img')].map(img => {
    const src = img.getAttribute('src') || '';
    return {src, loaded: img.complete && img.naturalWidth > 0, remote: /^(https?:)?\\/\\//.test(src)};
  });
  const rawMath = [...root.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length;
  return JSON.stringify({dom: document.documentElement.outerHTML, images, rawMath,
                         mathjax: typeof MathJax !== 'undefined' && !!MathJax.typesetPromise});
})()"""


class Chromium:
    """Headless Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

    Messages are JSON objects terminated by a NUL byte; Chromium reads commands
    on its fd 3 and writes answers and events on its fd 4.
    """

    def __init__(self, executable: str, width: int = 1280, timeout: float = 30.0,
                 mathjax: str | Path | None = None):
        self.width, self.timeout = width, timeout
        self.mathjax = Path(mathjax) if mathjax else None
        self._profile = tempfile.mkdtemp(prefix="trainattn-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # move the child's ends above 10 so that dup2 onto 3 and 4 cannot clobber them
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)

        def wire():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        cmd = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--hide-scrollbars", "--mute-audio",
               "--force-color-profile=srgb", f"--user-data-dir={self._profile}",
               f"--window-size={width},900", "--remote-debugging-pipe", "about:blank"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, preexec_fn=wire, pass_fds=(3, 4))
        os.close(child_in)
        os.close(child_out)
        self._w, self._r = to_child_w, from_child_r
        self._buffer = b""
        self._events: list[dict] = []
        self._next_id = 0
        self.session = None

    # -- protocol
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.poll() is not None else ""
                    raise BrowserError(f"Chromium closed the pipe (exit {self._proc.poll()}): {err}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _event(self, message: dict) -> None:
        """Keep an event, except a paused MathJax request: answer that from the local copy."""
        if message["method"] != "Fetch.requestPaused":
            self._events.append(message)
            return
        params = message["params"]
        url = params["request"]["url"].split("?", 1)[0]
        local = self.mathjax / url[len(MATHJAX_CDN):] if url.startswith(MATHJAX_CDN) else None
        if local is not None and local.is_file():
            kind = "application/javascript" if local.suffix == ".js" else "font/woff2"
            self._send("Fetch.fulfillRequest", {
                "requestId": params["requestId"], "responseCode": 200,
                "responseHeaders": [{"name": "Content-Type", "value": kind},
                                    {"name": "Access-Control-Allow-Origin", "value": "*"}],
                "body": base64.b64encode(local.read_bytes()).decode()}, message.get("sessionId"))
        else:
            self._send("Fetch.failRequest", {"requestId": params["requestId"],
                                             "errorReason": "FileNotFound"}, message.get("sessionId"))

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        sent = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == sent:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            if "method" in answer:
                self._event(answer)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        """The first event ``method`` of the page's session, or ``None`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and event.get("sessionId") == self.session:
                    return self._events.pop(i)
            try:
                message = self._read_message(deadline)
            except BrowserError:
                return None
            if "method" in message:
                self._event(message)

    # -- pages
    def open_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.call(domain, session=self.session)
        if self.mathjax is not None:
            self.call("Fetch.enable", {"patterns": [{"urlPattern": MATHJAX_CDN + "*"}]},
                      session=self.session)

    def _evaluate(self, expression: str, await_promise: bool = False):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise}, session=self.session)
        return result.get("result", {}).get("value")

    def render(self, html: Path, screenshot: Path | None, max_height: int = 30000,
               load_timeout: float = 30.0) -> Rendered:
        """Load ``html`` from ``file://``, let it settle, save a full-page PNG, return the DOM."""
        if self.session is None:
            self.open_page()
        s = self.session
        self._events.clear()
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": 900,
                                                         "deviceScaleFactor": 1, "mobile": False}, session=s)
        self.call("Page.navigate", {"url": Path(html).resolve().as_uri()}, session=s)
        notes = []
        if self.wait_event("Page.loadEventFired", load_timeout) is None:
            notes.append(f"the load event did not fire within {load_timeout:.0f} s")
        height = self.call("Page.getLayoutMetrics", session=s)["cssContentSize"]["height"]
        height = int(min(max(height, 900), max_height))
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session=s)
        # let a lazy image or MathJax finish; then read the page's state
        self._evaluate("new Promise(r => setTimeout(r, 300)).then(() => window.MathJax"
                       " && MathJax.startup && MathJax.startup.promise)", await_promise=True)
        state = json.loads(self._evaluate(_PAGE_STATE_JS))
        exceptions = [e for e in self._events if e["method"] == "Runtime.exceptionThrown"]
        for e in exceptions:
            details = e["params"]["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text", "")
            where = details.get("url", "").rsplit("/", 1)[-1]
            notes.append(f"JavaScript exception ({where}): {text.splitlines()[0] if text else '?'}")
        if state["rawMath"] and self.mathjax is None and not state["mathjax"]:
            notes.append(f"MathJax not loaded (offline?): {state['rawMath']} math element(s) shown as TeX")
        elif state["rawMath"]:
            state["problems"] = [f"{state['rawMath']} math element(s) not typeset by MathJax"]
        if screenshot is not None:
            shot = self.call("Page.captureScreenshot", {"format": "png"}, session=s, timeout=120)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        return Rendered(state["dom"], state["images"], notes, screenshot, state.get("problems", []))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=5)
        with contextlib.suppress(Exception):
            self._proc.wait(timeout=10)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._proc.stderr:
            self._proc.stderr.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------ the whole book


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
    results = []
    with Chromium(executable, mathjax=mathjax) as browser:
        for chapter in chapters(html_dir, toc):
            expected = source_expectation(chapter.source) if chapter.source else Expectation()
            if not chapter.html.is_file():
                results.append(PageResult(chapter.name, expected, 0, 0,
                                          [f"not built: {chapter.html}"], []))
                continue
            shot = screenshots / f"{chapter.entry.replace('/', '__')}.png"
            results.append(check_page(chapter.name, expected, browser.render(chapter.html, shot)))
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
    parser = argparse.ArgumentParser(prog="python -m trainattn.browser_check",
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
