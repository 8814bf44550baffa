"""emblab's own callbacks."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from emblab.errors import EmblabError

log = logging.getLogger("emblab")

HIGHER_IS_BETTER = ("acc", "auc", "f1", "r2", "precision", "recall", "ndcg")


def higher_is_better(name: str) -> bool:
    return any(key in name.rsplit("/", 1)[-1] for key in HIGHER_IS_BETTER)


class MetricsSummary(pl.Callback):
    """Writes metrics.json: for every logged val/ (and test/) metric its final and best value and the
    epoch of the best, plus wall seconds. Scripts and benchmarks read this file, not the console."""

    def __init__(self, path: str, prefixes: tuple[str, ...] = ("val/", "test/")):
        self.path, self.prefixes = Path(path), tuple(prefixes)
        self.summary: dict[str, dict] = {}
        self.start = time.perf_counter()
        self.wall_before = 0.0  # seconds trained before a resume (from the checkpoint)
        self.extra: dict = {}
        self.fit_wall: float | None = None

    def on_fit_start(self, trainer, pl_module):
        self.start, self.fit_wall = time.perf_counter(), None

    # kept in checkpoints, so a resumed run reports the best over the whole run and its whole wall time
    def state_dict(self) -> dict:
        return {"summary": self.summary, "wall_seconds": self.wall_before + time.perf_counter() - self.start}

    def load_state_dict(self, state_dict: dict) -> None:
        self.summary = {k: dict(v) for k, v in state_dict.get("summary", {}).items()}
        self.wall_before = float(state_dict.get("wall_seconds", 0.0))

    def _record(self, trainer) -> None:
        for name, value in trainer.callback_metrics.items():
            if not name.startswith(self.prefixes) or value.numel() != 1:
                continue
            v = float(value)
            entry = self.summary.setdefault(name, {"final": v, "best": v, "best_epoch": trainer.current_epoch})
            entry["final"] = v
            better = v > entry["best"] if higher_is_better(name) else v < entry["best"]
            if better or math.isnan(entry["best"]):
                entry["best"], entry["best_epoch"] = v, trainer.current_epoch

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_test_end(self, trainer, pl_module):
        self._record(trainer)
        self.write(trainer)

    def on_fit_end(self, trainer, pl_module):
        self.fit_wall = self.wall_before + time.perf_counter() - self.start
        self.write(trainer)

    def record(self, trainer, **extra) -> dict:
        """The metrics with `extra` added (train.py's train_wall_seconds), written again; returned on every rank."""
        self.extra.update(extra)
        self.write(trainer)
        return self.contents(trainer)

    @rank_zero_only
    def write(self, trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.contents(trainer), indent=2) + "\n")

    def contents(self, trainer) -> dict:
        ckpt = trainer.checkpoint_callback
        wall = self.fit_wall if self.fit_wall is not None else self.wall_before + time.perf_counter() - self.start
        # wall_seconds: the fit over the whole run (resumed parts included); train_wall_seconds (from
        # train.py): this command's fit and test
        return {
            **self.summary,
            "wall_seconds": round(wall, 3),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            # optimizer steps; global_step counts Lightning batches (k steps each with steps_per_call k)
            "optimizer_steps": getattr(trainer.lightning_module, "optimizer_steps", trainer.global_step),
            "best_checkpoint": getattr(ckpt, "best_model_path", None) or None,
            "last_checkpoint": getattr(ckpt, "last_model_path", None) or None,
            **self.extra,
        }


class FiniteLoss(pl.Callback):
    """Ends a run whose loss turns non-finite (NaN, inf) with one error line and a non-zero exit, instead
    of training on to a NaN metric. Checked every `every` training calls and at each validation end,
    where reading the logged value costs one host sync."""

    def __init__(self, every: int = 100):
        self.every = every

    def _check(self, trainer, names: tuple[str, ...]) -> None:
        for name in names:
            value = trainer.callback_metrics.get(name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise EmblabError(
                    f"{name} became {float(value)} at optimizer step {trainer.global_step}: training "
                    "diverged; lower model.optim.lr (or clip with trainer.gradient_clip_val)"
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx % self.every == 0:
            self._check(trainer, ("train/loss",))

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer, ("train/loss",))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._check(trainer, ("val/loss",))


class TextSamples(pl.Callback):
    """A few samples from a character model after each validation epoch: to the console and, with W&B,
    to a table. How many, how long and how hot are the model's hparams (samples, sample_len,
    sample_temperature); a model or data without them is left alone."""

    def on_validation_epoch_end(self, trainer, pl_module):
        n = getattr(pl_module, "hparams", {}).get("samples")
        dm = getattr(trainer, "datamodule", None)
        if trainer.sanity_checking or not trainer.is_global_zero or not n or not hasattr(dm, "sample_prompts"):
            return
        from emblab.generate import sample

        h, itos, rows = pl_module.hparams, dm.artifacts()["itos"], []
        for i, prompt in enumerate(dm.sample_prompts(n, max(h.cs, 8))):
            text = sample(pl_module, itos, prompt, h.sample_len, h.sample_temperature, seed=i)
            rows.append([trainer.current_epoch, prompt, text])
            log.info("sample (epoch %d) %r -> %r", trainer.current_epoch, prompt, text)
        for lg in trainer.loggers:
            if hasattr(lg, "log_text"):  # WandbLogger: a table of samples per epoch
                lg.log_text(key="samples", columns=["epoch", "prompt", "text"], data=rows)


class RankingMetrics(pl.Callback):
    """Recall@k and NDCG@k of a collab model on its validation split after each validation epoch
    (emblab.ranking): off unless k is set (callbacks.ranking.k=10); a no-op for other families."""

    def __init__(self, k: int | None = None, relevant: float = 4.0, max_users: int | None = 1000, seed: int = 0):
        self.k, self.relevant, self.max_users, self.seed = k, relevant, max_users, seed

    @property
    def metrics(self) -> tuple[str, ...]:
        return (f"val/recall@{self.k}", f"val/ndcg@{self.k}") if self.k else ()

    def on_validation_epoch_end(self, trainer, pl_module):
        dm = trainer.datamodule
        if not self.k or trainer.sanity_checking or getattr(dm, "kind", None) != "ratings":
            return
        from emblab.ranking import ranking_scores

        train, val = dm.train_ds.tensors, dm.val_ds.tensors
        device = next(pl_module.parameters()).device
        r = ranking_scores(
            lambda u, i: pl_module(u.to(device), i.to(device)),
            train[:2],
            val,
            len(dm.item_ids),
            self.k,
            self.relevant,
            self.max_users,
            self.seed,
        )
        recall_name, ndcg_name = self.metrics
        pl_module.log(recall_name, r["recall"])
        pl_module.log(ndcg_name, r["ndcg"])
