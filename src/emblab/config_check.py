"""Checks before any work: a config that cannot run fails in one line naming its key, before data loads.

- `check_overrides(argv)`: composes the command line's overrides once; a misspelt key or group value
  becomes one line with the closest valid names instead of Hydra's many.
- `check_config(cfg)`: every value the run needs is set, and every value given to a class we build
  (data, model, trainer) has the type its constructor declares.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emblab.errors import ConfigError, closest

CONF = Path(__file__).resolve().parents[2] / "conf"
# flags after which Hydra prints or exits without running: leave those to Hydra
_HYDRA_INFO_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "--info",
    "-i",
    "-c",
    "--cfg",
    "--resolve",
    "-p",
    "--package",
    "--shell-completion",
    "-sc",
    "--version",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "--experimental-rerun",
)


def _single_run_overrides(overrides: list[str]) -> list[str]:
    """The overrides with each sweep replaced by its first choice (a range or interval sweep by nothing):
    enough to check that every key and group value exists."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    single = []
    for o in parsed:
        if not o.is_sweep_override():
            single.append(o.input_line)
        elif o.value_type in (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
            first = o.value().list[0]
            if isinstance(first, (str, int, float, bool)):
                single.append(f"{o.get_key_element()}={str(first).lower() if isinstance(first, bool) else first}")
    return single


def check_overrides(argv: list[str]) -> None:
    """Compose `train` with the command line's overrides; ConfigError in one line if Hydra cannot."""
    if any(a in _HYDRA_INFO_FLAGS or a.startswith(("--config", "--info")) for a in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    overrides = _single_run_overrides([a for a in argv if not a.startswith("-")])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            try:
                cfg = compose("train", overrides=overrides, return_hydra_config=True)
            except MissingConfigException as e:
                raise ConfigError(_missing_group_message(e, overrides)) from None
            except HydraException as e:
                raise ConfigError(_bad_key_message(e, overrides)) from None
        multirun = any(a in ("-m", "--multirun") for a in argv) or cfg.hydra.get("mode") == "MULTIRUN"
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        check_writable(key, OmegaConf.select(cfg, key, throw_on_resolution_failure=False))
    finally:
        GlobalHydra.instance().clear()


def check_writable(key: str, folder: str | None) -> None:
    """The output folder can be made and written (its nearest existing parent is a writable folder)."""
    if not folder:
        return
    path = Path(folder).absolute()
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={folder}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or _read_only_fs(parent):
        raise ConfigError(f"{key}={folder}: {parent} is not writable")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _missing_group_message(e, overrides: list[str]) -> str:
    from hydra.core.global_hydra import GlobalHydra

    text = str(e)
    for o in overrides:
        group, _, value = o.lstrip("+~").partition("=")
        if "." in group or not value:
            continue
        options = GlobalHydra.instance().config_loader().get_group_options(group.replace(".", "/"))
        if options and value not in options:
            return f"{group}={value}: no such {group} config{closest(value, options)}; choices: {', '.join(options)}"
        if not options and f"'{group}" in text:
            return f"{group}={value}: there is no config group {group!r}"
    return text.strip().splitlines()[0]


def _bad_key_message(e, overrides: list[str]) -> str:
    from hydra import compose

    cause = e.__cause__ or e
    full_key = getattr(cause, "full_key", None)
    first = str(e).strip().splitlines()[0]
    if not full_key:
        return first
    parent, _, leaf = full_key.rpartition(".")
    rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{full_key}=")]
    try:
        cfg = compose("train", overrides=rest)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
    except Exception:  # noqa: BLE001 - the suggestion is a courtesy; the key is wrong either way
        keys = []
    if "not in struct" in str(cause) or "Could not override" in first or "Could not append" in first:
        hint = closest(leaf, keys) or (
            f" (keys of {parent or 'the config'}: {', '.join(map(str, keys))})" if keys else ""
        )
        return f"{full_key}: no such key{hint}; add it with +{full_key}=... only if the class takes it"
    return f"{full_key}: {str(cause).strip().splitlines()[0]}"


# ---------------------------------------------------------------- values against constructor types
def _fits(value: Any, hint: Any) -> bool:
    """Whether a plain config value fits a simple type hint; richer hints are the constructor's to check."""
    if hint in (Any, inspect.Parameter.empty):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _hints(fn, sig: inspect.Signature) -> dict[str, Any]:
    """Each parameter's annotation as a type, where it resolves (a library's forward references may not)."""
    env = getattr(inspect.unwrap(fn), "__globals__", {})
    out = {}
    for name, p in sig.parameters.items():
        ann = p.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, env)  # noqa: S307 - the annotation text of an installed class, never data
            except Exception:  # noqa: BLE001
                continue
        out[name] = ann
    return out


def _hint_text(hint: Any) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def check_values(group: str, node: DictConfig, skip: tuple[str, ...] = ()) -> None:
    """Each key given under `group` is a parameter of its _target_ class, of the declared type."""
    import hydra

    target = node.get("_target_")
    if not target:
        return
    cls = hydra.utils.get_class(target)  # our own config's class
    sig = inspect.signature(cls.__init__)
    hints = _hints(cls.__init__, sig)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    values = OmegaConf.to_container(node, resolve=True)
    for key, value in values.items():
        if key.startswith("_") or key in skip:
            continue
        if key not in sig.parameters:
            if not takes_any:
                raise ConfigError(
                    f"{group}.{key}: {cls.__name__} takes no such setting"
                    f"{closest(key, [k for k in sig.parameters if k != 'self'])}"
                )
            continue
        hint = hints.get(key, sig.parameters[key].annotation)
        if not _fits(value, hint):
            raise ConfigError(f"{group}.{key}={value!r}: expected {_hint_text(hint)}")


def check_config(cfg: DictConfig) -> None:
    """Everything the run needs is given, with the right types, before data loads or a GPU is looked for."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"{missing[0]} is required: set {missing[0]}=..."
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
        )
    check_values("data", cfg.data)
    check_values("model", cfg.model)
    check_values("trainer", cfg.trainer, skip=("gpus",))


def check_metric(name: str | None, model, extra: tuple[str, ...] = ()) -> None:
    """optimized_metric names a metric the model (or a callback: `extra`) logs: found out before a
    sweep's first trial trains."""
    if not name:
        return
    declared = model.declared_metrics() | set(extra)
    if name not in declared:
        raise ConfigError(
            f"optimized_metric={name!r}: {type(model).__name__} logs no such metric"
            f"{closest(name, declared)}; it logs {', '.join(sorted(declared))}"
        )
