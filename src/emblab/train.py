"""Training: `python train.py [overrides]` (../../train.py) runs `main` under Hydra; tests and benchmarks call
`train(cfg)` with a composed config. Every setting is checked before any work (emblab.training.config), the
objects are built from them (emblab.training.build), one training at a time writes a run folder, and a signal
leaves a checkpoint to resume from and the conventional exit status (143 for SIGTERM, 130 for SIGINT)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.trainer.states import TrainerStatus
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from emblab.core.cli import fail, guarded
from emblab.core.errors import ConfigError, closest
from emblab.training.build import build_data_and_model, build_trainer
from emblab.training.callbacks import MetricsSummary
from emblab.training.checkpoint import load_checkpoint
from emblab.training.config import check_config
from emblab.training.ddp import end_ddp, prepare_ddp_relaunch
from emblab.training.runs import RunLock, check_resume, csv_history, restore_csv_history

log = logging.getLogger("emblab")
EXIT_STATUS = {"SIGTERM": 143, "SIGINT": 130}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and optionally test) one model; returns the contents of metrics.json."""
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
        metrics = finish(trainer, model, dm, loggers, out_dir, wall, s["steps_per_call"], plots=not stopped_by)
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
    """trainer.fit (and test); the signal that stopped it, if one did (the checkpoint callback has saved)."""
    try:
        if run.train:  # weights_only: a resumed checkpoint is unpickled safely too
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        best = getattr(trainer.checkpoint_callback, "best_model_path", None) if run.train else ckpt_path
        if run.train and best and any(isinstance(cb, EarlyStopping) for cb in trainer.callbacks):
            model.load_state_dict(load_checkpoint(best)["state_dict"])  # epochs chosen on validation: its best
        if run.test or (run.train and dm.test_ds is not None):  # a test part is scored once, at the end
            trainer.test(model, datamodule=dm, ckpt_path=best or None, weights_only=True)
    except SIGTERMException:
        return "SIGTERM"
    except SystemExit:  # Lightning exits 1 after a KeyboardInterrupt, its callbacks told
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            return "SIGINT"
        raise
    return None


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


def check_metric(name: str | None, model, trainer) -> None:
    """optimized_metric names a metric the model (or a callback) logs: found out before a sweep's first trial."""
    if not name:
        return
    declared = model.declared_metrics() | {m for cb in trainer.callbacks for m in getattr(cb, "metrics", ())}
    if name not in declared:
        raise ConfigError(
            f"optimized_metric={name!r}: {type(model).__name__} logs no such metric"
            f"{closest(name, declared)}; it logs {', '.join(sorted(declared))}"
        )


def name_sweep(cfg: DictConfig) -> None:
    """In a multirun, W&B groups the trials under sweep_name, by default the sweep folder's name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.get("sweep_name") is None and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.sweep_name = f"{cfg.task_name}/{Path(HydraConfig.get().sweep.dir).name}"


def start_loggers(loggers: list, cfg: DictConfig, model) -> None:
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            from pytorch_lightning.utilities.model_summary import ModelSummary

            lg.experiment.summary["model/summary"] = str(ModelSummary(model, max_depth=2))
            lg.experiment.summary["model/params"] = sum(p.numel() for p in model.parameters())
        if cfg.get("wandb_watch") and hasattr(lg, "watch"):  # gradient (and weight) histograms in W&B
            lg.watch(model, log=cfg.wandb_watch, log_freq=cfg.trainer.log_every_n_steps)


@rank_zero_only
def save_config(cfg: DictConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)


def finish(trainer, model, dm, loggers, out_dir: Path, wall: float, k: int, plots: bool) -> dict[str, Any]:
    """metrics.json (written by MetricsSummary, told this command's wall time) and the plots; W&B runs end now,
    so each run of a sweep gets its own. Every rank returns the same dict."""
    summary = next((cb for cb in trainer.callbacks if isinstance(cb, MetricsSummary)), None)
    metrics = summary.record(trainer, train_wall_seconds=round(wall, 3)) if summary else {}
    if plots and trainer.is_global_zero and not trainer.fast_dev_run:
        from emblab.analysis.figures import training_plots

        images = training_plots(out_dir, dm.kind, model, dm.artifacts(), k)
        for lg in loggers:
            for key, img in images.items() if hasattr(lg, "log_image") else ():
                lg.log_image(key=f"plots/{key}", images=[str(img)])
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            lg.experiment.finish()
    return metrics


def resume_command(out_dir: Path) -> str:
    from hydra.core.hydra_config import HydraConfig

    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in task if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    return " ".join(["python train.py", *kept, f"hydra.run.dir={out_dir}", "ckpt_path=last"])


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value Hydra sweepers optimise: the best of `name` over the run. A name never logged is an error."""
    if not name:
        return None
    if name not in metrics:
        known = sorted(k for k, v in metrics.items() if isinstance(v, dict))
        raise ConfigError(f"optimized_metric={name!r} was never logged; logged metrics: {', '.join(known) or 'none'}")
    return metrics[name]["best"]


def main(cfg: DictConfig) -> float | None:
    """train.py's body: one line and exit status 2 for a user error; ranks > 0 report to nobody."""
    metrics = guarded(lambda: train(cfg))
    return None if rank_zero_only.rank != 0 else guarded(lambda: metric_value(metrics, cfg.get("optimized_metric")))


def check_command_line(argv: list[str]) -> None:
    """train.py's overrides compose, or one `error:` line naming the closest valid key or choice, exit 2."""
    from emblab.training.config import check_command_line as check

    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's storage migrations log each step
    try:
        check(argv)
    except ConfigError as e:
        fail(e)
