"""What emblab adds to Lightning's checkpoints (the data's artifacts and settings, the model class, the optimizer
steps, torch's RNG), and a writer that leaves each checkpoint whole or not at all. Reading them back, safely:
emblab.training.loading."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO


class CheckpointContents(pl.Callback):
    """Adds checkpoint["emblab"]: the data kind, the data's artifacts (id maps, vocabulary, codes), its
    settings, the model class and the optimizer steps taken; and torch's RNG state, so a resumed run
    continues the same random stream."""

    def __init__(self, data_config: dict[str, Any]):
        self.data_config = data_config  # the data settings as configured ({"_target_": class, ...})

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        from emblab.training.loading import model_classes

        base = next(c for c in type(pl_module).__mro__ if f"{c.__module__}.{c.__qualname__}" in model_classes())
        checkpoint["emblab"] = {
            "data_kind": pl_module.data_kind,
            "data": trainer.datamodule.artifacts(),
            "data_config": self.data_config,
            "model_class": f"{base.__module__}.{base.__qualname__}",
            "optimizer_steps": pl_module.optimizer_steps,
        }
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint whole or not at all. Lightning's own writer fills the final file in place, so a
    full disk or a kill mid-write leaves a truncated checkpoint under its real name. Here the bytes go to a
    temporary file beside the target (same filesystem: the rename is atomic), are fsynced, then replace it."""

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
