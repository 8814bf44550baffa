"""Errors a user can act on. Every command prints them as one line, `error: ...`, with exit status 2."""

from __future__ import annotations

import difflib
import errno


class EmblabError(Exception):
    """A problem with the user's config, data or files; the message says what to do."""


class DataError(EmblabError):
    """Bad input data. The message names the file and, where there is one, the line and column."""

    def __init__(self, path, message: str, line: int | None = None, column: str | None = None):
        where = str(path) + (f", line {line}" if line is not None else "") + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = str(path), line, column


class ConfigError(EmblabError):
    """A config value or combination that cannot work, named by its key."""


def check_range(
    key: str, value, lo=None, hi=None, integer: bool = False, lo_open: bool = False, hi_open: bool = False
) -> None:
    """Refuse a value of the wrong type or outside [lo, hi] (an end excluded with lo_open / hi_open)."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{key}={value!r}: expected {kind}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if value != value or below or above:
        if hi is None:
            bound = f"{'>' if lo_open else '>='} {lo}"
        elif lo is None:
            bound = f"{'<' if hi_open else '<='} {hi}"
        else:
            bound = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
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
    errno.EFBIG,
)


def find_user_error(e: BaseException | None) -> EmblabError | None:
    """Our error, possibly wrapped (Hydra's instantiate wraps what a constructor raises); a file that cannot
    be written or read (full disk, read-only or missing folder) is the user's to fix too."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, EmblabError):
            return e
        if isinstance(e, OSError) and e.errno in _OS_ERRORS:
            what = f"{e.filename}: {e.strerror}" if e.filename else e.strerror or str(e)
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                what += " (files written before, the last checkpoint included, are intact)"
            return EmblabError(what)
        e = e.__cause__ or e.__context__
    return None
