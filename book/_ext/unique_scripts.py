"""Sphinx extension: each page lists every script once.

sphinx-thebe 0.3.1 registers its inline configuration script twice; Sphinx 7
writes both, and the second ``const THEBE_JS_URL`` throws a SyntaxError in
every page's console (Sphinx 8.2.2 deduplicates, but Jupyter Book 1.x needs
Sphinx 7). Dropping repeated entries of ``script_files`` on
``html-page-context`` removes the error without touching either package.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    # an inline script has no file: Sphinx records that as None or as "" depending on who added it
    filename = getattr(script, "filename", script) or ""
    return str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    # after sphinx-thebe and the theme have added their scripts
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
