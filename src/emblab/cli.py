"""key=value arguments for the small commands (interpret, predict, generate, ...), the same syntax as
train.py's overrides, without Hydra's output folders. Unknown keys fail in one line."""

from __future__ import annotations

import sys
from dataclasses import fields
from typing import Callable, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emblab.errors import EmblabError
from emblab.train import find_user_error

T = TypeVar("T")


def parse(schema: type[T], argv: list[str] | None = None) -> T:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: key=value ...  keys: {', '.join(f.name for f in fields(schema))}")
        raise SystemExit(0)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
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
        body(args)
    except Exception as e:
        err = find_user_error(e)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
