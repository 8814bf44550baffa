"""steps_per_call: k optimizer steps per Lightning batch, for models whose steps are too short to pay
Lightning's fixed cost per batch (hooks, logging) each time. Nothing else in emblab knows about it.

`with_steps_per_call(model_cls, dm_cls, k, batch, clip)` returns the two classes with a mixin each:
the data's training loader yields k batches at once, one index tensor of up to k·batch rows (the same
rows in the same order as k separate batches), and the model's training_step splits it back into
batches of `batch` rows and takes one optimizer step for each (Lightning's manual optimization): the
same batches, steps and schedule as k = 1, with the same weights (tests/test_steps_per_call.py).

Lightning's own counters (trainer.global_step, the CSV's step, limit_train_batches, the progress bar)
then count calls; what a user gives in optimizer steps is translated here once (`in_calls`), and
`optimizer_steps` (metrics.json, checkpoints, the loss plot) counts steps. Gradient clipping, which
Lightning does only in automatic optimization, is done here for each of the k steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pytorch_lightning.plugins.precision import Precision
from torch.utils.data import DataLoader, Sampler

from emblab.core.errors import ConfigError


class KBatches(Sampler):
    """k consecutive index batches of another batch sampler as one index tensor."""

    def __init__(self, batches: Sampler, k: int):
        self.batches, self.k = batches, k

    @property
    def sampler(self):  # what Lightning tells the epoch (see IndexBatchSampler.sampler)
        return self.batches.sampler

    def __iter__(self):
        group = []
        for idx in self.batches:
            group.append(idx)
            if len(group) == self.k:
                yield torch.cat(group)
                group = []
        if group:
            yield torch.cat(group)

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.k)


class StepsPerCallData:
    """Mixed into a DataModule class: its training loader gives k batches per item."""

    steps_per_call: int

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        if self.trainer is not None and self.trainer.overfit_batches > 0:
            return loader  # overfit_batches counts batches: the same few, one step each
        if not getattr(loader.dataset, "row_sliceable", True):
            raise ConfigError(
                f"model.steps_per_call={self.steps_per_call}: this data is read one chunk per step "
                "(a stateful model's stream); use model.steps_per_call=1"
            )
        if loader.batch_sampler is None:
            raise ConfigError(
                f"model.steps_per_call={self.steps_per_call}: this data is read one chunk per call "
                "(a stateful model's stream); use model.steps_per_call=1"
            )
        return DataLoader(
            loader.dataset,
            batch_sampler=KBatches(loader.batch_sampler, self.steps_per_call),
            collate_fn=loader.collate_fn,
        )


class StepsPerCallModel:
    """Mixed into a model class: each training batch is up to k batches of `batch` rows, one step each."""

    steps_per_call: int
    batch: int  # rows of one optimizer step on this rank
    clip: tuple[float, str] | None  # (value, "norm" | "value")
    steps_taken = 0

    @property
    def automatic_optimization(self) -> bool:
        return False

    def clips_gradients(self) -> bool:
        return bool(self.clip)

    @property
    def optimizer_steps(self) -> int:
        return self.steps_taken

    def training_step(self, batch, batch_idx):
        # Only the last of the k steps goes through Lightning's optimizer wrapper (its precision plugin, hooks
        # and step count); the others step the optimizer as a hand-written loop would.
        opt, raw, sched = self.optimizers(), self.optimizers(use_pl_optimizer=False), self.lr_schedulers()
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # 16-mixed: a GradScaler
        direct = type(self.trainer.precision_plugin) is Precision and self.trainer.world_size == 1
        chunks = list(zip(*(t.split(self.batch) for t in batch), strict=True))  # k batches of (B, ...) tensors
        losses = []
        for j, one in enumerate(chunks):
            loss = self.train_loss(one)
            last = j == len(chunks) - 1
            (opt if last else raw).zero_grad(set_to_none=True)
            if direct:
                loss.backward()
            else:  # the scaler's loss scaling, DDP's gradient sync
                self.manual_backward(loss)
            if last:
                opt.step()  # clips in on_before_optimizer_step, after the scaler has unscaled the gradients
            elif scaler is not None:
                if self.clip:
                    scaler.unscale_(raw)
                self.clip_own_gradients()
                scaler.step(raw)
                scaler.update()
            else:
                self.clip_own_gradients()
                raw.step()
            if sched is not None:
                sched.step()
            losses.append(loss.detach())  # no arithmetic per step: the mean is taken once per call
        self.steps_taken += len(chunks)
        sizes = torch.tensor([len(one[-1]) for one in chunks], dtype=losses[0].dtype, device=losses[0].device)
        self.log_train_loss((torch.stack(losses) * sizes).sum() / sizes.sum(), int(sizes.sum()))

    def clip_own_gradients(self) -> None:
        if self.clip:
            value, algorithm = self.clip
            clip = torch.nn.utils.clip_grad_norm_ if algorithm == "norm" else torch.nn.utils.clip_grad_value_
            clip(self.parameters(), value)

    def on_before_optimizer_step(self, optimizer) -> None:
        self.clip_own_gradients()

    def total_steps(self) -> int:
        t = self.trainer
        calls = t.estimated_stepping_batches  # builds the train loader: num_training_batches
        if t.overfit_batches > 0:
            return int(calls)
        if t.max_epochs == -1:
            return int(t.max_steps * self.steps_per_call)
        n_rank = math.ceil(len(t.train_dataloader.dataset) / t.world_size)
        per_epoch = min(t.num_training_batches * self.steps_per_call, math.ceil(n_rank / self.batch))
        total = per_epoch * max(t.max_epochs, 1)
        return int(min(total, t.max_steps * self.steps_per_call) if t.max_steps != -1 else total)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["steps_taken"] = self.steps_taken

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.steps_taken = int(
            checkpoint.get("steps_taken") or (checkpoint.get("emblab") or {}).get("optimizer_steps", 0)
        )


def with_steps_per_call(model_cls: type, dm_cls: type, k: int, batch: int, clip) -> tuple[type, type]:
    """The model and data classes taking k steps per Lightning batch (the same classes when k = 1)."""
    if k == 1:
        return model_cls, dm_cls

    def mixed(mixin, cls, **attrs):
        return type(
            cls.__name__,
            (mixin, cls),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "steps_per_call": k, **attrs},
        )

    return mixed(StepsPerCallModel, model_cls, batch=batch, clip=clip), mixed(StepsPerCallData, dm_cls)


def in_calls(trainer_kw: dict[str, Any], k: int) -> dict[str, Any]:
    """Trainer settings given in optimizer steps, in Lightning batches of k steps: max_steps and an integer
    val_check_interval (refused unless k divides them), log_every_n_steps (rounded: only how often a loss
    is logged). limit_train_batches counts Lightning batches, as documented: a debugging limit."""
    kw = dict(trainer_kw)
    if k == 1:
        return kw
    if (kw.get("accumulate_grad_batches") or 1) > 1:
        raise ConfigError(
            f"model.steps_per_call={k} steps the optimizer itself: set model.steps_per_call=1 "
            "to use trainer.accumulate_grad_batches"
        )
    kw["log_every_n_steps"] = max(1, round((kw.get("log_every_n_steps") or 50) / k))
    for key in ("val_check_interval", "max_steps"):
        value = kw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if value % k:
                raise ConfigError(
                    f"trainer.{key}={value} is not a multiple of model.steps_per_call={k} (each "
                    f"Lightning batch is {k} optimizer steps): use a multiple of {k}, or "
                    "model.steps_per_call=1"
                )
            kw[key] = value // k
    return kw
