"""The browser check of the built book: expectations, DOM analysis and verdicts without a
browser, then (marked ``browser``) the system's headless Chromium, driven by Playwright, on
fixture pages and on the built book."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pytest

from trainattn.book.browser_check import (
    MATHJAX_CDN,
    Expectation,
    Rendered,
    analyse_html,
    browser_errors,
    chapters,
    check_page,
    find_chromium,
    main,
    markdown_expectation,
    notebook_expectation,
    toc_entries,
)

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "_build" / "html"

# a 1×1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def page(body: str) -> str:
    """A page shaped like sphinx-book-theme's: navigation outside the article."""
    return (f"<html><body><nav><img src='logo.png'><table><tr><td>nav</td></tr></table></nav>"
            f"<main><article class='bd-article'>{body}</article></main>"
            f"<footer>Error: not in the article</footer></body></html>")


# ------------------------------------------------------------ what a page should show


def test_markdown_expectation_counts_tables_and_local_images():
    text = "\n".join([
        "# Title",
        "| a | b |", "|---|--:|", "| 1 | 2 |",
        "",
        "![plot](figures/plot.png) and ![badge](https://example.org/badge.svg)",
        ":::{figure} figures/other.png", "caption", ":::",
        "```{list-table}", "* - a", "  - b", "```",
        "<table><tr><td>x</td></tr></table>",
    ])
    assert markdown_expectation(text) == Expectation(figures=2, tables=3)


def test_markdown_expectation_ignores_fenced_code():
    text = "\n".join([
        "```text", "| a | b |", "|---|---|", "![x](y.png)", "```",
        "~~~~", "```", "| a | b |", "|---|---|", "```", "~~~~",
        "```{bibliography}", ":style: plain", "```",
    ])
    assert markdown_expectation(text) == Expectation(0, 0)


def _nb(*cells):
    return {"cells": list(cells)}


def _code(*outputs, tags=()):
    return {"cell_type": "code", "source": "x", "metadata": {"tags": list(tags)}, "outputs": list(outputs)}


def _display(**data):
    return {"output_type": "display_data", "data": data, "metadata": {}}


def test_notebook_expectation_reads_outputs_by_mime_priority():
    nb = _nb(
        {"cell_type": "markdown", "source": ["| a |\n", "|---|\n", "| 1 |\n"], "metadata": {}},
        _code(_display(**{"image/png": "AAA", "text/plain": "<Figure>"})),
        # text/html wins over image/png, and holds a table but no image
        _code(_display(**{"text/html": "<table><tr><td>1</td></tr></table>", "image/png": "AAA"})),
        _code(_display(**{"text/markdown": "| m |\n|---|\n| 1 |", "text/plain": "md"})),
        _code({"output_type": "stream", "name": "stdout", "text": "| not |\n|---|\n"}),
        _code(_display(**{"image/png": "AAA"}), tags=["remove-output"]),
        _code(_display(**{"image/png": "AAA"}), tags=["remove-cell"]),
    )
    assert notebook_expectation(nb) == Expectation(figures=1, tables=3)


def test_toc_entries_and_chapters(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/a.md\n"
        "  - file: book/executed/01_x\n    sections:\n      - file: book/b\n")
    (tmp_path / "book" / "executed").mkdir(parents=True)
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "book" / "executed" / "01_x.ipynb").write_text(json.dumps(_nb()))
    assert toc_entries({"root": "r", "chapters": [{"file": "a.md", "sections": [{"file": "b"}]}]}) == [
        "r", "a", "b"]
    found = chapters(tmp_path / "_build" / "html", tmp_path / "_toc.yml")
    assert [c.entry for c in found] == ["book/intro", "book/a", "book/executed/01_x", "book/b"]
    assert found[0].source.name == "intro.md" and found[2].source.suffix == ".ipynb"
    assert found[1].source is None
    assert found[2].html == tmp_path / "_build" / "html" / "book" / "executed" / "01_x.html"


# ------------------------------------------------------------ what a page shows


def test_analyse_html_counts_only_the_article():
    analysis = analyse_html(page("<p>text</p><table><tr><td>1</td></tr></table><img src='a.png'>"))
    assert analysis.tables == 1
    assert analysis.images == ["a.png"]
    assert analysis.problems == []


