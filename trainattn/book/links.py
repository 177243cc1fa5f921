"""Where the book's Colab badges and Colab install cells point: one setting in ``_config.yml``.

``repository: {url, branch}`` in ``_config.yml`` (Jupyter Book's own setting, which also
drives the page's repository button) decides every notebook's "Open in Colab" badge
(``colab.research.google.com/github/<owner>/<name>/blob/<branch>/notebooks/<file>``) and the
package its Colab install cell fetches (``trainattn @ git+<url>@<branch>``). After changing
the setting, ``python -m trainattn.book.links`` rewrites the notebooks to match;
``tests/test_book.py`` fails while any notebook disagrees with it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"]+?/notebooks/[\w.-]+\.ipynb")
INSTALL = re.compile(r"trainattn @ git\+https://[^\"'\s]+")


def repository(root: str | Path = ".") -> tuple[str, str]:
    """``(url, branch)`` of ``repository:`` in ``_config.yml``."""
    path = Path(root) / "_config.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    repo = config.get("repository") or {}
    url = str(repo.get("url") or "").rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"{path}: repository.url must be a https://github.com/<owner>/<name> URL, got {url!r}")
    return url, str(repo.get("branch") or "main")


def colab_url(notebook: str, root: str | Path = ".") -> str:
    """The Colab address of ``notebooks/<notebook>`` on the configured repository and branch."""
    url, branch = repository(root)
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/notebooks/{notebook}"


def install_spec(root: str | Path = ".") -> str:
    """The pip requirement a Colab install cell uses: this package from the configured branch."""
    url, branch = repository(root)
    return f"trainattn @ git+{url}@{branch}"


def sync_links(root: str | Path = ".", write: bool = True) -> list[Path]:
    """Point every notebook's badge and install cell at the setting; the notebooks that differed."""
    root = Path(root)
    changed = []
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        before = json.dumps(nb, ensure_ascii=False)
        for cell in nb["cells"]:
            text = "".join(cell["source"])
            new = BADGE.sub(colab_url(path.name, root), text)
            new = INSTALL.sub(install_spec(root), new)
            if new != text:
                cell["source"] = new.splitlines(keepends=True)
        if json.dumps(nb, ensure_ascii=False) != before:
            changed.append(path)
            if write:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def main() -> int:
    changed = sync_links(".")
    for path in changed:
        print(f"updated {path}")
    print(f"{len(changed)} notebook(s) updated to {repository('.')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
