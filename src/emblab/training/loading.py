"""Reading checkpoints back, safely. A checkpoint is someone's file: nothing in it may choose code to run.

- It is unpickled with torch.load(weights_only=True): tensors and plain containers only.
- What it says about itself (model class, data module and its settings, hyperparameters, artifacts) is
  checked as plain data: str/int/float/bool/None, lists and str-keyed dicts (tensors only among the
  artifacts), no Hydra `_target_`-style key anywhere, no `${...}` interpolation; weights must be finite.
- Classes come from the allow-lists below, by exact name, and are called directly: never
  hydra.utils.instantiate, importlib or a lookup by a stored string.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from emblab.core.errors import EmblabError
from emblab.core.settings import checked

_HYDRA_KEY = re.compile(r"^_[a-z]+_$")  # _target_, _partial_, ...: keys that make Hydra call or import


_PLAIN = (str, int, float, bool, type(None))


# settings that older checkpoints stored with the model and that are now the training machinery's
_MOVED_OUT = {"steps_per_call"}


def model_classes() -> dict[str, type]:
    """The model classes a checkpoint may name, by their full names (and the names older checkpoints use)."""
    from emblab.models.char import CharModel
    from emblab.models.collab import CollabModel
    from emblab.models.rank import RankModel
    from emblab.models.tabular import MixedInputModel

    classes = {f"{c.__module__}.{c.__qualname__}": c for c in (CollabModel, RankModel, MixedInputModel, CharModel)}
    return {**classes, "emblab.models.char_rnn.CharModel": CharModel}


def data_classes() -> dict[str, type]:
    """The DataModules a checkpoint's data config may name."""
    from emblab.data.interactions import InteractionsDataModule
    from emblab.data.rossmann import RossmannDataModule
    from emblab.data.tabular import TabularDataModule
    from emblab.data.text import TextDataModule

    classes = (InteractionsDataModule, RossmannDataModule, TabularDataModule, TextDataModule)
    # checkpoints written before the interactions reader name MovieLens's own module; its settings are a source's
    old = {"emblab.data.movielens.MovieLensDataModule": InteractionsDataModule}
    return {**{f"{c.__module__}.{c.__qualname__}": c for c in classes}, **old}


def check_plain(value: Any, where: str, tensors: bool = False) -> None:
    """Refuse anything but plain values (and tensors where `tensors`) under `where`, naming the key."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if not isinstance(key, str):
                raise EmblabError(f"{where}: key {key!r} is not a string")
            if _HYDRA_KEY.match(key):
                raise EmblabError(f"{where}.{key}: a checkpoint may not name code to call")
            check_plain(sub, f"{where}.{key}", tensors)
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            check_plain(sub, f"{where}[{i}]", tensors)
    elif isinstance(value, torch.Tensor):
        if not tensors:
            raise EmblabError(f"{where}: a tensor where a plain value belongs")
    elif isinstance(value, _PLAIN):
        if isinstance(value, str) and "${" in value:
            raise EmblabError(f"{where}: interpolation {value[:60]!r} in a checkpoint is refused")
    else:
        raise EmblabError(f"{where}: a {type(value).__name__} where plain values belong")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmblabError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise EmblabError(f"{path} is empty (0 bytes): not a checkpoint")
    with path.open("rb") as f:
        if not f.read(4).startswith((b"PK", b"\x80")):  # torch's zip format, or its legacy pickle
            raise EmblabError(f"{path} is not a torch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))  # never torch's advice to turn the check off
        if m is None:
            raise EmblabError(f"{path} is not a readable checkpoint (a broken pickle)") from None
        raise EmblabError(
            f"refusing to load {path}: it holds the global {m.group(1)}, which could run code; "
            "emblab checkpoints hold only tensors and plain containers"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise EmblabError(f"{path} is not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict):
        raise EmblabError(f"{path} is not a checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def checked_meta(path: str | Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's "emblab" entry, checked: an allow-listed model class, its data kind, plain values."""
    meta = ckpt.get("emblab")
    if not isinstance(meta, dict) or not meta:
        raise EmblabError(f"{path} is not an emblab checkpoint (no 'emblab' entry)")
    config = meta.get("data_config")
    if isinstance(config, dict):  # its top-level _target_ is a name, looked up in data_classes() only
        name = config.get("_target_")
        if not isinstance(name, str) or name not in data_classes():
            raise EmblabError(
                f"{path}: unexpected data module {name!r}; emblab builds only {', '.join(sorted(data_classes()))}"
            )
        config = {k: v for k, v in config.items() if k != "_target_"}
    check_plain({**{k: v for k, v in meta.items() if k != "data"}, "data_config": config}, f"{path}: emblab")
    check_plain(meta.get("data") or {}, f"{path}: emblab.data", tensors=True)
    check_plain(ckpt.get("hyper_parameters") or {}, f"{path}: hyper_parameters")
    name = meta.get("model_class")
    cls = model_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise EmblabError(
            f"{path}: unexpected model class {name!r}; emblab loads only {', '.join(sorted(model_classes()))}"
        )
    if meta.get("data_kind") != cls.data_kind:
        raise EmblabError(f"{path}: data kind {meta.get('data_kind')!r} does not belong to {cls.__name__}")
    return meta


