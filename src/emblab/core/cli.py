"""What every command shares: key=value arguments (the syntax of train.py's overrides, checked against the
command's settings dataclass) and one error boundary: an error the user can act on is one line,
`error: ...`, and exit status 2; never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar, get_type_hints

from omegaconf import OmegaConf

from emblab.core.errors import EmblabError, closest, find_user_error
from emblab.core.settings import checked

T = TypeVar("T")


def fail(message: Any, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def guarded(body: Callable[[], T]) -> T:
    """body(), with the user's errors (ours, or an OS error such as a full disk) as one line and exit 2."""
    try:
        return body()
    except Exception as e:
        err = find_user_error(e)
        if err is None:
            raise
        fail(err)


def _text_fields(schema) -> dict[str, bool]:
    """Fields typed str (or str | None, True): their values are text as typed, never YAML (prompt=no is "no",
    0123 is "0123"); only an optional one reads `null` as None."""
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] is not str for f in fields(schema) if hints.get(f.name) in (str, str | None)}


def parse(schema: type[T], argv: list[str]) -> T:
    """key=value arguments as a checked `schema` instance."""
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: key=value ...  keys: {', '.join(f.name for f in fields(schema))}")
        raise SystemExit(0)
    text, raw, rest = _text_fields(schema), {}, []
    known = [f.name for f in fields(schema)]
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise EmblabError(f"{arg!r}: expected key=value (keys: {', '.join(known)})")
        if key in text:
            raw[key] = None if text[key] and value == "null" else value
        elif key.split(".")[0] not in known:
            raise EmblabError(f"unknown key {key.split('.')[0]!r}{closest(key, known)} (keys: {', '.join(known)})")
        else:
            rest.append(arg)
    try:
        values = OmegaConf.merge(OmegaConf.from_dotlist(rest), raw)
    except Exception as e:  # noqa: BLE001 - a value OmegaConf cannot parse: say which
        raise EmblabError(str(e).splitlines()[0]) from None
    return checked(schema, values)


def main(schema: type[T], body: Callable[[T], object], argv: list[str] | None = None) -> None:
    """A command: parse its arguments, run its body; both behind the one error boundary."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = guarded(lambda: parse(schema, sys.argv[1:] if argv is None else argv))
    threads = getattr(args, "torch_threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    guarded(lambda: body(args))
