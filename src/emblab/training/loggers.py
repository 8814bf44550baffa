"""The loggers of a run: CSV always, W&B when configured. A logger that cannot start (W&B without network or with
a bad key) is a warning, never a failed run; W&B runs end with their run, so each run of a sweep has its own."""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only


def build_loggers(loggers_cfg: dict[str, Any]) -> list:
    loggers = []
    for name, conf in loggers_cfg.items():
        try:
            logger = hydra.utils.instantiate(
                conf
                if isinstance(conf, dict)
                else {k: v for k, v in asdict(conf).items() if v is not None or k == "version"}
            )
            if type(logger).__name__ == "WandbLogger":
                _ = logger.experiment  # start the run now: a bad key, mode or network fails here, not mid-fit
            loggers.append(logger)
        except Exception as e:  # noqa: BLE001 - a logger (W&B: no network, bad key) must never stop training
            warnings.warn(
                f"logger {name} could not start ({type(e).__name__}: {e}); training goes on without it", stacklevel=2
            )
    return loggers


def start_loggers(loggers: list, cfg: DictConfig, model) -> None:
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            from pytorch_lightning.utilities.model_summary import ModelSummary

            lg.experiment.summary["model/summary"] = str(ModelSummary(model, max_depth=2))
            lg.experiment.summary["model/params"] = sum(p.numel() for p in model.parameters())
        if cfg.get("wandb_watch") and hasattr(lg, "watch"):  # gradient (and weight) histograms in W&B
            lg.watch(model, log=cfg.wandb_watch, log_freq=cfg.trainer.log_every_n_steps)


def close_loggers(loggers: list) -> None:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            lg.experiment.finish()


def quiet_lightning() -> None:
    """Lightning's info lines (GPU/TPU available, adverts) and two warnings that say nothing actionable here
    (a deprecation inside Lightning; the logging interval, which short epochs trip by design)."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")
