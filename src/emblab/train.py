"""Training: `python train.py [overrides]` (../../train.py) runs `main` under Hydra; tests and benchmarks call
`train(cfg)` with a composed config. Every setting is checked before any work (training/config.py), the objects
are built from them (training/build.py), one training at a time writes a run folder (training/runs.py), and a
signal leaves a checkpoint to resume from and the conventional exit status (143 for SIGTERM, 130 for SIGINT)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerStatus
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from emblab.core.cli import guarded
from emblab.core.errors import ConfigError
from emblab.training.build import build_data_and_model, build_trainer
from emblab.training.callbacks import MetricsSummary
from emblab.training.config import check_config, check_metric
from emblab.training.ddp import end_ddp, prepare_ddp_relaunch
from emblab.training.loading import load_checkpoint
from emblab.training.loggers import close_loggers, start_loggers
from emblab.training.lr_find import find_lr
from emblab.training.runs import RunLock, check_resume, csv_history, restore_csv_history, resume_command, save_config
from emblab.training.sweeps import metric_value, name_sweep

log = logging.getLogger("emblab")
EXIT_STATUS = {"SIGTERM": 143, "SIGINT": 130}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit one model (and score its test part, if the data has one); returns the contents of metrics.json."""
    if rank_zero_only.rank > 0:  # DDP: info lines from rank zero only; warnings from every rank
        logging.getLogger("emblab").setLevel(logging.WARNING)
    name_sweep(cfg)
    s = check_config(cfg)
    run, out_dir = s["run"], Path(cfg.paths.output_dir)
    if run.torch_threads:
        torch.set_num_threads(run.torch_threads)
    if run.seed is not None:
        pl.seed_everything(run.seed, workers=True, verbose=False)
    with RunLock(out_dir):
        env_before = prepare_ddp_relaunch()
        if run.lr_find:
            find_lr(s, out_dir, apply=run.lr_find == "apply", steps=run.lr_find_steps)
        trainer, loggers = build_trainer(s)
        dm, model = build_data_and_model(s, trainer.world_size)
        ckpt_path = check_resume(run.ckpt_path, out_dir, model, dm) if run.ckpt_path else None
        if run.test and dm.test_ds is None:
            raise ConfigError("test=true, but this data has no test split (give it a test fraction or test file)")
        check_metric(run.optimized_metric, model, trainer)
        history = csv_history(out_dir / "csv", ckpt_path)  # before the CSV logger starts its file anew
        start_loggers(loggers, cfg, model)
        save_config(cfg, out_dir)
        start = time.perf_counter()
        stopped_by = fit(trainer, model, dm, run, ckpt_path)
        wall = time.perf_counter() - start
        restore_csv_history(history)
        summary = next((cb for cb in trainer.callbacks if isinstance(cb, MetricsSummary)), None)
        metrics = summary.record(trainer, train_wall_seconds=round(wall, 3)) if summary else {}
        if not stopped_by and trainer.is_global_zero and not trainer.fast_dev_run:
            draw(out_dir, trainer, model, dm, loggers, s["steps_per_call"])
        close_loggers(loggers)
        end_ddp(env_before)
    if stopped_by:
        if trainer.is_global_zero:
            print(
                f"stopped by {stopped_by} at epoch {trainer.current_epoch}, optimizer step "
                f"{metrics.get('optimizer_steps')}; checkpoints/last.ckpt holds it: resume with "
                f"{resume_command(out_dir)}",
                file=sys.stderr,
                flush=True,
            )
        raise SystemExit(EXIT_STATUS[stopped_by])
    scores = ", ".join(
        f"{k} {v['final']:.4f} (best {v['best']:.4f})"
        for k, v in metrics.items()
        if isinstance(v, dict) and k.startswith(("val/", "test/"))
    )
    log.info("%s | wall %.1f s | %s", scores or "no validation metrics", wall, out_dir)
    return metrics


def fit(trainer: pl.Trainer, model, dm, run, ckpt_path: str | None) -> str | None:
    """trainer.fit, then the test part once; the signal that stopped them, if one did (last.ckpt has it)."""
    try:
        if run.train:  # weights_only: a resumed checkpoint is unpickled safely too
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        best = getattr(trainer.checkpoint_callback, "best_model_path", None) if run.train else ckpt_path
        if run.train and best and any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks):
            model.load_state_dict(load_checkpoint(best)["state_dict"])  # epochs chosen on validation: its best
        if run.test or (run.train and dm.test_ds is not None):
            trainer.test(model, datamodule=dm, ckpt_path=best or None, weights_only=True)
    except SIGTERMException:
        return "SIGTERM"
    except SystemExit:  # Lightning exits 1 after a KeyboardInterrupt, its callbacks told
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            return "SIGINT"
        raise
    return None


def draw(out_dir: Path, trainer, model, dm, loggers: list, steps_per_call: int) -> None:
    """The run's figures into plots/ (and to a logger that takes images)."""
    from emblab.analysis.figures import training_plots

    images = training_plots(out_dir, dm.kind, model, dm.artifacts(), steps_per_call)
    for lg in loggers:
        for key, img in images.items() if hasattr(lg, "log_image") else ():
            lg.log_image(key=f"plots/{key}", images=[str(img)])


def main(cfg: DictConfig) -> float | None:
    """train.py's body: one line and exit status 2 for a user error; ranks > 0 report to nobody."""
    metrics = guarded(lambda: train(cfg))
    return None if rank_zero_only.rank != 0 else guarded(lambda: metric_value(metrics, cfg.get("optimized_metric")))
