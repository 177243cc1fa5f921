"""Exceptions with messages that say what is wrong and where."""

from __future__ import annotations


class TrainattnError(Exception):
    """Base class of every error this package raises on purpose."""


class DataFormatError(TrainattnError, ValueError):
    """A data file has a malformed line: names the file, line number and field."""

    def __init__(self, path, line: int, field: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        where = f"{self.path}, line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class ChecksumError(TrainattnError):
    """A file's SHA-256 differs from the pinned one."""

    def __init__(self, path, expected: str, actual: str):
        self.path, self.expected, self.actual = str(path), expected, actual
        super().__init__(
            f"{path}: SHA-256 is {actual}, expected {expected}. The file is corrupt or "
            "not the pinned version; delete it (or fix the local data directory) and retry."
        )


class TokenizerMismatchError(TrainattnError, ValueError):
    """φ and θ do not share a tokenizer, so φ's weights cannot align with θ's tokens."""


class NonFiniteLossError(TrainattnError, FloatingPointError):
    """A loss became NaN or infinite; the run stops instead of training on garbage."""
