"""lr_find=show|apply: Lightning's learning-rate range test before training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emblab.training.build import build_data_and_model, build_trainer

log = logging.getLogger("emblab")


def find_lr(s: dict[str, Any], out_dir: Path, apply: bool, steps: int) -> None:
    """Lightning's learning-rate range test on a copy of the model that steps once per batch (the test raises
    the rate every step); saves plots/lr_find.png, and with apply trains at the suggested rate."""
    from pytorch_lightning.tuner import Tuner

    probe = {**s, "steps_per_call": 1, "callbacks": {}, "loggers": {}}
    trainer, _ = build_trainer(probe)
    dm, model = build_data_and_model(probe, trainer.world_size)
    finder = Tuner(trainer).lr_find(model, datamodule=dm, num_training=steps, update_attr=False)
    if finder is None or not trainer.is_global_zero:
        return
    suggestion = finder.suggestion()
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    finder.plot(suggest=True).savefig(out_dir / "plots" / "lr_find.png", dpi=100)
    log.info("lr_find: suggested learning rate %s%s", suggestion, " (applied)" if apply and suggestion else "")
    if apply and suggestion:
        s["model"].optim.lr = float(suggestion)
