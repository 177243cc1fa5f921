"""Strict JSON-lines reading: every malformed line is reported with file, line and field."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from trainattn.errors import DataFormatError

TypeSpec = type | tuple[type, ...]


def _type_names(expected: TypeSpec) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def _type_ok(value: Any, expected: TypeSpec) -> bool:
    """isinstance, except that a bool is not an int/float and an int is a float (JSON numbers)."""
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def check_fields(
    row: Mapping[str, Any], required: Mapping[str, TypeSpec], path: str | os.PathLike, line: int
) -> None:
    """Raise :class:`DataFormatError` if ``row`` lacks a required field or has a wrong type."""
    for field, expected in required.items():
        if field not in row:
            raise DataFormatError(path, line, field, "missing")
        value = row[field]
        if not _type_ok(value, expected):
            raise DataFormatError(
                path, line, field,
                f"expected {_type_names(expected)}, got {type(value).__name__}",
            )


def check_nonempty(
    row: Mapping[str, Any], fields: Iterable[str], path: str | os.PathLike, line: int
) -> None:
    """Raise :class:`DataFormatError` if any of ``fields`` is an empty or blank string."""
    for field in fields:
        value = row.get(field)
        if isinstance(value, str) and not value.strip():
            raise DataFormatError(path, line, field, "empty")


def iter_jsonl(path: str | os.PathLike) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; line numbers are 1-based."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, lineno, None, f"not valid JSON: {e}") from None
            if not isinstance(obj, dict):
                raise DataFormatError(
                    path, lineno, None, f"expected a JSON object, got {type(obj).__name__}"
                )
            yield lineno, obj


def read_jsonl(
    path: str | os.PathLike,
    required: Mapping[str, TypeSpec],
    nonempty: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Read a JSON-lines file of objects, checking that ``required`` fields exist with their types.

    Blank lines are skipped; fields named in ``nonempty`` must not be blank strings. Errors are
    :class:`DataFormatError` naming the file, the 1-based line and the field.
    """
    nonempty = tuple(nonempty)
    rows = []
    for lineno, obj in iter_jsonl(path):
        check_fields(obj, required, path, lineno)
        check_nonempty(obj, nonempty, path, lineno)
        rows.append(obj)
    return rows


def rows_to_dataset(rows: list[dict[str, Any]]):
    """``datasets.Dataset`` from rows; optional columns missing from some rows become None."""
    import datasets

    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return datasets.Dataset.from_dict({c: [r.get(c) for r in rows] for c in columns})
