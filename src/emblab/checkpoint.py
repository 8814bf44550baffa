"""Loading checkpoints safely. A checkpoint is someone's file: nothing in it may choose code to run.

- It is unpickled with torch.load(weights_only=True): tensors and plain containers only.
- What it says about itself (model class, data module and its settings, hyperparameters, artifacts)
  is checked as plain data: str/int/float/bool/None, lists and str-keyed dicts (tensors only among the
  artifacts), no Hydra `_target_`-style key anywhere, no `${...}` interpolation.
- Classes come from the allow-lists below, by exact name, and are called directly: never
  hydra.utils.instantiate, importlib or a lookup by a stored string.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from emblab.errors import EmblabError

# A Hydra key that makes instantiate call, import or configure something (_target_, _partial_, ...).
_HYDRA_KEY = re.compile(r"^_[a-z]+_$")
_PLAIN = (str, int, float, bool, type(None))


def model_classes() -> dict[str, type]:
    """The model classes a checkpoint may name: emblab's own, by their full names."""
    from emblab.models.char_rnn import CharModel
    from emblab.models.collab import CollabModel
    from emblab.models.tabular import MixedInputModel

    return {f"{c.__module__}.{c.__qualname__}": c for c in (CollabModel, MixedInputModel, CharModel)}


def data_classes() -> dict[str, type]:
    """The DataModules a checkpoint's data config may name."""
    from emblab.data.movielens import MovieLensDataModule
    from emblab.data.rossmann import RossmannDataModule
    from emblab.data.tabular import TabularDataModule
    from emblab.data.text import TextDataModule

    classes = (MovieLensDataModule, RossmannDataModule, TabularDataModule, TextDataModule)
    return {f"{c.__module__}.{c.__qualname__}": c for c in classes}


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


def _unpickling_reason(e: Exception) -> str | None:
    """The offending global from torch's message (never its advice to turn the check off), or None
    when the pickle is simply broken."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    return f"it holds the global {m.group(1)}" if m else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmblabError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise EmblabError(f"{path} is empty (0 bytes): not a checkpoint")
    with path.open("rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK", b"\x80")):  # torch's zip format, or its legacy pickle
        raise EmblabError(f"{path} is not a torch checkpoint (neither a zip archive nor a pickle)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickling_reason(e)
        if reason is None:
            raise EmblabError(f"{path} is not a readable checkpoint (a broken pickle)") from None
        raise EmblabError(
            f"refusing to load {path}: {reason}, which could run code; emblab checkpoints hold "
            "only tensors and plain containers"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise EmblabError(
            f"{path} is not a readable checkpoint ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})"
        ) from None
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
                f"{path}: unexpected data module {config.get('_target_')!r}; emblab builds only "
                f"{', '.join(sorted(data_classes()))}"
            )
        config = {k: v for k, v in config.items() if k != "_target_"}
    check_plain({**{k: v for k, v in meta.items() if k != "data"}, "data_config": config}, f"{path}: emblab")
    check_plain(meta.get("data") or {}, f"{path}: emblab.data", tensors=True)
    check_plain(ckpt.get("hyper_parameters") or {}, f"{path}: hyper_parameters")
    name = meta.get("model_class")
    cls = model_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise EmblabError(
            f"{path}: unexpected model class {meta.get('model_class')!r}; emblab loads only "
            f"{', '.join(sorted(model_classes()))}"
        )
    if meta.get("data_kind") != cls.data_kind:
        raise EmblabError(f"{path}: data kind {meta.get('data_kind')!r} does not belong to {cls.__name__}")
    return meta


def load_model(path: str | Path, expect_kind: str | None = None):
    """(model in eval mode on CPU, checkpoint dict) from an emblab checkpoint, GPU-trained or not.
    expect_kind: the data kind the calling command works on (ratings, tabular, text)."""
    ckpt = load_checkpoint(path)
    meta = checked_meta(path, ckpt)
    if expect_kind is not None and meta["data_kind"] != expect_kind:
        raise EmblabError(f"{path} is a {meta['data_kind']} model; this command reads {expect_kind} models")
    cls = model_classes()[meta["model_class"]]
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise EmblabError(f"{path} has no hyper_parameters or state_dict")
    try:
        model = cls(**hparams)
        model.load_state_dict(ckpt["state_dict"])
    except EmblabError as e:
        raise EmblabError(f"{path}: {e}") from None
    except (TypeError, RuntimeError, ValueError, KeyError) as e:
        raise EmblabError(
            f"{path}: its weights or hyperparameters do not fit {cls.__name__} ({str(e).splitlines()[0][:200]})"
        ) from None
    return model.eval(), ckpt


def build_datamodule(path: str | Path, meta: dict[str, Any], overrides: dict[str, Any] | None = None):
    """The DataModule a checkpoint was trained on, from its stored data config and the user's
    data.KEY=VALUE overrides, built by calling an allow-listed class directly. `meta` comes from
    checked_meta (plain values, an allow-listed class name)."""
    stored = meta.get("data_config")
    if not isinstance(stored, dict) or not stored:
        raise EmblabError(f"{path} carries no data config; it was not written by emblab's train.py")
    overrides = dict(overrides or {})
    check_plain(overrides, "data")
    name = stored.get("_target_")  # a key into data_classes(), never imported
    kwargs = {k: v for k, v in stored.items() if k != "_target_"}
    cls = data_classes()[name]  # checked_meta has refused any other name
    kwargs.update(overrides)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise EmblabError(f"data: {str(e).splitlines()[0][:200]}") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint whole or not at all. Lightning's own writer fills the final file in place,
    so a full disk or a kill mid-write leaves a truncated checkpoint under its real name. Here the bytes
    go to a temporary file beside the target (same filesystem, so the rename is atomic), are fsynced,
    and only then replace the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:  # the rename itself survives a power cut once the folder is synced (POSIX)
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
