"""model.optim: the optimizer and learning-rate schedule a model's settings describe."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from emblab.core.settings import setting

log = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass
class Optim:
    """model.optim: schedule constant | onecycle | cosine_restarts (the lesson's SGDR: cycles of cycle_len
    epochs, each cycle_mult times longer) | plateau (the rate times plateau_factor after plateau_patience
    validations without a better plateau_monitor: for runs whose length early stopping decides).
    fused: one kernel per step instead of one per tensor operation."""

    name: str = setting("adamw", choices=tuple(OPTIMIZERS))
    lr: float = setting(5e-3, gt=0)
    weight_decay: float = setting(0.0, ge=0)
    schedule: str = setting("onecycle", choices=("constant", "onecycle", "cosine_restarts", "plateau"))
    pct_start: float = setting(0.25, gt=0, le=1)
    momentum: float = setting(0.9, ge=0, le=1)
    cycle_len: int = setting(1, ge=1)
    cycle_mult: int = setting(2, ge=1)
    plateau_monitor: str = "val/loss"
    plateau_factor: float = setting(0.3, gt=0, lt=1)
    plateau_patience: int = setting(4, ge=0)
    fused: bool = True


def make_optimizer(params, cfg: Optim) -> torch.optim.Optimizer:
    """The optimizer an Optim describes; without `fused` where this torch has no fused kernel for the device."""
    params = list(params)
    kwargs = {
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        **({"momentum": cfg.momentum} if cfg.name == "sgd" else {}),
    }
    if cfg.fused:
        try:
            return OPTIMIZERS[cfg.name](params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here (older torch, other device)
            pass
    return OPTIMIZERS[cfg.name](params, **kwargs)


def make_schedule(opt: torch.optim.Optimizer, cfg: Optim, total_steps: int, max_epochs: int | None):
    """Lightning's lr_scheduler entry for cfg.schedule over a fit of total_steps optimizer steps (None: the rate
    stays at cfg.lr)."""
    if cfg.schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
        return {"scheduler": sched, "monitor": cfg.plateau_monitor, "interval": "epoch"}
    if cfg.schedule == "onecycle":
        if cfg.pct_start * total_steps < 2:  # torch's one cycle divides by zero at some such lengths
            log.warning(
                "model.optim.schedule=onecycle over %d optimizer steps leaves its warm-up (pct_start=%s) "
                "under 2 steps: the learning rate stays at model.optim.lr for this run",
                total_steps,
                cfg.pct_start,
            )
            return None
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.pct_start
        )
    else:
        per_epoch = max(1, total_steps // max(1, max_epochs or 1))
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=per_epoch * cfg.cycle_len, T_mult=cfg.cycle_mult
        )
    return {"scheduler": sched, "interval": "step"}