TRACEBACK_OUTPUT = """
<div class="cell docutils container">
 <div class="cell_input docutils container"><pre>try:
    f()
except ValueError: pass</pre></div>
 <div class="cell_output docutils container">
  <div class="output traceback highlight-ipythontb notranslate"><pre>
---------------------------------------------------------------------------
ValueError                                Traceback (most recent call last)
Cell In[3], line 1
ValueError: the object is not inside the first max_length tokens
</pre></div>
 </div>
</div>"""


def test_analyse_html_finds_a_traceback_output():
    problems = analyse_html(page(TRACEBACK_OUTPUT)).problems
    assert any(p.startswith("error output (traceback)") and "ValueError" in p for p in problems)
    assert any(p.startswith("traceback text in an output") for p in problems)


def test_analyse_html_finds_traceback_text_in_a_plain_stream():
    html = page('<div class="cell_output docutils container"><div class="output stream"><pre>'
                "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'a'</pre></div></div>")
    problems = analyse_html(html).problems
    assert any("Traceback (most recent call last)" in p for p in problems)
    assert any("KeyError: 'a'" in p for p in problems)


def test_analyse_html_ignores_error_words_in_code_inputs_and_prose():
    html = page('<p>The error of the estimate is small; RecAdam reduces forgetting.</p>'
                '<div class="cell_input docutils container"><pre>raise ValueError("x")\n'
                "except KeyError: pass</pre></div>"
                '<div class="cell_output docutils container"><div class="output stream"><pre>'
                "Top Acc 0.200 at epoch 3</pre></div></div>")
    assert analyse_html(html).problems == []


@pytest.mark.parametrize("body, expected", [
    ('<div class="output stderr"><pre>warning: x</pre></div>', "error output (stderr)"),
    ('<div class="system-message"><p>Unknown directive type "figur".</p></div>', "docutils system message"),
    ('<a class="problematic" href="#id1">{cite}`nokey`</a>', "unresolved markup"),
    ("<p><mjx-merror>Undefined control sequence</mjx-merror></p>", "MathJax error"),
    ('<p>see <span class="bibtex-citation" id="id1">[]</span></p>', "empty citation"),
])
def test_analyse_html_finds_rendering_errors(body, expected):
    problems = analyse_html(page(body)).problems
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_analyse_html_accepts_a_resolved_citation():
    html = page('<p>see <span class="bibtex-citation">[<a href="references.html#id5">Seo <em>et al.</em>, '
                "2024</a>]</span></p>")
    assert analyse_html(html).problems == []


def test_analyse_html_without_an_article_reads_the_body():
    analysis = analyse_html("<html><body><table></table><img src='x.png'/></body></html>")
    assert analysis.tables == 1 and analysis.images == ["x.png"]


# ------------------------------------------------------------ the verdict


def test_check_page_passes_when_everything_rendered():
    dom = page("<table></table><img src='a.png'><img src='https://x.org/badge.svg'>")
    images = [{"src": "a.png", "loaded": True, "remote": False},
              {"src": "https://x.org/badge.svg", "loaded": False, "remote": True}]
    result = check_page("ch", Expectation(figures=1, tables=1), Rendered(dom, images))
    assert result.ok, result.problems
    assert (result.figures, result.tables) == (1, 1)
    assert any("remote image not loaded" in n for n in result.notes)


def test_check_page_fails_on_missing_or_broken_figures_and_tables():
    dom = page("<img src='a.png'>")
    images = [{"src": "a.png", "loaded": False, "remote": False}]
    result = check_page("ch", Expectation(figures=1, tables=2), Rendered(dom, images))
    assert not result.ok
    text = " | ".join(result.problems)
    assert "image did not load: a.png" in text
    assert "0 figure(s) rendered, the source has 1" in text
    assert "0 table(s) rendered, the source has 2" in text


def test_check_page_fails_on_a_traceback_and_on_browser_problems():
    result = check_page("ch", Expectation(), Rendered(page(TRACEBACK_OUTPUT), [],
                                                      problems=["3 math element(s) not typeset"]))
    assert not result.ok
    assert "3 math element(s) not typeset" in result.problems


