"""What every emblab LightningModule shares: the optimizer and schedule from config, and the data
artifacts (id maps, vocab, codes) written into each checkpoint."""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import Precision
from torchmetrics import MetricCollection

from emblab.data.base import GroupedBatch
from emblab.errors import ConfigError, check_range

log = logging.getLogger(__name__)

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
DEFAULT_OPTIM = {
    "name": "adamw",
    "lr": 5e-3,
    "weight_decay": 0.0,
    "schedule": "onecycle",
    "pct_start": 0.25,
    "momentum": 0.9,
    "cycle_len": 1,
    "cycle_mult": 2,
    "fused": True,
}


def make_optimizer(params, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer an optim config describes. fused: one kernel per step instead of one per tensor
    operation (on a CPU, AdamW over MovieLens 25M's embedding tables: 13 ms instead of 80 ms a step;
    BENCHMARKS.md); builds without it where this torch has no fused kernel for the device."""
    if cfg["name"] not in OPTIMIZERS:
        raise ConfigError(f"model.optim.name={cfg['name']!r}: expected one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    extra = {"momentum": cfg["momentum"]} if cfg["name"] == "sgd" else {}
    kwargs = {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"], **extra}
    if cfg["fused"]:
        try:
            return OPTIMIZERS[cfg["name"]](params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here (older torch, other device)
            pass
    return OPTIMIZERS[cfg["name"]](params, **kwargs)


class EmblabModule(pl.LightningModule):
    """Subclasses set `data_kind` (the DataModule.kind they accept) and call save_hyperparameters().

    optim: name (adamw | adam | sgd), lr, weight_decay, schedule (constant | onecycle |
    cosine_restarts, the lesson's SGDR with cycle_len epochs growing by cycle_mult), fused.

    Families that define `train_loss(batch)` get training_step from here. With hparam steps_per_call
    k > 1 a Lightning batch is k batches and k optimizer steps (Lightning's manual optimization), so
    Lightning's fixed cost per batch (hooks, logging) is paid once per k steps: the same steps, batches
    and schedule, at the speed of a hand-written loop (BENCHMARKS.md). Lightning's own counters
    (trainer.global_step, the logging step, the progress bar, limit_train_batches) then count these
    calls; the settings a user gives in optimizer steps (max_steps, every_n_train_steps, an integer
    val_check_interval, log_every_n_steps) are translated once by train.py, and `optimizer_steps`
    (metrics.json, checkpoints) counts steps. Callbacks' backward and optimizer-step hooks run once
    per call, for its last step. trainer.gradient_clip_val still clips: train.py hands it to the model
    (`grad_clip`), which clips each of the k steps itself.
    """

    data_kind: str = "?"
    logged_metrics: tuple[str, ...] = ()  # what a family logs by hand beyond {stage}/loss and its MetricCollections
    steps_per_call: int = 1
    steps_taken: int = 0  # optimizer steps of the k-step path (saved in checkpoints)
    grad_clip: tuple[float, str] | None = None  # (value, "norm" | "value") when the model clips itself

    def attached_trainer(self):
        """The Trainer, or None outside a fit (Lightning's `trainer` property raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def set_steps_per_call(self, k: int) -> None:
        if k < 1:
            raise ConfigError(f"model.steps_per_call={k}: expected 1 or more")
        self.automatic_optimization = k == 1
        self.steps_per_call = k

    def declared_metrics(self) -> set[str]:
        """Every metric name this model logs (checked against optimized_metric before training)."""
        names = {f"{stage}/loss" for stage in ("train", "val", "test")} | set(self.logged_metrics)
        for m in self.modules():
            if isinstance(m, MetricCollection):
                names |= set(m.keys(keep_base=False))
        return names

    def check_hparams(self, positive: tuple[str, ...] = (), fractions: tuple[str, ...] = ()) -> None:
        """Refuse, naming model.KEY, a size below 1 or a dropout outside [0, 1), before any layer is built
        (an empty embedding would train and fail only in interpretation)."""
        for names, lo, hi, integer in ((positive, 1, None, True), (fractions, 0, 0.999999, False)):
            for name in names:
                value = self.hparams.get(name)
                for i, v in enumerate(value if isinstance(value, (list, tuple)) else [value]):
                    if v is not None:
                        check_range(
                            f"model.{name}" + (f"[{i}]" if isinstance(value, (list, tuple)) else ""),
                            v,
                            lo=lo,
                            hi=hi,
                            integer=integer,
                        )

    def train_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def log_train_loss(self, loss: torch.Tensor, n_targets: int) -> None:
        """The training loss of one call (the mean over its n_targets predicted targets)."""
        self.log("train/loss", loss, prog_bar=True)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            loss = self.train_loss(batch)
            self.log_train_loss(loss, batch[-1].numel())
            return loss
        # k > 1: this Lightning batch is k batches, one optimizer step each. Lightning counts it as one
        # step (global_step, the logging step and every step-counted setting count calls; train.py
        # translates the user's settings once), so only the last step goes through Lightning's optimizer
        # wrapper (its precision plugin, hooks and count); the others step the optimizer as a
        # hand-written loop would: the wrapper's hooks cost about one such step each.
        opt, raw, sched = self.optimizers(), self.optimizers(use_pl_optimizer=False), self.lr_schedulers()
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # 16-mixed: a GradScaler
        direct = type(self.trainer.precision_plugin) is Precision and self.trainer.world_size == 1
        # k batches gathered at once; ungrouped (overfit_batches: the same few batches, a step each): one
        batches = batch.batches() if isinstance(batch, GroupedBatch) else [batch]
        losses = []
        for j, one in enumerate(batches):
            loss = self.train_loss(one)
            if j == len(batches) - 1:
                opt.zero_grad()
                if direct:
                    loss.backward()
                else:
                    self.manual_backward(loss)
                opt.step()  # clips in on_before_optimizer_step: after the scaler has unscaled the gradients
            else:
                raw.zero_grad(set_to_none=True)
                if direct:
                    loss.backward()
                else:  # the scaler's loss scaling, DDP's gradient sync
                    self.manual_backward(loss)
                if scaler is not None:
                    if self.grad_clip:
                        scaler.unscale_(raw)
                    self._clip_own_gradients()
                    scaler.step(raw)
                    scaler.update()
                else:
                    self._clip_own_gradients()
                    raw.step()
            if sched is not None:
                sched.step()
            losses.append(loss.detach())  # (no arithmetic per step: the mean is taken once per call)
        self.steps_taken += len(batches)
        targets = torch.tensor([one[-1].numel() for one in batches], dtype=losses[0].dtype, device=losses[0].device)
        n = int(sum(one[-1].numel() for one in batches))
        self.log_train_loss((torch.stack(losses) * targets).sum() / n, n)  # the mean over this call's targets

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps taken in this fit, resumes included (trainer.global_step counts calls when k > 1)."""
        return self.trainer.global_step if self.automatic_optimization else self.steps_taken

    def _clip_own_gradients(self) -> None:
        if self.grad_clip:
            value, algorithm = self.grad_clip
            clip = torch.nn.utils.clip_grad_norm_ if algorithm == "norm" else torch.nn.utils.clip_grad_value_
            clip(self.parameters(), value)

    def on_before_optimizer_step(self, optimizer) -> None:
        if not self.automatic_optimization:  # (automatic optimization: Lightning clips)
            self._clip_own_gradients()

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # one step per batch while the model holds the trainer's clipping (lr_find on a steps_per_call model)
        if gradient_clip_val is None and self.grad_clip:
            gradient_clip_val, gradient_clip_algorithm = self.grad_clip
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def total_steps(self) -> int:
        """Optimizer steps of the whole fit: the length of the learning-rate schedule."""
        t = self.trainer
        calls = t.estimated_stepping_batches  # also builds the train loader: num_training_batches, steps per epoch
        if self.automatic_optimization:
            return int(calls)
        k = 1 if t.overfit_batches > 0 else self.steps_per_call  # overfit_batches: batches come ungrouped
        if t.max_epochs == -1:  # max_steps alone: Lightning's count is in calls of k steps
            return int(t.max_steps * k)
        per_epoch = min(t.num_training_batches * k, t.datamodule.train_steps_per_epoch)
        total = per_epoch * max(t.max_epochs, 1)
        return int(min(total, t.max_steps * k) if t.max_steps != -1 else total)

    def _clips_in_mixed_precision(self) -> bool:
        """Gradient clipping under Lightning's mixed-precision plugin (16-mixed, bf16-mixed)."""
        t = self.attached_trainer()
        mixed = t is not None and hasattr(t.precision_plugin, "scaler")
        return mixed and bool(t.gradient_clip_val or self.grad_clip)

    def optim_config(self) -> dict[str, Any]:
        cfg = {**DEFAULT_OPTIM, **(self.hparams.get("optim") or {})}
        unknown = set(cfg) - set(DEFAULT_OPTIM)
        if unknown:
            raise ConfigError(f"model.optim has unknown keys {sorted(unknown)}; known: {sorted(DEFAULT_OPTIM)}")
        check_range("model.optim.lr", cfg["lr"], lo=0, lo_open=True)
        check_range("model.optim.weight_decay", cfg["weight_decay"], lo=0)
        check_range("model.optim.pct_start", cfg["pct_start"], lo=0, hi=1, lo_open=True)
        check_range("model.optim.momentum", cfg["momentum"], lo=0, hi=1)
        check_range("model.optim.cycle_len", cfg["cycle_len"], lo=1, integer=True)
        check_range("model.optim.cycle_mult", cfg["cycle_mult"], lo=1, integer=True)
        return cfg

    def configure_optimizers(self):
        cfg = self.optim_config()
        if cfg["fused"] and self._clips_in_mixed_precision():
            # a fused step unscales 16-bit gradients inside itself, after clipping would have seen them
            # scaled; Lightning's mixed-precision plugin refuses the pair (bf16 included)
            cfg["fused"] = False
        opt = make_optimizer(self.parameters(), cfg)
        schedule = cfg["schedule"]
        if schedule == "constant":
            return opt
        if schedule == "onecycle":
            total = self.total_steps()
            if cfg["pct_start"] * total < 2:  # torch's one cycle divides by zero at some such lengths
                log.warning(
                    "model.optim.schedule=onecycle over %d optimizer steps leaves its warm-up (pct_start=%s) "
                    "under 2 steps: the learning rate stays at model.optim.lr for this run",
                    total,
                    cfg["pct_start"],
                )
                return opt
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg["lr"], total_steps=total, pct_start=cfg["pct_start"]
            )
        elif schedule == "cosine_restarts":
            steps_per_epoch = max(1, self.total_steps() // max(1, self.trainer.max_epochs or 1))
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                opt, T_0=steps_per_epoch * cfg["cycle_len"], T_mult=cfg["cycle_mult"]
            )
        else:
            raise ConfigError(f"model.optim.schedule={schedule!r}: expected constant, onecycle or cosine_restarts")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        dm = getattr(self.attached_trainer(), "datamodule", None)
        if dm is not None:
            checkpoint["emblab"] = {
                "data_kind": dm.kind,
                "data": dm.artifacts(),
                "data_config": getattr(dm, "hydra_config", None),
                "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
                "optimizer_steps": self.optimizer_steps,
            }
        # torch's RNG (dropout, sampling) so a resumed run continues the same random stream
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.steps_taken = int((checkpoint.get("emblab") or {}).get("optimizer_steps", 0))
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
