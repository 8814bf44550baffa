"""A run folder's life: one training at a time in it (a lock), resuming from its checkpoints with the same model,
data and split, and its metrics.csv history kept across a resume."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from emblab.core.errors import ConfigError, EmblabError
from emblab.training.loading import check_finite, checked_meta, differing_artifacts, load_checkpoint

log = logging.getLogger("emblab")


class RunLock:
    """`<run folder>/.lock` while a training writes there: a second training into the same folder is refused in
    one line; a lock whose process is gone (killed, machine restarted) is taken over with a warning. Held by
    global rank zero only (the other ranks of a DDP run share its folder)."""

    def __init__(self, out_dir: Path):
        self.path, self.held = Path(out_dir) / ".lock", False

    def __enter__(self) -> RunLock:
        if rank_zero_only.rank != 0:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid, _, host = self.path.read_text().partition(" ")
                if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                    log.warning("%s: a stale lock of process %s (no longer running) was taken over", self.path, pid)
                    self.path.unlink(missing_ok=True)
                    continue
                raise ConfigError(
                    f"hydra.run.dir={self.path.parent}: another training (process {pid} on {host}) is "
                    "writing this run folder; wait for it to end, or train into another folder"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            break
        return self

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def checkpoint_file(ckpt_path: str, out_dir: Path) -> Path:
    """ckpt_path=last: this run folder's checkpoints/last.ckpt (resume in place with hydra.run.dir=<its folder>);
    a run folder: its last.ckpt; a file: itself."""
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
    return path


def check_resume(ckpt_path: str, out_dir: Path, model, dm) -> str:
    """The checkpoint to resume from, refused in one line unless it holds this model (class, every weight's
    shape) trained on this data (the same ids, codes and split): another split would score or train on rows
    the model has trained on."""
    path = checkpoint_file(ckpt_path, out_dir)
    ckpt = load_checkpoint(path)
    meta = checked_meta(path, ckpt)
    check_finite(path, ckpt.get("state_dict") or {})
    cls = meta["model_class"].rsplit(".", 1)[-1]
    if cls not in {c.__name__ for c in type(model).__mro__}:
        raise ConfigError(f"ckpt_path={ckpt_path}: {path} holds a {cls}, this config trains a {type(model).__name__}")
    mine = model.state_dict()
    for name, t in ckpt.get("state_dict", {}).items():
        if name not in mine or tuple(mine[name].shape) != tuple(t.shape):
            have = tuple(mine[name].shape) if name in mine else "no such weight"
            differ = {
                k: (v, model.hparams.get(k))
                for k, v in ckpt.get("hyper_parameters", {}).items()
                if model.hparams.get(k) != v and not isinstance(v, dict)
            }
            raise ConfigError(
                f"ckpt_path={ckpt_path}: its weight {name} is {tuple(t.shape)}, this model's is {have}"
                + (f"; the settings differ: {differ}" if differ else "")
                + ": resume with the run's "
                "own settings"
            )
    differ = [k for k in differing_artifacts(meta["data"], dm.artifacts()) if k != "seen"]
    if differ:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: the data now differs from the run's ({', '.join(differ)}): resume "
            "with the data settings it was trained with (data.split_seed, data.val_frac, files, ...)"
        )
    return str(path)


def csv_history(csv_dir: Path, ckpt_path: str | None):
    """(metrics.csv, its rows before the checkpoint) when resuming into a folder that has one: Lightning's
    CSVLogger starts the file anew, which would leave the plots and the table the resumed part only."""
    path = Path(csv_dir) / "metrics.csv"
    if not ckpt_path or rank_zero_only.rank != 0 or not path.is_file():
        return None
    import pandas as pd

    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    rows = pd.read_csv(path)
    return path, rows[rows["step"] < step]  # what the stopped run logged after its checkpoint is redone


def restore_csv_history(history) -> None:
    if history is None:
        return
    import pandas as pd

    path, before = history
    after = pd.read_csv(path) if path.is_file() else before.iloc[:0]
    pd.concat([before, after], ignore_index=True).to_csv(path, index=False)


@rank_zero_only
def save_config(cfg: DictConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)


def resume_command(out_dir: Path) -> str:
    from hydra.core.hydra_config import HydraConfig

    task = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in task if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    return " ".join(["python train.py", *kept, f"hydra.run.dir={out_dir}", "ckpt_path=last"])


class FiniteLoss(pl.Callback):
    """Ends a run whose loss turns non-finite (NaN, inf) with one error line, instead of training on to a NaN
    metric. Checked every `every` training calls and at each validation end (one host sync each)."""

    def __init__(self, every: int = 100):
        self.every = every

    def _check(self, trainer, pl_module, names: tuple[str, ...]) -> None:
        for name in names:
            value = trainer.callback_metrics.get(name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise EmblabError(
                    f"{name} became {float(value)} at optimizer step {pl_module.optimizer_steps}: "
                    "training diverged; lower model.optim.lr (or clip with trainer.gradient_clip_val)"
                )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx % self.every == 0:
            self._check(trainer, pl_module, ("train/loss",))

    def on_train_epoch_end(self, trainer, pl_module):
        self._check(trainer, pl_module, ("train/loss",))

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._check(trainer, pl_module, ("val/loss",))
