"""Errors a user can act on. train.py and the commands print them as one line, no traceback."""

from __future__ import annotations

import difflib
import errno


class EmblabError(Exception):
    """A problem with the user's config, data or files; the message says what to do."""


class DataError(EmblabError):
    """Bad input data. The message names the file and, where there is one, the line and column."""

    def __init__(self, path, message: str, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = str(path), line, column


class ConfigError(EmblabError):
    """A config that cannot work (incompatible model and data, a GPU asked for but absent, ...)."""


def check_range(key: str, value, lo=None, hi=None, integer: bool = False, lo_open: bool = False) -> None:
    """Refuse a config value of the wrong type or outside [lo, hi] (lo excluded with lo_open), naming its key."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{key}={value!r}: expected {kind}")
    if (
        value != value
        or (lo is not None and (value <= lo if lo_open else value < lo))
        or (hi is not None and value > hi)
    ):
        bound = f"{'>' if lo_open else '>='} {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{key}={value!r}: expected {kind} {bound}")


def closest(word: str, choices, n: int = 3) -> str:
    """' (did you mean a, b?)' for the closest of choices, or '' when none is close."""
    near = difflib.get_close_matches(word, [str(c) for c in choices], n=n, cutoff=0.5)
    return f" (did you mean {', '.join(near)}?)" if near else ""


_OS_ERRORS = (
    errno.ENOSPC,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EDQUOT,
)


def find_user_error(e: BaseException | None) -> EmblabError | None:
    """Our error, possibly wrapped (hydra.utils.instantiate wraps what a constructor raises); a file
    that cannot be written or read (full disk, read-only or missing folder) is the user's to fix too."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, EmblabError):
            return e
        if isinstance(e, OSError) and e.errno in _OS_ERRORS and e.filename:
            return EmblabError(f"{e.filename}: {e.strerror}")
        e = e.__cause__ or e.__context__
    return None