def test_check_page_fails_on_the_build_machines_paths(tmp_path):
    from trainattn.book.browser_check import build_machine_paths

    html = tmp_path / "repo" / "_build" / "html"
    html.mkdir(parents=True)
    paths = build_machine_paths(html)
    assert paths[0] == f"{tmp_path / 'repo'}/" and paths[1] == f"{Path.home()}/"
    dom = page(f"<p>results written to {tmp_path / 'repo'}/book/executed/results/ci/04.json</p>")
    result = check_page("ch", Expectation(), Rendered(dom, []), paths)
    assert result.problems == [f"the build machine's path '{tmp_path / 'repo'}/' is on the page"]
    assert check_page("ch", Expectation(), Rendered(page("<p>results/ci/04.json</p>"), []), paths).ok


def test_check_page_fails_on_console_errors_and_uncaught_exceptions():
    rendered = Rendered(page("<p>x</p>"), console_errors=[{"text": "boom", "url": "file:///a.html"}],
                        page_errors=["TypeError: x is undefined"])
    result = check_page("ch", Expectation(), rendered)
    assert result.problems == ["console error: boom", "uncaught JavaScript error: TypeError: x is undefined"]


def test_browser_errors_notes_offline_resources_and_fails_on_every_other_error():
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rendered = Rendered("", console_errors=[
        {"text": "Failed to load resource: net::ERR_NAME_NOT_RESOLVED", "url": MATHJAX_CDN + "es5/x.js"},
        {"text": "Failed to load resource: net::ERR_NAME_NOT_RESOLVED", "url": badge},
        {"text": "Failed to load resource: net::ERR_FILE_NOT_FOUND", "url": "file:///b/missing.png"},
        {"text": "Got invalid theme mode: . Resetting to auto.", "url": "file:///b/_static/x.js"},
    ], page_errors=["SyntaxError: Identifier 'THEBE_JS_URL' has already been declared"])
    problems, notes = browser_errors(rendered, remote_broken=[badge])
    # a repeated script is an error: book/_ext/unique_scripts.py keeps the book free of it
    assert problems == ["console error: Failed to load resource: net::ERR_FILE_NOT_FOUND",
                        "console error: Got invalid theme mode: . Resetting to auto.",
                        "uncaught JavaScript error: SyntaxError: Identifier 'THEBE_JS_URL' has already been declared"]
    assert notes == [f"remote resource not loaded (offline?): {MATHJAX_CDN}es5/x.js"]


def test_main_reports_a_missing_book(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no built book" in capsys.readouterr().err


# ------------------------------------------------------------ a real browser

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or importlib.util.find_spec("playwright") is None,
    reason="no Chromium binary on PATH (Debian: apt-get install chromium; or set "
    "TRAINATTN_CHROMIUM) or no playwright package")


def fixture_book(root: Path, pages: dict[str, tuple[str, str]]) -> Path:
    """A book under ``root``: ``{name: (markdown source, article HTML)}``, the first the root."""
    html = root / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (root / "book").mkdir()
    (html / "book" / "logo.png").write_bytes(PNG)
    (html / "book" / "plot.png").write_bytes(PNG)
    names = list(pages)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/{names[0]}\nchapters:\n"
                                   + "".join(f"  - file: book/{n}\n" for n in names[1:]))
    for name, (source, body) in pages.items():
        (root / "book" / f"{name}.md").write_text(source)
        (html / "book" / f"{name}.html").write_text(page(body))
    return html


