"""The library's layers: imports only point down (the house plan in CONTRIBUTING.md).

Every ``import`` and ``from … import`` in ``trainattn/`` is read with :mod:`ast`
(also those inside functions), so a lazy import cannot hide a dependency that
points up, e.g. the algorithm importing the run store or a report.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trainattn"

# lower layers first; a module may import its own layer and the ones before it
LAYERS = [
    {"trainattn", "trainattn.errors", "trainattn.config", "trainattn.files"},
    {"trainattn.core"},
    {"trainattn.lm", "trainattn.testing"},
    {"trainattn.data"},
    {"trainattn.methods"},
    {"trainattn.protocols"},
    {"trainattn.studies"},
    {"trainattn.report"},
    {"trainattn.book"},
    {"trainattn.cli"},
]


def layer_of(module: str) -> int:
    """The layer of ``trainattn.a.b``: that of its longest listed prefix."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for i, layer in enumerate(LAYERS):
            if prefix in layer:
                return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every trainattn import in ``path``, relative ones resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from trainattn.report import answers` imports a submodule
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names
                      if (PACKAGE.parent / Path(*base.split("."), a.name)).exists()
                      or (PACKAGE.parent / Path(*base.split("."), f"{a.name}.py")).exists()]
    return [(line, m) for line, m in found if m == "trainattn" or m.startswith("trainattn.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_down(path):
    own = layer_of(module_name(path))
    upward = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {m} (layer {layer_of(m)} > {own})"
              for line, m in imports(path) if m != "trainattn" and layer_of(m) > own]
    assert not upward, "\n".join(upward)


def test_the_algorithm_does_no_file_io():
    """``trainattn.core`` computes; reading and writing files belongs to the layers above."""
    offenders = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.name}: {word}" for word in ("open(", "write_json", "read_json", "save_file",
                                                          "load_file", "torch.save", "torch.load")
                      if word in text]
    assert not offenders, offenders


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainattn"):
                private += [f"{path.relative_to(PACKAGE.parent)}: {a.name} from {node.module}"
                            for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not private, private


def test_the_layer_walker_sees_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "trainattn" / "core"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from trainattn.report.tables import ratio\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "trainattn")
    assert imports(fake / "bad.py") == [(2, "trainattn.report.tables")]
    assert layer_of("trainattn.report.tables") > layer_of(module_name(fake / "bad.py"))


def test_every_subpackage_ships_in_a_wheel():
    """A folder of modules without ``__init__.py`` is left out of a non-editable install (Colab's)."""
    folders = {p.parent for p in SOURCES}
    missing = [str(f.relative_to(PACKAGE.parent)) for f in folders if not (f / "__init__.py").is_file()]
    assert not missing, missing
