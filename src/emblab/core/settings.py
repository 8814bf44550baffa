"""One declaration per setting: its type, default and allowed values, in a dataclass.

Each configurable class declares its settings as a dataclass whose fields are `setting(default, ...)`.
Hydra checks keys and types when it composes the config (emblab.training.config registers these
dataclasses as schemas); `checked()` then checks the declared ranges and choices and builds the
dataclass, naming the key of the first bad value in one line: `model.n_factors=0: expected an integer >= 1`.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emblab.core.errors import ConfigError, check_range, closest

T = TypeVar("T")


def setting(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, choices=None) -> Any:
    """A dataclass field with its bounds (ge >=, gt >, le <=, lt <) or its choices; a list bound applies to
    each element. A list or dict default is copied for each instance."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices).items() if v is not None}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check_field(key: str, value: Any, meta: dict, integer: bool) -> None:
    if value is None or isinstance(value, bool) or not meta:  # a flag has no range
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_field(f"{key}[{i}]", v, meta, integer)
        return
    if "choices" in meta:
        if value not in meta["choices"]:
            choices = ", ".join(map(str, meta["choices"]))
            raise ConfigError(f"{key}={value!r}: expected one of {choices}{closest(str(value), meta['choices'])}")
        return
    lo, hi = meta.get("ge", meta.get("gt")), meta.get("le", meta.get("lt"))
    check_range(
        key, value, lo=lo, hi=hi, integer=integer and isinstance(value, int), lo_open="gt" in meta, hi_open="lt" in meta
    )


def check_settings(obj: Any, prefix: str) -> None:
    """Every field's declared bounds or choices, nested dataclasses included, then the class's own `check`."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            check_settings(value, key)
        else:
            _check_field(key, value, dict(f.metadata), integer="int" in str(f.type) and "float" not in str(f.type))
    if hasattr(obj, "check"):
        obj.check(prefix)


def one_line(e: OmegaConfBaseException, prefix: str) -> str:
    """OmegaConf's error (several lines) as one, with the full key."""
    from omegaconf.errors import MissingMandatoryValue

    key = getattr(e, "full_key", None) or ""
    key = f"{prefix}.{key}" if prefix and key else key or prefix
    if isinstance(e, MissingMandatoryValue):
        return f"{key} is required: set {key}=..."
    first = str(e).strip().splitlines()[0]
    m = re.match(
        r"Value '(.*)' of type '\w+' (?:could not be converted to (\w+)|is incompatible with type hint '(.*)')", first
    )
    if m:
        value, kind, hint = m.groups()
        kind = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}.get(kind, kind or hint)
        return f"{key}={value!r}: expected {kind}"
    if "not in" in first and getattr(e, "object_type", None) is not None:
        names = [f.name for f in dataclasses.fields(e.object_type) if not f.name.startswith("_")]
        leaf = key.rsplit(".", 1)[-1]
        return f"{key}: no such setting{closest(leaf, names)}"
    return f"{key}: {first}" if key else first


def checked(schema: type[T], values: Any, prefix: str = "") -> T:
    """`values` (a DictConfig, dict or instance) as a checked `schema` instance: known keys, declared types, ranges."""
    if isinstance(values, schema):
        values = dataclasses.asdict(values)
    try:
        if isinstance(values, DictConfig):  # its interpolations point into the whole config: resolve them there
            values = OmegaConf.to_container(values, resolve=True)
        node = OmegaConf.merge(OmegaConf.structured(schema), values if values is not None else {})
        obj = OmegaConf.to_object(node)
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(e, prefix)) from None
    check_settings(obj, prefix)
    return obj


def plain(obj: Any) -> dict:
    """A settings dataclass as plain containers, without Hydra's `_target_` (what checkpoints keep)."""
    d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(OmegaConf.to_container(obj, resolve=True))
    return {k: v for k, v in d.items() if k != "_target_"}


def as_dict(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
