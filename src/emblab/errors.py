"""Errors a user can act on. train.py and the commands print them as one line, no traceback."""


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
