"""Loading checkpoints safely. A checkpoint is a pickle: one from someone else could run code when
loaded. emblab stores only tensors and plain containers in its checkpoints, so every command loads
with torch.load(weights_only=True) and refuses anything else."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from emblab.errors import EmblabError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmblabError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmblabError(f"refusing to load {path}: it holds pickled objects beyond tensors and plain containers, "
                          f"which could run code ({reason[:200]})") from None
    except (RuntimeError, EOFError) as e:
        raise EmblabError(f"{path} is not a readable checkpoint ({str(e).splitlines()[0][:200]})") from None


def load_model(path: str | Path):
    """(model in eval mode on CPU, checkpoint dict) from an emblab checkpoint, GPU-trained or not."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("emblab")
    if not meta:
        raise EmblabError(f"{path} is not an emblab checkpoint (no 'emblab' entry)")
    module, _, name = meta["model_class"].rpartition(".")
    if not module.startswith("emblab.models."):  # never import what a file names outside our models
        raise EmblabError(f"{path}: unexpected model class {meta['model_class']!r}")
    import importlib

    cls = getattr(importlib.import_module(module), name)
    model = cls(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
