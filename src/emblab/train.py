"""Training: compose data, model, trainer, loggers and callbacks from the Hydra config and fit.

The thin entry point is ../../train.py; tests call `train(cfg)` directly.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_only

from emblab.config_check import check_config, check_metric
from emblab.ddp_hydra import DDP_ENV, end_ddp, prepare_ddp_relaunch
from emblab.errors import ConfigError, find_user_error

log = logging.getLogger("emblab")


ROOT = Path(__file__).resolve().parents[2]


def char_data_shape(arch: str) -> str:
    """How the text is cut for a char architecture (conf/data_base/text.yaml's data.shape, from
    model.arch): the one table is ARCH_SHAPE; an unknown arch is the model's to refuse."""
    from emblab.models.char_rnn import ARCH_SHAPE

    return ARCH_SHAPE.get(arch, "windows")


OmegaConf.register_new_resolver("emblab.char_shape", char_data_shape, replace=True)


def trainer_kwargs(cfg_trainer: DictConfig) -> dict[str, Any]:
    """The trainer config as Trainer kwargs, with `gpus=N` (Lightning 1.x) translated and GPU checked."""
    kw = OmegaConf.to_container(cfg_trainer, resolve=True)
    gpus = kw.pop("gpus", None)
    if gpus is not None:
        if gpus == 0:
            kw["accelerator"], kw["devices"] = "cpu", 1
        else:
            kw["accelerator"], kw["devices"] = "gpu", gpus
    if kw.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "this config asks for a GPU but torch sees none (torch.cuda.is_available() is False); "
            "train on the CPU with trainer=cpu or trainer.gpus=0"
        )
    return kw


def sweep_group(cfg: DictConfig) -> None:
    """In a multirun, W&B groups the trials under sweep_name, by default the sweep folder's name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.get("sweep_name") is None and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.sweep_name = f"{cfg.task_name}/{Path(HydraConfig.get().sweep.dir).name}"


def find_lr(trainer, model, dm, out_dir: Path, apply: bool, num_training: int = 100) -> float | None:
    """Lightning's learning-rate range test; saves plots/lr_find.png, and with apply=True trains at
    the suggested rate (the model reads its rate from hparams.optim.lr)."""
    from pytorch_lightning.tuner import Tuner

    k = model.steps_per_call
    model.set_steps_per_call(1)  # the range test raises the rate once per batch: one optimizer step each
    dm.steps_per_call = 1
    try:
        finder = Tuner(trainer).lr_find(model, datamodule=dm, num_training=num_training, update_attr=False)
    finally:
        model.set_steps_per_call(k)
        dm.steps_per_call = k
    if finder is None:  # ranks > 0
        return None
    suggestion = finder.suggestion()
    if trainer.is_global_zero:
        (out_dir / "plots").mkdir(parents=True, exist_ok=True)
        fig = finder.plot(suggest=True)
        fig.savefig(out_dir / "plots" / "lr_find.png", dpi=100)
        log.info("lr_find: suggested learning rate %s%s", suggestion, " (applied)" if apply else "")
    if apply and suggestion:
        model.hparams.optim = {**(model.hparams.get("optim") or {}), "lr": float(suggestion)}
    return suggestion


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path, model_class: str | None = None) -> str | None:
    """ckpt_path=last: this run folder's checkpoints/last.ckpt (resume a run in place with
    hydra.run.dir=<its folder>); a run folder: its last.ckpt; a file: itself."""
    if ckpt_path is None:
        return None
    path = out_dir if ckpt_path == "last" else Path(ckpt_path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    if not path.is_file():
        hint = (
            " (to resume a run in place, pass hydra.run.dir=<its folder> with ckpt_path=last)"
            if ckpt_path == "last"
            else ""
        )
        raise ConfigError(f"ckpt_path={ckpt_path}: no checkpoint at {path}{hint}")
    from emblab.checkpoint import checked_meta, load_checkpoint

    # refuses pickled objects, non-plain stored values and classes outside emblab's own, in one line
    meta = checked_meta(path, load_checkpoint(path))
    if model_class is not None and meta["model_class"] != model_class:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: {path} holds a {meta['model_class']}, this config trains a {model_class}"
        )
    return str(path)


def csv_history(loggers, ckpt_path: str | None):
    """(metrics.csv, its rows before the checkpoint) when resuming into a folder that has one: Lightning's
    CSVLogger deletes the file as it starts, which would leave the plots and the table the resumed part only."""
    from pytorch_lightning.loggers import CSVLogger

    csv_logger = next((lg for lg in loggers if isinstance(lg, CSVLogger)), None)
    if not ckpt_path or csv_logger is None or rank_zero_only.rank != 0:
        return None
    path = Path(csv_logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return None
    import pandas as pd

    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    rows = pd.read_csv(path)
    return path, rows[rows["step"] < step]  # what the crashed run logged after its checkpoint is redone


def restore_csv_history(history) -> None:
    """The rows before the resume back in front of the resumed run's rows."""
    if history is None:
        return
    import pandas as pd

    path, before = history
    after = pd.read_csv(path) if path.is_file() else before.iloc[:0]
    pd.concat([before, after], ignore_index=True).to_csv(path, index=False)