def differing_artifacts(saved: dict, rebuilt: dict) -> list[str]:
    """Keys whose values differ: the rebuilt data would feed the model other ids, codes or rows than it learned."""
    differ = []
    for key, value in saved.items():
        other = rebuilt.get(key)
        if isinstance(value, torch.Tensor):
            same = isinstance(other, torch.Tensor) and value.shape == other.shape and torch.equal(value, other)
        else:
            same = value == other
        if not same:
            differ.append(key)
    return differ


def check_finite(path, state_dict: dict[str, Any]) -> None:
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise EmblabError(
                f"{path}: weight {name} holds {int((~torch.isfinite(t)).sum())} non-finite values "
                "(NaN or inf): the run that wrote it diverged"
            )


def load_model(path: str | Path, expect_kind: str | tuple[str, ...] | None = None):
    """(model in eval mode on CPU, checkpoint dict) from an emblab checkpoint, GPU-trained or not.
    expect_kind: the data kind(s) the calling command works on (ratings, interactions, tabular, text)."""
    ckpt = load_checkpoint(path)
    meta = checked_meta(path, ckpt)
    kinds = (expect_kind,) if isinstance(expect_kind, str) else expect_kind
    if kinds is not None and meta["data_kind"] not in kinds:
        raise EmblabError(f"{path} is a {meta['data_kind']} model; this command reads {' or '.join(kinds)} models")
    cls = model_classes()[meta["model_class"]]
    hparams, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    if not isinstance(hparams, dict) or not isinstance(state, dict):
        raise EmblabError(f"{path} has no hyper_parameters or state_dict")
    check_finite(path, state)
    try:
        model = cls.of(f"{path}: hyper_parameters", **{k: v for k, v in hparams.items() if k not in _MOVED_OUT})
        model.load_state_dict(state)
    except EmblabError as e:
        raise EmblabError(f"{path}: {e}") from None
    except (TypeError, RuntimeError, ValueError, KeyError) as e:
        reason = str(e).splitlines()[0][:200]
        raise EmblabError(f"{path}: its weights or hyperparameters do not fit {cls.__name__} ({reason})") from None
    return model.eval(), ckpt


def build_datamodule(path: str | Path, meta: dict[str, Any], overrides: dict[str, Any] | None = None):
    """The DataModule a checkpoint was trained on, from its stored settings and the user's data.KEY=VALUE
    overrides, built by calling an allow-listed class directly (`meta` comes from checked_meta)."""
    stored = meta.get("data_config")
    if not isinstance(stored, dict) or not stored:
        raise EmblabError(f"{path} carries no data config; it was not written by emblab's train.py")
    check_plain(dict(overrides or {}), "data")
    cls = data_classes()[stored["_target_"]]  # checked_meta has refused any other name
    settings = {k: v for k, v in stored.items() if k != "_target_"}
    return cls(checked(cls.Config, {**settings, **(overrides or {})}, "data"), meta["data_kind"])
