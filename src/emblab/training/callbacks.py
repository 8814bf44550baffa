"""The run's record: metrics.json, and last.ckpt as the last completed epoch or step (a signal's too)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("emblab")

HIGHER_IS_BETTER = ("acc", "auc", "f1", "r2", "precision", "recall", "ndcg", "mrr", "hit")


def higher_is_better(name: str) -> bool:
    return any(key in name.rsplit("/", 1)[-1] for key in HIGHER_IS_BETTER)


def signal_name(exception: BaseException) -> str | None:
    """SIGTERM or SIGINT when that is what stopped a fit, else None."""
    if isinstance(exception, SIGTERMException):
        return "SIGTERM"
    return "SIGINT" if isinstance(exception, KeyboardInterrupt) else None


class DeferredInterrupt(pl.Callback):
    """Ctrl-C (SIGINT) stops a fit at the next batch boundary, as Lightning stops for SIGTERM, and not inside a
    checkpoint being written (a KeyboardInterrupt there escaped the run's record); a second Ctrl-C stops at once."""

    def __init__(self):
        self.pending, self.previous = False, None

    def handler(self, signum, frame) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def on_fit_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.handler)

    def check(self, *args, **kwargs) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    on_train_batch_start = on_train_batch_end = on_validation_batch_end = check

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class MetricsSummary(pl.Callback):
    """metrics.json: for every logged val/ and test/ metric its final and best value and the epoch of the best,
    wall seconds, steps, checkpoints, and `status` (finished | interrupted, with the signal). Scripts and
    benchmarks read this file, not the console. Its state travels in checkpoints, so a resumed run reports
    the best over the whole run and its whole wall time."""

    def __init__(self, path: str):
        self.path, self.summary, self.extra = Path(path), {}, {}
        self.start, self.wall_before, self.fit_wall = time.perf_counter(), 0.0, None

    def on_fit_start(self, trainer, pl_module):
        self.start, self.fit_wall, self.extra["status"] = time.perf_counter(), None, "running"

    def state_dict(self) -> dict:
        return {"summary": self.summary, "wall_seconds": self.wall_before + time.perf_counter() - self.start}

    def load_state_dict(self, state_dict: dict) -> None:
        self.summary = {k: dict(v) for k, v in state_dict.get("summary", {}).items()}
        self.wall_before = float(state_dict.get("wall_seconds", 0.0))

    def _record(self, trainer) -> None:
        for name, value in trainer.callback_metrics.items():
            if not name.startswith(("val/", "test/")) or value.numel() != 1:
                continue
            v = float(value)
            entry = self.summary.setdefault(name, {"final": v, "best": v, "best_epoch": trainer.current_epoch})
            entry["final"] = v
            if (v > entry["best"] if higher_is_better(name) else v < entry["best"]) or math.isnan(entry["best"]):
                entry["best"], entry["best_epoch"] = v, trainer.current_epoch

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._record(trainer)

    def on_test_end(self, trainer, pl_module):
        self._record(trainer)
        self.write(trainer)

    def on_fit_end(self, trainer, pl_module):
        self.fit_wall, self.extra["status"] = self.wall_before + time.perf_counter() - self.start, "finished"
        self.write(trainer)

    def on_exception(self, trainer, pl_module, exception):
        self.extra.update(status="interrupted", signal=signal_name(exception) or type(exception).__name__)
        self.write(trainer)

    def record(self, trainer, **extra) -> dict:
        """The metrics with `extra` added (train_wall_seconds, ...), written again; returned on every rank."""
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
        return {
            **self.summary,
            "wall_seconds": round(wall, 3),  # the fit over the whole run, resumed parts included
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,  # Lightning's batches (k optimizer steps each with steps_per_call)
            "optimizer_steps": getattr(trainer.lightning_module, "optimizer_steps", trainer.global_step),
            "processes": trainer.world_size,
            "best_checkpoint": getattr(ckpt, "best_model_path", None) or None,
            "last_checkpoint": getattr(ckpt, "last_model_path", None) or None,
            **self.extra,
        }


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's, with last.ckpt always the last completed epoch (or step, with every_n_train_steps) and
    written when a signal stops the run. Lightning 2.6 rewrites last.ckpt only when it also saves a top-k
    checkpoint at that step, so a run whose best epoch came early left an old epoch there."""

    def __init__(self, *args, every_n_train_steps: int | None = None, **kwargs):
        super().__init__(*args, every_n_train_steps=every_n_train_steps, **kwargs)
        self.every_n_steps = every_n_train_steps or 0

    def last_path(self) -> str:
        return os.path.join(self.dirpath, f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")

    def save_last_now(self, trainer) -> None:
        if not self.save_last or trainer.sanity_checking or trainer.fast_dev_run or self.dirpath is None:
            return
        self.last_model_path = self.last_path()  # before saving: it is part of the saved state
        trainer.save_checkpoint(self.last_model_path, self.save_weights_only)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save_last_now(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        super().on_train_epoch_end(trainer, pl_module)
        self.save_last_now(trainer)  # after the epoch's validation, which runs before this hook

    def on_exception(self, trainer, pl_module, exception):
        if signal_name(exception):
            self.save_last_now(trainer)