def check_compatible(model_cls: type, dm, choices: dict[str, str]) -> None:
    want = getattr(model_cls, "data_kind", None)
    if want is not None and want != dm.kind:
        raise ConfigError(
            f"model={choices.get('model', '?')} trains on {want} data, but data={choices.get('data', '?')} "
            f"provides {dm.kind} data; leave data= out to get the model's own, or pick a {want} data config"
        )


def build_loggers(cfg_logger: DictConfig | None) -> list:
    loggers = []
    for name, conf in (cfg_logger or {}).items():
        try:
            logger = hydra.utils.instantiate(conf)
            if type(logger).__name__ == "WandbLogger":
                _ = logger.experiment  # start the run now: a bad key, mode or network fails here, not mid-fit
            loggers.append(logger)
        except Exception as e:  # noqa: BLE001 - a logger (W&B: no network, bad key) must never stop training
            warnings.warn(
                f"logger {name} could not start ({type(e).__name__}: {e}); training goes on without it", stacklevel=2
            )
    return loggers


def hydra_choices() -> dict[str, str]:
    from hydra.core.hydra_config import HydraConfig

    try:
        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # not running under Hydra (a test composing its own config)
        return {}


def build_data_and_model(cfg: DictConfig):
    """The DataModule (set up for fitting) and the model sized by it, as cfg describes them."""
    dm = hydra.utils.instantiate(cfg.data)
    dm.hydra_config = OmegaConf.to_container(cfg.data, resolve=True)  # saved in checkpoints for `emblab.eval`
    model_cls = hydra.utils.get_class(cfg.model._target_)
    check_compatible(model_cls, dm, hydra_choices())
    dm.prepare_data()
    dm.setup("fit")
    dims = dm.dims()
    # a size the data gives and the model config also sets (a char model's cs, bptt) must
    # agree: the data gives it, and a different model value would otherwise be overridden in silence
    clash = {k: (cfg.model[k], v) for k, v in dims.items() if k in cfg.model and cfg.model[k] != v}
    if clash:
        k, (model_value, data_value) = next(iter(clash.items()))
        data_key = {"data_shape": "shape"}.get(k, k)
        raise ConfigError(
            f"model.{k}={model_value} but the data is cut for {k}={data_value} (data.{data_key}); "
            f"set model.{k} alone: the data config follows it"
        )
    model = hydra.utils.instantiate(cfg.model, **dims, _convert_="all")
    dm.steps_per_call = model.steps_per_call  # k lives in model.steps_per_call; the data groups its batches by it
    return dm, model


