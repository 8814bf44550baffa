"""Objects from checked settings (emblab.training.config): the Trainer with its callbacks and loggers, then the
DataModule and the model sized by it. Each is built from what it needs, passed in; nothing is wired on after."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import hydra
import pytorch_lightning as pl
import torch

from emblab.core.errors import ConfigError
from emblab.core.settings import plain
from emblab.training import steps
from emblab.training.callbacks import DeferredInterrupt
from emblab.training.checkpoint import AtomicCheckpointIO, CheckpointContents
from emblab.training.config import check_compatible, check_memory, check_shares, hydra_choices
from emblab.training.loggers import build_loggers, quiet_lightning
from emblab.training.runs import FiniteLoss

log = logging.getLogger("emblab")


def trainer_kwargs(trainer_cfg) -> dict[str, Any]:
    """The Trainer settings as kwargs: `gpus=N` (Lightning 1.x) translated, a GPU asked for and absent refused."""
    kw = {k: v for k, v in asdict(trainer_cfg).items() if k != "_target_" and v is not None}
    gpus = kw.pop("gpus", None)
    if gpus is not None:
        kw["accelerator"], kw["devices"] = ("cpu", 1) if gpus == 0 else ("gpu", gpus)
    if kw.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "this config asks for a GPU but torch sees none (torch.cuda.is_available() is False); "
            "train on the CPU with trainer=cpu or trainer.gpus=0"
        )
    return kw


def build_trainer(s: dict[str, Any], extra_callbacks: tuple = ()) -> tuple[pl.Trainer, list]:
    """The Trainer from checked settings `s`, with emblab's callbacks (a diverged loss ends the run; checkpoints
    are written whole, with their data) and the loggers; a model stepping k times per batch clips itself."""
    kw, k = trainer_kwargs(s["trainer"]), s["steps_per_call"]
    if k > 1:
        clip, algorithm = kw.pop("gradient_clip_val", None), kw.pop("gradient_clip_algorithm", None) or "norm"
        s["clip"] = (float(clip), algorithm) if clip else None
    kw = steps.in_calls(kw, k)
    quiet_lightning()
    callbacks = []
    for conf in s["callbacks"].values():
        conf = conf if isinstance(conf, dict) else asdict(conf)
        n = conf.get("every_n_train_steps")
        if n and k > 1:
            conf = {**conf, "every_n_train_steps": steps.in_calls({"max_steps": n}, k)["max_steps"]}
        callbacks.append(hydra.utils.instantiate(conf))
    contents = CheckpointContents({"_target_": s["data"]._target_, **plain(s["data"])})
    loggers = build_loggers(s["loggers"])
    trainer = pl.Trainer(
        **kw,
        callbacks=[*callbacks, FiniteLoss(), DeferredInterrupt(), contents, *extra_callbacks],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    return trainer, loggers


def build_data_and_model(s: dict[str, Any], world_size: int = 1):
    """The DataModule (set up for fitting) and the model sized by it."""
    model_cls, dm_cls, k = s["model_cls"], s["data_cls"], s["steps_per_call"]
    check_compatible(model_cls, dm_cls, hydra_choices())
    data_cfg = s["data"]
    check_shares(data_cfg, world_size)  # the Trainer's own count now (devices=auto, GPUs found)
    model_cls, dm_cls = steps.with_steps_per_call(
        model_cls, dm_cls, k, data_cfg.batch_size // world_size, s.get("clip")
    )
    dm = dm_cls(data_cfg, model_cls.data_kind)
    dm.prepare_data()
    dm.setup("fit")
    dims = dm.dims()
    check_memory(s["model_cls"], s["model"], dims, s["trainer"].accelerator)
    return dm, model_cls(s["model"], **dims)


def build(cfg) -> tuple[pl.Trainer, Any, Any, dict[str, Any]]:
    """(trainer, datamodule, model, checked settings) from a composed config: what train() builds, for scripts."""
    from emblab.training.config import check_config

    s = check_config(cfg)
    trainer, _ = build_trainer(s)
    dm, model = build_data_and_model(s, trainer.world_size)
    return trainer, dm, model, s
