"""What every emblab LightningModule shares: its settings (a dataclass, checked before any layer is built), the
optimizer and learning-rate schedule they describe (emblab.models.optim), and the metric names it logs."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics import MetricCollection

from emblab.core.errors import ConfigError
from emblab.core.settings import checked, plain
from emblab.models.optim import Optim, make_optimizer, make_schedule

log = logging.getLogger(__name__)


class EmblabModule(pl.LightningModule):
    """A family's LightningModule: `Config` (its settings dataclass) and the sizes its data gives (`dims`).

    Subclasses call `super().__init__(cfg, **dims)`, then build their net from `self.cfg`; they define
    `train_loss(batch)` (training_step is here) and their validation and test steps."""

    Config: type
    data_kind: str = "?"  # the DataModule.kind the family trains on
    logged_metrics: tuple[str, ...] = ()  # what it logs by hand beyond {stage}/loss and its MetricCollections

    def __init__(self, cfg, **dims):
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({**dims, **plain(cfg)})  # plain values: what a checkpoint needs to rebuild it

    @classmethod
    def of(cls, where: str = "model", **values):
        """A model from plain values (stored hyperparameters, or a test's keywords): the sizes its constructor
        takes, and its settings, checked. Keys that are neither are refused by the settings' check."""
        sizes = set(inspect.signature(cls.__init__).parameters) - {"self", "cfg"}
        names = {f.name for f in dataclasses.fields(cls.Config)}
        settings = {k: v for k, v in values.items() if k in names or k not in sizes}
        return cls(checked(cls.Config, settings, where), **{k: v for k, v in values.items() if k in sizes})

    def train_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def log_train_loss(self, loss: torch.Tensor, n_targets: int) -> None:
        self.log("train/loss", loss, prog_bar=True)

    def training_step(self, batch, batch_idx):
        loss = self.train_loss(batch)
        self.log_train_loss(loss, batch[-1].numel())
        return loss

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken in this fit, resumes included."""
        return self.trainer.global_step

    def declared_metrics(self) -> set[str]:
        """Every metric name this model logs (checked against optimized_metric before training)."""
        names = {f"{stage}/loss" for stage in ("train", "val", "test")} | set(self.logged_metrics)
        for m in self.modules():
            if isinstance(m, MetricCollection):
                names |= set(m.keys(keep_base=False))
        return names

    def attached_trainer(self):
        """The Trainer, or None outside a fit (Lightning's `trainer` property raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def clips_gradients(self) -> bool:
        return bool(self.attached_trainer().gradient_clip_val)

    def total_steps(self) -> int:
        """Optimizer steps of the whole fit: the length of the learning-rate schedule."""
        return int(self.trainer.estimated_stepping_batches)

    def on_train_start(self) -> None:
        """A resumed one-cycle schedule is as long as this run's: extending a finished run cannot continue it."""
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) and sched.total_steps != self.total_steps():
                raise ConfigError(
                    f"the checkpoint's one-cycle schedule spans {sched.total_steps} optimizer steps, this run "
                    f"{self.total_steps()}: resume with the trainer.max_epochs / max_steps it was planned with, or "
                    "start a new run (without ckpt_path) to train for longer"
                )

    def configure_optimizers(self) -> Any:
        trainer = self.attached_trainer()
        mixed = trainer is not None and hasattr(trainer.precision_plugin, "scaler") and self.clips_gradients()
        # a fused step unscales 16-bit gradients inside itself, after clipping would have seen them scaled
        cfg = self.cfg.optim if not mixed else Optim(**{**vars(self.cfg.optim), "fused": False})
        opt = make_optimizer(self.parameters(), cfg)
        if cfg.schedule == "constant":
            return opt
        sched = make_schedule(opt, cfg, self.total_steps(), self.trainer.max_epochs)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}