def step_settings_in_calls(kw: dict[str, Any], cfg_callbacks, k: int) -> dict[str, dict[str, int]]:
    """With steps_per_call k > 1 a Lightning batch is k optimizer steps, and Lightning counts batches. The
    settings a user gives in optimizer steps are made to count batches here, in one place, or refused
    when they do not divide: max_steps, an integer val_check_interval, a callback's every_n_train_steps
    (returned as {callback: {key: value}} for its constructor), and log_every_n_steps (rounded: it only
    says how often a loss is logged). limit_train_batches counts Lightning batches (k steps each), as
    documented: it is a debugging limit, not a schedule."""

    def calls(key: str, n: int) -> int:
        if n % k:
            raise ConfigError(
                f"{key}={n} is not a multiple of model.steps_per_call={k} (each Lightning batch is "
                f"{k} optimizer steps): use a multiple of {k}, or model.steps_per_call=1"
            )
        return n // k

    kw["log_every_n_steps"] = max(1, round((kw.get("log_every_n_steps") or 50) / k))
    for key in ("val_check_interval", "max_steps"):
        value = kw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            kw[key] = calls(f"trainer.{key}", value)
    translated = {}
    for name, conf in (cfg_callbacks or {}).items():
        n = conf.get("every_n_train_steps") if conf is not None else None
        if n:
            translated[name] = {"every_n_train_steps": calls(f"callbacks.{name}.every_n_train_steps", int(n))}
    return translated


def build_trainer(cfg: DictConfig, extra_callbacks: tuple = (), model=None):
    """The Trainer with the configured callbacks and loggers (the loggers are returned too).

    A model that steps its optimizer itself (steps_per_call > 1) takes over trainer.gradient_clip_val:
    Lightning clips only in automatic optimization."""
    kw = trainer_kwargs(cfg.trainer)
    if model is not None and not model.automatic_optimization:
        if (kw.get("accumulate_grad_batches") or 1) > 1:
            raise ConfigError(
                f"model.steps_per_call={model.steps_per_call} steps the optimizer itself: set "
                "model.steps_per_call=1 to use trainer.accumulate_grad_batches"
            )
        clip, algorithm = kw.pop("gradient_clip_val", None), kw.pop("gradient_clip_algorithm", None) or "norm"
        if algorithm not in ("norm", "value"):
            raise ConfigError(f"trainer.gradient_clip_algorithm={algorithm!r}: expected norm or value")
        model.grad_clip = (float(clip), algorithm) if clip else None
        in_calls = step_settings_in_calls(kw, cfg.get("callbacks"), model.steps_per_call)
    else:
        in_calls = {}
    from emblab.callbacks import FiniteLoss
    from emblab.checkpoint import AtomicCheckpointIO

    quiet_lightning()  # every Trainer emblab builds, the benchmarks' included
    callbacks = [
        hydra.utils.instantiate(c, **in_calls.get(name, {}))
        for name, c in (cfg.get("callbacks") or {}).items()
        if c is not None
    ]
    loggers = build_loggers(cfg.get("logger"))
    # always: a diverged run ends with an error, a checkpoint is written whole or not at all
    plugins = [*(kw.pop("plugins", None) or []), AtomicCheckpointIO()]
    trainer: pl.Trainer = hydra.utils.instantiate(
        kw, callbacks=[*callbacks, FiniteLoss(), *extra_callbacks], logger=loggers or False, plugins=plugins
    )
    return trainer, loggers