@pytest.mark.browser
@needs_chromium
def test_browser_renders_a_fixture_book(tmp_path):
    """A two-page book: one clean page, one with a traceback and a broken image."""
    html = fixture_book(tmp_path, {
        "good": ("# Good\n\n| a |\n|---|\n| 1 |\n\n![p](plot.png)\n",
                 "<h1>Good</h1><table><tr><td>1</td></tr></table><img src='plot.png'>"),
        "bad": ("# Bad\n\n![p](missing.png)\n", "<h1>Bad</h1><img src='missing.png'>" + TRACEBACK_OUTPUT),
    })
    from trainattn.book.browser_check import check_book

    results = {r.name: r for r in check_book(html, tmp_path / "shots")}
    assert results["good"].ok, results["good"].problems
    assert (results["good"].figures, results["good"].tables) == (1, 1)
    bad = " | ".join(results["bad"].problems)
    assert "image did not load: missing.png" in bad and "Traceback" in bad
    assert "console error: Failed to load resource" in bad  # the browser says so too
    for name in ("book__good.png", "book__bad.png"):
        assert (tmp_path / "shots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.browser
@needs_chromium
def test_browser_fails_a_page_with_a_console_error_or_an_exception(tmp_path, capsys):
    html = fixture_book(tmp_path, {
        "clean": ("# Clean\n", "<h1>Clean</h1><script>console.log('fine')</script>"),
        "console": ("# Console\n", '<h1>Console</h1><script>console.error("boom")</script>'),
        "thrown": ("# Thrown\n", "<h1>Thrown</h1><script>null.x</script>"),
    })
    code = main([str(html), "--screenshots", str(tmp_path / "shots")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "problem: console error: boom" in out
    assert "problem: uncaught JavaScript error: TypeError: Cannot read properties of null" in out
    assert "1 of 3 page(s) passed; failed: console, thrown" in out


@pytest.mark.browser
@needs_chromium
def test_browser_notes_a_wide_table_that_scrolls_and_fails_one_that_is_clipped(tmp_path):
    """A 3000 px table in a scrolling box is a note; the same in a box that hides overflow fails."""
    wide = "<table style='width:3000px'><tr><td>wide row</td></tr></table>"
    html = fixture_book(tmp_path, {
        "scrolls": ("# S\n\n| a |\n|---|\n| 1 |\n", f"<div style='overflow-x:auto'>{wide}</div>"),
        "clipped": ("# C\n\n| a |\n|---|\n| 1 |\n", f"<div style='overflow:hidden'>{wide}</div>"
                    "<pre style='overflow:hidden;width:200px'>" + "x" * 400 + "</pre>"),
        "fits": ("# F\n\n| a |\n|---|\n| 1 |\n", "<table><tr><td>narrow</td></tr></table>"),
    })
    from trainattn.book.browser_check import check_book

    results = {r.name: r for r in check_book(html, tmp_path / "shots")}
    assert results["scrolls"].ok, results["scrolls"].problems
    assert any(n.startswith("table scrolls sideways (3000 px in a ") and n.endswith("px box): wide row")
               for n in results["scrolls"].notes), results["scrolls"].notes
    problems = results["clipped"].problems
    assert any(p.startswith("table clipped (3000 px") and p.endswith("wide row") for p in problems), problems
    assert any(p.startswith("code clipped (") and " in a 200 px box" in p for p in problems), problems
    assert results["fits"].ok and not any("sideways" in n for n in results["fits"].notes)


@pytest.mark.browser
@needs_chromium
def test_browser_serves_a_local_mathjax(tmp_path):
    """``mathjax``: requests to the CDN are answered from the local copy, offline too."""
    mathjax = tmp_path / "mathjax"
    (mathjax / "es5").mkdir(parents=True)
    (mathjax / "es5" / "tex-mml-chtml.js").write_text(  # a stand-in that "typesets" every .math
        "window.MathJax = {typesetPromise: () => Promise.resolve(), startup: {promise: Promise.resolve()}};"
        "document.querySelectorAll('.math').forEach(e => e.append(document.createElement('mjx-container')));")
    html = fixture_book(tmp_path, {"math": ("# Math\n", "<div class='math'>\\(x\\)</div>"
                                            f"<script src='{MATHJAX_CDN}es5/tex-mml-chtml.js'></script>")})
    from trainattn.book.browser_check import check_book

    [result] = check_book(html, tmp_path / "shots", mathjax=mathjax)
    assert result.ok, result.problems
    assert not any("MathJax" in n for n in result.notes), result.notes


@pytest.mark.slow  # checks whatever book was last built (CI runs the check after its own build)
@pytest.mark.browser
@needs_chromium
@pytest.mark.skipif(not (BUILT / "book" / "intro.html").is_file(),
                    reason="no built book in _build/html (run `trainattn book --profile ci` first)")
def test_browser_check_of_the_built_book(capsys, monkeypatch):
    """Every chapter of the built book renders its figures and tables and shows no error."""
    monkeypatch.chdir(ROOT)
    code = main([str(BUILT), "--screenshots", str(ROOT / "_build" / "screenshots")])
    out = capsys.readouterr().out
    assert code == 0, out
