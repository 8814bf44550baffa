"""key=value arguments for the small commands (interpret, predict, generate, ...), the same syntax as
train.py's overrides, without Hydra's output folders. Unknown keys fail in one line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import fields
from typing import TypeVar, get_type_hints

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emblab.errors import check_range, closest, find_user_error

T = TypeVar("T")


def _text_fields(schema) -> dict[str, bool]:
    """Fields typed str (or str | None, True): their values are text as typed, never YAML (prompt=no
    is "no", 0123 is "0123"); only an optional field reads `null` as None."""
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] is not str for f in fields(schema) if hints.get(f.name) in (str, str | None)}


def parse(schema: type[T], argv: list[str] | None = None) -> T:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: key=value ...  keys: {', '.join(f.name for f in fields(schema))}")
        raise SystemExit(0)
    text, raw, rest = _text_fields(schema), {}, []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in text:
            raw[key] = None if text[key] and value == "null" else value
        else:
            rest.append(arg)
    known = [f.name for f in fields(schema)]
    for arg in rest:
        key = arg.partition("=")[0].split(".")[0]
        if "=" not in arg:
            print(f"error: {arg!r}: expected key=value (keys: {', '.join(known)})", file=sys.stderr)
            raise SystemExit(2)
        if key not in known:
            print(f"error: unknown key {key!r}{closest(key, known)} (keys: {', '.join(known)})", file=sys.stderr)
            raise SystemExit(2)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(rest), raw)
    except OmegaConfBaseException as e:
        print(f"error: {str(e).splitlines()[0]} (keys: {', '.join(f.name for f in fields(schema))})", file=sys.stderr)
        raise SystemExit(2) from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        print(f"error: missing {', '.join(f'{k}=...' for k in missing)}", file=sys.stderr)
        raise SystemExit(2)
    return OmegaConf.to_object(cfg)


def main(schema: type[T], body: Callable[[T], object], argv: list[str] | None = None) -> None:
    """Run a command body; our errors print as one line with exit status 2."""
    args = parse(schema, argv)
    try:
        threads = getattr(args, "torch_threads", None)
        if threads is not None:
            check_range("torch_threads", threads, lo=1, integer=True)
            import torch

            torch.set_num_threads(threads)
        body(args)
    except Exception as e:
        err = find_user_error(e)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