def quiet_lightning() -> None:
    """Keep the console to what helps: Lightning's info lines (GPU/TPU available, adverts, which loader
    it loads) and two warnings that say nothing actionable here (a deprecation inside Lightning itself;
    the logging interval, which emblab's short epochs and steps_per_call trip by design) are silenced."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and optionally test) one model; returns the contents of metrics.json."""
    if rank_zero_only.rank > 0:  # DDP: info lines from rank zero only; warnings from every rank
        logging.getLogger("emblab").setLevel(logging.WARNING)
    if cfg.get("lr_find") not in (None, "show", "apply"):
        raise ConfigError(f"lr_find={cfg.lr_find}: expected show or apply")
    check_config(cfg)  # every value set and of its type, before data loads
    trainer_kwargs(cfg.trainer)  # a GPU asked for and absent: said now, not after the data loaded
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    sweep_group(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir, cfg.model.get("_target_"))

    dm, model = build_data_and_model(cfg)
    prepare_ddp_relaunch()
    env_before = {k: os.environ.get(k) for k in DDP_ENV}
    trainer, loggers = build_trainer(cfg, model=model)
    check_metric(
        cfg.get("optimized_metric"), model, tuple(m for cb in trainer.callbacks for m in getattr(cb, "metrics", ()))
    )
    history = csv_history(loggers, ckpt_path)  # before a logger starts and deletes it
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            from pytorch_lightning.utilities.model_summary import ModelSummary

            lg.experiment.summary["model/summary"] = str(ModelSummary(model, max_depth=2))
            lg.experiment.summary["model/params"] = sum(p.numel() for p in model.parameters())
        if cfg.get("wandb_watch") and hasattr(lg, "watch"):  # gradient (and weight) histograms in W&B
            lg.watch(model, log=cfg.wandb_watch, log_freq=cfg.trainer.log_every_n_steps)
    save_config(cfg, out_dir)

    if cfg.get("lr_find"):
        find_lr(trainer, model, dm, out_dir, apply=cfg.lr_find == "apply", num_training=cfg.get("lr_find_steps", 100))
    start = time.perf_counter()
    # weights_only: a resumed checkpoint is unpickled safely too (emblab stores only tensors and plain data)
    if cfg.get("train", True):
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    if cfg.get("test"):
        trainer.test(model, datamodule=dm, ckpt_path="best" if cfg.get("train", True) else ckpt_path, weights_only=True)
    wall = time.perf_counter() - start
    restore_csv_history(history)

    metrics = finish(trainer, model, dm, loggers, out_dir, wall)
    close_loggers(loggers)
    end_ddp(env_before)
    scores = ", ".join(
        f"{k} {v['final']:.4f} (best {v['best']:.4f})"
        for k, v in metrics.items()
        if isinstance(v, dict) and k.startswith(("val/", "test/"))
    )
    log.info("%s | wall %.1f s | %s", scores or "no validation metrics", wall, out_dir)
    return metrics


@rank_zero_only
def save_config(cfg: DictConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)


def finish(trainer, model, dm, loggers, out_dir: Path, wall: float) -> dict[str, Any]:
    """Plots after training, and the metrics: metrics.json's one writer is MetricsSummary, here told the
    command's own wall time of fit (and test); every rank returns the same dict."""
    from emblab.callbacks import MetricsSummary

    summary = next((cb for cb in trainer.callbacks if isinstance(cb, MetricsSummary)), None)
    metrics = summary.record(trainer, train_wall_seconds=round(wall, 3)) if summary else {}
    if trainer.is_global_zero and not trainer.fast_dev_run:
        from emblab.plots import training_plots

        images = training_plots(model, dm, out_dir)
        for lg in loggers:
            if hasattr(lg, "log_image") and images:
                for key, img in images.items():
                    lg.log_image(key=f"plots/{key}", images=[str(img)])
    return metrics


def close_loggers(loggers) -> None:
    """End W&B runs now, not at exit: each run of a sweep gets its own, and the summary is written."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and rank_zero_only.rank == 0:
            lg.experiment.finish()  # blocks until the run's records are written


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value Hydra sweepers optimise: the best of `name` over the run. A wrong name is an error."""
    if not name:
        return None
    if name not in metrics:
        known = sorted(k for k, v in metrics.items() if isinstance(v, dict))
        raise ConfigError(f"optimized_metric={name!r} was never logged; logged metrics: {', '.join(known) or 'none'}")
    return metrics[name]["best"]


def check_command_line(argv: list[str]) -> None:
    """train.py's overrides compose, or one `error:` line naming the closest valid key or choice, exit 2."""
    from emblab.config_check import check_overrides

    # Optuna's RDB storage migrates its schema through alembic, which logs each step at INFO
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        check_overrides(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def run(cfg: DictConfig) -> float | None:
    """train.py's body: one readable line and exit status 2 for a user error, no traceback."""
    try:
        metrics = train(cfg)
        if rank_zero_only.rank != 0:  # DDP ranks > 0 report to nobody; the sweeper reads rank zero's value
            return None
        return metric_value(metrics, cfg.get("optimized_metric"))
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None
